//! A simulated Dynamixel bus, sans-IO and clock-free, for botbus's simulator and
//! end-to-end tests: [`ServoBus::feed`] takes what the host wrote and returns what the
//! servos answer, [`ServoBus::advance`] moves them through time passed in, and a few
//! switches inject the faults a real bus has (a servo gone quiet, a corrupt status, a
//! hardware error). Requests are read with [`RequestParser`] and answers built with
//! [`encode_status`], so the simulation and the core share one wire format.

mod servo;
#[cfg(test)]
mod tests;

use super::packet::{encode_status, BROADCAST_ID, MAX_DEVICE_ID};
use super::request::{Request, RequestParser};
use super::status::{ErrorNumber, StatusError};
use super::table::Model;
use servo::{Layout, Level, Servo};
use std::time::Duration;

/// What the bus heard: each instruction packet it parsed, in order, whoever it was for.
pub type Received = Request;

/// Servos of one model on one half-duplex bus.
#[derive(Debug)]
pub struct ServoBus {
    model: Model,
    layout: Layout,
    /// In id order, so the answers to a broadcast ping come in id order.
    servos: Vec<Servo>,
    parser: RequestParser,
    received: Vec<Received>,
}

impl ServoBus {
    /// Servos with `ids` (repeats and ids above 252 dropped), each at 0 rad with torque
    /// off in position control.
    pub fn new(model: Model, ids: &[u8]) -> Self {
        let layout = Layout::of(model);
        let mut ids: Vec<u8> = ids
            .iter()
            .copied()
            .filter(|&id| id <= MAX_DEVICE_ID)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let servos = ids.iter().map(|&id| Servo::new(&layout, id)).collect();
        ServoBus {
            model,
            layout,
            servos,
            parser: RequestParser::new(),
            received: Vec::new(),
        }
    }

    pub fn model(&self) -> Model {
        self.model
    }

