//! `botbus cmd` and `botbus topic pub`: send a command and wait for its ack, or publish
//! any JSON as MessagePack.

use super::client::{FleetClient, FleetError, FleetOptions};
use super::echo::ToolError;
use super::json;
use crate::bus::{qos_from_u8, Outgoing, QoS};
use std::time::Duration;

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

pub async fn send_command(
    opts: FleetOptions,
    robot: &str,
    actuator: &str,
    command: serde_json::Value,
    timeout: Duration,
) -> Result<CmdOutcome, ToolError> {
    let valid = crate::config::valid_name;
    if !valid(robot, false) {
        return Err(ToolError::Invalid(format!(
            "`{robot}` is not a robot id: use letters, digits, `_` or `-`"
        )));
    }
    if !valid(actuator, true) {
        return Err(ToolError::Invalid(format!(
            "`{actuator}` is not an actuator name: use segments of letters, digits, `_` or `-`, joined by `/`"
        )));
    }
    if !command.is_object() {
        return Err(ToolError::Invalid(
            "a command is a JSON object, e.g. {\"linear\": {\"x\": 0.5}}".into(),
        ));
    }
    let fleet = FleetClient::connect(opts).await?;
    let outcome = match fleet.command(robot, actuator, &command, timeout).await {
        Ok(ack) => {
            let v = serde_json::to_value(&ack).unwrap_or_default();
            if ack.ok {
                CmdOutcome::Accepted(v)
            } else {
                CmdOutcome::Rejected(v)
            }
        }
        Err(FleetError::NoAck { .. }) => CmdOutcome::NoAck,
        Err(e) => return Err(e.into()),
    };
    fleet.close().await;
    Ok(outcome)
}

/// Publishes JSON as MessagePack and waits (up to 5 s) for the broker to take it.
pub async fn publish_json(
    mut opts: FleetOptions,
    topic: &str,
    value: &serde_json::Value,
    qos: u8,
    retain: bool,
) -> Result<(), ToolError> {
    if topic.is_empty() || !rumqttc::valid_topic(topic) {
        return Err(ToolError::Invalid(format!(
            "`{topic}` is not a topic name (no wildcards)"
        )));
    }
    if qos > 2 {
        return Err(ToolError::Invalid("--qos must be 0, 1 or 2".into()));
    }
    // Encoded before connecting, so a value that cannot be sent never opens a connection.
    let payload = json::from_json(value).map_err(|e| FleetError::Encode(e.to_string()))?;
    opts.bus.subscriptions.clear();
    let url = opts.bus.url.to_string();
    let (bus, _rx) = crate::bus::start(opts.bus);
    if !bus.wait_connected(opts.connect_timeout).await {
        bus.shutdown(Vec::new(), Duration::from_millis(100)).await;
        return Err(FleetError::Unreachable(url).into());
    }
    let msg = Outgoing::new(topic.to_string(), payload, qos_from_u8(qos), retain);
    let qos_of_msg = msg.qos;
    if !bus.shutdown(vec![msg], Duration::from_secs(5)).await && qos_of_msg != QoS::AtMostOnce {
        return Err(FleetError::NotAcknowledged(topic.to_string()).into());
    }
    Ok(())
}
