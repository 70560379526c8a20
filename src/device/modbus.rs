//! The Modbus driver: one task per bus (RTU port or TCP connection), so requests on a bus
//! are serialized and never interleaved. Streams are polled at `poll_hz` through the
//! planner's merged requests; commands' register writes go first. Each unit has its own
//! health: one that stops answering is marked disconnected and retried with backoff while
//! the others keep being polled.

use super::runner::{Driver, Ended, OpenError, Written};
use super::schedule::{first_due, Slot};
use super::{DeviceWrite, WriteError};
use crate::backoff::Backoff;
use crate::diagnostics::DeviceDiag;
use crate::messages::Time;
use crate::protocols::modbus::Modbus;
use crate::protocols::modbus::{plan, Answer, ReadRequest, RegisterKind, SampleMap, WriteOp};
use crate::protocols::Output;
use crate::spec::TransportSpec;
use crate::transport;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;
use tokio_modbus::{Request, Response};

#[cfg(test)]
mod fuzz;

/// Consecutive failures after which a unit counts as gone.
const UNIT_DOWN_AFTER: u32 = 3;

/// How one request ended, kept apart because they mean different things to an operator:
/// the device said no, the device did not answer, or the link itself failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A Modbus exception: the unit answered and refused (e.g. illegal data address).
    Exception(String),
    /// No answer within the timeout.
    Timeout,
    /// A garbled or mismatched answer.
    Link(String),
    /// The port itself failed (unplugged adapter, closed connection).
    Io(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exception(e) => write!(f, "exception: the unit refused: {e}"),
            Failure::Timeout => f.write_str("timeout: no answer"),
            Failure::Link(e) => write!(f, "link failure: {e}"),
            Failure::Io(e) => write!(f, "link failure: port: {e}"),
        }
    }
}

impl Failure {
    /// The failure as the ack of a write to `unit` reports it.
    fn for_write(&self, text: String) -> WriteError {
        match self {
            Failure::Exception(_) => WriteError::DeviceRefused(text),
            Failure::Timeout => WriteError::TimedOut(text),
            Failure::Link(_) | Failure::Io(_) => WriteError::LinkFailed(text),
        }
    }
}

struct Poll {
    stream: usize,
    slot: Slot,
    plan: Vec<ReadRequest>,
    map: SampleMap,
}

struct Unit {
    diag: Arc<DeviceDiag>,
    failures: u32,
    retry_at: Option<Instant>,
    backoff: Backoff,
}

pub struct ModbusDriver {
    name: String,
    transport: TransportSpec,
    timeout: Duration,
    polls: Vec<Poll>,
    /// The port's counters (the runner shares them); each unit has its own.
    diag: Arc<DeviceDiag>,
    units: BTreeMap<u8, Unit>,
}

