//! The safety supervisor: one sans-IO state machine for every actuator of a robot. It holds
//! the e-stop and its latch, the retained-command policy, the deadman and broker-loss timers,
//! the safe writes still to be confirmed (retried with backoff until they are, or until a
//! newer write takes their place) and the shutdown sequence. [`Event`]s go in with the time
//! they happen; [`Action`]s come out for the command path to carry out, and
//! [`Supervisor::next_wake`] says when to [`Event::Tick`] next. Nothing here waits, reads a
//! clock or touches a device, so every rule is tested with paused time.

use super::decode::Payload;
use super::events::{
    Ack, Action, Command, Event, Outcome, Purpose, Rejection, Route, SafeReason, Write, WriteId,
    ESTOP,
};
use super::render::{render, render_safe, RenderError};
use super::{nest, Actuator, Verdict};
use crate::backoff::Backoff;
use crate::device::WriteError;
use std::collections::HashMap;
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// How long shutdown waits for the safe values to reach the devices.
pub const SAFE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a command's ack (and a safe write outside shutdown) waits for the device. A
/// command not written by then is dropped unwritten, so its "not confirmed" ack stays true.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(3);

/// Safe writes that failed are tried again this often (doubling), until one is confirmed
/// or a newer write (a command, or other safe values) takes their place.
const SAFE_RETRY_MIN: Duration = Duration::from_millis(200);
const SAFE_RETRY_MAX: Duration = Duration::from_secs(2);

/// Why safe values were not written; for the logs.
#[derive(Debug, Clone, PartialEq, Error)]
enum SafeWriteError {
    #[error("cannot render the safe values: {0}")]
    Render(RenderError),
    #[error("cannot queue the safe values: device queue full or stopped")]
    Queue,
    #[error("the device did not confirm the write")]
    NotConfirmed,
    #[error("the device stopped")]
    Stopped,
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A write waiting for its device's answer.
#[derive(Debug)]
enum Pending {
    Command {
        actuator: usize,
        ack_id: rmpv::Value,
        applied: rmpv::Value,
        /// When it passed the checks: the rate limit and the deadman count from here.
        at: Instant,
    },
    Safe {
        actuator: usize,
        reason: SafeReason,
    },
}

/// One actuator's state beside its checks.
#[derive(Debug)]
struct Slot {
    act: Actuator,
    device: usize,
    device_name: String,
    /// Broker-loss safe write already done for the current outage.
    safed_for_outage: bool,
    /// The last write handed over (command or safe values): only its answer counts.
    latest: Option<WriteId>,
    /// When the safe values, not confirmed by the device, are to be written again.
    safe_retry_at: Option<Instant>,
    safe_backoff: Backoff,
}

/// The safety state of every actuator of a robot.
#[derive(Debug)]
pub struct Supervisor {
    slots: Vec<Slot>,
    max_payload: usize,
    estop: bool,
    broker_down_since: Option<Instant>,
    next_id: u64,
    pending: HashMap<WriteId, Pending>,
    /// Set once shutdown began: by when its safe writes must be done.
    shutdown_by: Option<Instant>,
}

impl Supervisor {
    /// `estop` is the latched state from the previous run. The broker counts as down from
    /// `now` until [`Event::BrokerLink`] says otherwise.
    pub fn new(
        routes: impl IntoIterator<Item = Route>,
        max_payload: usize,
        estop: bool,
        now: Instant,
    ) -> Supervisor {
        let slots = routes
            .into_iter()
            .map(|r| Slot {
                act: Actuator::new(r.spec),
                device: r.device,
                device_name: r.device_name,
                safed_for_outage: false,
                latest: None,
                safe_retry_at: None,
                safe_backoff: Backoff::new(SAFE_RETRY_MIN, SAFE_RETRY_MAX),
            })
            .collect();
        Supervisor {
            slots,
            max_payload,
            estop,
            broker_down_since: Some(now),
            next_id: 0,
            pending: HashMap::new(),
            shutdown_by: None,
        }
    }

