//! Where the Lua thread gets woken: worker threads analyse URLs from a bounded queue and hand
//! plain results back through a completion list, writing a byte to a socket pair whose read
//! end Prosody watches. Workers never touch Lua.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::analyze::{analyze_cancellable, Metadata};
use crate::background::{self, Cancel};
use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::options::PoolOptions;

/// The outcome of one submitted URL.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: u64,
    pub url: String,
    /// The metadata, or the error with its kind (`Error::kind`) for the plugin's metric.
    pub result: Result<Metadata>,
    /// Answered from the cache at submit, not analysed.
    pub cached: bool,
}

struct Job {
    id: u64,
    url: String,
    cancel: Cancel,
}

/// State the workers share with the pool.
struct Shared {
    done: Mutex<Vec<Completion>>,
    wake: UnixStream,
    closing: AtomicBool,
}

impl Shared {
    fn complete(&self, c: Completion) {
        self.done.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        // A full socket buffer already means "readable": the byte is not needed then.
        let _ = (&self.wake).write(&[1]);
    }
}

/// N worker threads, a bounded queue, a completion list, an fd to watch, and a result cache.
pub struct Pool {
    jobs: Option<SyncSender<Job>>,
    shared: Arc<Shared>,
    readable: UnixStream,
    workers: Vec<JoinHandle<()>>,
    next_id: u64,
    /// The jobs queued or running (submitted, not drained yet): their cancel flags.
    pending: HashMap<u64, Cancel>,
    cache: Cache,
}

impl Pool {
    /// Starts `opts.threads` workers sharing one HTTP agent.
    pub fn new(opts: PoolOptions) -> Result<Pool> {
        let io_err = |e: io::Error| Error::option("threads", format!("cannot start the pool: {e}"));
        let (readable, wake) = UnixStream::pair().map_err(io_err)?;
        readable.set_nonblocking(true).map_err(io_err)?;
        wake.set_nonblocking(true).map_err(io_err)?;
        let shared = Arc::new(Shared { done: Mutex::new(Vec::new()), wake, closing: AtomicBool::new(false) });
        let (tx, rx) = mpsc::sync_channel::<Job>(opts.queue_length);
        let rx = Arc::new(Mutex::new(rx));
        let fetcher = Arc::new(Fetcher::new(opts.analysis.clone()));
        let workers = (0..opts.threads)
            .map(|n| {
                let (rx, shared, fetcher) = (rx.clone(), shared.clone(), fetcher.clone());
                std::thread::Builder::new()
                    .name(format!("media-meta-{n}"))
                    .spawn(move || work(&rx, &shared, &fetcher))
                    .map_err(io_err)
            })
            .collect::<Result<Vec<_>>>()?;
        let cache = Cache::new(opts.cache_size, opts.cache_ttl, opts.cache_ttl.min(opts.failure_ttl));
        Ok(Pool { jobs: Some(tx), shared, readable, workers, next_id: 0, pending: HashMap::new(), cache })
    }

