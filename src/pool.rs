//! Where the Lua thread gets woken: worker threads analyse URLs from a bounded queue and hand
//! plain results back through a completion list, writing a byte to a socket pair whose read
//! end Prosody watches. Workers never touch Lua. A URL is analysed once at a time: whoever
//! submits it while it is queued or running waits for that same job.

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

use crate::analyze::Metadata;
use crate::background::{self, Cancel};
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::fetch::{Fetcher, Validators};
use crate::options::PoolOptions;
use crate::source::{self, LocalFile, Remote, Source};

/// The outcome of one submitted URL.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: u64,
    /// The job's key: the URL, `if-changed ` and the URL of a conditional GET, or `file:`
    /// and the path of a local upload.
    pub url: String,
    /// The metadata, or the error with its kind (`Error::kind`) for the plugin's metric.
    pub result: Result<Metadata>,
    /// Answered from the cache at submit, not analysed.
    pub cached: bool,
}

struct Job {
    id: u64,
    key: String,
    source: Box<dyn Source>,
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
    /// The jobs queued or running (submitted, not drained yet), by job id.
    pending: HashMap<u64, Running>,
    /// The job analysing each URL now, and the job each joined id is answered by (an id that
    /// started its own job is its job's id).
    by_url: HashMap<String, u64>,
    job_of: HashMap<u64, u64>,
    cache: Cache,
}

/// A job queued or running, and who waits for it: the id that started it, and the ids that
/// joined it, each with whether it gave up (`cancel`). It stops once all of them have.
struct Running {
    cancel: Cancel,
    given_up: bool,
    /// Empty (no allocation) unless the URL was shared again while it ran.
    joined: Vec<(u64, bool)>,
    /// Whether its result goes into the cache.
    cached: bool,
}

