//! The spool's I/O thread: with start-up recovery (`recover.rs`), the only code that
//! touches the spool's files, so the bus task never waits on a disk. It runs the
//! operations the spool sends strictly in order (a read sees every earlier write), writes
//! each one at once (`kill -9` loses at most the bus task's group-commit window), and hands
//! fsyncs to a second thread, so a slow fsync (tens of ms on an SD card) never delays a
//! write. Errors are logged with their path, once per file until it works again; a record
//! that cannot be read back is answered as `None` and the spool counts it as lost.

use super::{record, SpoolError};
use crate::bus::Outgoing;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Records of one segment to read back, with consecutive ids from `first_id`.
#[derive(Debug)]
pub struct Span {
    pub segment: u64,
    pub first_id: u64,
    /// Byte offset of each record.
    pub offsets: Vec<u32>,
    /// Where the last record ends.
    pub end: u64,
}

/// What a read answers: each record of its spans in order, `None` where unreadable.
pub type Records = Vec<Option<Outgoing>>;

/// An answer to a blocking request: it ran (and everything sent before it).
pub type Done = mpsc::SyncSender<Result<(), SpoolError>>;

pub enum Op {
    /// Creates (or empties) segment file `<first>.seg`, where the next writes go.
    Create(u64),
    Write {
        segment: u64,
        at: u64,
        bytes: Vec<u8>,
    },
    /// Deletes a segment file: acknowledged, or evicted by the size cap.
    Remove(u64),
    /// Records the lowest id not yet acknowledged (written to a temporary file, renamed).
    Head(u64),
    /// Makes everything written so far durable: the segments written since the last
    /// fsync, and the directory. With `Some`, answers once done.
    Fsync(Option<Done>),
    Read {
        spans: Vec<Span>,
        done: oneshot::Sender<Records>,
    },
    /// Answers once every earlier operation ran, so tests can look at the files.
    #[cfg(test)]
    Barrier(mpsc::SyncSender<()>),
}

pub fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

pub fn head_path(dir: &Path) -> PathBuf {
    dir.join("head")
}

/// Writes the `head` file so that a power cut leaves the old one or the new one.
pub fn write_head(dir: &Path, head: u64) -> std::io::Result<()> {
    let tmp = dir.join("head.tmp");
    std::fs::write(&tmp, record::encode_head(head))?;
    std::fs::rename(&tmp, head_path(dir))
}

/// The handle on the I/O thread: sending never blocks. The queue has no bound of its own:
/// what waits in it is at most what was appended while the disk stalled, and a bus task
/// that blocked instead would stop pinging the broker too.
pub struct Io {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    /// The thread is gone (it cannot panic by design, but if it did): logged once.
    gone: bool,
}

impl Io {
    pub fn start(dir: &Path) -> Result<Io, SpoolError> {
        let (tx, rx) = mpsc::channel();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("spool-io".into())
            .spawn({
                let dir = dir.clone();
                move || Writer::new(dir).run(rx)
            })
            .map_err(|e| SpoolError::io(&dir, e))?;
        Ok(Io {
            tx: Some(tx),
            thread: Some(thread),
            gone: false,
        })
    }

    /// Queues `op`; false when the thread is gone.
    pub fn send(&mut self, op: Op) -> bool {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(op).is_ok());
        if !sent && !self.gone {
            self.gone = true;
            tracing::error!(
                "the spool's I/O thread has stopped: nothing more is written to disk; \
                 messages in memory are still sent"
            );
        }
        sent
    }

    /// Sends an operation that answers on `Done`, and waits for its answer.
    pub fn wait(&mut self, op: impl FnOnce(Done) -> Op) -> Result<(), SpoolError> {
        let (done, answer) = mpsc::sync_channel(1);
        if !self.send(op(done)) {
            return Err(SpoolError::Stopped);
        }
        answer.recv().map_err(|_| SpoolError::Stopped)?
    }

    /// Lets the thread finish what was queued, and stops it: later sends fail.
    pub fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Waits until every operation sent so far has run.
    #[cfg(test)]
    pub fn barrier(&mut self) {
        let (done, answer) = mpsc::sync_channel(1);
        if self.send(Op::Barrier(done)) {
            answer.recv().expect("the spool's I/O thread answers");
        }
    }
}

impl Drop for Io {
    /// Nothing sent is lost on a clean stop.
    fn drop(&mut self) {
        self.stop();
    }
}

/// A segment file open for writing.
struct Open {
    segment: u64,
    path: PathBuf,
    file: File,
    /// Written since its last fsync.
    dirty: bool,
}

/// What an fsync covers.
struct SyncJob {
    files: Vec<(PathBuf, File)>,
    done: Option<Done>,
}

struct Writer {
    dir: PathBuf,
    active: Option<Open>,
    /// Segments written since their last fsync that are no longer the active one.
    unsynced: Vec<Open>,
    /// Files whose last operation failed: their next failure is not logged again.
    failing: HashSet<PathBuf>,
    syncer: Option<(mpsc::Sender<SyncJob>, JoinHandle<()>)>,
}