/// Maps a tokio-modbus result onto our three kinds of failure.
fn classify<T>(
    r: Result<tokio_modbus::Result<T>, tokio::time::error::Elapsed>,
) -> Result<T, Failure> {
    match r {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(tokio_modbus::Error::Transport(e))) => Err(Failure::Io(e.to_string())),
        Ok(Err(e)) => Err(Failure::Link(e.to_string())),
        Ok(Ok(Err(code))) => Err(Failure::Exception(format!("{code}"))),
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

/// One read on the bus, answered within `timeout` with exactly what was asked.
pub async fn read(
    ctx: &mut Context,
    req: &ReadRequest,
    timeout: Duration,
) -> Result<Answer, Failure> {
    ctx.set_slave(Slave(req.unit));
    let (a, n) = (req.address, req.count);
    let request = match req.kind {
        RegisterKind::Holding => Request::ReadHoldingRegisters(a, n),
        RegisterKind::Input => Request::ReadInputRegisters(a, n),
        RegisterKind::Coil => Request::ReadCoils(a, n),
        RegisterKind::Discrete => Request::ReadDiscreteInputs(a, n),
    };
    // `Client::call`, not the `Reader` methods: those only `debug_assert` the answer's
    // size (a panic in a debug build, a short answer in a release build).
    let r = tokio::time::timeout(timeout, ctx.call(request)).await;
    answer(req, classify(r)?)
}

/// One write on the bus, confirmed within `timeout` by the unit's exact echo.
pub async fn write(ctx: &mut Context, op: &WriteOp, timeout: Duration) -> Result<(), Failure> {
    let (unit, request) = match op {
        WriteOp::Coil {
            unit,
            address,
            value,
        } => (*unit, Request::WriteSingleCoil(*address, *value)),
        WriteOp::Registers {
            unit,
            address,
            words,
        } if words.len() == 1 => (*unit, Request::WriteSingleRegister(*address, words[0])),
        WriteOp::Registers {
            unit,
            address,
            words,
        } => (
            *unit,
            Request::WriteMultipleRegisters(*address, Cow::Borrowed(words)),
        ),
    };
    ctx.set_slave(Slave(unit));
    let r = tokio::time::timeout(timeout, ctx.call(request)).await;
    confirm(op, classify(r)?)
}

/// A read's answer, checked against the request: tokio-modbus reads any count the unit
/// sends, and an answer with fewer registers than asked would leave the stream without a
/// sample and without a counted error.
pub fn answer(req: &ReadRequest, response: Response) -> Result<Answer, Failure> {
    let n = req.count as usize;
    let wrong = |got: usize, what: &str| {
        Err(Failure::Link(format!(
            "asked for {n} {what} at {}, the answer has {got}",
            req.address
        )))
    };
    match (req.kind, response) {
        (RegisterKind::Holding, Response::ReadHoldingRegisters(words))
        | (RegisterKind::Input, Response::ReadInputRegisters(words)) => {
            if words.len() == n {
                Ok(Answer::Words(words))
            } else {
                wrong(words.len(), "registers")
            }
        }
        (RegisterKind::Coil, Response::ReadCoils(mut bits))
        | (RegisterKind::Discrete, Response::ReadDiscreteInputs(mut bits)) => {
            // Bits come packed in whole bytes, so the answer holds the count rounded up to 8.
            if bits.len() == n.div_ceil(8) * 8 {
                bits.truncate(n);
                Ok(Answer::Bits(bits))
            } else {
                wrong(bits.len(), "coils")
            }
        }
        (_, other) => Err(Failure::Link(format!(
            "answer of another function: {:?}",
            other.function_code()
        ))),
    }
}

/// A write's echo, checked against the write: a unit confirms a write by repeating its
/// address and value (or count), so another echo means it did something else.
pub fn confirm(op: &WriteOp, response: Response) -> Result<(), Failure> {
    let exact = match (op, &response) {
        (WriteOp::Coil { address, value, .. }, Response::WriteSingleCoil(a, v)) => {
            a == address && v == value
        }
        (WriteOp::Registers { address, words, .. }, Response::WriteSingleRegister(a, w)) => {
            words.len() == 1 && a == address && *w == words[0]
        }
        (WriteOp::Registers { address, words, .. }, Response::WriteMultipleRegisters(a, n)) => {
            words.len() > 1 && a == address && *n as usize == words.len()
        }
        _ => false,
    };
    if exact {
        Ok(())
    } else {
        Err(Failure::Link(format!(
            "the unit's echo {response:?} does not match the write {op:?}"
        )))
    }
}

impl ModbusDriver {
    /// Builds the driver; `diag` is the port's entry, `unit_diag` makes each unit's.
    pub fn new(
        name: &str,
        bus: &Modbus,
        diag: Arc<DeviceDiag>,
        mut unit_diag: impl FnMut(u8) -> Arc<DeviceDiag>,
    ) -> ModbusDriver {
        let mut polls = Vec::new();
        let mut unit_ids = Vec::new();
        for (i, s) in bus.streams.iter().enumerate() {
            let poll = &s.select;
            unit_ids.extend(poll.registers.iter().map(|r| r.unit));
            polls.push(Poll {
                stream: i,
                slot: Slot::new(poll.interval),
                plan: plan(&poll.registers),
                map: SampleMap {
                    msg_type: s.spec.msg_type,
                    registers: poll.registers.clone(),
                    fields: poll.fields.clone(),
                },
            });
        }
        for c in &bus.commands {
            unit_ids.extend(c.render.iter().map(|w| w.unit));
        }
        unit_ids.sort_unstable();
        unit_ids.dedup();
        let units = unit_ids
            .into_iter()
            .map(|u| {
                (
                    u,
                    Unit {
                        diag: unit_diag(u),
                        failures: 0,
                        retry_at: None,
                        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(5)),
                    },
                )
            })
            .collect();
        ModbusDriver {
            name: name.to_string(),
            transport: bus.transport.clone(),
            timeout: bus.timeout,
            polls,
            diag,
            units,
        }
    }

    async fn call(&self, ctx: &mut Context, req: &ReadRequest) -> Result<Answer, Failure> {
        read(ctx, req, self.timeout).await
    }

    async fn write_op(&self, ctx: &mut Context, op: &WriteOp) -> Result<(), Failure> {
        write(ctx, op, self.timeout).await
    }

    /// Books a request's outcome against its unit, and says whether the port must be
    /// reopened: after a timeout or a garbled answer a late reply could otherwise be taken
    /// for the answer to the next request (quiet resync); after an I/O error the port is gone.
    fn record(&mut self, unit: u8, result: &Result<(), Failure>) -> Option<Ended> {
        let name = self.name.clone();
        if let Err(Failure::Io(e)) = result {
            // The runner counts the disconnect, with this reason.
            return Some(Ended::Lost(format!("unit {unit}: link failure: port: {e}")));
        }
        let u = self.units.get_mut(&unit)?;
        match result {
            Ok(()) => {
                self.diag.frame();
                u.diag.frame();
                u.failures = 0;
                u.retry_at = None;
                u.backoff.reset();
                if u.diag.set_connected(true) {
                    tracing::info!(device = %name, unit, "Modbus unit answering");
                }
                None
            }
            Err(f) => {
                u.diag.error(f.to_string());
                self.diag.error(format!("unit {unit}: {f}"));
                if let Failure::Exception(_) = f {
                    // The unit is alive; it refused this request.
                    u.failures = 0;
                    u.diag.set_connected(true);
                    return None;
                }
                u.failures += 1;
                if u.failures >= UNIT_DOWN_AFTER {
                    if u.diag.set_connected(false) {
                        tracing::warn!(device = %name, unit, "Modbus unit stopped answering: {f}; retrying with backoff");
                    }
                    u.retry_at = Some(Instant::now() + u.backoff.next_delay());
                }
                Some(Ended::Resync(format!("unit {unit}: {f}")))
            }
        }
    }

    fn unit_resting(&self, unit: u8, now: Instant) -> bool {
        self.units
            .get(&unit)
            .and_then(|u| u.retry_at)
            .is_some_and(|t| now < t)
    }

    /// Polls stream `p` once; returns how the connection must end, if it must.
    async fn poll(&mut self, ctx: &mut Context, p: usize, out: &mut Vec<Output>) -> Option<Ended> {
        let stamp = Time::now();
        let plan = self.polls[p].plan.clone();
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(plan.len());
        let mut reopen = None;
        for req in &plan {
            if reopen.is_some() || self.unit_resting(req.unit, Instant::now()) {
                answers.push(None);
                continue;
            }
            let r = self.call(ctx, req).await;
            let (ok, answer) = match r {
                Ok(a) => (Ok(()), Some(a)),
                Err(f) => (Err(f), None),
            };
            if let Some(end) = self.record(req.unit, &ok) {
                reopen = Some(end);
            }
            answers.push(answer);
        }
        let poll = &self.polls[p];
        match poll.map.assemble(&plan, &answers) {
            Ok(Some(message)) => out.push(Output::Sample {
                stream: poll.stream,
                stamp,
                message,
            }),
            Ok(None) => {}
            Err(errors) => {
                for e in errors {
                    self.diag.error(e);
                }
            }
        }
        reopen
    }
}