    /// Queues `url` and returns its job id; never blocks. A cached result completes at once.
    pub fn submit(&mut self, url: &str) -> Result<u64> {
        if self.jobs.is_none() {
            return Err(Error::Closed);
        }
        self.next_id += 1;
        let id = self.next_id;
        if let Some(result) = self.cache.get(url) {
            self.shared.complete(Completion { id, url: url.to_owned(), result, cached: true });
            return Ok(id);
        }
        let jobs = self.jobs.as_ref().ok_or(Error::Closed)?;
        let cancel = Cancel::default();
        match jobs.try_send(Job { id, url: url.to_owned(), cancel: cancel.clone() }) {
            Ok(()) => {
                self.pending.insert(id, cancel);
                Ok(id)
            }
            Err(TrySendError::Full(_)) => Err(Error::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(Error::Closed),
        }
    }

    /// Cancels job `id` if it is queued or running: it stops at its next yield point (a
    /// queued one before it starts) and completes with `Error::Cancelled`, unless it finished
    /// first; either way its completion still comes through `drain`. False when the job is
    /// not pending (unknown, answered from the cache, or already drained).
    pub fn cancel(&mut self, id: u64) -> bool {
        self.pending.get(&id).map(Cancel::cancel).is_some()
    }

    /// The fd that becomes readable when completions are waiting.
    pub fn fd(&self) -> RawFd {
        self.readable.as_raw_fd()
    }

    /// Every completion waiting now; empties the fd too, so a level-triggered watcher rests.
    /// Analysed results and failures go into the cache (a result served from it is not stored
    /// again: it expires `cache_ttl` after it was fetched); cancelled jobs do not (they say
    /// nothing of the URL).
    pub fn drain(&mut self) -> Vec<Completion> {
        let mut sink = [0u8; 256];
        while matches!((&self.readable).read(&mut sink), Ok(n) if n > 0) {}
        let done = std::mem::take(&mut *self.shared.done.lock().unwrap_or_else(|p| p.into_inner()));
        for c in &done {
            self.pending.remove(&c.id);
            if !c.cached && !matches!(c.result, Err(Error::Cancelled)) {
                self.cache.put(&c.url, &c.result);
            }
        }
        done
    }

    /// Stops the workers: queued jobs are dropped, running ones are cancelled (each stops at
    /// its next yield point, or when its current network read returns, within the fetch
    /// timeout). Waits up to `grace` for them to exit and returns how many were still
    /// running. Idempotent.
    pub fn close(&mut self, grace: Duration) -> usize {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.pending.values().for_each(Cancel::cancel);
        self.jobs = None; // a worker waiting for a job sees the queue disconnected and exits
        let until = Instant::now() + grace;
        while self.workers.iter().any(|w| !w.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        let (finished, running): (Vec<_>, Vec<_>) = self.workers.drain(..).partition(|w| w.is_finished());
        for w in finished {
            let _ = w.join();
        }
        running.len()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close(Duration::ZERO);
    }
}

fn work(rx: &Mutex<Receiver<Job>>, shared: &Shared, fetcher: &Fetcher) {
    background::enter();
    loop {
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // the pool is closed and the queue is empty
        };
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        let result = if job.cancel.is_cancelled() {
            Err(Error::Cancelled) // cancelled while queued: not even started
        } else {
            catch_unwind(AssertUnwindSafe(|| analyze_cancellable(fetcher, &job.url, Some(job.cancel))))
                .unwrap_or_else(|p| Err(Error::from_panic(p)))
        };
        shared.complete(Completion { id: job.id, url: job.url, result, cached: false });
    }
}

/// Results by URL: at most `size` (the oldest stored goes first), each for `ttl`, failures
/// for `failure_ttl`. Every operation is O(log n), so a full cache of a million entries costs
/// the main loop no more than an empty one.
struct Cache {
    size: usize,
    ttl: Duration,
    failure_ttl: Duration,
    by_url: HashMap<String, Cached>,
    /// URLs by when they were stored (a sequence number), oldest first.
    order: BTreeMap<u64, String>,
    stored: u64,
}

struct Cached {
    at: Instant,
    seq: u64,
    result: Result<Metadata>,
}

impl Cache {
    fn new(size: usize, ttl: Duration, failure_ttl: Duration) -> Cache {
        Cache { size, ttl, failure_ttl, by_url: HashMap::new(), order: BTreeMap::new(), stored: 0 }
    }

    /// The result stored for `url`, unless it has expired (then it is dropped).
    fn get(&mut self, url: &str) -> Option<Result<Metadata>> {
        let c = self.by_url.get(url)?;
        // A picture that could not be decoded (over its budget, say) may well decode next time.
        let whole = c.result.as_ref().is_ok_and(|m| m.error_kind.is_none());
        let ttl = if whole { self.ttl } else { self.failure_ttl };
        if c.at.elapsed() <= ttl {
            return Some(c.result.clone());
        }
        self.remove(url);
        None
    }

    fn put(&mut self, url: &str, result: &Result<Metadata>) {
        if self.size == 0 {
            return;
        }
        if self.remove(url).is_none() && self.by_url.len() >= self.size {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.by_url.remove(&oldest);
            }
        }
        self.stored += 1;
        self.order.insert(self.stored, url.to_owned());
        self.by_url.insert(url.to_owned(), Cached { at: Instant::now(), seq: self.stored, result: result.clone() });
    }

    fn remove(&mut self, url: &str) -> Option<Cached> {
        let c = self.by_url.remove(url)?;
        self.order.remove(&c.seq);
        Some(c)
    }
}