impl Writer {
    fn new(dir: PathBuf) -> Writer {
        let (tx, rx) = mpsc::channel();
        let syncer = std::thread::Builder::new()
            .name("spool-fsync".into())
            .spawn({
                let dir = dir.clone();
                move || fsync_loop(&dir, rx)
            });
        let syncer = match syncer {
            Ok(t) => Some((tx, t)),
            Err(e) => {
                tracing::error!("cannot start the spool's fsync thread ({e}); fsyncs run in line");
                None
            }
        };
        Writer {
            dir,
            active: None,
            unsynced: Vec::new(),
            failing: HashSet::new(),
            syncer,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(op) = rx.recv() {
            match op {
                Op::Create(first) => self.create(first),
                Op::Write { segment, at, bytes } => self.write(segment, at, &bytes),
                Op::Remove(first) => self.remove(first),
                Op::Head(head) => {
                    let r = write_head(&self.dir, head);
                    self.outcome(&head_path(&self.dir), "write the head", r);
                }
                Op::Fsync(done) => self.fsync(done),
                Op::Read { spans, done } => {
                    let _ = done.send(self.read(&spans));
                }
                #[cfg(test)]
                Op::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
        // Everything queued ran: wait for the fsyncs in progress too.
        if let Some((tx, t)) = self.syncer.take() {
            drop(tx);
            let _ = t.join();
        }
    }

    /// Logs a failure (once until the file works again).
    fn outcome(&mut self, path: &Path, what: &str, r: std::io::Result<()>) {
        match r {
            Ok(()) => {
                self.failing.remove(path);
            }
            Err(e) if self.failing.insert(path.to_path_buf()) => {
                tracing::error!(path = %path.display(), "spool: cannot {what}: {e}");
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), "spool: cannot {what}, again: {e}");
            }
        }
    }

    fn retire_active(&mut self) {
        if let Some(old) = self.active.take() {
            if old.dirty {
                self.unsynced.push(old);
            }
        }
    }

    fn create(&mut self, first: u64) {
        self.retire_active();
        let path = seg_path(&self.dir, first);
        let opened = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path);
        let r = opened.map(|file| {
            self.active = Some(Open {
                segment: first,
                path: path.clone(),
                file,
                dirty: false,
            });
        });
        self.outcome(&path, "create a segment", r);
    }

    fn write(&mut self, segment: u64, at: u64, bytes: &[u8]) {
        let path = seg_path(&self.dir, segment);
        if self.active.as_ref().is_none_or(|a| a.segment != segment) {
            // Only when its creation failed: try again, it may work now.
            self.retire_active();
            let r = OpenOptions::new().write(true).open(&path).map(|file| {
                self.active = Some(Open {
                    segment,
                    path: path.clone(),
                    file,
                    dirty: false,
                });
            });
            self.outcome(&path, "open a segment", r);
        }
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let r = active.file.write_all_at(bytes, at);
        active.dirty = true;
        self.outcome(&path, "write a segment", r);
    }

    fn remove(&mut self, first: u64) {
        if self.active.as_ref().is_some_and(|a| a.segment == first) {
            self.active = None;
        }
        self.unsynced.retain(|o| o.segment != first);
        let path = seg_path(&self.dir, first);
        let r = match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        };
        self.outcome(&path, "remove a segment", r);
    }

    fn fsync(&mut self, done: Option<Done>) {
        let mut files: Vec<(PathBuf, File)> =
            self.unsynced.drain(..).map(|o| (o.path, o.file)).collect();
        if let Some(a) = self.active.as_mut().filter(|a| a.dirty) {
            match a.file.try_clone() {
                Ok(f) => {
                    files.push((a.path.clone(), f));
                    a.dirty = false;
                }
                Err(e) => tracing::error!(path = %a.path.display(), "spool: cannot fsync: {e}"),
            }
        }
        let job = SyncJob { files, done };
        match &self.syncer {
            Some((tx, _)) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    run_fsyncs(&self.dir, vec![job]);
                }
            }
            None => run_fsyncs(&self.dir, vec![job]),
        }
    }

    fn read(&mut self, spans: &[Span]) -> Records {
        let mut out = Records::new();
        for span in spans {
            let path = seg_path(&self.dir, span.segment);
            let start = span.offsets.first().map_or(span.end, |o| *o as u64);
            let mut buf = vec![0u8; (span.end - start) as usize];
            let r = File::open(&path).and_then(|f| f.read_exact_at(&mut buf, start));
            let ok = r.is_ok();
            self.outcome(&path, "read back a segment", r);
            for (i, &at) in span.offsets.iter().enumerate() {
                let end = span.offsets.get(i + 1).map_or(span.end, |o| *o as u64);
                let bytes = &buf[(at as u64 - start) as usize..(end - start) as usize];
                let m = record::decode(bytes)
                    .filter(|_| ok)
                    .filter(|(_, n)| *n == bytes.len())
                    .map(|(mut m, _)| {
                        m.spool_id = Some(span.first_id + i as u64);
                        m
                    });
                out.push(m);
            }
        }
        out
    }
}

fn fsync_loop(dir: &Path, rx: mpsc::Receiver<SyncJob>) {
    while let Ok(job) = rx.recv() {
        // Requests that queued during the last fsync share the next one.
        run_fsyncs(dir, std::iter::once(job).chain(rx.try_iter()).collect());
    }
}

fn run_fsyncs(dir: &Path, jobs: Vec<SyncJob>) {
    let mut failed: Option<(PathBuf, std::io::Error)> = None;
    let mut check = |path: &Path, r: std::io::Result<()>| {
        if let Err(e) = r {
            tracing::error!(path = %path.display(), "spool fsync failed: {e}");
            failed.get_or_insert((path.to_path_buf(), e));
        }
    };
    for (path, f) in jobs.iter().flat_map(|j| &j.files) {
        check(path, f.sync_data());
    }
    // Then the directory, for the files created, renamed and removed.
    check(dir, File::open(dir).and_then(|d| d.sync_all()));
    for done in jobs.into_iter().filter_map(|j| j.done) {
        let r = match &failed {
            None => Ok(()),
            Some((path, e)) => Err(SpoolError::io(
                path,
                std::io::Error::new(e.kind(), e.to_string()),
            )),
        };
        let _ = done.send(r);
    }
}
