//! A simulated slcan adapter: it answers the setup commands, sends the frames of the
//! robot file's CAN streams (DBC messages with plausible signal values, raw ids with
//! counting data) and reports every frame it receives, decoded when the DBC knows it.

use super::validate::{Can, CanSelect, CanWrite};
use crate::protocols::can::dbc::{self, MessageDef, Mux};
use crate::protocols::can::slcan::{self, SlcanDecoder, SlcanEvent};
use crate::protocols::can::CanFrame;
use std::sync::Arc;

/// What the adapter sends and knows.
pub struct SlcanSim {
    messages: Vec<Arc<MessageDef>>,
    raw_ids: Vec<u32>,
    /// Messages the adapter may receive (commands), to decode what it gets.
    known: Vec<Arc<MessageDef>>,
    decoder: SlcanDecoder,
    open: bool,
}

impl SlcanSim {
    pub fn new(device: &Can) -> SlcanSim {
        let mut messages = Vec::new();
        let mut raw_ids = Vec::new();
        for s in &device.streams {
            match &s.select {
                CanSelect::Message(message) => messages.push(message.clone()),
                CanSelect::Raw(Some(ids)) => raw_ids.extend(ids.iter().copied()),
                CanSelect::Raw(None) => raw_ids.push(0x7E8),
            }
        }
        let known = device
            .commands
            .iter()
            .filter_map(|c| match &c.render {
                CanWrite::Message { message, .. } => Some(message.clone()),
                CanWrite::Raw { .. } => None,
            })
            .chain(messages.iter().cloned())
            .collect();
        SlcanSim {
            messages,
            raw_ids,
            known,
            decoder: SlcanDecoder::default(),
            open: false,
        }
    }

    /// The frames of one cycle at `t` seconds (sent only once the channel is open).
    pub fn frames(&self, t: f64) -> Vec<u8> {
        if !self.open {
            return Vec::new();
        }
        let mut out = Vec::new();
        for m in &self.messages {
            let values: Vec<(String, f64)> = m
                .signals
                .iter()
                .filter(|s| !matches!(s.mux, Mux::On(_)))
                .enumerate()
                .map(|(i, s)| (s.name.clone(), plausible(s, t, i)))
                .collect();
            if let Ok(data) = dbc::encode(m, &values) {
                out.extend(slcan::encode(&CanFrame {
                    id: m.id,
                    extended: m.extended,
                    dlc: data.len() as u8,
                    data,
                    ..CanFrame::default()
                }));
            }
        }
        for (i, id) in self.raw_ids.iter().enumerate() {
            let n = (t * 10.0) as u64 + i as u64;
            out.extend(slcan::encode(&CanFrame {
                id: *id,
                extended: *id > 0x7FF,
                dlc: 4,
                data: (n as u32).to_be_bytes().to_vec(),
                ..CanFrame::default()
            }));
        }
        out
    }

    /// Takes bytes from the host; returns the adapter's replies and the frames it received,
    /// described for the log.
    pub fn receive(&mut self, bytes: &[u8]) -> (Vec<u8>, Vec<String>) {
        let mut replies = Vec::new();
        let mut seen = Vec::new();
        // The host's commands are lines too; our decoder only knows frames, so commands
        // show up as garbage lines, which is how we recognise them.
        let mut events = Vec::new();
        self.decoder.push(bytes, |e| events.push(e));
        for e in events {
            match e {
                Ok(SlcanEvent::Frame { frame, .. }) => {
                    replies.extend_from_slice(if frame.extended { b"Z\r" } else { b"z\r" });
                    seen.push(self.describe(&frame));
                }
                Err(slcan::SlcanError::Garbage(line)) => {
                    let ok = match line.as_bytes().first() {
                        Some(b'C') => {
                            self.open = false;
                            true
                        }
                        Some(b'O') | Some(b'L') => {
                            self.open = true;
                            true
                        }
                        Some(b'S') => {
                            line.len() == 2
                                && line.as_bytes()[1].is_ascii_digit()
                                && line.as_bytes()[1] <= b'8'
                        }
                        Some(b'Z') | Some(b'V') | Some(b'N') | Some(b'F') => true,
                        _ => false,
                    };
                    replies.push(if ok { b'\r' } else { 0x07 });
                }
                Ok(_) => {}
                Err(_) => replies.push(0x07),
            }
        }
        (replies, seen)
    }

