//! CAN frames to samples, sans-IO, whatever carries them (slcan adapter or SocketCAN):
//! DBC messages become `map` samples of physical signal values, raw streams become
//! `can_msgs/Frame`. Also the slcan device core that frames adapter bytes.

use super::validate::CanSelect;
use crate::messages::{Frame, Header, MapMessage, Message, Time};
use crate::protocols::can::dbc::{self, MessageDef};
use crate::protocols::can::slcan::{self, SlcanDecoder, SlcanEvent};
use crate::protocols::{Decoder, DeviceWrite, Output, ProtocolError, WriteError};
use crate::spec::Stream;
use std::sync::Arc;

/// A CAN frame: classic (up to 8 data bytes) or CAN FD (up to 64).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CanFrame {
    /// The 11- or 29-bit identifier.
    pub id: u32,
    pub extended: bool,
    pub rtr: bool,
    /// A CAN FD frame, whatever its length: the DBC, or the bus, says which.
    pub fd: bool,
    pub dlc: u8,
    pub data: Vec<u8>,
}

enum Binding {
    Message(Arc<MessageDef>),
    /// Raw frames whose id is listed (or every frame).
    Raw(Option<Vec<u32>>),
}

/// Frame → samples for one device's streams.
pub struct CanCore {
    streams: Vec<Binding>,
    values: Vec<(String, crate::messages::Scalar)>,
}

impl CanCore {
    pub fn new(streams: &[Stream<CanSelect>]) -> CanCore {
        let streams = streams
            .iter()
            .map(|s| match &s.select {
                CanSelect::Message(message) => Binding::Message(message.clone()),
                CanSelect::Raw(ids) => Binding::Raw(ids.clone()),
            })
            .collect();
        CanCore {
            streams,
            values: Vec::new(),
        }
    }

    pub fn on_frame(&mut self, f: &CanFrame, stamp: Time, out: &mut Vec<Output>) {
        out.push(Output::Frame);
        for (i, b) in self.streams.iter().enumerate() {
            match b {
                Binding::Message(def) => {
                    if def.id != f.id || def.extended != f.extended || f.rtr {
                        continue;
                    }
                    if f.data.len() < def.dlc as usize {
                        out.push(Output::Error(ProtocolError::Can(format!(
                            "{} (0x{:X}): {} data bytes, the DBC says {}",
                            def.name,
                            f.id,
                            f.data.len(),
                            def.dlc
                        ))));
                        continue;
                    }
                    self.values.clear();
                    dbc::decode(def, &f.data, &mut self.values);
                    let mut m = MapMessage {
                        header: Header::default(),
                        values: Vec::with_capacity(self.values.len()),
                    };
                    m.values.append(&mut self.values);
                    out.push(Output::Sample {
                        stream: i,
                        stamp,
                        message: Message::Map(m),
                    });
                }
                Binding::Raw(ids) => {
                    if ids.as_ref().is_some_and(|ids| !ids.contains(&f.id)) {
                        continue;
                    }
                    out.push(Output::Sample {
                        stream: i,
                        stamp,
                        message: Message::Frame(Frame {
                            header: Header::default(),
                            id: f.id,
                            is_extended: f.extended,
                            is_rtr: f.rtr,
                            is_error: false,
                            is_fd: f.fd,
                            dlc: f.dlc,
                            data: f.data.clone(),
                        }),
                    });
                }
            }
        }
    }
}

/// The slcan device core: adapter bytes → frames → samples.
pub struct SlcanProtocol {
    decoder: SlcanDecoder,
    core: CanCore,
    setup: Vec<u8>,
    events: Vec<Result<SlcanEvent, slcan::SlcanError>>,
}

impl SlcanProtocol {
    pub fn new(bitrate: u32, streams: &[Stream<CanSelect>]) -> SlcanProtocol {
        SlcanProtocol {
            decoder: SlcanDecoder::default(),
            core: CanCore::new(streams),
            setup: slcan::setup(bitrate).unwrap_or_default(),
            events: Vec::new(),
        }
    }
}

impl Decoder for SlcanProtocol {
    fn feed(&mut self, bytes: &[u8], stamp: Time, out: &mut Vec<Output>) {
        let events = &mut self.events;
        self.decoder.push(bytes, |e| events.push(e));
        for e in self.events.drain(..) {
            match e {
                Ok(SlcanEvent::Frame { frame, .. }) => self.core.on_frame(&frame, stamp, out),
                Ok(SlcanEvent::Ok) | Ok(SlcanEvent::Sent) => {}
                Err(e) => out.push(Output::Error(ProtocolError::Can(e.to_string()))),
            }
        }
    }

