//! A global allocator that counts the heap bytes in use and their peak, for the binaries that
//! install it (`#[global_allocator] static A: Counting = Counting;`): tests/memory.rs, and the
//! fuzz target sniff_decode (which includes this file by path).
//!
//! It counts every thread of the process, so a measurement must run alone. Under
//! [`within`], an allocation that would take the bytes in use past a ceiling fails (a null
//! pointer: an infallible allocation then aborts the process) and is recorded, so a decoder
//! that asks for more than its bound is caught even when it handles the failure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The most `CURRENT` may reach (0: no ceiling), and the largest request refused under it.
static CEILING: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// Counts `by` more bytes in use, unless that passes the ceiling.
fn grow(by: usize) -> bool {
    let ceiling = CEILING.load(Ordering::SeqCst);
    let now = CURRENT.fetch_add(by, Ordering::SeqCst) + by;
    if ceiling != 0 && now > ceiling {
        CURRENT.fetch_sub(by, Ordering::SeqCst);
        REFUSED.fetch_max(by, Ordering::SeqCst);
        return false;
    }
    PEAK.fetch_max(now, Ordering::SeqCst);
    true
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !grow(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !grow(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(layout);
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as the old and new blocks both alive for a moment, as a moving realloc is.
        if !grow(new_size) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            CURRENT.fetch_sub(new_size, Ordering::SeqCst);
        } else {
            CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }
}

/// What [`within`] saw: the peak heap bytes above the start, and the largest allocation
/// refused for passing the ceiling (if any).
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    pub bytes: usize,
    pub refused: Option<usize>,
}

/// Runs `f` and returns its result and the peak heap bytes allocated while it ran.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (out, peak) = within(0, f);
    (out, peak.bytes)
}

/// Runs `f` with at most `limit` bytes more in use than at the start (0: no limit): past it
/// allocations fail. Returns `f`'s result and what was seen.
pub fn within<T>(limit: usize, f: impl FnOnce() -> T) -> (T, Peak) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    REFUSED.store(0, Ordering::SeqCst);
    CEILING.store(if limit == 0 { 0 } else { base + limit }, Ordering::SeqCst);
    let out = f();
    CEILING.store(0, Ordering::SeqCst);
    let refused = REFUSED.load(Ordering::SeqCst);
    (out, Peak { bytes: PEAK.load(Ordering::SeqCst).saturating_sub(base), refused: (refused > 0).then_some(refused) })
}