    fn describe(&self, f: &CanFrame) -> String {
        let hex = crate::messages::hex_encode(&f.data);
        match self
            .known
            .iter()
            .find(|m| m.id == f.id && m.extended == f.extended)
        {
            Some(m) => {
                let mut values = Vec::new();
                dbc::decode(m, &f.data, &mut values);
                let shown: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("frame 0x{:X} [{hex}] {} {}", f.id, m.name, shown.join(" "))
            }
            None => format!("frame 0x{:X} [{hex}]", f.id),
        }
    }
}

/// A value inside both the signal's DBC range and what its bits can hold, moving with time.
fn plausible(s: &dbc::SignalDef, t: f64, i: usize) -> f64 {
    let wave = (t / 4.0 + i as f64).sin();
    // 52 bits at most, so every value on the grid is an exact f64.
    let (mut lo, mut hi) = dbc::bits_range(s, 52);
    if s.min != 0.0 || s.max != 0.0 {
        lo = lo.max(s.min);
        hi = hi.min(s.max);
    }
    let mid = (lo + hi) / 2.0;
    let v = mid + (hi - lo) / 4.0 * wave;
    // On the signal's grid, so it encodes exactly.
    (((v - s.offset) / s.factor).round() * s.factor + s.offset).clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::can::validate;
    use crate::spec::Checker;

    fn device() -> Can {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/dbc/comma_body.dbc"
            ),
            dir.path().join("body.dbc"),
        )
        .unwrap();
        let mut table: toml::Table = r#"
name = "can"
serial = { path = "/tmp/x" }
bitrate = 500000
dbc = "body.dbc"
  [[streams]]
  sensor = "body"
  can_message = "BODY_DATA"
  [[commands]]
  actuator = "torque"
  type = "map"
  can_message = "TORQUE_CMD"
  signals = { TORQUE_L = "left", TORQUE_R = "right" }
  safe = { left = 0, right = 0 }
"#
        .parse()
        .unwrap();
        let mut items = |key: &str| match table.remove(key) {
            Some(toml::Value::Array(a)) => a,
            _ => panic!("no {key}"),
        };
        let (streams, commands) = (items("streams"), items("commands"));
        let mut ck = Checker::new(dir.path().to_path_buf());
        let (_, can) = validate::device(&mut ck, table.into(), streams, commands, "d").unwrap();
        assert!(ck.problems.is_empty(), "{:?}", ck.problems);
        can
    }

    #[test]
    fn the_adapter_answers_setup_then_streams_and_decodes_what_it_receives() {
        let mut sim = SlcanSim::new(&device());
        assert!(sim.frames(1.0).is_empty(), "closed until O");
        let (replies, _) = sim.receive(b"C\rS6\rO\r");
        assert_eq!(replies, b"\r\r\r");
        let text = String::from_utf8(sim.frames(1.0)).unwrap();
        assert!(text.starts_with("t2034"), "{text}");
        let (replies, seen) = sim.receive(b"t2506006400C80000\r");
        assert_eq!(replies, b"z\r");
        assert_eq!(
            seen,
            vec!["frame 0x250 [006400c80000] TORQUE_CMD TORQUE_L=100 TORQUE_R=200 COUNTER=0 CHECKSUM=0"]
        );
        let (replies, _) = sim.receive(b"S9\r");
        assert_eq!(replies, vec![0x07]);
    }
}
