//! The Modbus driver: one task per bus (RTU port or TCP connection), so requests on a bus
//! are serialized and never interleaved. Streams are polled at `poll_hz` through the
//! planner's merged requests; commands' register writes go first. Each unit has its own
//! health: one that stops answering is marked disconnected and retried with backoff while
//! the others keep being polled.

use super::{refuse, DeviceWrite, WriteRequest};
use crate::backoff::Backoff;
use crate::bus::BusHandle;
use crate::config::{Device, ProtocolSpec, StreamSelect, TransportSpec};
use crate::diagnostics::DeviceDiag;
use crate::messages::{Message, MessageType, Time};
use crate::protocols::modbus::{
    decode, plan, Answer, ReadRequest, Register, RegisterKind, WriteOp,
};
use crate::stream::StreamPublisher;
use crate::transport;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

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

struct Poll {
    stream: usize,
    interval: Duration,
    next: Instant,
    plan: Vec<ReadRequest>,
    registers: Vec<Register>,
    fields: Vec<(String, String)>,
    msg_type: MessageType,
    frame_id: String,
}

struct Unit {
    diag: Arc<DeviceDiag>,
    failures: u32,
    retry_at: Option<Instant>,
    backoff: Backoff,
}

pub struct ModbusTask {
    device: Device,
    timeout: Duration,
    polls: Vec<Poll>,
    streams: Vec<StreamPublisher>,
    diag: Arc<DeviceDiag>,
    units: BTreeMap<u8, Unit>,
    bus: BusHandle,
    writes: super::Writes,
    link: watch::Sender<bool>,
}

enum Ended {
    /// The port failed; the device is disconnected until it reopens.
    Lost(String),
    /// The port is fine but its input may hold a late answer: reopen it quietly, so the
    /// other units (and their actuators) do not see a disconnect.
    Resync(String),
    Shutdown,
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

impl ModbusTask {
    /// Builds the driver; `unit_diag` makes the diagnostics entry of each unit.
    pub fn new(
        device: Device,
        streams: Vec<StreamPublisher>,
        diag: Arc<DeviceDiag>,
        mut unit_diag: impl FnMut(u8) -> Arc<DeviceDiag>,
        bus: BusHandle,
        writes: super::Writes,
        link: watch::Sender<bool>,
    ) -> ModbusTask {
        let timeout = match device.protocol {
            ProtocolSpec::Modbus { timeout } => timeout,
            _ => Duration::from_millis(200),
        };
        let now = Instant::now();
        let mut polls = Vec::new();
        let mut unit_ids = Vec::new();
        for (i, s) in device.streams.iter().enumerate() {
            if let StreamSelect::Modbus {
                poll_interval,
                registers,
                fields,
            } = &s.select
            {
                unit_ids.extend(registers.iter().map(|r| r.unit));
                polls.push(Poll {
                    stream: i,
                    interval: *poll_interval,
                    next: now,
                    plan: plan(registers),
                    registers: registers.clone(),
                    fields: fields.clone(),
                    msg_type: s.msg_type,
                    frame_id: s.frame_id.clone(),
                });
            }
        }
        for c in &device.commands {
            if let crate::config::CommandRender::Modbus(ws) = &c.render {
                unit_ids.extend(ws.iter().map(|w| w.unit));
            }
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
        ModbusTask {
            device,
            timeout,
            polls,
            streams,
            diag,
            units,
            bus,
            writes,
            link,
        }
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        // True while reopening only to drop stale input: the port stays "connected".
        let mut resyncing = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match transport::open(&self.device.transport).await {
                Err(e) => {
                    if resyncing {
                        resyncing = false;
                        self.port_down();
                    }
                    if backoff.attempts() == 0 {
                        tracing::warn!(device = %self.device.name, "Modbus port unavailable: {e}; retrying");
                        self.diag.error(format!("unavailable: {e}"));
                    }
                    let wake = Instant::now() + backoff.next_delay();
                    if !super::wait_to_retry(wake, &mut shutdown, &mut self.writes).await {
                        return;
                    }
                }
                Ok(io) => {
                    backoff.reset();
                    let ctx = match self.device.transport {
                        TransportSpec::Tcp(_) => tokio_modbus::client::tcp::attach(io),
                        _ => tokio_modbus::client::rtu::attach(io),
                    };
                    if !resyncing {
                        if self.diag.set_connected(true) {
                            tracing::info!(device = %self.device.name, path = %self.device.transport.describe(), "Modbus port open");
                        }
                        let _ = self.link.send(true);
                    }
                    resyncing = false;
                    match self.pump(ctx, &mut shutdown).await {
                        Ended::Shutdown => {
                            self.port_down();
                            return;
                        }
                        Ended::Resync(reason) => {
                            tracing::debug!(device = %self.device.name, "reopening the Modbus port to drop stale input: {reason}");
                            resyncing = true;
                        }
                        Ended::Lost(reason) => {
                            tracing::warn!(device = %self.device.name, "Modbus port lost: {reason}");
                            self.port_down();
                        }
                    }
                }
            }
        }
    }

    fn port_down(&mut self) {
        self.diag.set_connected(false);
        let _ = self.link.send(false);
    }

