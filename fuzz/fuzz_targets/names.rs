//! Arbitrary header values and URL paths through the file-name and date parsers: no panic,
//! and every name that comes out keeps the safe-name promises (no separators, controls or
//! bidi controls, trimmed, not "." or "..", at most 255 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::name::{from_url, safe, MAX_NAME_BYTES};
use media_metadata::response::{content_disposition_filename, http_date_to_xep0082};

fn check(name: &str) {
    assert!(!name.is_empty() && name != "." && name != ".." && name.len() <= MAX_NAME_BYTES, "{name:?}");
    assert_eq!(name, name.trim(), "{name:?}");
    let bad = |c: char| {
        c == '/'
            || c == '\\'
            || c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    assert!(!name.chars().any(bad), "{name:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(n) = safe(&text) {
        check(&n);
    }
    if let Some(raw) = content_disposition_filename(&text) {
        if let Some(n) = safe(&raw) {
            check(&n);
        }
    }
    if let Ok(url) = url::Url::parse(&format!("https://h.example/{text}")) {
        if let Some(n) = from_url(&url) {
            check(&n);
        }
    }
    if let Some(d) = http_date_to_xep0082(&text) {
        let b = d.as_bytes();
        assert!(d.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z', "{d}");
    }
});
