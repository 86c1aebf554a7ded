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
//!
//! The same yield points enforce each analysis's time budget on any thread: [`Budget`] sets
//! a deadline (and an optional [`Cancel`] flag) for the calling thread, and once it has
//! passed, [`yield_point`] returns the budget's error, which our loops pass up and which
//! [`Yielding`] hands to the decoders as a read error (see [`check`] for telling it apart).

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

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
    /// The analysis running on this thread: its deadline and its budget (for the message).
    static DEADLINE: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
    static CANCEL: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

/// A flag that stops a job at its next yield point (`Pool::cancel`, `Pool::close`).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The time budget of the analysis running on the calling thread, from now: past `limit`
/// (or once `cancel` is set) its yield points fail. The previous budget is restored on drop.
pub struct Budget {
    previous: Option<(Instant, Duration)>,
    previous_cancel: Option<Cancel>,
}

impl Budget {
    pub fn start(limit: Duration, cancel: Option<Cancel>) -> Budget {
        let deadline =
            Instant::now().checked_add(limit).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 32));
        Budget { previous: DEADLINE.replace(Some((deadline, limit))), previous_cancel: CANCEL.replace(cancel) }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        DEADLINE.set(self.previous);
        CANCEL.set(self.previous_cancel.take());
    }
}

/// Whether the calling thread's analysis may go on: `Err(Cancelled)` once its flag is set,
/// `Err(OverBudget)` once its deadline has passed; `Ok` without a budget. Both last, so a
/// decoder's failure can be told apart afterwards: if this fails, the budget stopped it.
pub fn check() -> Result<()> {
    match DEADLINE.get() {
        Some(budget) => check_at(Instant::now(), budget),
        None => Ok(()),
    }
}

fn check_at(now: Instant, (deadline, limit): (Instant, Duration)) -> Result<()> {
    if CANCEL.with_borrow(|c| c.as_ref().is_some_and(Cancel::is_cancelled)) {
        return Err(Error::Cancelled);
    }
    if now >= deadline {
        return Err(Error::OverBudget { limit });
    }
    Ok(())
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
/// the last time; then, under a [`Budget`], fails once it is spent or cancelled. Elsewhere,
/// nothing. Cheap enough for every row of a picture (one clock read).
#[inline]
pub fn yield_point() -> Result<()> {
    let (last, budget) = (LAST_YIELD.get(), DEADLINE.get());
    if last.is_none() && budget.is_none() {
        return Ok(());
    }
    let now = Instant::now();
    if let Some(last) = last {
        if now.duration_since(last) >= YIELD_EVERY {
            std::thread::yield_now();
            LAST_YIELD.set(Some(Instant::now()));
            YIELDS.set(YIELDS.get() + 1);
        }
    }
    match budget {
        Some(budget) => check_at(now, budget),
        None => Ok(()),
    }
}

/// The budget's error carried inside an `io::Error` by [`Yielding`] or a checked reader.
pub fn from_io(e: &io::Error) -> Option<Error> {
    e.get_ref()?.downcast_ref::<Error>().cloned()
}

/// How many times this thread has offered its core (for tests).
pub fn yields() -> u64 {
    YIELDS.get()
}

/// A reader for decoders without yield points of their own: one every
/// `BYTES_BETWEEN_YIELDS` bytes read. Once the budget is spent every read fails with its
/// error (inside an `io::Error`), so the decoder stops there.
pub struct Yielding<R> {
    inner: R,
    unread: usize,
    stopped: Option<Error>,
}

impl<R> Yielding<R> {
    pub fn new(inner: R) -> Yielding<R> {
        Yielding { inner, unread: BYTES_BETWEEN_YIELDS, stopped: None }
    }

    fn count(&mut self, n: usize) {
        if n >= self.unread {
            self.unread = BYTES_BETWEEN_YIELDS;
            self.stopped = yield_point().err();
        } else {
            self.unread -= n;
        }
    }

    fn go_on(&self) -> io::Result<()> {
        match &self.stopped {
            Some(e) => Err(io::Error::other(e.clone())),
            None => Ok(()),
        }
    }
}

impl<R: Read> Read for Yielding<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.go_on()?;
        let n = self.inner.read(buf)?;
        self.count(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Yielding<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.go_on()?;
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
