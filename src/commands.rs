//! The command path: routes `robot/<id>/cmd/<actuator>` messages through the safety layer
//! to the device drivers, publishes acks, runs the deadman and the e-stop, and puts every
//! actuator in its safe state on shutdown, on e-stop, on broker loss and on device
//! (re)connect. It runs on its own timers, so safety holds with the broker down.

use crate::backoff::Backoff;
use crate::bus::{BusHandle, Incoming, LinkState, Outgoing, QoS};
use crate::config::{CommandRender, Robot};
use crate::device::{DeviceWrite, WriteError, WriteRequest, WriteSender};
use crate::messages::{Message, Scalar, Time};
use crate::meta::Topics;
use crate::safety::{decode_command, nest, Actuator, Verdict};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

/// How long shutdown waits for the safe values to reach the devices.
pub const SAFE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Safe writes that failed are tried again this often (doubling), until one is confirmed
/// or a newer write (a command, or other safe values) takes their place.
const SAFE_RETRY_MIN: Duration = Duration::from_millis(200);
const SAFE_RETRY_MAX: Duration = Duration::from_secs(2);

struct Route {
    act: Actuator,
    device: usize,
    device_name: String,
    writer: WriteSender,
    /// Broker-loss safe write already done for the current outage.
    safed_for_outage: bool,
    /// Counts the writes handed to the device, so a late answer to an older one is ignored.
    generation: u64,
    /// When the safe values, not confirmed by the device, are to be written again.
    safe_retry_at: Option<Instant>,
    safe_backoff: Backoff,
}

/// Why a command was not carried out. Its `Display` is the ack's `error` text.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Rejection {
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    Oversized { size: usize, max: usize },
    #[error("retained commands are refused: they would replay on every reconnect")]
    Retained,
    #[error("unknown actuator `{0}`")]
    UnknownActuator(String),
    #[error("an e-stop command is {{\"engage\": true}} or {{\"engage\": false}}")]
    BadEstop,
    /// The payload is not a valid command of the actuator's type.
    #[error("{0}")]
    Invalid(String),
    /// The safety checks refused it (limits, e-stop, rate, age).
    #[error("{0}")]
    Unsafe(String),
    /// Its values cannot be written to this device (out of a register's range, say).
    #[error("{0}")]
    Unwritable(String),
    #[error("device busy: its write queue is full")]
    DeviceBusy,
    #[error("device did not confirm the write")]
    NotConfirmed,
    /// The device driver could not write it.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Why safe values were not written.
#[derive(Debug, Clone, PartialEq, Error)]
enum SafeWriteError {
    #[error("cannot render the safe values: {0}")]
    Render(Rejection),
    #[error("cannot queue the safe values: device queue full or stopped")]
    Queue,
    #[error("the device did not confirm the write")]
    NotConfirmed,
    #[error("the device stopped")]
    Stopped,
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A device's answer to a safe write: route, generation, result.
type SafeResult = (usize, u64, Result<(), SafeWriteError>);

pub struct CommandRouter {
    routes: Vec<Route>,
    bus: BusHandle,
    topics: Topics,
    max_payload: usize,
    estop: bool,
    estop_file: PathBuf,
    broker: watch::Receiver<LinkState>,
    broker_down_since: Option<Instant>,
    safe_results: (
        mpsc::UnboundedSender<SafeResult>,
        mpsc::UnboundedReceiver<SafeResult>,
    ),
}

/// A device writer and its link state, by device index.
pub struct DeviceLink {
    pub name: String,
    pub writer: WriteSender,
    pub link: watch::Receiver<bool>,
}

fn ack_payload(id: rmpv::Value, result: Result<rmpv::Value, Rejection>) -> Vec<u8> {
    let (ok, error, applied) = match result {
        Ok(applied) => (true, rmpv::Value::Nil, applied),
        Err(e) => (false, rmpv::Value::from(e.to_string()), rmpv::Value::Nil),
    };
    let v = rmpv::Value::Map(vec![
        (rmpv::Value::from("id"), id),
        (rmpv::Value::from("ok"), rmpv::Value::from(ok)),
        (rmpv::Value::from("error"), error),
        (rmpv::Value::from("applied"), applied),
    ]);
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &v).expect("writing to a Vec cannot fail");
    buf
}

