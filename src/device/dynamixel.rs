//! The Dynamixel driver: one task per bus, so instruction packets never interleave on the
//! half-duplex line. Streams are polled at `poll_hz` (a joint state is one Sync Read, a
//! map of control-table items one Bulk Read); goals go out as one Sync Write, after the
//! Operating Mode and Torque Enable they need. Each servo has its own health: one that
//! stops answering is marked disconnected and retried with backoff while the others keep
//! streaming, and one that raises its hardware-error alert refuses goals until cleared.

use super::runner::{Driver, Ended, OpenError, Written};
use super::schedule::{first_due, Slot};
use super::{DeviceWrite, WriteError};
use crate::backoff::Backoff;
use crate::diagnostics::DeviceDiag;
use crate::messages::{Header, JointState, MapMessage, Message, Scalar, Time};
use crate::protocols::dynamixel::instruction::{bulk_read, sync_read, sync_write, BulkRead};
use crate::protocols::dynamixel::{
    DxlPoll, DxlWrite, Dynamixel, DynamixelError, GoalMode, Item, JointPoll, Model, PollRead,
    SafeConfig, Status, StatusParser,
};
use crate::protocols::{Output, ProtocolError};
use crate::spec::TransportSpec;
use crate::transport::{self, BoxedStream};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Polls in a row a servo may miss before it counts as gone.
const SERVO_DOWN_AFTER: u32 = 3;

/// How long a write may wait for the port: a stalled serial server must not hold the bus
/// (and its safe writes) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Operating Mode values (e-Manual, X series item 11).
const MODE_VELOCITY: u8 = 1;
const MODE_POSITION: u8 = 3;

/// One stream's poll.
struct Poll {
    stream: usize,
    slot: Slot,
    joints: Vec<(String, u8)>,
    read: Reads,
}

enum Reads {
    JointState(JointPoll),
    /// Per id, one Bulk Read range covering the items.
    Items {
        items: Vec<Item>,
        start: u16,
        len: u16,
    },
}

/// A servo's health and what the driver knows of its state.
struct Servo {
    joint: String,
    diag: Arc<DeviceDiag>,
    misses: u32,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Set while its statuses carry the hardware-error alert.
    fault: bool,
    /// Torque Enable and Operating Mode as last written by us since the port opened.
    torque: Option<bool>,
    mode: Option<u8>,
}

pub struct DynamixelDriver {
    name: String,
    transport: TransportSpec,
    model: Model,
    timeout: Duration,
    polls: Vec<Poll>,
    diag: Arc<DeviceDiag>,
    servos: BTreeMap<u8, Servo>,
    parser: StatusParser,
    /// Input may hold a late answer: drain it before the next request.
    stale: bool,
}