    /// Takes bytes the host wrote, in any chunks, and appends the status packets the
    /// servos answer to `out`. Garbage, corrupt packets and packets that are no request
    /// are ignored, as servos ignore them.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut requests = Vec::new();
        self.parser.push(bytes, |r| requests.extend(r.ok()));
        for request in requests {
            self.execute(&request, out);
            self.received.push(request);
        }
    }

    /// Moves every servo through `dt`.
    pub fn advance(&mut self, dt: Duration) {
        for s in &mut self.servos {
            s.advance(&self.layout, dt);
        }
    }

    /// A silent servo answers nothing and carries out nothing, as if unplugged; it keeps
    /// moving as it was.
    pub fn set_silent(&mut self, id: u8, silent: bool) {
        self.with_servo(id, |s, _| s.silent = silent);
    }

    /// The next status `id` sends has one bit of its CRC flipped.
    pub fn corrupt_next(&mut self, id: u8) {
        self.with_servo(id, |s, _| s.corrupt_next = true);
    }

    /// Latches Hardware Error Status `bits` (0 clears it): every status from `id` carries
    /// the alert bit and its torque stays off until a Reboot.
    pub fn set_hardware_error(&mut self, id: u8, bits: u8) {
        self.with_servo(id, |s, l| s.set_hardware_error(l, bits));
    }

    pub fn torque(&self, id: u8) -> Option<bool> {
        self.servo(id).map(|s| s.torque(&self.layout))
    }

    pub fn position_raw(&self, id: u8) -> Option<i32> {
        self.servo(id)
            .map(|s| s.present_position(&self.layout) as i32)
    }

    pub fn goal_position_raw(&self, id: u8) -> Option<i32> {
        self.servo(id).map(|s| s.goal_position(&self.layout) as i32)
    }

    pub fn operating_mode(&self, id: u8) -> Option<u8> {
        self.servo(id).map(|s| s.operating_mode(&self.layout) as u8)
    }

    /// The servos' ids, in order.
    pub fn ids(&self) -> Vec<u8> {
        self.servos.iter().map(|s| s.id(&self.layout)).collect()
    }

    /// The requests parsed since the last call.
    pub fn take_received(&mut self) -> Vec<Received> {
        std::mem::take(&mut self.received)
    }

    fn servo(&self, id: u8) -> Option<&Servo> {
        self.servos.iter().find(|s| s.id(&self.layout) == id)
    }

    fn with_servo(&mut self, id: u8, f: impl FnOnce(&mut Servo, &Layout)) {
        let l = &self.layout;
        if let Some(s) = self.servos.iter_mut().find(|s| s.id(l) == id) {
            f(s, l);
        }
    }

    fn execute(&mut self, request: &Request, out: &mut Vec<u8>) {
        match request {
            Request::Ping { id } => {
                for i in self.listening(*id) {
                    let params = self.servos[i].ping(&self.layout);
                    self.reply(i, Level::Ping, Ok(params), out);
                }
            }
            Request::Read {
                id,
                address,
                length,
            } => self.read(*id, *address, *length, out),
            Request::Write { id, address, data } => self.write(*id, *address, data, Some(out)),
            Request::Reboot { id } => self.reboot(*id, out),
            Request::SyncRead {
                address,
                length,
                ids,
            } => {
                for &id in ids {
                    self.read(id, *address, *length, out);
                }
            }
            Request::SyncWrite { address, data, .. } => {
                for (id, d) in data {
                    self.write(*id, *address, d, None);
                }
            }
            Request::BulkRead { reads } => {
                for r in reads {
                    self.read(r.id, r.address, r.length, out);
                }
            }
            Request::BulkWrite { writes } => {
                for w in writes {
                    self.write(w.id, w.address, &w.data, None);
                }
            }
        }
        // A write to ID renumbers a servo; keep answering in id order.
        let l = &self.layout;
        self.servos.sort_by_key(|s| s.id(l));
    }

    /// Indexes of the servos that hear a packet to `id`: every one for a broadcast.
    fn listening(&self, id: u8) -> Vec<usize> {
        let l = &self.layout;
        let hears = |s: &Servo| id == BROADCAST_ID || s.id(l) == id;
        (0..self.servos.len())
            .filter(|&i| !self.servos[i].silent && hears(&self.servos[i]))
            .collect()
    }

    /// A read, alone or as one part of a sync or bulk read. A broadcast read is no read
    /// (only the sync and bulk instructions read from several servos).
    fn read(&mut self, id: u8, address: u16, length: u16, out: &mut Vec<u8>) {
        if id == BROADCAST_ID {
            return;
        }
        for i in self.listening(id) {
            let data = self.servos[i].read(address, length);
            self.reply(i, Level::Read, data, out);
        }
    }

    /// A write; a Write instruction to one servo is answered (`out`), broadcast ones and
    /// the parts of sync and bulk writes are not, so a refusal there goes unheard as on a
    /// real bus.
    fn write(&mut self, id: u8, address: u16, data: &[u8], out: Option<&mut Vec<u8>>) {
        let mut out = out.filter(|_| id != BROADCAST_ID);
        for i in self.listening(id) {
            let done = self.servos[i].write(&self.layout, address, data);
            if let Some(out) = out.as_deref_mut() {
                self.reply(i, Level::All, done.map(|()| Vec::new()), out);
            }
        }
    }

    /// The answer goes out before the servo restarts, so it still carries the alert.
    fn reboot(&mut self, id: u8, out: &mut Vec<u8>) {
        for i in self.listening(id) {
            if id != BROADCAST_ID {
                self.reply(i, Level::All, Ok(Vec::new()), out);
            }
            self.servos[i].reboot(&self.layout);
        }
    }

    /// Appends servo `i`'s status, if its Status Return Level sends one at `level`.
    fn reply(
        &mut self,
        i: usize,
        level: Level,
        result: Result<Vec<u8>, ErrorNumber>,
        out: &mut Vec<u8>,
    ) {
        let l = &self.layout;
        let Some(servo) = self.servos.get_mut(i) else {
            return;
        };
        if !servo.answers(l, level) {
            return;
        }
        let (number, params) = match result {
            Ok(params) => (None, params),
            Err(number) => (Some(number), Vec::new()),
        };
        let error = StatusError {
            alert: servo.alert(l),
            number,
        };
        // Reads are bounded by the image, far below a packet's limit, so encoding cannot
        // fail; if it did, the servo would stay quiet, which a host must survive anyway.
        let Ok(mut packet) = encode_status(servo.id(l), error, &params) else {
            return;
        };
        if std::mem::take(&mut servo.corrupt_next) {
            if let Some(crc_high) = packet.last_mut() {
                *crc_high ^= 0x01;
            }
        }
        out.extend_from_slice(&packet);
    }
}