/// The command's `id`, if the payload is a map that has one; for acks of rejected payloads.
fn salvage_id(payload: &[u8], max: usize) -> rmpv::Value {
    if payload.len() > max {
        return rmpv::Value::Nil;
    }
    let mut rd = payload;
    match rmpv::decode::read_value_with_max_depth(&mut rd, crate::safety::decode::MAX_DEPTH) {
        Ok(rmpv::Value::Map(pairs)) => pairs
            .into_iter()
            .find(|(k, _)| k.as_str() == Some("id"))
            .map(|(_, v)| v)
            .unwrap_or(rmpv::Value::Nil),
        _ => rmpv::Value::Nil,
    }
}

/// `Some(engage)` for a well-formed e-stop command (`{"engage": bool}`, optional `id`).
fn parse_estop(payload: &[u8], max: usize) -> Option<bool> {
    if payload.len() > max {
        return None;
    }
    let mut rd = payload;
    match rmpv::decode::read_value_with_max_depth(&mut rd, crate::safety::decode::MAX_DEPTH) {
        Ok(rmpv::Value::Map(pairs)) => {
            let known = pairs
                .iter()
                .all(|(k, _)| matches!(k.as_str(), Some("engage" | "id")));
            match pairs.iter().find(|(k, _)| k.as_str() == Some("engage")) {
                Some((_, rmpv::Value::Boolean(b))) if known => Some(*b),
                _ => None,
            }
        }
        _ => None,
    }
}

fn estop_engages(payload: &[u8], max: usize) -> bool {
    parse_estop(payload, max) == Some(true)
}

/// What the device is asked to do for `msg`.
fn render(route: &Route, msg: &Message) -> Result<DeviceWrite, Rejection> {
    render_spec(&route.act.spec.render, msg).map_err(Rejection::Unwritable)
}

