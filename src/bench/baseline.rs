//! `--baseline`: the same telemetry workload through `mosquitto_pub -l` (lines on its
//! stdin, one publish each, no parsing or encoding), measured the same way, for a CPU
//! cost to compare the daemon's with.

use super::broker::find_program;
use super::probe::Probe;
use super::report::Baseline;
use super::{cost, run_id, telemetry, write_bounded, BenchError, BenchOptions};
use super::{TAIL_CAP, TAIL_IDLE};
use crate::bus::{qos_from_u8, BrokerUrl};
use crate::meta::Topics;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

pub const TOOL: &str = "mosquitto_pub -l";

/// Runs the baseline; a missing `mosquitto_pub` or a broker it cannot reach in the same
/// way (TLS) is a note in the report, not an error.
pub async fn run(opts: &BenchOptions, daemon_cpu: Option<f64>) -> Result<Baseline, BenchError> {
    let note = |text: &str| Baseline {
        tool: TOOL.into(),
        note: Some(text.into()),
        ..Baseline::default()
    };
    let Some(program) = find_program("mosquitto_pub") else {
        return Ok(note(
            "mosquitto_pub is not installed (Debian: apt-get install mosquitto-clients)",
        ));
    };
    let settings = &opts.settings;
    let url = BrokerUrl::parse(&settings.mqtt.url).map_err(|e| BenchError::Setup(e.to_string()))?;
    if url.tls {
        return Ok(note(
            "not run: the baseline does not connect to TLS brokers",
        ));
    }
    let id = run_id();
    let topic = Topics::new(&settings.mqtt.topic_prefix, &id).sensor("baseline");
    let epoch = Instant::now();
    let probe = Probe::start(
        settings,
        format!("{id}-probe"),
        &topic,
        qos_from_u8(opts.qos),
        epoch,
    )
    .await?;
    let mut cmd = Command::new(program);
    cmd.args([
        "-h",
        &url.host,
        "-p",
        &url.port.to_string(),
        "-l",
        "-t",
        &topic,
    ])
    .args(["-q", &opts.qos.to_string(), "-i", &format!("{id}-pub")])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    if !settings.mqtt.username.is_empty() {
        cmd.args(["-u", &settings.mqtt.username]);
    }
    if let Ok(Some(p)) = settings.password() {
        cmd.args(["-P", &p]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| BenchError::Setup(format!("cannot run mosquitto_pub: {e}")))?;
    let pid = child.id().unwrap_or(0);
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| BenchError::Setup("mosquitto_pub has no stdin".into()))?;
    // Let it connect, so the first lines do not wait for the handshake.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = super::proc::cpu_time(pid);
    let written = write_bounded(&mut stdin, opts.workload, epoch).await;
    let result = match written {
        Ok(written) => {
            let last = probe.wait_tail(written.sent, TAIL_IDLE, TAIL_CAP).await;
            let c = cost(pid, cpu0, written.sent);
            let ratio = daemon_cpu
                .zip(c.cpu_us_per_msg)
                .filter(|(_, b)| *b > 0.0)
                .map(|(d, b)| d / b);
            Ok(Baseline {
                tool: TOOL.into(),
                note: None,
                telemetry: Some(telemetry(&probe, &written, last)),
                cost: Some(c),
                cpu_ratio: ratio,
            })
        }
        Err(e) => Err(e),
    };
    drop(stdin);
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    probe.close().await;
    result
}
