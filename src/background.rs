//! Worker threads in the background: they run only on CPU time that nothing else wants, and
//! while they compute they give their core back within [`YIELD_EVERY`] of Prosody waking up
//! on it.
//!
//! SCHED_IDLE alone is not enough for that. With lazy preemption (Linux 6.13 and later; the
//! 6.18 kernel this was measured on behaves so) a woken thread only marks the worker on its
//! core as due to give way, and a worker that stays in user space keeps the core until the
//! next timer tick, up to 4 ms at 250 Hz. Any return from the kernel honours the mark, so a
//! worker enters it at least every `YIELD_EVERY`: the yield points below sit in every long
//! loop, and [`Yielding`] puts them between the reads of decoders we cannot edit (lossy WebP
//! is the exception: image-webp decodes a whole frame after reading it).

use std::cell::Cell;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// The longest a worker computes before it offers its core to whatever is waiting for it.
pub const YIELD_EVERY: Duration = Duration::from_micros(200);

/// Bytes a decoder reads through [`Yielding`] between two yield points (well under
/// `YIELD_EVERY` of decoding at any format's speed).
const BYTES_BETWEEN_YIELDS: usize = 16 * 1024;

/// How much nicer than Prosody the workers are where SCHED_IDLE is refused.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const WORKER_NICE: i32 = 10;

thread_local! {
    /// When this thread last offered its core; `None` on threads that are not workers
    /// (Prosody's own, tests, benchmarks), where [`yield_point`] does nothing.
    static LAST_YIELD: Cell<Option<Instant>> = const { Cell::new(None) };
    static YIELDS: Cell<u64> = const { Cell::new(0) };
}

/// Puts the calling thread in the background: SCHED_IDLE (nice +10 where that is refused),
/// and turns its yield points on. On a saturated machine an analysis then waits, at worst past
/// the deadline, and the message goes out without metadata. Failures leave the thread's
/// scheduling as it was: there is nothing to report them to.
pub fn enter() {
    // On Linux both belong to the thread, not the process: this changes the caller's alone.
    #[cfg(target_os = "linux")]
    unsafe {
        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (current + WORKER_NICE).min(19));
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
    LAST_YIELD.set(Some(Instant::now()));
}

/// On a background thread, offers the core (`sched_yield`) if `YIELD_EVERY` has passed since
/// the last time; elsewhere, nothing. Cheap enough for every row of a picture.
#[inline]
pub fn yield_point() {
    if let Some(last) = LAST_YIELD.get() {
        if last.elapsed() >= YIELD_EVERY {
            std::thread::yield_now();
            LAST_YIELD.set(Some(Instant::now()));
            YIELDS.set(YIELDS.get() + 1);
        }
    }
}

/// How many times this thread has offered its core (for tests).
pub fn yields() -> u64 {
    YIELDS.get()
}

/// A reader for decoders without yield points of their own: one every
/// `BYTES_BETWEEN_YIELDS` bytes read.
pub struct Yielding<R> {
    inner: R,
    unread: usize,
}

impl<R> Yielding<R> {
    pub fn new(inner: R) -> Yielding<R> {
        Yielding { inner, unread: BYTES_BETWEEN_YIELDS }
    }

    fn count(&mut self, n: usize) {
        if n >= self.unread {
            self.unread = BYTES_BETWEEN_YIELDS;
            yield_point();
        } else {
            self.unread -= n;
        }
    }
}

impl<R: Read> Read for Yielding<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Yielding<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.count(n);
    }
}

impl<R: Seek> Seek for Yielding<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}
