//! Small shared helpers: deadlines, unique names, free ports, temp dirs, polling, and the
//! loud banner that reaches stderr past the test harness's capture.

use nix::unistd::Pid;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long any condition may take to come true. Generous: the machines are noisy.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A name unique to this process and call: robot ids, client ids, file names.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `botbus` binary cargo built for these tests.
pub fn botbus_bin() -> &'static str {
    env!("CARGO_BIN_EXE_botbus")
}

/// A file of this package, e.g. `repo_path("robots/demo.toml")`.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A fresh temp dir whose name starts with `prefix`.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// A daemon state directory (boot counter, spool).
pub fn state_dir() -> TempDir {
    temp_dir("botbus-state-")
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).expect("create file");
    f.write_all(text.as_bytes()).expect("write file");
    p
}

/// `$<body>*<checksum>\r\n`, with the NMEA checksum computed here.
pub fn nmea(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}\r\n")
}

/// Polls `cond` every 50 ms until it is true or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a blocking operation (a broker stop or start) without stalling the test's other
/// tasks.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A process's resident set size (`VmRSS` in /proc/<pid>/status), in kB.
pub fn rss_kb(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether this process runs as root (mosquitto then needs `user root` to read our files).
pub fn euid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `data` as lowercase hex.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes straight to the process's stderr, past the test harness's output capture, so a
/// skipped hardware or interop test says so in a plain `cargo test` run (and in CI logs).
pub fn loud(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}

/// The name of the running test: libtest names each test's thread after it.
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_string()
}

/// Says loudly that `test` was SKIPPED and why, in a banner no one can miss.
pub fn skip_banner(test: &str, why: &str) {
    let bar = "*".repeat(78);
    loud(&format!("\n{bar}\nSKIPPED {test}:\n{why}\n{bar}\n"));
}
