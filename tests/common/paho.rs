//! The Python test peers of tests/peers: a paho-mqtt subscriber that logs every message
//! (`paho_log.py`), and the PyPI `mcap` reader (`mcap_dump.py`).

use super::peers::python;
use super::process::first_line;
use super::util::{repo_path, DEADLINE};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// A message as paho received it.
#[derive(Debug, Clone)]
pub struct PahoMsg {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// Arrival, ns since the epoch.
    pub t: u64,
    pub hex: String,
    /// Decoded, NaN as null and bytes as hex.
    pub payload: serde_json::Value,
}

/// `paho_log.py` subscribed to `filter` (READY seen), logging for at most `seconds`.
pub struct PahoLog {
    child: tokio::process::Child,
    task: tokio::task::JoinHandle<Vec<PahoMsg>>,
}

impl PahoLog {
    pub async fn start(url: &str, filter: &str, seconds: u64) -> PahoLog {
        let port = url.rsplit(':').next().expect("a port in the URL");
        let mut child = tokio::process::Command::new(python())
            .arg(repo_path("tests/peers/paho_log.py"))
            .args(["127.0.0.1", port, filter, &seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run paho_log.py");
        let (first, mut lines) = first_line(&mut child, "paho_log.py").await;
        assert_eq!(first, "READY", "paho_log.py did not subscribe");
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("paho_log.py printed non-JSON ({e}): {line}"));
                out.push(PahoMsg {
                    topic: v["topic"].as_str().unwrap().to_string(),
                    qos: v["qos"].as_u64().unwrap() as u8,
                    retain: v["retain"].as_bool().unwrap(),
                    t: v["t"].as_u64().unwrap(),
                    hex: v["hex"].as_str().unwrap().to_string(),
                    payload: v["payload"].clone(),
                });
            }
            out
        });
        PahoLog { child, task }
    }

    /// Ends the subscriber after `linger` and returns what it received, in order.
    pub async fn finish(mut self, linger: Duration) -> Vec<PahoMsg> {
        tokio::time::sleep(linger).await;
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.task.await.expect("paho_log reader")
    }
}

/// `mcap_dump.py FILE [--stream]`: the file as the PyPI `mcap` reader sees it.
pub async fn mcap_dump(file: &std::path::Path, stream: bool) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(repo_path("tests/peers/mcap_dump.py")).arg(file);
    if stream {
        cmd.arg("--stream");
    }
    let out = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .expect("mcap_dump.py hung")
        .expect("run mcap_dump.py");
    assert!(
        out.status.success(),
        "the mcap reader failed on {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("mcap_dump.py prints JSON")
}
