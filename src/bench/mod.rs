//! `botbus bench`: an end-to-end benchmark. A simulated device writes lines into a
//! pseudo-terminal, the daemon (this binary's `run`, as a child process so its CPU time is
//! its own) publishes them, and a subscriber in the bench measures delivery and latency;
//! then Twist commands go the other way. `--baseline` runs the same workload through
//! `mosquitto_pub -l`; `--robots N` simulates a fleet of N connections instead.

pub mod baseline;
pub mod broker;
pub mod command;
pub mod daemon;
pub mod device;
pub mod fleet;
pub mod probe;
pub mod proc;
pub mod report;
pub mod stats;

use crate::bus::qos_from_u8;
use crate::config::Settings;
use crate::meta::{Status, Topics};
use crate::sim::pty::Pty;
use broker::BenchBroker;
use device::{Workload, Written};
use probe::Probe;
use report::{Cost, Drops, Report, Telemetry};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("broker: {0}")]
    Broker(String),
    #[error("cannot reach the broker at {0}")]
    Unreachable(String),
    #[error("{0}")]
    Setup(String),
    #[error("the daemon {0}")]
    Daemon(String),
    #[error("the device: {0}")]
    Device(std::io::Error),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The broker and credentials; with `start_broker`, the URL is replaced by the
    /// broker started for the run.
    pub settings: Settings,
    pub start_broker: bool,
    pub qos: u8,
    pub workload: Workload,
    /// Twist commands sent after the telemetry (0: none).
    pub commands: u64,
    pub baseline: bool,
    /// `Some(n)`: simulate n robots in-process instead of running the daemon.
    pub robots: Option<u64>,
}

/// How long the subscriber waits for the last samples once nothing arrives any more, and
/// at most.
const TAIL_IDLE: Duration = Duration::from_secs(3);
const TAIL_CAP: Duration = Duration::from_secs(60);

/// Runs the benchmark and returns what it measured.
pub async fn run(mut opts: BenchOptions) -> Result<Report, BenchError> {
    let broker = if opts.start_broker {
        let max = opts.robots.unwrap_or(0) as usize + 64;
        BenchBroker::start(max)?
    } else {
        BenchBroker::external(&opts.settings.mqtt.url)
    };
    opts.settings.mqtt.url = broker.url.clone();
    let mut report = Report {
        broker: broker.describe.clone(),
        qos: opts.qos,
        ..Report::default()
    };
    match opts.workload {
        Workload::Rate { hz, duration } => {
            report.mode = "rate".into();
            report.rate_hz = Some(hz);
            report.seconds = Some(duration.as_secs_f64());
        }
        Workload::Burst { count } => {
            report.mode = "burst".into();
            report.burst = Some(count);
        }
    }
    if let Some(n) = opts.robots {
        report.mode = "robots".into();
        report.rate_hz = None;
        report.fleet = Some(fleet::run(&opts, n).await?);
        return Ok(report);
    }
    single_robot(&opts, &mut report).await?;
    if opts.baseline {
        let daemon_cpu = report.daemon.as_ref().and_then(|c| c.cpu_us_per_msg);
        report.baseline = Some(baseline::run(&opts, daemon_cpu).await?);
    }
    Ok(report)
}

