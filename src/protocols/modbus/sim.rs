//! A simulated Modbus bus: every unit the robot file names answers for the registers it
//! reads and writes, like a motor drive whose speed follows its written setpoint and whose
//! current and temperature follow the speed. Units the file does not name stay silent, and
//! an address no stream or command names answers with an "illegal data address" exception.

use super::validate::Modbus;
use crate::messages::Scalar;
use crate::protocols::modbus::{encode_write, Register, RegisterKind, RegisterWrite, WriteOp};
use crate::protocols::Received;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_modbus::prelude::{ExceptionCode, Request, Response};

/// Register contents per `(unit, kind, address)`.
#[derive(Default)]
pub struct Bank {
    words: HashMap<(u8, RegisterKind, u16), u16>,
    /// What commands wrote, which reads then return.
    written: HashMap<(u8, u16), u16>,
    coils_written: HashMap<(u8, u16), bool>,
    /// Last setpoint written per unit, which "speed" registers follow.
    setpoint: HashMap<u8, f64>,
    speed: HashMap<u8, f64>,
}

/// The simulated drive's state and what it serves.
pub struct ModbusSim {
    pub bank: Mutex<Bank>,
    registers: Vec<Register>,
    writes: Vec<RegisterWrite>,
    device: String,
    received: mpsc::Sender<Received>,
}

fn physical(name: &str, t: f64, speed: f64) -> f64 {
    let n = name.to_ascii_lowercase();
    if n.contains("speed") || n.contains("rpm") || n.contains("velocity") {
        speed
    } else if n.contains("current") {
        0.4 + 0.002 * speed.abs()
    } else if n.contains("temp") {
        35.0 + 0.01 * speed.abs() + (t / 30.0).sin()
    } else if n.contains("volt") {
        48.0 - 0.1 * (t / 60.0).sin()
    } else {
        (t / 5.0).sin() * 10.0
    }
}

impl ModbusSim {
    /// A bus for the device named `name`, answering for what `device` reads and writes.
    pub fn new(name: &str, device: &Modbus, received: mpsc::Sender<Received>) -> Arc<ModbusSim> {
        let registers = device
            .streams
            .iter()
            .flat_map(|s| s.select.registers.iter().cloned())
            .collect();
        let writes = device
            .commands
            .iter()
            .flat_map(|c| c.render.iter().cloned())
            .collect();
        let sim = Arc::new(ModbusSim {
            bank: Mutex::new(Bank::default()),
            registers,
            writes,
            device: name.to_string(),
            received,
        });
        sim.tick(0.0);
        sim
    }

    pub fn units(&self) -> Vec<u8> {
        let mut u: Vec<u8> = self
            .registers
            .iter()
            .map(|r| r.unit)
            .chain(self.writes.iter().map(|w| w.unit))
            .collect();
        u.sort_unstable();
        u.dedup();
        u
    }

    /// Advances the simulation to `t` seconds.
    pub fn tick(&self, t: f64) {
        let mut bank = self.bank.lock().unwrap_or_else(|e| e.into_inner());
        for u in self.units() {
            let target = bank.setpoint.get(&u).copied().unwrap_or(0.0);
            let s = bank.speed.entry(u).or_insert(0.0);
            *s += (target - *s) * 0.3;
        }
        let mut fresh = BTreeMap::new();
        for r in &self.registers {
            let speed = bank.speed.get(&r.unit).copied().unwrap_or(0.0);
            let value = match r.kind {
                RegisterKind::Coil | RegisterKind::Discrete => Scalar::Bool(speed.abs() > 1.0),
                _ => Scalar::Float(physical(&r.name, t, speed)),
            };
            let as_write = RegisterWrite {
                field: r.name.clone(),
                unit: r.unit,
                kind: if matches!(r.kind, RegisterKind::Coil | RegisterKind::Discrete) {
                    RegisterKind::Coil
                } else {
                    RegisterKind::Holding
                },
                address: r.address,
                format: r.format,
                word_order: r.word_order,
                scale: r.scale,
                offset: r.offset,
            };
            match encode_write(&as_write, &value) {
                Ok(WriteOp::Registers { words, .. }) => {
                    for (i, w) in words.into_iter().enumerate() {
                        fresh.insert((r.unit, r.kind, r.address + i as u16), w);
                    }
                }
                Ok(WriteOp::Coil { value, .. }) => {
                    fresh.insert((r.unit, r.kind, r.address), value as u16);
                }
                Err(_) => {}
            }
        }
        for w in &self.writes {
            let width = match w.format {
                crate::protocols::modbus::RegisterFormat::U32
                | crate::protocols::modbus::RegisterFormat::I32
                | crate::protocols::modbus::RegisterFormat::F32 => 2,
                _ => 1,
            };
            for i in 0..width {
                let kind = if w.kind == RegisterKind::Coil {
                    RegisterKind::Coil
                } else {
                    RegisterKind::Holding
                };
                fresh.entry((w.unit, kind, w.address + i)).or_insert(0);
            }
        }
        bank.words = fresh.into_iter().collect();
    }

