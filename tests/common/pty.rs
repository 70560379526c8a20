//! The one pty device: a pseudo-terminal whose slave path the daemon opens as its serial
//! port while the test plays the device on the master side (writing what it would send,
//! reading what the daemon writes, line by line with deadlines). Also a paced line
//! [`Feeder`] and a [`Relay`] (two ptys wired as a null-modem cable).

use super::util::DEADLINE;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// A device on a pseudo-terminal. Both its fds are close-on-exec, opened atomically so
/// (`openpty` leaves a window in which a daemon or mosquitto spawned by a neighbouring test
/// inherits the master, and dropping the device then no longer hangs it up; unplug tests
/// need the hangup to be real). The slave is in raw mode and held open, so bytes written
/// before the daemon opens it wait in the pty.
///
/// Lines the daemon writes end with `eol` (`\n` unless set); a trailing `\r` is dropped.
pub struct PtyDevice {
    master: AsyncFd<nix::pty::PtyMaster>,
    _slave: OwnedFd,
    path: PathBuf,
    eol: u8,
    answer: Option<fn(&str) -> &'static [u8]>,
    buf: Vec<u8>,
    /// Complete lines not yet taken, with the time their last byte was read.
    lines: VecDeque<(String, Instant)>,
}

impl PtyDevice {
    /// Opens a pty pair with the slave in raw mode (no echo, no line editing).
    pub fn open() -> PtyDevice {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("posix_openpt");
        nix::pty::grantpt(&master).expect("grantpt");
        nix::pty::unlockpt(&master).expect("unlockpt");
        let path = PathBuf::from(nix::pty::ptsname_r(&master).expect("ptsname"));
        let slave = nix::fcntl::open(
            &path,
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open the pty slave");
        let mut t = tcgetattr(&slave).expect("tcgetattr");
        cfmakeraw(&mut t);
        tcsetattr(&slave, SetArg::TCSANOW, &t).expect("tcsetattr");
        let flags = fcntl(&master, FcntlArg::F_GETFL).expect("F_GETFL");
        fcntl(
            &master,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .expect("F_SETFL");
        // SAFETY: `master` owns the fd and moves into the AsyncFd, which then owns it; no
        // other handle to the fd exists, so it cannot be closed behind tokio's back.
        let master = unsafe { AsyncFd::register(master) }
            .unwrap_or_else(|e| panic!("register the pty: {e}"));
        PtyDevice {
            master,
            _slave: slave,
            path,
            eol: b'\n',
            answer: None,
            buf: Vec::new(),
            lines: VecDeque::new(),
        }
    }

    /// Lines the daemon writes end with `eol` (e.g. `\r` for slcan).
    pub fn with_eol(mut self, eol: u8) -> Self {
        self.eol = eol;
        self
    }

    /// Answers each line the daemon writes with `answer(line)`, as a device that
    /// acknowledges commands does.
    pub fn answering(mut self, answer: fn(&str) -> &'static [u8]) -> Self {
        self.answer = Some(answer);
        self
    }

    /// The slave's path, for the robot file's `serial = { path = ... }`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what the device would send.
    pub async fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        tokio::time::timeout(DEADLINE, self.write_all(bytes))
            .await
            .expect("pty write timed out")
            .expect("pty write");
    }

    /// Bytes of a line not complete yet.
    pub fn partial(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// The next line the daemon wrote (without its end) and when its last byte was read,
    /// or `None` when nothing complete arrived within `within`.
    pub async fn line_within(&mut self, within: Duration) -> Option<(String, Instant)> {
        let end = Instant::now() + within;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(l) = self.lines.pop_front() {
                return Some(l);
            }
            match tokio::time::timeout_at(end, self.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Err(e)) => panic!("reading the pty failed: {e}"),
                Ok(Ok(0)) => panic!("the pty closed"),
                Ok(Ok(n)) => {
                    let at = Instant::now();
                    let mut replies = Vec::new();
                    self.buf.extend_from_slice(&chunk[..n]);
                    while let Some(pos) = self.buf.iter().position(|&b| b == self.eol) {
                        let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                        let text = String::from_utf8_lossy(&raw[..raw.len() - 1]);
                        let line = text.trim_end_matches('\r').to_string();
                        if let Some(answer) = self.answer {
                            replies.extend_from_slice(answer(&line));
                        }
                        self.lines.push_back((line, at));
                    }
                    if !replies.is_empty() {
                        self.send_bytes(&replies).await;
                    }
                }
            }
        }
    }

    /// The next line the daemon wrote; panics naming `what` after [`DEADLINE`].
    pub async fn line(&mut self, what: &str) -> String {
        match self.line_within(DEADLINE).await {
            Some((l, _)) => l,
            None => panic!(
                "the device received no line within {DEADLINE:?}, waiting for {what} (partial: {:?})",
                self.partial()
            ),
        }
    }