/// A unique id for this run's robot and clients.
fn run_id() -> String {
    format!("bench-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

/// A private temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(id: &str) -> Result<TempDir, BenchError> {
        let p = std::env::temp_dir().join(format!("botbus-{id}"));
        std::fs::create_dir_all(&p)
            .map_err(|e| BenchError::Setup(format!("temp dir {}: {e}", p.display())))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Delivery figures from what was written and what the probe saw.
fn telemetry(probe: &Probe, written: &Written, last: Option<Instant>) -> Telemetry {
    let (delivered, duplicates, _, latency) = probe.summary();
    let span = last.map_or(0.0, |l| l.duration_since(written.first).as_secs_f64());
    Telemetry {
        sent: written.sent,
        delivered,
        duplicates,
        lost: written.sent.saturating_sub(delivered),
        throughput_msg_s: if span > 0.0 {
            delivered as f64 / span
        } else {
            0.0
        },
        latency,
        subscriber_dropped: probe.dropped(),
    }
}

/// CPU of `pid` since `before`, per message, and its peak RSS.
fn cost(pid: u32, before: Option<proc::CpuSample>, messages: u64) -> Cost {
    let cpu = before
        .zip(proc::cpu_time(pid))
        .map(|(b, a)| a.since(&b).as_secs_f64() * 1e6);
    Cost {
        cpu_ms: cpu.map(|us| us / 1000.0),
        cpu_us_per_msg: cpu.filter(|_| messages > 0).map(|us| us / messages as f64),
        idle_cpu_ms_per_s: None,
        peak_rss_kib: proc::peak_rss_kib(pid),
    }
}

/// CPU milliseconds a second `pid` uses while nothing happens, over `window`.
async fn idle_cpu(pid: u32, window: Duration) -> Option<f64> {
    let before = proc::cpu_time(pid)?;
    tokio::time::sleep(window).await;
    let after = proc::cpu_time(pid)?;
    Some(after.since(&before).as_secs_f64() * 1000.0 / window.as_secs_f64())
}

/// Writes `workload` with a deadline, so a reader that stopped reading cannot hang the
/// bench.
async fn write_bounded<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    workload: Workload,
    epoch: Instant,
) -> Result<Written, BenchError> {
    let limit = match workload {
        Workload::Rate { duration, .. } => duration * 2 + Duration::from_secs(30),
        Workload::Burst { count } => Duration::from_secs(60 + count / 1000),
    };
    match tokio::time::timeout(limit, device::write_samples(w, workload, epoch)).await {
        Ok(r) => r.map_err(BenchError::Device),
        Err(_) => Err(BenchError::Device(std::io::Error::other(format!(
            "writing did not finish within {} s: the reader stopped reading",
            limit.as_secs()
        )))),
    }
}

async fn single_robot(opts: &BenchOptions, report: &mut Report) -> Result<(), BenchError> {
    let id = run_id();
    let topics = Topics::new(&opts.settings.mqtt.topic_prefix, &id);
    let epoch = Instant::now();
    let mut probe = Probe::start(
        &opts.settings,
        format!("{id}-probe"),
        &format!("{}/#", topics.base),
        qos_from_u8(opts.qos),
        epoch,
    )
    .await?;

    let dir = TempDir::new(&id)?;
    let pty = Pty::open().map_err(|e| BenchError::Setup(format!("cannot open a pty: {e}")))?;
    let write = |name: &str, text: String| {
        std::fs::write(dir.0.join(name), text).map_err(|e| BenchError::Setup(e.to_string()))
    };
    write("robot.toml", daemon::robot_file(&id, pty.path(), opts.qos))?;
    write(
        "botbus.toml",
        daemon::settings_file(&opts.settings, &id, &dir.0.join("state")),
    )?;
    let mut child = daemon::DaemonChild::spawn(&dir.0, &opts.settings)?;
    let result = drive(opts, report, &topics, &mut probe, pty, &mut child, epoch).await;
    child.stop().await;
    probe.close().await;
    result
}

/// Waits for the daemon's `online` status, up to 15 s.
async fn wait_online(
    probe: &mut Probe,
    topics: &Topics,
    child: &mut daemon::DaemonChild,
) -> Result<(), BenchError> {
    let end = Instant::now() + Duration::from_secs(15);
    let status = topics.status();
    while Instant::now() < end {
        child.check_alive()?;
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(100), probe.others.recv()).await
        {
            let online =
                rmp_serde::from_slice::<Status>(&m.payload).is_ok_and(|s| s.state == "online");
            if m.topic == status && online {
                return Ok(());
            }
        }
    }
    Err(BenchError::Daemon(format!(
        "did not come online within 15 s: {}",
        child.last_words()
    )))
}

/// The daemon's loss counters from its next diagnostics (the second after now, so it
/// was counted after the tail arrived).
async fn read_drops(probe: &mut Probe, topics: &Topics) -> Drops {
    while probe.others.try_recv().is_ok() {}
    let topic = topics.diagnostics();
    let end = Instant::now() + Duration::from_secs(3);
    let mut seen = 0;
    while let Ok(Some(m)) = tokio::time::timeout_at(end.into(), probe.others.recv()).await {
        if m.topic != topic {
            continue;
        }
        seen += 1;
        let Ok(v) = rmp_serde::from_slice::<serde_json::Value>(&m.payload) else {
            continue;
        };
        if seen < 2 {
            continue;
        }
        let device = |k: &str| {
            v["devices"]
                .as_array()
                .map(|ds| ds.iter().filter_map(|d| d[k].as_u64()).sum())
        };
        return Drops {
            dropped: v["mqtt"]["dropped"].as_u64(),
            dropped_qos0: v["mqtt"]["dropped_qos0"].as_u64(),
            device_frames: device("frames"),
            device_errors: device("errors"),
        };
    }
    Drops::default()
}

async fn drive(
    opts: &BenchOptions,
    report: &mut Report,
    topics: &Topics,
    probe: &mut Probe,
    pty: Pty,
    child: &mut daemon::DaemonChild,
    epoch: Instant,
) -> Result<(), BenchError> {
    wait_online(probe, topics, child).await?;
    let (rd, mut wr) = tokio::io::split(pty);
    let mut device_lines = device::read_lines(rd);

    let idle = idle_cpu(child.pid, Duration::from_secs(1)).await;
    let cpu0 = proc::cpu_time(child.pid);
    let written = write_bounded(&mut wr, opts.workload, epoch).await?;
    let last = probe.wait_tail(written.sent, TAIL_IDLE, TAIL_CAP).await;
    report.daemon = Some(Cost {
        idle_cpu_ms_per_s: idle,
        ..cost(child.pid, cpu0, written.sent)
    });
    report.telemetry = Some(telemetry(probe, &written, last));
    child.check_alive()?;
    report.drops = Some(read_drops(probe, topics).await);

    if opts.commands > 0 {
        report.commands = Some(
            command::measure(
                &probe.bus,
                &topics.command(daemon::ACTUATOR),
                &topics.ack(daemon::ACTUATOR),
                opts.commands,
                &mut device_lines,
                &mut probe.others,
            )
            .await,
        );
    }
    Ok(())
}