impl Running {
    fn wanted(&self) -> bool {
        !self.given_up || self.joined.iter().any(|&(_, given_up)| !given_up)
    }
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
        Ok(Pool {
            jobs: Some(tx),
            shared,
            readable,
            workers,
            next_id: 0,
            pending: HashMap::new(),
            by_url: HashMap::new(),
            job_of: HashMap::new(),
            cache,
        })
    }

    /// Queues `url` and returns an id for its completion; never blocks. A cached result
    /// completes at once; a URL already queued or running (and not cancelled) is not queued
    /// again: the id completes with that job's result.
    pub fn submit(&mut self, url: &str) -> Result<u64> {
        self.submit_source(url, true, || Box::new(Remote { url: url.to_owned(), since: Validators::default() }))
    }

    /// Queues a conditional GET of `url` for a result kept with validators `since`: it
    /// completes with `Metadata::unchanged` (a 304) or with the changed file's metadata.
    /// Neither the cache nor a plain job of the same URL answers it, and its result is not
    /// cached: the kept result is the caller's.
    pub fn submit_if_changed(&mut self, url: &str, since: Validators) -> Result<u64> {
        let key = format!("if-changed {url}"); // a URL has no space: never a plain job's key
        self.submit_source(&key, false, || Box::new(Remote { url: url.to_owned(), since }))
    }

    /// Queues a local upload (see [`LocalFile`]) as `submit` queues a URL; its results are
    /// cached and shared under `file:` and its path.
    pub fn submit_file(&mut self, file: LocalFile) -> Result<u64> {
        let key = format!("file:{}", file.path.display());
        self.submit_source(&key, true, || Box::new(file))
    }

    /// Queues the job of `url` (a job's key), answered from the cache when `cached`.
    fn submit_source(&mut self, url: &str, cached: bool, source: impl FnOnce() -> Box<dyn Source>) -> Result<u64> {
        if self.jobs.is_none() {
            return Err(Error::Closed);
        }
        self.next_id += 1;
        let id = self.next_id;
        if let Some(result) = cached.then(|| self.cache.get(url)).flatten() {
            self.shared.complete(Completion { id, url: url.to_owned(), result, cached: true });
            return Ok(id);
        }
        if let Some(&job) = self.by_url.get(url) {
            if let Some(running) = self.pending.get_mut(&job).filter(|r| !r.cancel.is_cancelled()) {
                running.joined.push((id, false));
                self.job_of.insert(id, job);
                return Ok(id);
            }
        }
        let jobs = self.jobs.as_ref().ok_or(Error::Closed)?;
        let cancel = Cancel::default();
        match jobs.try_send(Job { id, key: url.to_owned(), source: source(), cancel: cancel.clone() }) {
            Ok(()) => {
                self.pending.insert(id, Running { cancel, given_up: false, joined: Vec::new(), cached });
                self.by_url.insert(url.to_owned(), id);
                Ok(id)
            }
            Err(TrySendError::Full(_)) => Err(Error::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(Error::Closed),
        }
    }

    /// Gives up waiting for `id`. Once every id waiting for its job has given up, the job
    /// stops at its next yield point (a queued one before it starts) and completes with
    /// `Error::Cancelled`, unless it finished first; either way each id's completion still
    /// comes through `drain`. False when `id` is not pending (unknown, answered from the
    /// cache, or already drained).
    pub fn cancel(&mut self, id: u64) -> bool {
        let job = self.job_of.get(&id).copied().unwrap_or(id);
        let Some(running) = self.pending.get_mut(&job) else { return false };
        if job == id {
            running.given_up = true;
        }
        for joined in running.joined.iter_mut().filter(|(j, _)| *j == id) {
            joined.1 = true;
        }
        if !running.wanted() {
            running.cancel.cancel();
        }
        true
    }

    /// The fd that becomes readable when completions are waiting.
    pub fn fd(&self) -> RawFd {
        self.readable.as_raw_fd()
    }

    /// Every completion waiting now, one per submitted id; empties the fd too, so a
    /// level-triggered watcher rests. Analysed results and failures go into the cache (a
    /// result served from it is not stored again: it expires `cache_ttl` after it was
    /// fetched); cancelled jobs do not (they say nothing of the URL).
    pub fn drain(&mut self) -> Vec<Completion> {
        let mut sink = [0u8; 256];
        while matches!((&self.readable).read(&mut sink), Ok(n) if n > 0) {}
        let done = std::mem::take(&mut *self.shared.done.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = Vec::with_capacity(done.len());
        for c in done {
            let Some(running) = (!c.cached).then(|| self.pending.remove(&c.id)).flatten() else {
                out.push(c);
                continue;
            };
            // One lookup: the URL's job is nearly always this one (not when it was cancelled
            // and the URL shared again meanwhile).
            if let Some(job) = self.by_url.remove(&c.url).filter(|&job| job != c.id) {
                self.by_url.insert(c.url.clone(), job);
            }
            if running.cached && !matches!(c.result, Err(Error::Cancelled)) {
                self.cache.put(&c.url, &c.result);
            }
            for &(id, _) in &running.joined {
                self.job_of.remove(&id);
                out.push(Completion { id, url: c.url.clone(), result: c.result.clone(), cached: false });
            }
            out.push(c);
        }
        out
    }

    /// Stops the workers: queued jobs are dropped, running ones are cancelled (each stops at
    /// its next yield point, or when its current network read returns, within the fetch
    /// timeout). Waits up to `grace` for them to exit and returns how many were still
    /// running. Idempotent.
    pub fn close(&mut self, grace: Duration) -> usize {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.pending.values().for_each(|r| r.cancel.cancel());
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
            catch_unwind(AssertUnwindSafe(|| source::analyze(job.source.as_ref(), fetcher, Some(job.cancel))))
                .unwrap_or_else(|p| Err(Error::from_panic(p)))
        };
        shared.complete(Completion { id: job.id, url: job.key, result, cached: false });
    }
}