    /// Reads the next line and checks it is exactly `want`; returns when it was read.
    pub async fn expect_line(&mut self, want: &str) -> Instant {
        match self.line_within(DEADLINE).await {
            Some((got, at)) => {
                assert_eq!(got, want, "the device received an unexpected line");
                at
            }
            None => panic!(
                "the device received no line within {DEADLINE:?}; wanted {want:?} (partial: {:?})",
                self.partial()
            ),
        }
    }

    /// Skips lines until `want` arrives; returns the skipped ones.
    pub async fn wait_line(&mut self, want: &str) -> Vec<String> {
        let end = Instant::now() + DEADLINE;
        let mut skipped = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.line_within(left).await {
                Some((got, _)) if got == want => return skipped,
                Some((got, _)) => skipped.push(got),
                None => panic!("the device never received {want:?}; it received {skipped:?}"),
            }
        }
    }

    /// Every line that arrives within `window`.
    pub async fn lines_for(&mut self, window: Duration) -> Vec<String> {
        let end = Instant::now() + window;
        let mut out = Vec::new();
        while let Some((l, _)) = self
            .line_within(end.saturating_duration_since(Instant::now()))
            .await
        {
            out.push(l);
        }
        out
    }

    /// Checks that nothing at all (not even part of a line) arrives within `window`.
    pub async fn expect_silence(&mut self, window: Duration, after: &str) {
        let got = self.lines_for(window).await;
        assert!(
            got.is_empty() && self.buf.is_empty(),
            "the device received {got:?} (partial {:?}) {after}; it must receive nothing",
            self.partial()
        );
    }
}

impl AsyncRead for PtyDevice {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = std::task::ready!(self.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| std::io::Read::read(&mut f.get_ref(), unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyDevice {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = std::task::ready!(self.master.poll_write_ready(cx))?;
            match guard.try_io(|f| std::io::Write::write(&mut f.get_ref(), data)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Writes `tag=<tag> n=<base + k>` lines (k = 0, 1, 2, ...) into a pty at a steady rate
/// until stopped; a lines device turns each into one message.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<PtyDevice>,
}

impl Feeder {
    /// In a batch every 10 ms.
    pub fn start(pty: PtyDevice, tag: &str, base: u64, rate_hz: f64) -> Feeder {
        Feeder::spawn(pty, tag, base, rate_hz, Duration::from_millis(10), true)
    }

    /// Line by line, each when it is due (checked every 1 ms), as a device that sends each
    /// sample as soon as it has it: the daemon then wakes up every few milliseconds, never
    /// idle for as long as the spool's 10 ms group commit.
    pub fn line_by_line(pty: PtyDevice, tag: &str, base: u64, rate_hz: f64) -> Feeder {
        Feeder::spawn(pty, tag, base, rate_hz, Duration::from_millis(1), false)
    }

    fn spawn(
        mut pty: PtyDevice,
        tag: &str,
        base: u64,
        rate_hz: f64,
        period: Duration,
        batch: bool,
    ) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w, tag) = (stop.clone(), written.clone(), tag.to_string());
        let task = tokio::spawn(async move {
            let start = std::time::Instant::now();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut next = 0u64;
            let mut text = String::new();
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                let target = (start.elapsed().as_secs_f64() * rate_hz) as u64;
                if batch {
                    text.clear();
                    for k in next..target {
                        text.push_str(&format!("tag={tag} n={}\n", base + k));
                    }
                    if !text.is_empty() {
                        pty.write_all(text.as_bytes())
                            .await
                            .expect("write to the pty");
                        next = target;
                        w.store(next, Ordering::SeqCst);
                    }
                } else {
                    while next < target {
                        pty.write_all(format!("tag={tag} n={}\n", base + next).as_bytes())
                            .await
                            .expect("write to the pty");
                        next += 1;
                        w.store(next, Ordering::SeqCst);
                    }
                }
            }
            pty
        });
        Feeder {
            stop,
            written,
            task,
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Stops writing; returns the pty and how many lines were written in all.
    pub async fn stop(self) -> (PtyDevice, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let pty = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the feeder did not stop: is the daemon still reading the pty?")
            .expect("feeder task");
        (pty, self.written.load(Ordering::SeqCst))
    }
}

/// Two pseudo-terminals whose masters are wired together: what one side's program writes
/// to its slave end, the other side's program reads from its own. A null-modem cable.
pub struct Relay {
    pub a: PathBuf,
    pub b: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    pub fn open() -> Relay {
        let (a, b) = (PtyDevice::open(), PtyDevice::open());
        let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
        let (mut ar, mut aw) = tokio::io::split(a);
        let (mut br, mut bw) = tokio::io::split(b);
        let t1 = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut ar, &mut bw).await;
        });
        let t2 = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut br, &mut aw).await;
        });
        Relay {
            a: pa,
            b: pb,
            tasks: vec![t1, t2],
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