    pub fn estop_engaged(&self) -> bool {
        self.estop
    }

    /// True once shutdown began and every actuator's safe write was confirmed or given up.
    pub fn is_shut_down(&self) -> bool {
        self.shutdown_by.is_some()
            && !self
                .pending
                .values()
                .any(|p| matches!(p, Pending::Safe { reason, .. } if reason.is_shutdown()))
    }

    /// When the next [`Event::Tick`] is due: a deadman, a broker-loss grace or a retry.
    pub fn next_wake(&self) -> Option<Instant> {
        if self.shutdown_by.is_some() {
            return None;
        }
        let deadman = self.slots.iter().filter_map(|s| s.act.deadline()).min();
        let outage = self.broker_down_since.and_then(|t| {
            self.slots
                .iter()
                .filter(|s| !s.safed_for_outage)
                .map(|s| t + s.act.broker_grace())
                .min()
        });
        let retry = self.slots.iter().filter_map(|s| s.safe_retry_at).min();
        [deadman, outage, retry].into_iter().flatten().min()
    }

    /// Takes in what happened at `now`; returns what to do about it, in order. After
    /// [`Event::Shutdown`] only the answers to writes count.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Queued(id) => self.queued(id),
            Event::NotQueued(id) => self.not_queued(id, now, &mut out),
            Event::Done { id, outcome } => self.done(id, outcome, now, &mut out),
            _ if self.shutdown_by.is_some() => {}
            Event::Command(c) => self.command(c, now, &mut out),
            Event::Oversized { actuator, size } => {
                let max = self.max_payload;
                reject(
                    &mut out,
                    actuator,
                    rmpv::Value::Nil,
                    Rejection::Oversized { size, max },
                );
            }
            Event::BrokerLink(up) => self.broker_link(up, now),
            Event::DeviceConnected(device) => {
                for i in 0..self.slots.len() {
                    if self.slots[i].device == device {
                        self.write_safe(i, SafeReason::DeviceConnected, now, &mut out);
                    }
                }
            }
            Event::Tick => self.tick(now, &mut out),
            Event::Shutdown => {
                self.shutdown_by = Some(now + SAFE_WRITE_TIMEOUT);
                for i in 0..self.slots.len() {
                    self.write_safe(i, SafeReason::Shutdown, now, &mut out);
                }
            }
        }
        out
    }

    fn command(&mut self, cmd: Command, now: Instant, out: &mut Vec<Action>) {
        let Command {
            actuator,
            payload,
            retain,
            wall,
        } = cmd;
        // A retained e-stop engage is honoured: stopping is always safe, and an operator
        // who retained it while the robot was away means it. Any other retained command
        // would be replayed on every reconnect (and every restart).
        if retain && !(actuator == ESTOP && payload.estop() == Some(true)) {
            reject(out, actuator, payload.id(), Rejection::Retained);
            return;
        }
        if actuator == ESTOP {
            self.estop_command(&payload, now, out);
            return;
        }
        let Some(i) = self
            .slots
            .iter()
            .position(|s| s.act.spec.actuator == actuator)
        else {
            let unknown = Rejection::UnknownActuator(actuator.clone());
            reject(out, actuator, payload.id(), unknown);
            return;
        };
        let salvaged = payload.id();
        let decoded = match payload.into_command(self.slots[i].act.spec.msg_type) {
            Ok(d) => d,
            Err(e) => return reject(out, actuator, salvaged, Rejection::Invalid(e)),
        };
        let slot = &mut self.slots[i];
        let (message, applied) = match slot.act.check(&decoded, now, wall, self.estop) {
            Verdict::Reject(e) => return reject(out, actuator, decoded.id, Rejection::Unsafe(e)),
            Verdict::Apply { message, applied } => (message, applied),
        };
        let write = match render(&slot.act.spec.render, &message) {
            Ok(w) => w,
            Err(e) => return reject(out, actuator, decoded.id, Rejection::Unwritable(e)),
        };
        let device = slot.device;
        let id = self.new_id();
        self.pending.insert(
            id,
            Pending::Command {
                actuator: i,
                ack_id: decoded.id,
                applied: nest(&applied),
                at: now,
            },
        );
        // The ack waits for the device's answer, so `ok: true` means the bytes went out.
        out.push(Action::Write(Write {
            id,
            actuator: i,
            device,
            purpose: Purpose::Command,
            write,
            confirm_by: now + CONFIRM_TIMEOUT,
        }));
    }

    fn estop_command(&mut self, payload: &Payload, now: Instant, out: &mut Vec<Action>) {
        let Some(engage) = payload.estop() else {
            reject(out, ESTOP.into(), payload.id(), Rejection::BadEstop);
            return;
        };
        if engage {
            tracing::warn!("e-stop engaged");
        } else {
            tracing::warn!("e-stop released");
        }
        self.estop = engage;
        out.push(Action::PersistEstop(engage));
        if engage {
            for i in 0..self.slots.len() {
                self.write_safe(i, SafeReason::Estop, now, out);
            }
        }
        let applied = rmpv::Value::Map(vec![(
            rmpv::Value::from("engage"),
            rmpv::Value::from(engage),
        )]);
        out.push(Action::Ack(Ack {
            actuator: ESTOP.into(),
            id: payload.id(),
            result: Ok(applied),
        }));
    }

    fn broker_link(&mut self, up: bool, now: Instant) {
        if up {
            self.broker_down_since = None;
        } else if self.broker_down_since.is_none() {
            self.broker_down_since = Some(now);
        }
        for s in &mut self.slots {
            s.safed_for_outage = false;
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        for i in 0..self.slots.len() {
            if self.slots[i].act.deadman_due(now) {
                self.write_safe(i, SafeReason::Deadman, now, out);
            }
            if self.slots[i].safe_retry_at.is_some_and(|t| now >= t) {
                self.write_safe(i, SafeReason::Retry, now, out);
            }
            if let Some(t) = self.broker_down_since {
                let s = &mut self.slots[i];
                if !s.safed_for_outage && now >= t + s.act.broker_grace() {
                    s.safed_for_outage = true;
                    self.write_safe(i, SafeReason::BrokerLost, now, out);
                }
            }
        }
    }

    fn new_id(&mut self) -> WriteId {
        self.next_id += 1;
        WriteId(self.next_id)
    }

    /// Writes the safe values of one actuator; they take the place of any write before
    /// them, and are written again until the device confirms them (see
    /// [`Supervisor::safe_answered`]).
    fn write_safe(&mut self, i: usize, reason: SafeReason, now: Instant, out: &mut Vec<Action>) {
        let id = self.new_id();
        let confirm_by = match self.shutdown_by {
            Some(by) if reason.is_shutdown() => by,
            _ => now + CONFIRM_TIMEOUT,
        };
        let slot = &mut self.slots[i];
        slot.latest = Some(id);
        slot.safe_retry_at = None;
        slot.act.disarm();
        match render_safe(&slot.act.spec.render, &slot.act.safe_message()) {
            Ok(write) => {
                out.push(Action::Write(Write {
                    id,
                    actuator: i,
                    device: slot.device,
                    purpose: Purpose::Safe(reason),
                    write,
                    confirm_by,
                }));
                self.pending.insert(
                    id,
                    Pending::Safe {
                        actuator: i,
                        reason,
                    },
                );
            }
            Err(e) => self.safe_answered(i, id, reason, Err(SafeWriteError::Render(e)), now, out),
        }
    }

    fn queued(&mut self, id: WriteId) {
        match self.pending.get(&id) {
            Some(Pending::Command { actuator, at, .. }) => {
                let s = &mut self.slots[*actuator];
                s.act.accepted(*at);
                // The command takes the place of any safe write still being retried.
                s.latest = Some(id);
                s.safe_retry_at = None;
                s.safe_backoff.reset();
            }
            Some(Pending::Safe { actuator, reason }) => {
                let s = &self.slots[*actuator];
                let (actuator, device) = (&s.act.spec.actuator, &s.device_name);
                if s.safe_backoff.attempts() == 0 {
                    tracing::info!(%actuator, %device, "writing the safe values ({reason})");
                } else {
                    tracing::debug!(%actuator, %device, "writing the safe values again ({reason})");
                }
            }
            None => {}
        }
    }

    fn not_queued(&mut self, id: WriteId, now: Instant, out: &mut Vec<Action>) {
        match self.pending.remove(&id) {
            Some(Pending::Command {
                actuator, ack_id, ..
            }) => {
                let name = self.slots[actuator].act.spec.actuator.clone();
                reject(out, name, ack_id, Rejection::DeviceBusy);
            }
            Some(Pending::Safe { actuator, reason }) => {
                self.safe_answered(actuator, id, reason, Err(SafeWriteError::Queue), now, out)
            }
            None => {}
        }
    }

    fn done(&mut self, id: WriteId, outcome: Outcome, now: Instant, out: &mut Vec<Action>) {
        match self.pending.remove(&id) {
            Some(Pending::Command {
                actuator,
                ack_id,
                applied,
                ..
            }) => {
                let name = self.slots[actuator].act.spec.actuator.clone();
                let result = match outcome {
                    Outcome::Written => Ok(applied),
                    Outcome::Failed(e) => Err(Rejection::Write(e)),
                    Outcome::DeviceStopped | Outcome::TimedOut => Err(Rejection::NotConfirmed),
                };
                if let Err(e) = &result {
                    tracing::warn!(actuator = %name, "command not written: {e}");
                }
                out.push(Action::Ack(Ack {
                    actuator: name,
                    id: ack_id,
                    result,
                }));
            }
            Some(Pending::Safe { actuator, reason }) => {
                let result = match outcome {
                    Outcome::Written => Ok(()),
                    Outcome::Failed(e) => Err(SafeWriteError::Write(e)),
                    Outcome::DeviceStopped if reason.is_shutdown() => Err(SafeWriteError::Stopped),
                    Outcome::DeviceStopped | Outcome::TimedOut => Err(SafeWriteError::NotConfirmed),
                };
                self.safe_answered(actuator, id, reason, result, now, out);
            }
            None => {}
        }
    }

    /// A device answered a safe write (or it could not be handed over). A failure is
    /// retried with backoff, unless the device is away: its reconnection writes the safe
    /// values first anyway. At shutdown a failure gets one more try within the time left.
    fn safe_answered(
        &mut self,
        i: usize,
        id: WriteId,
        reason: SafeReason,
        result: Result<(), SafeWriteError>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let s = &mut self.slots[i];
        if s.latest != Some(id) {
            return;
        }
        let away = result == Err(SafeWriteError::Write(WriteError::Disconnected));
        if reason.is_shutdown() {
            let Err(e) = result else { return };
            let time_left = self.shutdown_by.is_some_and(|by| now < by);
            if reason == SafeReason::Shutdown && !away && time_left {
                self.write_safe(i, SafeReason::ShutdownAgain, now, out);
            } else {
                tracing::error!(actuator = %s.act.spec.actuator, "safe values not written at shutdown: {e}");
            }
            return;
        }
        match result {
            Ok(()) => s.safe_backoff.reset(),
            Err(_) if away => s.safe_backoff.reset(),
            Err(e) => {
                if s.safe_backoff.attempts() == 0 {
                    tracing::warn!(actuator = %s.act.spec.actuator, device = %s.device_name, "safe values not written: {e}; retrying until they are");
                }
                s.safe_retry_at = Some(now + s.safe_backoff.next_delay());
            }
        }
    }
}

/// Acks a command that is not carried out.
fn reject(out: &mut Vec<Action>, actuator: String, id: rmpv::Value, why: Rejection) {
    tracing::info!(%actuator, "command rejected: {why}");
    out.push(Action::Ack(Ack {
        actuator,
        id,
        result: Err(why),
    }));
}

#[cfg(test)]
mod tests;