fn render_spec(render: &CommandRender, msg: &Message) -> Result<DeviceWrite, String> {
    match render {
        CommandRender::Template(t) => {
            let mut line = String::new();
            t.render(msg, &mut line).map_err(|e| e.to_string())?;
            Ok(DeviceWrite::Line(line.into_bytes()))
        }
        CommandRender::Modbus(writes) => writes
            .iter()
            .map(|w| {
                let v = msg
                    .get_path(&w.field)
                    .ok_or_else(|| format!("`{}` has no value", w.field))?;
                crate::protocols::modbus::encode_write(w, &v).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(DeviceWrite::Modbus),
        CommandRender::Can { message, signals } => {
            // Fields a `map` command leaves out are signals not given: they take the DBC's
            // initial value. Other types default every field, so every signal is given.
            if let Message::Map(m) = msg {
                if let Some((k, _)) = m
                    .values
                    .iter()
                    .find(|(k, _)| k != "id" && !signals.iter().any(|(_, path)| path == k))
                {
                    return Err(format!(
                        "unknown field `{k}`: this command's fields are the paths in its `signals`"
                    ));
                }
            }
            let mut values: Vec<(String, f64)> = Vec::with_capacity(signals.len());
            for (sig, path) in signals {
                match msg.get_path(path) {
                    None => {}
                    Some(v @ (Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_))) => {
                        values.push((sig.clone(), v.as_f64().expect("a number")))
                    }
                    Some(v) => return Err(format!("{path} = `{v}` is not a number")),
                }
            }
            let data =
                crate::protocols::can::dbc::encode(message, &values).map_err(|e| e.to_string())?;
            Ok(DeviceWrite::Can(crate::protocols::can::CanFrame {
                id: message.id,
                extended: message.extended,
                rtr: false,
                dlc: data.len() as u8,
                data,
            }))
        }
        CommandRender::CanRaw { ids } => {
            let Message::Frame(f) = msg else {
                return Err("a raw CAN command is a can_msgs/Frame".into());
            };
            if !ids.contains(&f.id) {
                return Err(format!("id 0x{:X} is not in this actuator's `ids`", f.id));
            }
            let limit = if f.is_extended { 0x1FFF_FFFF } else { 0x7FF };
            if f.id > limit {
                return Err(format!(
                    "id 0x{:X} does not fit a{} identifier",
                    f.id,
                    if f.is_extended {
                        "n extended"
                    } else {
                        " standard"
                    }
                ));
            }
            if f.data.len() > 64 || (!f.is_rtr && f.dlc as usize != f.data.len()) {
                return Err(format!(
                    "dlc {} does not match {} data bytes",
                    f.dlc,
                    f.data.len()
                ));
            }
            Ok(DeviceWrite::Can(crate::protocols::can::CanFrame {
                id: f.id,
                extended: f.is_extended,
                rtr: f.is_rtr,
                dlc: f.dlc,
                data: f.data.clone(),
            }))
        }
    }
}

impl CommandRouter {
    pub fn new(
        robot: &Robot,
        devices: &[DeviceLink],
        bus: BusHandle,
        topics: Topics,
        max_payload: usize,
        state_dir: PathBuf,
    ) -> CommandRouter {
        let mut routes = Vec::new();
        for (i, d) in robot.devices.iter().enumerate() {
            for c in d.commands() {
                routes.push(Route {
                    act: Actuator::new(c),
                    device: i,
                    device_name: d.name.clone(),
                    writer: devices[i].writer.clone(),
                    safed_for_outage: false,
                    generation: 0,
                    safe_retry_at: None,
                    safe_backoff: Backoff::new(SAFE_RETRY_MIN, SAFE_RETRY_MAX),
                });
            }
        }
        let estop_file = state_dir.join("estop");
        let estop = estop_file.exists();
        if estop {
            tracing::warn!(
                "e-stop is engaged (latched from a previous run); publish {{\"engage\": false}} to {} to release it",
                topics.command("estop")
            );
        }
        let broker = bus.link();
        CommandRouter {
            routes,
            bus,
            topics,
            max_payload,
            estop,
            estop_file,
            broker,
            broker_down_since: Some(Instant::now()),
            safe_results: mpsc::unbounded_channel(),
        }
    }

    fn ack(&self, actuator: &str, id: rmpv::Value, result: Result<rmpv::Value, Rejection>) {
        if let Err(e) = &result {
            tracing::info!(actuator, "command rejected: {e}");
        }
        let msg = Outgoing::new(
            self.topics.ack(actuator),
            ack_payload(id, result),
            QoS::AtLeastOnce,
            false,
        );
        let _ = self.bus.publish(msg);
    }

    /// Queues the safe values of one route; the receiver answers once the device wrote
    /// them (or could not). `Err` when they could not even be queued.
    fn queue_safe(
        &mut self,
        i: usize,
        why: &str,
    ) -> Result<oneshot::Receiver<Result<(), WriteError>>, SafeWriteError> {
        let route = &mut self.routes[i];
        route.generation += 1;
        route.safe_retry_at = None;
        route.act.disarm();
        let msg = route.act.safe_message();
        let write = render(route, &msg).map_err(SafeWriteError::Render)?;
        let (done, rx) = oneshot::channel();
        let req = WriteRequest {
            write,
            done: Some(done),
        };
        route
            .writer
            .safe
            .try_send(req)
            .map_err(|_| SafeWriteError::Queue)?;
        if route.safe_backoff.attempts() == 0 {
            tracing::info!(actuator = %route.act.spec.actuator, device = %route.device_name, "writing the safe values ({why})");
        } else {
            tracing::debug!(actuator = %route.act.spec.actuator, device = %route.device_name, "writing the safe values again ({why})");
        }
        Ok(rx)
    }

    /// Writes the safe values of one route, and keeps writing them until the device
    /// confirms (see [`CommandRouter::on_safe_result`]).
    fn write_safe(&mut self, i: usize, why: &str) {
        let queued = self.queue_safe(i, why);
        let generation = self.routes[i].generation;
        let results = self.safe_results.0.clone();
        match queued {
            Ok(rx) => {
                tokio::spawn(async move {
                    let r = match tokio::time::timeout(SAFE_WRITE_TIMEOUT * 3, rx).await {
                        Ok(Ok(r)) => r.map_err(SafeWriteError::Write),
                        _ => Err(SafeWriteError::NotConfirmed),
                    };
                    let _ = results.send((i, generation, r));
                });
            }
            Err(e) => {
                let _ = results.send((i, generation, Err(e)));
            }
        }
    }

    /// A device answered a safe write. A failure is retried with backoff, unless the
    /// device is away: its reconnection writes the safe values first anyway.
    fn on_safe_result(&mut self, (i, generation, r): SafeResult) {
        let route = &mut self.routes[i];
        if route.generation != generation {
            return;
        }
        match r {
            Ok(()) => route.safe_backoff.reset(),
            Err(SafeWriteError::Write(WriteError::Disconnected)) => route.safe_backoff.reset(),
            Err(e) => {
                if route.safe_backoff.attempts() == 0 {
                    tracing::warn!(actuator = %route.act.spec.actuator, device = %route.device_name, "safe values not written: {e}; retrying until they are");
                }
                route.safe_retry_at = Some(Instant::now() + route.safe_backoff.next_delay());
            }
        }
    }

    fn write_safe_all(&mut self, why: &str) {
        for i in 0..self.routes.len() {
            self.write_safe(i, why);
        }
    }

    fn set_estop(&mut self, engaged: bool) {
        self.estop = engaged;
        let r = if engaged {
            std::fs::write(&self.estop_file, b"engaged\n")
        } else {
            match std::fs::remove_file(&self.estop_file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        };
        if let Err(e) = r {
            tracing::error!(path = %self.estop_file.display(), "cannot persist the e-stop state: {e}");
        }
    }

    fn on_estop(&mut self, payload: &[u8]) {
        let id = salvage_id(payload, self.max_payload);
        match parse_estop(payload, self.max_payload) {
            Some(true) => {
                tracing::warn!("e-stop engaged");
                self.set_estop(true);
                self.write_safe_all("e-stop");
                let applied =
                    rmpv::Value::Map(vec![(rmpv::Value::from("engage"), rmpv::Value::from(true))]);
                self.ack("estop", id, Ok(applied));
            }
            Some(false) => {
                tracing::warn!("e-stop released");
                self.set_estop(false);
                let applied = rmpv::Value::Map(vec![(
                    rmpv::Value::from("engage"),
                    rmpv::Value::from(false),
                )]);
                self.ack("estop", id, Ok(applied));
            }
            None => self.ack("estop", id, Err(Rejection::BadEstop)),
        }
    }

    fn on_command(&mut self, msg: Incoming) {
        let prefix = self.topics.command("");
        let Some(actuator) = msg.topic.strip_prefix(prefix.as_str()) else {
            return;
        };
        let actuator = actuator.to_string();
        if let Some(size) = msg.oversized {
            self.ack(
                &actuator,
                rmpv::Value::Nil,
                Err(Rejection::Oversized {
                    size,
                    max: self.max_payload,
                }),
            );
            return;
        }
        // A retained e-stop engage is honoured: stopping is always safe, and an operator
        // who retained it while the robot was away means it.
        if msg.retain && !(actuator == "estop" && estop_engages(&msg.payload, self.max_payload)) {
            // A retained command would be replayed on every reconnect (and every restart).
            let id = salvage_id(&msg.payload, self.max_payload);
            self.ack(&actuator, id, Err(Rejection::Retained));
            return;
        }
        if actuator == "estop" {
            self.on_estop(&msg.payload);
            return;
        }
        let Some(i) = self
            .routes
            .iter()
            .position(|r| r.act.spec.actuator == actuator)
        else {
            let id = salvage_id(&msg.payload, self.max_payload);
            let unknown = Rejection::UnknownActuator(actuator.clone());
            self.ack(&actuator, id, Err(unknown));
            return;
        };
        let decoded = match decode_command(
            &msg.payload,
            self.routes[i].act.spec.msg_type,
            self.max_payload,
        ) {
            Ok(d) => d,
            Err(e) => {
                let id = salvage_id(&msg.payload, self.max_payload);
                self.ack(&actuator, id, Err(Rejection::Invalid(e)));
                return;
            }
        };
        let now = Instant::now();
        let verdict = self.routes[i]
            .act
            .check(&decoded, now, Time::now(), self.estop);
        let (message, applied) = match verdict {
            Verdict::Reject(e) => {
                self.ack(&actuator, decoded.id, Err(Rejection::Unsafe(e)));
                return;
            }
            Verdict::Apply { message, applied } => (message, applied),
        };
        let write = match render(&self.routes[i], &message) {
            Ok(w) => w,
            Err(e) => {
                self.ack(&actuator, decoded.id, Err(e));
                return;
            }
        };
        let (done, rx) = oneshot::channel();
        if self.routes[i]
            .writer
            .commands
            .try_send(WriteRequest {
                write,
                done: Some(done),
            })
            .is_err()
        {
            self.ack(&actuator, decoded.id, Err(Rejection::DeviceBusy));
            return;
        }
        self.routes[i].act.accepted(now);
        // The command takes the place of any safe write still being retried.
        self.routes[i].generation += 1;
        self.routes[i].safe_retry_at = None;
        self.routes[i].safe_backoff.reset();
        // The ack waits for the device write, so `ok: true` means the bytes went out.
        let bus = self.bus.clone();
        let ack_topic = self.topics.ack(&actuator);
        let id = decoded.id;
        let applied = nest(&applied);
        tokio::spawn(async move {
            // Dropping `rx` on timeout tells the driver to skip the write, so an ack that
            // says "not written" stays true.
            let result = match tokio::time::timeout(SAFE_WRITE_TIMEOUT * 3, rx).await {
                Ok(Ok(Ok(()))) => Ok(applied),
                Ok(Ok(Err(e))) => Err(Rejection::Write(e)),
                _ => Err(Rejection::NotConfirmed),
            };
            if let Err(e) = &result {
                tracing::warn!(actuator = %ack_topic, "command not written: {e}");
            }
            let _ = bus.publish(Outgoing::new(
                ack_topic,
                ack_payload(id, result),
                QoS::AtLeastOnce,
                false,
            ));
        });
    }

    fn next_wake(&self) -> Option<Instant> {
        let deadman = self.routes.iter().filter_map(|r| r.act.deadline()).min();
        let outage = self.broker_down_since.and_then(|t| {
            self.routes
                .iter()
                .filter(|r| !r.safed_for_outage)
                .map(|r| t + r.act.broker_grace())
                .min()
        });
        let retry = self.routes.iter().filter_map(|r| r.safe_retry_at).min();
        [deadman, outage, retry].into_iter().flatten().min()
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        for i in 0..self.routes.len() {
            if self.routes[i].act.deadman_due(now) {
                self.write_safe(i, "deadman: no command within timeout_ms");
            }
            if self.routes[i].safe_retry_at.is_some_and(|t| now >= t) {
                self.write_safe(i, "the last safe write failed");
            }
            if let Some(t) = self.broker_down_since {
                let r = &self.routes[i];
                if !r.safed_for_outage && now >= t + r.act.broker_grace() {
                    self.routes[i].safed_for_outage = true;
                    self.write_safe(i, "broker connection lost");
                }
            }
        }
    }

    /// Runs until `stop`, then writes every safe value and waits for the writes.
    pub async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        device_links: Vec<watch::Receiver<bool>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let (up_tx, mut up_rx) = mpsc::channel::<usize>(16);
        for (i, mut link) in device_links.into_iter().enumerate() {
            let up_tx = up_tx.clone();
            tokio::spawn(async move {
                loop {
                    if *link.borrow_and_update() && up_tx.send(i).await.is_err() {
                        return;
                    }
                    if link.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        loop {
            let wake = self.next_wake();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                m = incoming.recv() => match m {
                    Some(m) => self.on_command(m),
                    None => break,
                },
                _ = sleep_until(wake.unwrap_or(far)), if wake.is_some() => self.on_timer(),
                Some(r) = self.safe_results.1.recv() => self.on_safe_result(r),
                r = self.broker.changed() => {
                    if r.is_err() { break; }
                    let up = *self.broker.borrow_and_update() == LinkState::Up;
                    if up {
                        self.broker_down_since = None;
                    } else if self.broker_down_since.is_none() {
                        self.broker_down_since = Some(Instant::now());
                    }
                    for r in &mut self.routes {
                        r.safed_for_outage = false;
                    }
                }
                Some(dev) = up_rx.recv() => {
                    // A device that (re)appears may hold a command from before it vanished.
                    let idx: Vec<usize> = (0..self.routes.len()).filter(|&i| self.routes[i].device == dev).collect();
                    for i in idx {
                        self.write_safe(i, "device connected");
                    }
                }
                _ = stop.changed() => break,
            }
        }
        // Every actuator to its safe state before exit; a write the device refused gets
        // one more try within the time left.
        let deadline = Instant::now() + SAFE_WRITE_TIMEOUT;
        let mut pending: Vec<_> = (0..self.routes.len())
            .map(|i| (i, self.queue_safe(i, "shutdown")))
            .collect();
        for attempt in 0..2 {
            let mut again = Vec::new();
            for (i, queued) in pending {
                let r = match queued {
                    Ok(rx) => match tokio::time::timeout_at(deadline, rx).await {
                        Err(_) => Err(SafeWriteError::NotConfirmed),
                        Ok(Err(_)) => Err(SafeWriteError::Stopped),
                        Ok(Ok(r)) => r.map_err(SafeWriteError::Write),
                    },
                    Err(e) => Err(e),
                };
                let Err(e) = r else { continue };
                let away = e == SafeWriteError::Write(WriteError::Disconnected);
                if attempt == 0 && !away && Instant::now() < deadline {
                    again.push((i, self.queue_safe(i, "shutdown, again")));
                } else {
                    tracing::error!(actuator = %self.routes[i].act.spec.actuator, "safe values not written at shutdown: {e}");
                }
            }
            pending = again;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_payloads_are_named_maps_in_the_contract_order() {
        let p = ack_payload(rmpv::Value::from(7), Err(Rejection::Unsafe("estop".into())));
        let v = crate::fleet::json::to_json(&crate::fleet::json::decode_msgpack(&p).unwrap());
        assert_eq!(
            v,
            serde_json::json!({"id": 7, "ok": false, "error": "estop", "applied": null})
        );
    }

    #[test]
    fn ids_are_salvaged_from_payloads_that_fail_later_checks() {
        let p = rmp_serde::to_vec_named(&serde_json::json!({"id": "a1", "linear": {"x": "fast"}}))
            .unwrap();
        assert_eq!(salvage_id(&p, 1024), rmpv::Value::from("a1"));
        assert_eq!(salvage_id(b"\xdd\xff\xff\xff\xff", 1024), rmpv::Value::Nil);
    }

    #[test]
    fn a_flat_estop_map_decodes_within_the_depth_budget() {
        let p = rmp_serde::to_vec_named(&serde_json::json!({"id": 1, "engage": true})).unwrap();
        let mut rd = &p[..];
        assert!(
            rmpv::decode::read_value_with_max_depth(&mut rd, crate::safety::decode::MAX_DEPTH)
                .is_ok()
        );
    }
}