    fn read(
        &self,
        unit: u8,
        kind: RegisterKind,
        addr: u16,
        n: u16,
    ) -> Result<Vec<u16>, ExceptionCode> {
        let bank = self.bank.lock().unwrap_or_else(|e| e.into_inner());
        (addr..addr.saturating_add(n))
            .map(|a| {
                if kind == RegisterKind::Holding {
                    if let Some(w) = bank.written.get(&(unit, a)) {
                        return Ok(*w);
                    }
                }
                if kind == RegisterKind::Coil {
                    if let Some(c) = bank.coils_written.get(&(unit, a)) {
                        return Ok(*c as u16);
                    }
                }
                bank.words
                    .get(&(unit, kind, a))
                    .copied()
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    fn note_write(&self, unit: u8, text: String) {
        let _ = self.received.try_send(Received {
            device: self.device.clone(),
            line: format!("unit {unit} {text}"),
        });
    }

    fn write_words(&self, unit: u8, addr: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let target = self
            .writes
            .iter()
            .find(|w| w.unit == unit && w.address == addr && w.kind == RegisterKind::Holding);
        let mut bank = self.bank.lock().unwrap_or_else(|e| e.into_inner());
        for (i, _) in words.iter().enumerate() {
            let a = addr + i as u16;
            if !bank.words.contains_key(&(unit, RegisterKind::Holding, a)) {
                return Err(ExceptionCode::IllegalDataAddress);
            }
        }
        for (i, w) in words.iter().enumerate() {
            bank.written.insert((unit, addr + i as u16), *w);
        }
        if let Some(t) = target {
            let r = Register {
                name: t.field.clone(),
                unit,
                kind: RegisterKind::Holding,
                address: addr,
                format: t.format,
                word_order: t.word_order,
                scale: t.scale,
                offset: t.offset,
            };
            let v = crate::protocols::modbus::decode(
                &r,
                &crate::protocols::modbus::Answer::Words(words.to_vec()),
                0,
            )
            .and_then(|s| s.as_f64());
            if let Some(v) = v {
                bank.setpoint.insert(unit, v);
            }
        }
        Ok(())
    }

    /// Answers one request; `None` is silence (a unit this bus does not have).
    pub fn handle(
        &self,
        unit: u8,
        request: Request<'_>,
    ) -> Result<Option<Response>, ExceptionCode> {
        if !self.units().contains(&unit) {
            return Ok(None);
        }
        let bits = |v: Vec<u16>| v.into_iter().map(|w| w != 0).collect::<Vec<bool>>();
        let resp = match request {
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(self.read(unit, RegisterKind::Holding, a, n)?)
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(self.read(unit, RegisterKind::Input, a, n)?)
            }
            Request::ReadCoils(a, n) => {
                Response::ReadCoils(bits(self.read(unit, RegisterKind::Coil, a, n)?))
            }
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(bits(self.read(unit, RegisterKind::Discrete, a, n)?))
            }
            Request::WriteSingleRegister(a, w) => {
                self.write_words(unit, a, &[w])?;
                self.note_write(unit, format!("wrote register {a}: {w}"));
                Response::WriteSingleRegister(a, w)
            }
            Request::WriteMultipleRegisters(a, ws) => {
                self.write_words(unit, a, &ws)?;
                self.note_write(unit, format!("wrote registers {a}: {:?}", ws.as_ref()));
                Response::WriteMultipleRegisters(a, ws.len() as u16)
            }
            Request::WriteSingleCoil(a, c) => {
                let mut bank = self.bank.lock().unwrap_or_else(|e| e.into_inner());
                if !bank.words.contains_key(&(unit, RegisterKind::Coil, a)) {
                    return Err(ExceptionCode::IllegalDataAddress);
                }
                bank.coils_written.insert((unit, a), c);
                drop(bank);
                self.note_write(unit, format!("wrote coil {a}: {c}"));
                Response::WriteSingleCoil(a, c)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        Ok(Some(resp))
    }
}

/// Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF), sent low byte first.
pub fn crc16(data: &[u8]) -> u16 {
    const MODBUS: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);
    MODBUS.checksum(data)
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The request PDU (function code onwards) as a tokio-modbus request.
fn parse_pdu(pdu: &[u8]) -> Option<Request<'static>> {
    let fc = *pdu.first()?;
    let a = be16(pdu.get(1..3)?);
    let n = be16(pdu.get(3..5)?);
    Some(match fc {
        1 => Request::ReadCoils(a, n),
        2 => Request::ReadDiscreteInputs(a, n),
        3 => Request::ReadHoldingRegisters(a, n),
        4 => Request::ReadInputRegisters(a, n),
        5 => Request::WriteSingleCoil(a, n == 0xFF00),
        6 => Request::WriteSingleRegister(a, n),
        16 => {
            let count = *pdu.get(5)? as usize;
            let data = pdu.get(6..6 + count)?;
            let words: Vec<u16> = data.chunks(2).map(be16).collect();
            if words.len() != n as usize {
                return None;
            }
            Request::WriteMultipleRegisters(a, words.into())
        }
        _ => return None,
    })
}

fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        if *b {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

/// The response PDU for `fc` and the sim's answer.
fn response_pdu(fc: u8, answer: Result<Response, ExceptionCode>) -> Vec<u8> {
    let mut out = vec![fc];
    match answer {
        Err(e) => {
            out[0] = fc | 0x80;
            out.push(u8::from(e));
        }
        Ok(Response::ReadHoldingRegisters(w)) | Ok(Response::ReadInputRegisters(w)) => {
            out.push((w.len() * 2) as u8);
            for x in w {
                out.extend_from_slice(&x.to_be_bytes());
            }
        }
        Ok(Response::ReadCoils(b)) | Ok(Response::ReadDiscreteInputs(b)) => {
            let packed = pack_bits(&b);
            out.push(packed.len() as u8);
            out.extend_from_slice(&packed);
        }
        Ok(Response::WriteSingleRegister(a, w)) => {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&w.to_be_bytes());
        }
        Ok(Response::WriteSingleCoil(a, c)) => {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&(if c { 0xFF00u16 } else { 0 }).to_be_bytes());
        }
        Ok(Response::WriteMultipleRegisters(a, n)) => {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&n.to_be_bytes());
        }
        Ok(_) => {
            out[0] = fc | 0x80;
            out.push(u8::from(ExceptionCode::IllegalFunction));
        }
    }
    out
}