impl Driver for ModbusDriver {
    type Conn = Context;
    type Event = ();
    const KIND: &'static str = "Modbus port";
    const RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

    fn describe(&self) -> String {
        self.transport.describe()
    }

    async fn open(&mut self) -> Result<Context, OpenError> {
        let io = transport::open(&self.transport).await?;
        let now = Instant::now();
        for p in &mut self.polls {
            p.slot.restart(now);
        }
        Ok(match self.transport {
            TransportSpec::Tcp(_) => tokio_modbus::client::tcp::attach(io),
            TransportSpec::Serial(_) => tokio_modbus::client::rtu::attach(io),
        })
    }

    /// A poll is due.
    async fn next_event(&mut self, _ctx: &mut Context) -> Result<(), Ended> {
        first_due(self.polls.iter().map(|p| p.slot)).await;
        Ok(())
    }

    async fn on_event(
        &mut self,
        ctx: &mut Context,
        (): (),
        out: &mut Vec<Output>,
    ) -> Result<(), Ended> {
        let now = Instant::now();
        for p in 0..self.polls.len() {
            if !self.polls[p].slot.is_due(now) {
                continue;
            }
            if let Some(end) = self.poll(ctx, p, out).await {
                return Err(end);
            }
            self.polls[p].slot.done(Instant::now(), &self.diag);
        }
        Ok(())
    }