    fn reset(&mut self) {
        self.decoder.reset();
    }

    fn pending(&self) -> usize {
        self.decoder.pending()
    }

    fn setup(&self) -> Vec<u8> {
        self.setup.clone()
    }

    fn encode_write(&self, w: &DeviceWrite) -> Result<Vec<u8>, WriteError> {
        match w {
            // slcan carries classic frames only; never send a cut-down frame, nor an FD
            // frame as a classic one that the bus's other nodes would not expect.
            DeviceWrite::Can(f) if f.data.len() > 8 || f.dlc > 8 => {
                Err(WriteError::Unwritable(format!(
                    "frame 0x{:X} has {} bytes; an slcan adapter sends at most 8",
                    f.id,
                    f.data.len().max(f.dlc as usize)
                )))
            }
            DeviceWrite::Can(f) if f.fd => Err(WriteError::Unwritable(format!(
                "frame 0x{:X} is CAN FD; an slcan adapter sends classic frames only (use SocketCAN)",
                f.id
            ))),
            DeviceWrite::Can(f) => Ok(slcan::encode(f)),
            _ => Err(WriteError::Unwritable(
                "an slcan adapter takes CAN frames".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Scalar;

    fn comma() -> dbc::Database {
        let p = format!(
            "{}/tests/fixtures/dbc/comma_body.dbc",
            env!("CARGO_MANIFEST_DIR")
        );
        dbc::Database::load(std::path::Path::new(&p)).unwrap()
    }

    fn stream(select: CanSelect) -> Stream<CanSelect> {
        Stream {
            spec: crate::spec::StreamSpec {
                sensor: "s".into(),
                msg_type: crate::messages::MessageType::Map,
                qos: 0,
                retain: false,
                min_interval: None,
                frame_id: "can".into(),
            },
            select,
        }
    }

    #[test]
    fn slcan_never_writes_an_fd_frame_or_a_long_one() {
        let p = SlcanProtocol::new(500_000, &[]);
        let write = |fd: bool, len: usize| {
            p.encode_write(&DeviceWrite::Can(CanFrame {
                id: 0x501,
                fd,
                dlc: len as u8,
                data: vec![1; len],
                ..CanFrame::default()
            }))
        };
        assert_eq!(write(false, 8).unwrap(), b"t50180101010101010101\r");
        let fd = write(true, 8).unwrap_err().to_string();
        assert!(fd.contains("CAN FD") && fd.contains("SocketCAN"), "{fd}");
        let long = write(true, 12).unwrap_err().to_string();
        assert!(long.contains("at most 8"), "{long}");
    }

    #[test]
    fn slcan_bytes_become_dbc_samples_and_raw_frames() {
        let db = comma();
        let motors = Arc::new(db.message("MOTORS_DATA").unwrap().clone());
        let id = motors.id;
        let streams = vec![
            stream(CanSelect::Message(motors)),
            stream(CanSelect::Raw(Some(vec![0x7AB]))),
        ];
        let mut p = SlcanProtocol::new(500_000, &streams);
        assert_eq!(p.setup(), b"C\rS6\rO\r");
        let mut out = Vec::new();
        let line = format!("t{id:03X}8FF38012C00000000\rt7AB1AA\rt1110\r\x07");
        p.feed(line.as_bytes(), Time::default(), &mut out);
        let samples: Vec<&Message> = out
            .iter()
            .filter_map(|o| match o {
                Output::Sample { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        let Message::Map(m) = samples[0] else {
            panic!("{out:?}")
        };
        assert_eq!(m.get("SPEED_L").and_then(Scalar::as_f64), Some(-200.0));
        assert_eq!(m.get("SPEED_R").and_then(Scalar::as_f64), Some(300.0));
        let Message::Frame(f) = samples[1] else {
            panic!()
        };
        assert_eq!((f.id, f.dlc, f.data.as_slice()), (0x7AB, 1, &[0xAA][..]));
        assert_eq!(samples.len(), 2, "frame 0x111 matches no stream");
        assert_eq!(
            out.iter().filter(|o| matches!(o, Output::Error(_))).count(),
            1,
            "the BEL"
        );
        assert_eq!(out.iter().filter(|o| matches!(o, Output::Frame)).count(), 3);
    }
}