    async fn call(&self, ctx: &mut Context, req: &ReadRequest) -> Result<Answer, Failure> {
        ctx.set_slave(Slave(req.unit));
        let (a, n) = (req.address, req.count);
        let r = tokio::time::timeout(self.timeout, async {
            match req.kind {
                RegisterKind::Holding => ctx
                    .read_holding_registers(a, n)
                    .await
                    .map(|r| r.map(Answer::Words)),
                RegisterKind::Input => ctx
                    .read_input_registers(a, n)
                    .await
                    .map(|r| r.map(Answer::Words)),
                RegisterKind::Coil => ctx.read_coils(a, n).await.map(|r| r.map(Answer::Bits)),
                RegisterKind::Discrete => ctx
                    .read_discrete_inputs(a, n)
                    .await
                    .map(|r| r.map(Answer::Bits)),
            }
        })
        .await;
        classify(r)
    }

    async fn write_op(&self, ctx: &mut Context, op: &WriteOp) -> Result<(), Failure> {
        let unit = match op {
            WriteOp::Coil { unit, .. } | WriteOp::Registers { unit, .. } => *unit,
        };
        ctx.set_slave(Slave(unit));
        let r = tokio::time::timeout(self.timeout, async {
            match op {
                WriteOp::Coil { address, value, .. } => {
                    ctx.write_single_coil(*address, *value).await
                }
                WriteOp::Registers { address, words, .. } if words.len() == 1 => {
                    ctx.write_single_register(*address, words[0]).await
                }
                WriteOp::Registers { address, words, .. } => {
                    ctx.write_multiple_registers(*address, words).await
                }
            }
        })
        .await;
        classify(r)
    }

    /// Books a request's outcome against its unit, and says whether the port must be
    /// reopened: after a timeout or a garbled answer a late reply could otherwise be taken
    /// for the answer to the next request (quiet resync); after an I/O error the port is gone.
    fn record(&mut self, unit: u8, result: &Result<(), Failure>) -> Option<Ended> {
        let name = self.device.name.clone();
        if let Err(Failure::Io(e)) = result {
            self.diag
                .error(format!("unit {unit}: link failure: port: {e}"));
            return Some(Ended::Lost(e.clone()));
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
    async fn poll(&mut self, ctx: &mut Context, p: usize) -> Option<Ended> {
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
        // A sample needs every register it maps; a unit that did not answer leaves the
        // stream without a sample this round rather than with stale or default values.
        let mut values = BTreeMap::new();
        for (req, answer) in plan.iter().zip(&answers) {
            let Some(answer) = answer else { continue };
            for (i, at) in &req.members {
                let reg = &poll.registers[*i];
                if let Some(v) = decode(reg, answer, *at) {
                    values.insert(reg.name.as_str(), v);
                }
            }
        }
        if values.len() == poll.registers.len() {
            let mut msg = poll.msg_type.new_message();
            {
                let h = msg.header_mut();
                h.stamp = stamp;
                h.frame_id.clone_from(&poll.frame_id);
            }
            let mut good = true;
            if poll.fields.is_empty() {
                if let Message::Map(m) = &mut msg {
                    for r in &poll.registers {
                        m.insert(&r.name, values[r.name.as_str()].clone());
                    }
                }
            } else {
                for (path, name) in &poll.fields {
                    if let Err(e) = msg.set_path(path, &values[name.as_str()]) {
                        self.diag.error(format!("{path} = register {name}: {e}"));
                        good = false;
                    }
                }
            }
            if good {
                let stream = poll.stream;
                self.streams[stream].offer(msg, Instant::now(), &self.bus);
            }
        }
        reopen
    }

    async fn do_write(&mut self, ctx: &mut Context, req: WriteRequest) -> Option<Ended> {
        let DeviceWrite::Modbus(ops) = &req.write else {
            refuse(req, "this device takes Modbus register writes");
            return None;
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
        let mut reopen = None;
        for (k, op) in order.iter().enumerate() {
            let unit = unit_of(op);
            let r = self.write_op(ctx, op).await;
            if let Some(end) = self.record(unit, &r) {
                reopen = Some(end);
            }
            if let Err(f) = r {
                result = Err(if k == 0 {
                    format!("unit {unit}: {f}")
                } else {
                    format!(
                        "unit {unit}: {f} (after {k} of {} writes went out)",
                        ops.len()
                    )
                });
                break;
            }
        }
        if let Some(done) = req.done {
            let _ = done.send(result);
        }
        reopen
    }

    async fn pump(&mut self, mut ctx: Context, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let now = Instant::now();
        for p in &mut self.polls {
            p.next = now;
        }
        loop {
            // Commands go before polls (see `biased` below): a setpoint should not wait
            // behind a register sweep.
            let next_poll = self.polls.iter().map(|p| p.next).min();
            let next_flush = self.streams.iter().filter_map(|s| s.deadline()).min();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ended::Shutdown,
                req = self.writes.next() => match req {
                    Some(req) => if let Some(end) = self.do_write(&mut ctx, req).await {
                        return end;
                    },
                    None => return Ended::Shutdown,
                },
                _ = sleep_until(next_flush.unwrap_or(far)), if next_flush.is_some() => {
                    let now = Instant::now();
                    for s in &mut self.streams {
                        s.flush_due(now, &self.bus);
                    }
                }
                _ = sleep_until(next_poll.unwrap_or(far)), if next_poll.is_some() => {
                    let now = Instant::now();
                    for p in 0..self.polls.len() {
                        if self.polls[p].next > now {
                            continue;
                        }
                        if let Some(end) = self.poll(&mut ctx, p).await {
                            return end;
                        }
                        // A poll that overran its slot is counted and skipped, never queued.
                        let done = Instant::now();
                        let poll = &mut self.polls[p];
                        poll.next += poll.interval;
                        while poll.next <= done {
                            poll.next += poll.interval;
                            self.diag.missed();
                        }
                    }
                }
            }
        }
    }
}