impl DynamixelDriver {
    /// Builds the driver; `diag` is the bus's entry, `servo_diag` makes each joint's.
    pub fn new(
        name: &str,
        bus: &Dynamixel,
        diag: Arc<DeviceDiag>,
        mut servo_diag: impl FnMut(&str) -> Arc<DeviceDiag>,
    ) -> DynamixelDriver {
        let mut servos = BTreeMap::new();
        for j in bus.joints() {
            servos.entry(j.id).or_insert_with(|| Servo {
                joint: j.name.clone(),
                diag: servo_diag(&j.name),
                misses: 0,
                retry_at: None,
                backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(5)),
                fault: false,
                torque: None,
                mode: None,
            });
        }
        let mut polls = Vec::new();
        for (i, s) in bus.streams.iter().enumerate() {
            let DxlPoll {
                interval,
                joints,
                read,
            } = &s.select;
            let ids: Vec<u8> = joints.iter().map(|j| j.id).collect();
            let read = match read {
                // Validation built the same poll, so this cannot fail here.
                PollRead::JointState => match JointPoll::new(bus.model, &ids) {
                    Ok(p) => Reads::JointState(p),
                    Err(_) => continue,
                },
                PollRead::Items(items) => {
                    let start = items.iter().map(|i| i.address).min().unwrap_or(0);
                    let end = items
                        .iter()
                        .map(|i| i.address + i.size as u16)
                        .max()
                        .unwrap_or(0);
                    Reads::Items {
                        items: items.clone(),
                        start,
                        len: end - start,
                    }
                }
            };
            polls.push(Poll {
                stream: i,
                slot: Slot::new(*interval),
                joints: joints.iter().map(|j| (j.name.clone(), j.id)).collect(),
                read,
            });
        }
        DynamixelDriver {
            name: name.to_string(),
            transport: bus.transport.clone(),
            model: bus.model,
            timeout: bus.timeout,
            polls,
            diag,
            servos,
            parser: StatusParser::new(),
            stale: false,
        }
    }

    fn resting(&self, id: u8, now: Instant) -> bool {
        self.servos
            .get(&id)
            .and_then(|s| s.retry_at)
            .is_some_and(|t| now < t)
    }

    /// Sends `request` and collects the statuses of `expect` (in any order) until all
    /// came or the timeout passed. Corrupt packets are counted and skipped; the parser
    /// resyncs on the next header.
    async fn exchange(
        &mut self,
        io: &mut BoxedStream,
        request: &[u8],
        expect: &[u8],
        answer_len: u16,
    ) -> Result<BTreeMap<u8, Status>, Ended> {
        self.send(io, request).await?;
        let mut got = BTreeMap::new();
        if expect.is_empty() {
            return Ok(got);
        }
        // Each servo answers in turn, so the wait grows with their number and with the
        // time its answer takes on the wire.
        let deadline =
            Instant::now() + (self.timeout + self.on_wire(answer_len)) * expect.len() as u32;
        let mut buf = [0u8; 512];
        while got.len() < expect.len() {
            let Some(n) = read_until(io, &mut buf, deadline).await? else {
                break;
            };
            let mut errors = Vec::new();
            self.parser.push(&buf[..n], |r| match r {
                Ok(s) if expect.contains(&s.id) => {
                    got.entry(s.id).or_insert(s);
                }
                Ok(_) => {}
                Err(e) => errors.push(e),
            });
            for e in errors {
                self.diag.protocol_error(&ProtocolError::Dynamixel(e));
            }
        }
        if got.len() < expect.len() {
            self.stale = true;
        }
        Ok(got)
    }

    /// How long an answer of `len` data bytes takes on the serial line (11 bytes of
    /// header, id, length, instruction, error and CRC; 10 bits a byte); nothing over TCP.
    fn on_wire(&self, len: u16) -> Duration {
        match &self.transport {
            TransportSpec::Serial(s) if s.baud > 0 => {
                Duration::from_micros((len as u64 + 11) * 10 * 1_000_000 / s.baud as u64)
            }
            _ => Duration::ZERO,
        }
    }

    /// Writes a request. After a request that went unanswered, first reads and drops
    /// whatever arrives within one timeout: a late answer to the earlier request must not
    /// be taken for the answer to this one.
    async fn send(&mut self, io: &mut BoxedStream, bytes: &[u8]) -> Result<(), Ended> {
        if std::mem::take(&mut self.stale) {
            let until = Instant::now() + self.timeout;
            let mut buf = [0u8; 512];
            while read_until(io, &mut buf, until).await?.is_some() {}
            self.parser.reset();
        }
        match tokio::time::timeout(WRITE_TIMEOUT, io.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Ended::Lost(format!("write failed: {e}"))),
            Err(_) => Err(Ended::Lost(
                "write timed out (the port takes nothing)".into(),
            )),
        }
    }

    /// Books a servo's answer (or its silence): health, the alert, and the status error.
    fn record(&mut self, id: u8, status: Option<&Status>) -> bool {
        let name = self.name.clone();
        let Some(servo) = self.servos.get_mut(&id) else {
            return false;
        };
        let Some(status) = status else {
            servo.misses += 1;
            servo.diag.error(format!("id {id}: no answer"));
            self.diag.count("no_answer");
            if servo.misses >= SERVO_DOWN_AFTER {
                if servo.diag.set_connected(false) {
                    tracing::warn!(device = %name, joint = %servo.joint, id, "servo stopped answering; retrying with backoff");
                }
                servo.retry_at = Some(Instant::now() + servo.backoff.next_delay());
            }
            return false;
        };
        if servo.misses > 0 {
            // Silent for a while: it may have been power-cycled (torque off, mode as
            // stored), so what was written before is no longer known.
            servo.torque = None;
            servo.mode = None;
        }
        servo.misses = 0;
        servo.retry_at = None;
        servo.backoff.reset();
        servo.diag.frame();
        self.diag.frame();
        if servo.diag.set_connected(true) {
            tracing::info!(device = %name, joint = %servo.joint, id, "servo answering");
        }
        if status.error.alert != servo.fault {
            servo.fault = status.error.alert;
            if servo.fault {
                // The servo turns its own torque off on a hardware error.
                servo.torque = Some(false);
                let text = format!(
                    "joint {} (id {id}) reports a hardware error (alert); reboot it to clear",
                    servo.joint
                );
                tracing::warn!(device = %name, "{text}");
                servo.diag.error(text.clone());
                self.diag.count("hardware_errors");
                self.diag.error(text);
            } else {
                tracing::info!(device = %name, joint = %servo.joint, id, "hardware error cleared");
            }
        }
        if let Err(e) = status.check() {
            servo.diag.error(e.to_string());
            self.diag.error(e.to_string());
            return false;
        }
        true
    }

    /// Polls stream `p` once.
    async fn poll(
        &mut self,
        io: &mut BoxedStream,
        p: usize,
        out: &mut Vec<Output>,
    ) -> Result<(), Ended> {
        let now = Instant::now();
        let stamp = Time::now();
        let joints: Vec<(String, u8)> = self.polls[p]
            .joints
            .iter()
            .filter(|(_, id)| !self.resting(*id, now))
            .cloned()
            .collect();
        if joints.is_empty() {
            return Ok(());
        }
        let ids: Vec<u8> = joints.iter().map(|(_, id)| *id).collect();
        let (request, answer_len) = match &self.polls[p].read {
            Reads::JointState(poll) => {
                let (address, len) = poll.range();
                (sync_read(address, len, &ids), len)
            }
            Reads::Items { start, len, .. } => (
                bulk_read(
                    &ids.iter()
                        .map(|&id| BulkRead {
                            id,
                            address: *start,
                            length: *len,
                        })
                        .collect::<Vec<_>>(),
                ),
                *len,
            ),
        };
        let request = request.map_err(|e| Ended::Lost(e.to_string()))?;
        let got = self.exchange(io, &request, &ids, answer_len).await?;
        let mut answered = Vec::new();
        for (joint, id) in &joints {
            let status = got.get(id);
            if self.record(*id, status) {
                if let Some(s) = status {
                    answered.push((joint.clone(), s));
                }
            }
        }
        if answered.is_empty() {
            return Ok(());
        }
        let poll = &self.polls[p];
        let message = match &poll.read {
            Reads::JointState(jp) => {
                let mut m = JointState::default();
                for (joint, s) in answered {
                    match jp.decode_status(s) {
                        Ok(state) => {
                            m.name.push(joint);
                            m.position.push(state.position_rad);
                            m.velocity.push(state.velocity_rad_s);
                            m.effort.push(state.effort_a);
                        }
                        Err(e) => out.push(Output::Error(ProtocolError::Dynamixel(e))),
                    }
                }
                Message::JointState(m)
            }
            Reads::Items { items, start, len } => {
                let mut m = MapMessage {
                    header: Header::default(),
                    values: Vec::new(),
                };
                for (joint, s) in answered {
                    if s.params.len() != *len as usize {
                        out.push(Output::Error(ProtocolError::Dynamixel(
                            DynamixelError::WrongLength {
                                id: s.id,
                                want: *len as usize,
                                got: s.params.len(),
                            },
                        )));
                        continue;
                    }
                    for item in items {
                        let at = (item.address - start) as usize;
                        let bytes = &s.params[at..at + item.size as usize];
                        if let Some(v) = item.decode(bytes) {
                            m.values
                                .push((format!("{joint}.{}", item.name), Scalar::Int(v)));
                        }
                    }
                }
                Message::Map(m)
            }
        };
        out.push(Output::Sample {
            stream: poll.stream,
            stamp,
            message,
        });
        Ok(())
    }

    /// One Sync Write of `item` (same bytes for each id) to `ids`.
    async fn write_all(
        &mut self,
        io: &mut BoxedStream,
        item: &str,
        entries: &[(u8, i64)],
    ) -> Result<(), WriteError> {
        let item = self
            .model
            .item(item)
            .map_err(|e| WriteError::Unwritable(e.to_string()))?;
        let data: Vec<(u8, Vec<u8>)> = entries
            .iter()
            .map(|&(id, v)| Ok((id, item.encode(v)?)))
            .collect::<Result<_, DynamixelError>>()
            .map_err(|e| WriteError::Unwritable(e.to_string()))?;
        let refs: Vec<(u8, &[u8])> = data.iter().map(|(id, d)| (*id, d.as_slice())).collect();
        let packet =
            sync_write(item.address, &refs).map_err(|e| WriteError::Unwritable(e.to_string()))?;
        self.send(io, &packet)
            .await
            .map_err(|e| WriteError::LinkFailed(ended_text(e)))
    }

    /// `item` of the servos `ids` that answer it: one Sync Read.
    async fn read_item(
        &mut self,
        io: &mut BoxedStream,
        item: &str,
        ids: &[u8],
    ) -> Result<BTreeMap<u8, i64>, WriteError> {
        let item = self
            .model
            .item(item)
            .map_err(|e| WriteError::Unwritable(e.to_string()))?;
        let request = sync_read(item.address, item.size as u16, ids)
            .map_err(|e| WriteError::Unwritable(e.to_string()))?;
        let got = self
            .exchange(io, &request, ids, item.size as u16)
            .await
            .map_err(|e| WriteError::LinkFailed(ended_text(e)))?;
        Ok(got
            .iter()
            .filter_map(|(id, s)| Some((*id, item.decode(&s.check().ok()?.params)?)))
            .collect())
    }

    /// Torque on or off for `ids`, and what the driver knows of them.
    async fn torque(
        &mut self,
        io: &mut BoxedStream,
        ids: &[u8],
        on: bool,
    ) -> Result<(), WriteError> {
        let values: Vec<(u8, i64)> = ids.iter().map(|&id| (id, i64::from(on))).collect();
        self.write_all(io, "torque_enable", &values).await?;
        for id in ids {
            if let Some(s) = self.servos.get_mut(id) {
                s.torque = Some(on);
            }
        }
        Ok(())
    }

    /// Goals, all or none: refused while a joint reports a hardware error or does not
    /// answer (a goal that moves some joints of an arm and not others is worse than none).
    /// Where Operating Mode is not yet what the goal needs it is switched (with torque off:
    /// it is EEPROM); then the goals, and Torque Enable last, so a servo never starts
    /// toward a goal left from before.
    async fn goals(
        &mut self,
        io: &mut BoxedStream,
        mode: GoalMode,
        goals: &[(u8, i32)],
    ) -> Result<(), WriteError> {
        for (id, _) in goals {
            let Some(s) = self.servos.get(id) else {
                continue;
            };
            if s.fault {
                return Err(WriteError::DeviceRefused(format!(
                    "joint {} (id {id}) reports a hardware error; reboot it (or power-cycle) to clear",
                    s.joint
                )));
            }
            if s.misses >= SERVO_DOWN_AFTER {
                return Err(WriteError::Disconnected);
            }
        }
        let ids: Vec<u8> = goals.iter().map(|(id, _)| *id).collect();
        self.refresh(io, &ids).await?;
        let want = match mode {
            GoalMode::Position => MODE_POSITION,
            GoalMode::Velocity => MODE_VELOCITY,
        };
        let switch: Vec<u8> = ids
            .iter()
            .copied()
            .filter(|id| self.servos.get(id).is_some_and(|s| s.mode != Some(want)))
            .collect();
        if !switch.is_empty() {
            // Operating Mode is EEPROM: a servo takes it only with its torque off.
            self.torque(io, &switch, false).await?;
            let modes: Vec<(u8, i64)> = switch.iter().map(|&id| (id, want as i64)).collect();
            self.write_all(io, "operating_mode", &modes).await?;
            for id in &switch {
                if let Some(s) = self.servos.get_mut(id) {
                    s.mode = Some(want);
                }
            }
        }
        let item = match mode {
            GoalMode::Position => "goal_position",
            GoalMode::Velocity => "goal_velocity",
        };
        let values: Vec<(u8, i64)> = goals.iter().map(|&(id, v)| (id, v as i64)).collect();
        self.write_all(io, item, &values).await?;
        let enable: Vec<u8> = ids
            .iter()
            .copied()
            .filter(|id| self.servos.get(id).is_some_and(|s| s.torque != Some(true)))
            .collect();
        if !enable.is_empty() {
            self.torque(io, &enable, true).await?;
        }
        Ok(())
    }

    /// Reads Torque Enable and Operating Mode of the `ids` whose state is not known (since
    /// the port opened, or since a servo came back from silence, perhaps power-cycled),
    /// so a goal or a hold acts on what the servo is, not on a guess.
    async fn refresh(&mut self, io: &mut BoxedStream, ids: &[u8]) -> Result<(), WriteError> {
        let unknown: Vec<u8> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.servos
                    .get(id)
                    .is_some_and(|s| s.torque.is_none() || s.mode.is_none())
            })
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let torque = self.read_item(io, "torque_enable", &unknown).await?;
        let mode = self.read_item(io, "operating_mode", &unknown).await?;
        for (id, servo) in &mut self.servos {
            if let Some(v) = torque.get(id) {
                servo.torque = Some(*v != 0);
            }
            if let Some(v) = mode.get(id) {
                servo.mode = u8::try_from(*v).ok();
            }
        }
        Ok(())
    }

    /// The safe state: torque off, or each joint held where it is.
    async fn safe(
        &mut self,
        io: &mut BoxedStream,
        mode: SafeConfig,
        ids: &[u8],
    ) -> Result<(), WriteError> {
        let mut off: Vec<u8> = ids.to_vec();
        if mode == SafeConfig::Hold {
            self.refresh(io, ids).await?;
            // Only a joint under torque in position mode can hold; the others go limp.
            let holding: Vec<u8> = ids
                .iter()
                .copied()
                .filter(|id| {
                    self.servos
                        .get(id)
                        .is_some_and(|s| s.torque == Some(true) && s.mode == Some(MODE_POSITION))
                })
                .collect();
            if !holding.is_empty() {
                let hold: Vec<(u8, i64)> = self
                    .read_item(io, "present_position", &holding)
                    .await?
                    .into_iter()
                    .collect();
                off.retain(|id| !hold.iter().any(|(h, _)| h == id));
                if !hold.is_empty() {
                    self.write_all(io, "goal_position", &hold).await?;
                }
            }
        }
        if off.is_empty() {
            return Ok(());
        }
        self.torque(io, &off, false).await
    }
}

