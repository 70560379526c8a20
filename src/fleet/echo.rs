//! `botbus topic echo`: subscribe to a filter and print one JSON object per message.

use super::json;
use crate::bus::{self, BusConfig, Incoming, QoS};
use std::io::Write;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ToolError {
    #[error("cannot reach the broker at {url} within {secs} s")]
    Unreachable { url: String, secs: u64 },
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    pub count: Option<u64>,
    pub raw: bool,
    /// Give up after this long without a message (after the count, if any); `None` waits forever.
    pub idle_timeout: Option<Duration>,
}

/// One output line: `{"topic": .., "payload": ..}`. Payloads that are not MessagePack are
/// shown as hex with a note, never a crash.
pub fn render(msg: &Incoming, raw: bool) -> serde_json::Value {
    if raw {
        return serde_json::json!({"topic": msg.topic, "hex": crate::messages::hex_encode(&msg.payload)});
    }
    match json::decode_msgpack(&msg.payload) {
        Ok(v) => serde_json::json!({"topic": msg.topic, "payload": json::to_json(&v)}),
        Err(e) => serde_json::json!({
            "topic": msg.topic,
            "hex": crate::messages::hex_encode(&msg.payload),
            "note": format!("not MessagePack: {e}"),
        }),
    }
}

/// Connects as a tool (no Will), or fails after `connect_timeout`.
pub async fn connect_tool(
    mut cfg: BusConfig,
    filters: &[String],
    connect_timeout: Duration,
) -> Result<(bus::BusHandle, tokio::sync::mpsc::Receiver<Incoming>), ToolError> {
    cfg.subscriptions = filters
        .iter()
        .map(|f| (f.clone(), QoS::AtLeastOnce))
        .collect();
    cfg.incoming_capacity = 65_536;
    let url = cfg.url.to_string();
    let (handle, rx) = bus::start(cfg);
    if !handle.wait_connected(connect_timeout).await {
        return Err(ToolError::Unreachable {
            url,
            secs: connect_timeout.as_secs(),
        });
    }
    Ok((handle, rx))
}

pub fn check_filter(filter: &str) -> Result<(), ToolError> {
    let levels: Vec<&str> = filter.split('/').collect();
    let bad = filter.is_empty()
        || levels.iter().enumerate().any(|(i, l)| {
            (l.contains('#') && (*l != "#" || i + 1 != levels.len()))
                || (l.contains('+') && *l != "+")
        });
    if bad {
        return Err(ToolError::Invalid(format!(
            "`{filter}` is not a valid MQTT topic filter (`+` and `#` must fill a whole level; `#` only last)"
        )));
    }
    Ok(())
}

pub async fn echo(
    cfg: BusConfig,
    filter: &str,
    opts: EchoOptions,
    out: &mut (dyn Write + Send),
) -> Result<u64, ToolError> {
    check_filter(filter)?;
    let (handle, mut rx) =
        connect_tool(cfg, &[filter.to_string()], Duration::from_secs(10)).await?;
    let mut seen = 0;
    loop {
        if opts.count.is_some_and(|c| seen >= c) {
            break;
        }
        let msg = match opts.idle_timeout {
            Some(t) => match tokio::time::timeout(t, rx.recv()).await {
                Ok(m) => m,
                Err(_) => break,
            },
            None => rx.recv().await,
        };
        let Some(msg) = msg else { break };
        writeln!(out, "{}", render(&msg, opts.raw))?;
        out.flush()?;
        seen += 1;
    }
    handle
        .shutdown(Vec::new(), Duration::from_millis(500))
        .await;
    Ok(seen)
}