impl ModbusSim {
    fn answer(&self, unit: u8, pdu: &[u8]) -> Option<Vec<u8>> {
        let fc = *pdu.first()?;
        let answer = match parse_pdu(pdu) {
            Some(request) => match self.handle(unit, request) {
                Ok(None) => return None,
                Ok(Some(r)) => Ok(r),
                Err(e) => Err(e),
            },
            None if self.units().contains(&unit) => Err(ExceptionCode::IllegalFunction),
            None => return None,
        };
        Some(response_pdu(fc, answer))
    }

    /// Serves Modbus RTU on a byte stream: frames by function code, checks the CRC, and
    /// drops a byte to resync on anything that does not check out.
    pub async fn serve_rtu<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> std::io::Result<()> {
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = rd.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            loop {
                if buf.len() < 4 {
                    break;
                }
                let need = match buf[1] {
                    1..=6 => 8,
                    15 | 16 if buf.len() >= 7 => 9 + buf[6] as usize,
                    15 | 16 => break,
                    _ => {
                        buf.remove(0);
                        continue;
                    }
                };
                if buf.len() < need {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..need).collect();
                let crc = u16::from_le_bytes([frame[need - 2], frame[need - 1]]);
                if crc16(&frame[..need - 2]) != crc {
                    // Not a frame boundary after all: put back all but the first byte.
                    let rest: Vec<u8> = frame[1..].to_vec();
                    buf.splice(0..0, rest);
                    continue;
                }
                if let Some(pdu) = self.answer(frame[0], &frame[1..need - 2]) {
                    let mut out = vec![frame[0]];
                    out.extend_from_slice(&pdu);
                    let crc = crc16(&out);
                    out.extend_from_slice(&crc.to_le_bytes());
                    wr.write_all(&out).await?;
                }
            }
            if buf.len() > 4096 {
                buf.clear();
            }
        }
    }

    /// Serves Modbus TCP (MBAP framing) on one connection.
    pub async fn serve_tcp<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> std::io::Result<()> {
        let (mut rd, mut wr) = tokio::io::split(io);
        loop {
            let mut head = [0u8; 7];
            if rd.read_exact(&mut head).await.is_err() {
                return Ok(());
            }
            let len = be16(&head[4..6]) as usize;
            if !(2..=260).contains(&len) {
                return Ok(());
            }
            let mut pdu = vec![0u8; len - 1];
            rd.read_exact(&mut pdu).await?;
            if let Some(resp) = self.answer(head[6], &pdu) {
                let mut out = head[..4].to_vec();
                out.extend_from_slice(&((resp.len() + 1) as u16).to_be_bytes());
                out.push(head[6]);
                out.extend_from_slice(&resp);
                wr.write_all(&out).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_modbus_reference_frame() {
        // Read holding registers, unit 1, address 0, count 10: 01 03 00 00 00 0A C5 CD.
        assert_eq!(
            crc16(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A]).to_le_bytes(),
            [0xC5, 0xCD]
        );
    }

    #[test]
    fn pdus_parse_and_answers_encode() {
        assert_eq!(
            parse_pdu(&[3, 0, 10, 0, 2]),
            Some(Request::ReadHoldingRegisters(10, 2))
        );
        assert_eq!(
            parse_pdu(&[16, 0, 5, 0, 2, 4, 0, 1, 0, 2]),
            Some(Request::WriteMultipleRegisters(5, vec![1, 2].into()))
        );
        assert_eq!(
            response_pdu(3, Ok(Response::ReadHoldingRegisters(vec![0x1234]))),
            vec![3, 2, 0x12, 0x34]
        );
        assert_eq!(
            response_pdu(3, Err(ExceptionCode::IllegalDataAddress)),
            vec![0x83, 2]
        );
        assert_eq!(
            response_pdu(1, Ok(Response::ReadCoils(vec![true, false, true]))),
            vec![1, 1, 0b101]
        );
    }
}