/// Reads what arrives before `until`: its length, or `None` when nothing came in time.
async fn read_until(
    io: &mut BoxedStream,
    buf: &mut [u8],
    until: Instant,
) -> Result<Option<usize>, Ended> {
    match tokio::time::timeout_at(until, io.read(buf)).await {
        Err(_) => Ok(None),
        Ok(Ok(0)) => Err(Ended::Lost("the port closed".into())),
        Ok(Ok(n)) => Ok(Some(n)),
        Ok(Err(e)) => Err(Ended::Lost(format!("read failed: {e}"))),
    }
}

/// Why a session ended, as a write's error reports it.
fn ended_text(e: Ended) -> String {
    match e {
        Ended::Lost(reason) | Ended::Resync(reason) => reason,
    }
}

impl Driver for DynamixelDriver {
    type Conn = BoxedStream;
    type Event = ();
    const KIND: &'static str = "Dynamixel port";
    const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

    fn describe(&self) -> String {
        self.transport.describe()
    }

    async fn open(&mut self) -> Result<BoxedStream, OpenError> {
        let io = transport::open(&self.transport).await?;
        let now = Instant::now();
        for p in &mut self.polls {
            p.slot.restart(now);
        }
        // What the servos were set to before this session is unknown until written.
        for s in self.servos.values_mut() {
            s.torque = None;
            s.mode = None;
        }
        self.parser.reset();
        self.stale = false;
        Ok(io)
    }

