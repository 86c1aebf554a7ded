//! Where the Lua thread gets woken: worker threads analyse URLs from a bounded queue and hand
//! plain results back through a completion list, writing a byte to a socket pair whose read
//! end Prosody watches. Workers never touch Lua.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::analyze::{analyze, Metadata};
use crate::background;
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
}

struct Job {
    id: u64,
    url: String,
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
    cache: HashMap<String, (Instant, Result<Metadata>)>,
    opts: PoolOptions,
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
        Ok(Pool { jobs: Some(tx), shared, readable, workers, next_id: 0, cache: HashMap::new(), opts })
    }

    /// Queues `url` and returns its job id; never blocks. A cached result completes at once.
    pub fn submit(&mut self, url: &str) -> Result<u64> {
        if self.jobs.is_none() {
            return Err(Error::Closed);
        }
        self.next_id += 1;
        let id = self.next_id;
        if let Some(result) = self.cached(url) {
            self.shared.complete(Completion { id, url: url.to_owned(), result });
            return Ok(id);
        }
        let jobs = self.jobs.as_ref().ok_or(Error::Closed)?;
        match jobs.try_send(Job { id, url: url.to_owned() }) {
            Ok(()) => Ok(id),
            Err(TrySendError::Full(_)) => Err(Error::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(Error::Closed),
        }
    }

    /// The fd that becomes readable when completions are waiting.
    pub fn fd(&self) -> RawFd {
        self.readable.as_raw_fd()
    }

    /// Every completion waiting now; empties the fd too, so a level-triggered watcher rests.
    pub fn drain(&mut self) -> Vec<Completion> {
        let mut sink = [0u8; 256];
        while matches!((&self.readable).read(&mut sink), Ok(n) if n > 0) {}
        let done = std::mem::take(&mut *self.shared.done.lock().unwrap_or_else(|p| p.into_inner()));
        for c in &done {
            self.remember(c);
        }
        done
    }

    /// Stops the workers: queued jobs are dropped, running ones finish. Waits up to `grace` for
    /// them to exit and returns how many were still running (each ends by itself when its
    /// current fetch ends, within the fetch timeout). Idempotent.
    pub fn close(&mut self, grace: Duration) -> usize {
        self.shared.closing.store(true, Ordering::SeqCst);
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

    fn cached(&mut self, url: &str) -> Option<Result<Metadata>> {
        let (at, result) = self.cache.get(url)?;
        let ttl = if result.is_ok() { self.opts.cache_ttl } else { self.opts.cache_ttl.min(self.opts.failure_ttl) };
        if at.elapsed() <= ttl {
            return Some(result.clone());
        }
        self.cache.remove(url);
        None
    }

    fn remember(&mut self, c: &Completion) {
        if self.opts.cache_size == 0 {
            return;
        }
        if self.cache.len() >= self.opts.cache_size && !self.cache.contains_key(&c.url) {
            let oldest = self.cache.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.cache.remove(&k);
            }
        }
        self.cache.insert(c.url.clone(), (Instant::now(), c.result.clone()));
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
        let result =
            catch_unwind(AssertUnwindSafe(|| analyze(fetcher, &job.url))).unwrap_or_else(|p| Err(Error::from_panic(p)));
        shared.complete(Completion { id: job.id, url: job.url, result });
    }
}
