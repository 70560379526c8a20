//! What goes into the safety [`Supervisor`](super::Supervisor) and what comes out: the
//! [`Event`]s the command path feeds it, the [`Action`]s it returns, and the ack texts of
//! [`Rejection`]. Plain data, so the shell and the tests speak the same vocabulary.

use super::decode::{DecodeError, Payload};
use super::render::RenderError;
use crate::config::CommandSpec;
use crate::device::{DeviceWrite, WriteError};
use crate::messages::Time;
use std::fmt;
use thiserror::Error;
use tokio::time::Instant;

/// The command topic's last level that is the e-stop, not an actuator.
pub const ESTOP: &str = "estop";

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
    #[error(transparent)]
    Invalid(DecodeError),
    /// The safety checks refused it (limits, e-stop, rate, age).
    #[error("{0}")]
    Unsafe(String),
    /// Its values cannot be written to this device (out of a register's range, say).
    #[error(transparent)]
    Unwritable(RenderError),
    #[error("device busy: its write queue is full")]
    DeviceBusy,
    #[error("device did not confirm the write")]
    NotConfirmed,
    /// The device driver could not write it.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// An actuator and the device that carries its writes.
#[derive(Debug, Clone)]
pub struct Route {
    pub spec: CommandSpec,
    /// The device's index, as [`Action::Write`] and [`Event::DeviceConnected`] name it.
    pub device: usize,
    pub device_name: String,
}

/// Names one write, so its answer finds it and a late answer to a superseded one is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteId(pub(super) u64);

/// Why safe values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeReason {
    Estop,
    Deadman,
    /// The last safe write was not confirmed.
    Retry,
    BrokerLost,
    /// The device (re)connected and may hold a command from before it went away.
    DeviceConnected,
    Shutdown,
    /// Shutdown's one more try after a refusal.
    ShutdownAgain,
}

impl SafeReason {
    pub(super) fn is_shutdown(self) -> bool {
        matches!(self, SafeReason::Shutdown | SafeReason::ShutdownAgain)
    }
}

impl fmt::Display for SafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SafeReason::Estop => "e-stop",
            SafeReason::Deadman => "deadman: no command within timeout_ms",
            SafeReason::Retry => "the last safe write failed",
            SafeReason::BrokerLost => "broker connection lost",
            SafeReason::DeviceConnected => "device connected",
            SafeReason::Shutdown => "shutdown",
            SafeReason::ShutdownAgain => "shutdown, again",
        })
    }
}

/// What a write is for; safe values go on the device's own queue, ahead of commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Command,
    Safe(SafeReason),
}

impl Purpose {
    pub fn is_safe(self) -> bool {
        matches!(self, Purpose::Safe(_))
    }
}

/// A command that arrived on `robot/<id>/cmd/<actuator>`.
#[derive(Debug, Clone)]
pub struct Command {
    /// The topic's last level: an actuator's name, or [`ESTOP`].
    pub actuator: String,
    pub payload: Payload,
    /// Set when the broker delivered a retained copy.
    pub retain: bool,
    /// The UTC clock when it arrived, for the `max_age_ms` check.
    pub wall: Time,
}

/// How a device answered a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Written,
    Failed(WriteError),
    /// The driver dropped the write unanswered: it stopped.
    DeviceStopped,
    /// No answer by the write's `confirm_by`.
    TimedOut,
}

/// What happens to the supervisor.
#[derive(Debug, Clone)]
pub enum Event {
    Command(Command),
    /// A command the bus skipped unread: `size` bytes, over its limit.
    Oversized {
        actuator: String,
        size: usize,
    },
    /// The broker connection went up (`true`) or down.
    BrokerLink(bool),
    /// The device of this index (re)connected.
    DeviceConnected(usize),
    /// The device's queue took the write of [`Action::Write`].
    Queued(WriteId),
    /// The device's queue was full or closed: the write is not going out.
    NotQueued(WriteId),
    /// The device answered a queued write (or did not, in time).
    Done {
        id: WriteId,
        outcome: Outcome,
    },
    /// [`Supervisor::next_wake`](super::Supervisor::next_wake) has come.
    Tick,
    /// Put every actuator in its safe state and stop; see
    /// [`Supervisor::is_shut_down`](super::Supervisor::is_shut_down).
    Shutdown,
}

/// A write for the command path to hand to a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub id: WriteId,
    /// The actuator's index, in the order of the routes given to
    /// [`Supervisor::new`](super::Supervisor::new).
    pub actuator: usize,
    pub device: usize,
    pub purpose: Purpose,
    pub write: DeviceWrite,
    /// When to stop waiting for the device's answer and report [`Outcome::TimedOut`]. A
    /// command not yet written by then is dropped unwritten, so its ack stays true.
    pub confirm_by: Instant,
}

/// An ack for `robot/<id>/ack/<actuator>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub actuator: String,
    /// The command's `id`, echoed.
    pub id: rmpv::Value,
    /// The values written, or why nothing was.
    pub result: Result<rmpv::Value, Rejection>,
}

/// What the command path is to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Queue the write at once and answer [`Event::Queued`] or [`Event::NotQueued`]; once
    /// queued, answer [`Event::Done`] when the device answers or `confirm_by` passes.
    Write(Write),
    Ack(Ack),
    /// Record the e-stop state where the next run finds it: a restart must not release it.
    PersistEstop(bool),
}
