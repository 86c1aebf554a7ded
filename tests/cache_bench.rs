//! The in-memory cache's own cost at its largest size (`cache_size = 1048576`): a store into
//! a full cache (each evicts the oldest) and a lookup, per operation. Not a pass/fail test:
//! `cargo test --release --no-default-features --features lua54,vendored --test cache_bench -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use media_metadata::analyze::Metadata;
use media_metadata::cache::Cache;

#[test]
#[ignore]
fn store_and_lookup_time_at_the_largest_cache() {
    const SIZE: usize = 1_048_576;
    let url = |i: usize| format!("https://upload.example.net/{i:08}/picture-with-a-typical-length.jpg");
    let result = Ok(Metadata { bytes: Some(15690), mime: Some("image/jpeg".into()), ..Metadata::default() });
    let mut c = Cache::new(SIZE, Duration::from_secs(3600), Duration::from_secs(60));
    let urls: Vec<String> = (0..2 * SIZE).map(url).collect();
    let t = Instant::now();
    for u in &urls[..SIZE] {
        c.put(u, &result);
    }
    let filling = t.elapsed();
    let t = Instant::now();
    for u in &urls[SIZE..] {
        c.put(u, &result);
    }
    let full = t.elapsed();
    let t = Instant::now();
    let mut hits = 0;
    for u in &urls[SIZE..] {
        hits += c.get(u).is_some() as usize;
    }
    let lookup = t.elapsed();
    assert_eq!(hits, SIZE);
    let ns = |d: Duration| d.as_nanos() as f64 / SIZE as f64;
    println!(
        "cache per operation at {SIZE}: store {:.0} ns while filling, {:.0} ns when full (evicting), lookup {:.0} ns",
        ns(filling),
        ns(full),
        ns(lookup)
    );
}