    async fn write(&mut self, ctx: &mut Context, write: &DeviceWrite) -> Written {
        let DeviceWrite::Modbus(ops) = write else {
            return Written::kept(Err(WriteError::Unwritable(
                "this device takes Modbus register writes".into(),
            )));
        };
        let unit_of = |op: &WriteOp| match op {
            WriteOp::Coil { unit, .. } | WriteOp::Registers { unit, .. } => *unit,
        };
        // Units that are failing go last, keeping the configured order otherwise: a dead
        // drive on the bus must not keep a live one from its safe value, since a failed
        // write ends the attempt (the port is resynced before the next request).
        let mut order: Vec<&WriteOp> = ops.iter().collect();
        order.sort_by_key(|op| self.units.get(&unit_of(op)).is_some_and(|u| u.failures > 0));
        let mut result = Ok(());
        let mut ended = None;
        for (k, op) in order.iter().enumerate() {
            let unit = unit_of(op);
            let r = self.write_op(ctx, op).await;
            if let Some(end) = self.record(unit, &r) {
                ended = Some(end);
            }
            if let Err(f) = r {
                let text = if k == 0 {
                    format!("unit {unit}: {f}")
                } else {
                    format!(
                        "unit {unit}: {f} (after {k} of {} writes went out)",
                        ops.len()
                    )
                };
                result = Err(f.for_write(text));
                break;
            }
        }
        Written { result, ended }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(kind: RegisterKind, count: u16) -> ReadRequest {
        ReadRequest {
            unit: 1,
            kind,
            address: 7,
            count,
            members: Vec::new(),
        }
    }

    /// Found by fuzzing: a unit answering three registers to a read of two panicked a debug
    /// build inside tokio-modbus (a `debug_assert`), and in a release build a short answer
    /// left the stream without a sample and without a counted error.
    #[test]
    fn an_answer_of_another_size_is_a_link_failure() {
        let holding = read(RegisterKind::Holding, 2);
        assert_eq!(
            answer(&holding, Response::ReadHoldingRegisters(vec![1, 2])),
            Ok(Answer::Words(vec![1, 2]))
        );
        assert_eq!(
            answer(&holding, Response::ReadHoldingRegisters(vec![1, 2, 3]))
                .unwrap_err()
                .to_string(),
            "link failure: asked for 2 registers at 7, the answer has 3"
        );
        assert!(answer(&holding, Response::ReadHoldingRegisters(vec![1])).is_err());
        assert!(answer(&holding, Response::ReadInputRegisters(vec![1, 2])).is_err());
        // Ten coils come in two bytes: sixteen bits, of which the first ten count.
        let coils = read(RegisterKind::Coil, 10);
        let bits = |n: usize| (0..n).map(|i| i % 3 == 0).collect::<Vec<bool>>();
        assert_eq!(
            answer(&coils, Response::ReadCoils(bits(16))),
            Ok(Answer::Bits(bits(10)))
        );
        assert!(answer(&coils, Response::ReadCoils(bits(8))).is_err());
        assert!(answer(&coils, Response::ReadCoils(bits(24))).is_err());
    }

    /// Found by fuzzing, as above: a write echo that differs was only `debug_assert`ed.
    #[test]
    fn a_write_is_confirmed_only_by_its_exact_echo() {
        let coil = WriteOp::Coil {
            unit: 1,
            address: 3,
            value: true,
        };
        assert_eq!(confirm(&coil, Response::WriteSingleCoil(3, true)), Ok(()));
        assert!(confirm(&coil, Response::WriteSingleCoil(3, false)).is_err());
        assert!(confirm(&coil, Response::WriteSingleCoil(4, true)).is_err());
        let words = WriteOp::Registers {
            unit: 1,
            address: 10,
            words: vec![5, 6],
        };
        assert_eq!(
            confirm(&words, Response::WriteMultipleRegisters(10, 2)),
            Ok(())
        );
        assert!(confirm(&words, Response::WriteMultipleRegisters(10, 1)).is_err());
        assert!(confirm(&words, Response::WriteSingleRegister(10, 5)).is_err());
    }
}
