//! Child processes other than the daemon: one-shot `botbus` CLI runs, `botbus sim`, and a
//! follower that records each line a child prints.

use super::util::{botbus_bin, DEADLINE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Variables of a service manager or terminal that change how the daemon behaves.
const MANAGER_VARS: [&str; 5] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "NO_COLOR",
];

/// Removes every inherited `BOTBUS_*` variable (and `RUST_LOG`, and a service manager's
/// `NOTIFY_SOCKET` and friends, when the tests run under one) so the developer's or the
/// CI job's environment cannot change what a test checks.
fn scrub(mut remove: impl FnMut(String)) {
    for (k, _) in std::env::vars() {
        if k.starts_with("BOTBUS_") || k == "RUST_LOG" || MANAGER_VARS.contains(&k.as_str()) {
            remove(k);
        }
    }
}

/// `botbus` as a blocking command, without inherited `BOTBUS_*` or `RUST_LOG` variables.
pub fn botbus_command() -> Command {
    let mut cmd = Command::new(botbus_bin());
    scrub(|k| {
        cmd.env_remove(k);
    });
    cmd
}

/// A finished `botbus` process.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A running `botbus` process, started from an empty directory (so no
/// `config/botbus.toml` is picked up) without any inherited `BOTBUS_*` variable.
pub struct Proc {
    pub child: tokio::process::Child,
    _cwd: TempDir,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let cwd = tempfile::tempdir().expect("temp dir");
        let mut cmd = tokio::process::Command::new(botbus_bin());
        scrub(|k| {
            cmd.env_remove(k);
        });
        cmd.args(args)
            .current_dir(cwd.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run botbus {args:?}: {e}"));
        Proc { child, _cwd: cwd }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    pub async fn finish(self, within: Duration) -> Run {
        let out = tokio::time::timeout(within, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("botbus did not exit within {within:?}"))
            .expect("wait for botbus");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `botbus ARGS` to the end, within [`DEADLINE`] (started at once, so the arguments
/// need not outlive the call).
pub fn botbus(args: &[&str]) -> impl std::future::Future<Output = Run> {
    Proc::spawn(args).finish(DEADLINE)
}

/// Lines a child process printed, each with when it was read.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<(Instant, String)>>>);

impl Lines {
    pub fn follow(out: impl std::io::Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                l.0.lock().unwrap().push((Instant::now(), line));
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<(Instant, String)> {
        self.0.lock().unwrap().clone()
    }

    /// The lines without their times.
    pub fn texts(&self) -> Vec<String> {
        self.all().into_iter().map(|(_, l)| l).collect()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits for a line from index `from` on that satisfies `pred`; returns its index.
    pub async fn wait(&self, from: usize, what: &str, mut pred: impl FnMut(&str) -> bool) -> usize {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(i) = self.0.lock().unwrap()[from..]
                .iter()
                .position(|(_, l)| pred(l))
            {
                return from + i;
            }
            if Instant::now() >= end {
                panic!(
                    "waited {DEADLINE:?} for {what}; printed so far:\n  {}",
                    self.texts().join("\n  ")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `botbus sim --robot <file>`, its stdout followed; SIGTERM (then SIGKILL) on drop.
pub struct Sim {
    child: Child,
    pub lines: Lines,
    log: PathBuf,
    _dir: TempDir,
}

impl Sim {
    pub fn start(robot: &Path) -> Sim {
        let dir = super::util::temp_dir("botbus-sim-");
        let log = dir.path().join("sim.log");
        let mut child = botbus_command()
            .arg("sim")
            .arg("--robot")
            .arg(robot)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("sim log"))
            .spawn()
            .expect("run botbus sim");
        let lines = Lines::follow(child.stdout.take().expect("stdout"));
        Sim {
            child,
            lines,
            log,
            _dir: dir,
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- botbus sim stdout -----\n{}\n----- botbus sim stderr -----\n{}",
                self.lines.texts().join("\n"),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tokio child's stdout, line by line.
pub type ChildLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Takes `child`'s stdout and waits (up to [`DEADLINE`]) for its first line, which names
/// what the child serves or that it is ready; `what` names the child in the panic. The
/// rest of its output is the caller's, in the lines returned.
pub async fn first_line(child: &mut tokio::process::Child, what: &str) -> (String, ChildLines) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} printed nothing within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot read {what}'s output: {e}"))
        .unwrap_or_else(|| panic!("{what} exited at once"));
    (first, lines)
}

/// Reads the rest of a child's output, so it never blocks on a full pipe.
pub fn drain(mut lines: ChildLines) {
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}

/// `botbus demo --seconds SECONDS` (0: until dropped) on a free port; returns the process
/// and the broker URL it printed first. Its output is read on, so it never blocks.
pub async fn start_demo(seconds: u64) -> (tokio::process::Child, String) {
    let port = super::util::free_port();
    let mut cmd = tokio::process::Command::new(botbus_bin());
    scrub(|k| {
        cmd.env_remove(k);
    });
    let mut child = cmd
        .args([
            "demo",
            "--seconds",
            &seconds.to_string(),
            "--port",
            &port.to_string(),
        ])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run botbus demo");
    let (first, lines) = first_line(&mut child, "the demo").await;
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
    assert_eq!(v["demo"], "broker", "{first}");
    let url = format!("mqtt://127.0.0.1:{port}");
    assert_eq!(v["url"], url.as_str(), "{first}");
    drain(lines);
    (child, url)
}
