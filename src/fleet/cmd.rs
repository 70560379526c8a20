//! `botbus cmd` and `botbus topic pub`: send a command and wait for its ack, or publish
//! any JSON as MessagePack.

use super::echo::{connect_tool, ToolError};
use super::json;
use crate::bus::{qos_from_u8, BusConfig, Outgoing, QoS};
use crate::meta::Topics;
use std::time::Duration;
use tokio::time::Instant;

/// How a command ended, from the fleet's side.
#[derive(Debug, Clone, PartialEq)]
pub enum CmdOutcome {
    Accepted(serde_json::Value),
    Rejected(serde_json::Value),
    NoAck,
}

impl CmdOutcome {
    /// 0 accepted, 1 rejected, 3 no ack in time (DESIGN.md §2).
    pub fn exit_code(&self) -> u8 {
        match self {
            CmdOutcome::Accepted(_) => 0,
            CmdOutcome::Rejected(_) => 1,
            CmdOutcome::NoAck => 3,
        }
    }
}

pub fn parse_json(text: &str) -> Result<serde_json::Value, ToolError> {
    serde_json::from_str(text).map_err(|e| ToolError::Invalid(format!("not valid JSON: {e}")))
}

/// Publishes `command` to `robot`'s `actuator` and waits for the ack that echoes its id
/// (one is added when the command has none).
pub async fn send_command(
    cfg: BusConfig,
    prefix: &str,
    robot: &str,
    actuator: &str,
    mut command: serde_json::Value,
    timeout: Duration,
) -> Result<CmdOutcome, ToolError> {
    let Some(obj) = command.as_object_mut() else {
        return Err(ToolError::Invalid(
            "a command is a JSON object, e.g. {\"linear\": {\"x\": 0.5}}".into(),
        ));
    };
    if !obj.contains_key("id") {
        obj.insert("id".into(), serde_json::json!(rand::random::<u32>()));
    }
    let id = obj["id"].clone();
    let topics = Topics::new(prefix, robot);
    let ack_topic = topics.ack(actuator);
    let (bus, mut rx) = connect_tool(
        cfg,
        std::slice::from_ref(&ack_topic),
        Duration::from_secs(10),
    )
    .await?;
    // Subscribing was written before this publish on the same connection, and brokers
    // handle a connection's packets in order, so the ack cannot slip past us.
    let _ = bus.publish(Outgoing::new(
        topics.command(actuator),
        json::from_json(&command),
        QoS::AtLeastOnce,
        false,
    ));
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        let msg = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => m,
            _ => break CmdOutcome::NoAck,
        };
        let Ok(v) = json::decode_msgpack(&msg.payload) else {
            continue;
        };
        let ack = json::to_json(&v);
        if ack.get("id") != Some(&id) {
            continue;
        }
        break if ack.get("ok") == Some(&serde_json::Value::Bool(true)) {
            CmdOutcome::Accepted(ack)
        } else {
            CmdOutcome::Rejected(ack)
        };
    };
    bus.shutdown(Vec::new(), Duration::from_millis(500)).await;
    Ok(outcome)
}

/// Publishes JSON as MessagePack and waits (up to 5 s) for the broker to take it.
pub async fn publish_json(
    cfg: BusConfig,
    topic: &str,
    value: &serde_json::Value,
    qos: u8,
    retain: bool,
) -> Result<(), ToolError> {
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(ToolError::Invalid(format!(
            "`{topic}` is not a topic name (no wildcards)"
        )));
    }
    if qos > 2 {
        return Err(ToolError::Invalid("--qos must be 0, 1 or 2".into()));
    }
    let (bus, _rx) = connect_tool(cfg, &[], Duration::from_secs(10)).await?;
    let msg = Outgoing::new(
        topic.to_string(),
        json::from_json(value),
        qos_from_u8(qos),
        retain,
    );
    bus.shutdown(vec![msg], Duration::from_secs(5)).await;
    Ok(())
}