    /// A poll is due.
    async fn next_event(&mut self, _io: &mut BoxedStream) -> Result<(), Ended> {
        first_due(self.polls.iter().map(|p| p.slot)).await;
        Ok(())
    }

    async fn on_event(
        &mut self,
        io: &mut BoxedStream,
        (): (),
        out: &mut Vec<Output>,
    ) -> Result<(), Ended> {
        let now = Instant::now();
        for p in 0..self.polls.len() {
            if !self.polls[p].slot.is_due(now) {
                continue;
            }
            self.poll(io, p, out).await?;
            self.polls[p].slot.done(Instant::now(), &self.diag);
        }
        Ok(())
    }

    async fn write(&mut self, io: &mut BoxedStream, write: &DeviceWrite) -> Written {
        let DeviceWrite::Dynamixel(w) = write else {
            return Written::kept(Err(WriteError::Unwritable(
                "a Dynamixel bus takes joint goals".into(),
            )));
        };
        let result = match w {
            DxlWrite::Goals { mode, goals } => self.goals(io, *mode, goals).await,
            DxlWrite::Safe { mode, ids } => self.safe(io, *mode, ids).await,
        };
        let ended = match &result {
            Err(WriteError::LinkFailed(e)) => Some(Ended::Lost(e.clone())),
            _ => None,
        };
        Written { result, ended }
    }
}
