//! Integration tests for issue 12 (every parser fuzzed): devices that spew without end.
//! The real `botbus` daemon reads a text-line device, a GPS and an slcan adapter on
//! pseudo-terminals; each sends 10 MB without a line end, then valid lines. Each overlong
//! line must be cut at its protocol's limit and counted once in `diagnostics`, the
//! daemon's memory must stay flat, and the valid lines after it must be published.

mod common;

use common::*;
use std::path::Path;

const MB: usize = 1024 * 1024;
/// What each device sends without a line end.
const SPEW: usize = 10 * MB;
/// How much the daemon's resident memory may grow over the spew: well under one
/// device's 10 MB, which a buffer that kept the line would hold.
const RSS_SLACK_KB: u64 = 4 * 1024;

/// A text-line device `pump` (`tag=T n=<k>` → `counter`), a GPS `gps` (GGA → `gps/fix`)
/// and an slcan adapter `can` (every frame → `can/raw`).
fn robot(pump: &Path, gps: &Path, can: &Path) -> String {
    format!(
        r#"{counter}{gps}
[[devices]]
name = "can"
protocol = "slcan"
serial = {{ path = "{can}", baud = 115200 }}
bitrate = 500000
  [[devices.streams]]
  sensor = "can/raw"
  type = "can_msgs/Frame"
  qos = 1
"#,
        counter = counter_robot("@ID@", pump),
        gps = gps_device(gps, 1),
        can = can.display()
    )
}

/// Printable bytes that are no line end for any of the three protocols (nor slcan's BEL).
fn spew(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'!' + (i % 90) as u8).collect()
}

/// A device's `errors` and `last_error` in a diagnostics report.
fn errors(m: &Msg, device: &str) -> (u64, String) {
    let d = m.diag_device(device);
    let n = d
        .and_then(|d| lookup(d, "errors"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let last = d
        .and_then(|d| lookup(d, "last_error"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    (n, last)
}

const DEVICES: [&str; 3] = ["pump", "gps", "can"];

/// Valid input for each device: a counter line, a GGA sentence, a CAN frame.
fn valid(device: &str, k: u64) -> String {
    match device {
        "pump" => format!("tag=T n={k}\n"),
        "gps" => crlf(NOVATEL_GGA),
        _ => format!("t{:03X}1{:02X}\r", 0x100 + k, k),
    }
}

/// Waits for the samples `valid(_, k)` gives, on every device's topic.
async fn wait_samples(rig: &mut RobotRig, k: u64) {
    rig.sample("counter", "the counter line after the spew", |m| {
        m.f64("data") == k as f64
    })
    .await;
    rig.sample("gps/fix", "the GGA sentence after the spew", |_| true)
        .await;
    rig.sample("can/raw", "the CAN frame after the spew", |m| {
        m.u64("id") == 0x100 + k
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_without_a_line_end_are_cut_counted_once_and_memory_stays_flat() {
    let mut ptys = [
        PtyDevice::open(),
        PtyDevice::open(),
        PtyDevice::open().with_eol(b'\r'),
    ];
    let toml = robot(ptys[0].path(), ptys[1].path(), ptys[2].path());
    let mut rig = RobotRig::start(&unique("hostile"), &toml).await;
    rig.wait_online().await;
    rig.diag("every device open", |m| {
        DEVICES.iter().all(|d| {
            m.diag_device(d)
                .and_then(|d| lookup(d, "connected"))
                .and_then(|c| c.as_bool())
                == Some(true)
        })
    })
    .await;
    let pid = rig.daemon.pid();

    // Warm-up: one overlong line and a valid one on each device, so whatever the daemon
    // allocates for those paths once is in the baseline.
    for (pty, device) in ptys.iter_mut().zip(DEVICES) {
        let mut bytes = spew(MB);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(valid(device, 1).as_bytes());
        pty.send_bytes(&bytes).await;
    }
    wait_samples(&mut rig, 1).await;
    let warm = rig
        .diag("one error per device after the warm-up", |m| {
            DEVICES.iter().all(|d| errors(m, d).0 >= 1)
        })
        .await;
    let before: Vec<u64> = DEVICES.iter().map(|d| errors(&warm, d).0).collect();
    let base = rss_kb(pid).expect("the daemon's /proc status");

    // 10 MB without a line end on each device in turn, the daemon's memory read after
    // every megabyte.
    let chunk = spew(MB);
    let mut peak = base;
    for pty in ptys.iter_mut() {
        for _ in 0..SPEW / MB {
            pty.send_bytes(&chunk).await;
            peak = peak.max(rss_kb(pid).expect("the daemon's /proc status"));
        }
    }
    for (pty, device) in ptys.iter_mut().zip(DEVICES) {
        pty.send_bytes(format!("\r\n{}", valid(device, 2)).as_bytes())
            .await;
    }
    wait_samples(&mut rig, 2).await;
    let after = rss_kb(pid).expect("the daemon's /proc status");
    peak = peak.max(after);
    eprintln!(
        "hostile: RSS {base} kB after warm-up, peak {peak} kB over 3 × {} MB, {after} kB after",
        SPEW / MB
    );

    let d = rig
        .diag("diagnostics counting each spew", |m| {
            DEVICES
                .iter()
                .zip(&before)
                .all(|(d, b)| errors(m, d).0 > *b)
        })
        .await;
    for ((device, b), cut) in DEVICES.iter().zip(&before).zip([
        "line longer than 4096 bytes discarded",
        "line longer than 512 bytes discarded",
        "no line end within 32 bytes",
    ]) {
        let (n, last) = errors(&d, device);
        assert_eq!(n, b + 1, "{device}: each spew is one error: {d:?}");
        assert!(last.contains(cut), "{device}: last_error {last:?}");
    }
    assert!(
        peak <= base + RSS_SLACK_KB,
        "RSS grew from {base} kB to {peak} kB over the spew"
    );
    assert!(rig.daemon.is_running());
}
