//! What a checked command (or a safe state) asks its device to write: a text line, Modbus
//! register writes or a CAN frame, with the last checks that only the device's encoding can
//! make (a register's range, a DBC signal's, a raw frame's id and length).

use crate::config::CommandRender;
use crate::device::DeviceWrite;
use crate::messages::{Message, Scalar};
use crate::protocols::can::{CanFrame, CanWrite};
use thiserror::Error;

/// Why a message cannot be written to its device. The `Display` text is the ack's `error`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RenderError {
    /// The line template refused it (a missing field, a control character).
    #[error(transparent)]
    Template(#[from] crate::protocols::lines::template::RenderError),
    #[error("`{0}` has no value")]
    NoValue(String),
    /// The register encoding refused it (out of the register's range, say).
    #[error(transparent)]
    Register(#[from] crate::protocols::modbus::RegisterWriteError),
    #[error("unknown field `{0}`: this command's fields are the paths in its `signals`")]
    NotASignal(String),
    #[error("{path} = `{value}` is not a number")]
    NotANumber { path: String, value: Scalar },
    /// The DBC encoding refused it (out of the signal's range, say).
    #[error(transparent)]
    Signal(#[from] crate::protocols::can::dbc::EncodeError),
    #[error("a raw CAN command is a can_msgs/Frame")]
    NotAFrame,
    #[error("id 0x{0:X} is not in this actuator's `ids`")]
    IdNotAllowed(u32),
    #[error("id 0x{id:X} does not fit a{} identifier", if *.extended { "n extended" } else { " standard" })]
    IdTooLong { id: u32, extended: bool },
    #[error("dlc {dlc} does not match {len} data bytes")]
    DlcMismatch { dlc: u8, len: usize },
    #[error("a remote frame is classic CAN: no is_fd, at most dlc 8 and no data")]
    RemoteNotClassic,
    #[error("a Dynamixel command is a sensor_msgs/JointState")]
    NotAJointState,
    /// The joints, lengths or limits refused it.
    #[error(transparent)]
    Goal(#[from] crate::protocols::dynamixel::GoalError),
}

/// The device write that makes the actuator safe: its safe values rendered as any
/// command's, except where the protocol has a safe state of its own (a Dynamixel joint's
/// torque off or hold, which no goal expresses).
pub fn render_safe(render: &CommandRender, safe: &Message) -> Result<DeviceWrite, RenderError> {
    match render {
        CommandRender::Dynamixel(c) => Ok(DeviceWrite::Dynamixel(
            crate::protocols::dynamixel::command::safe(c),
        )),
        _ => self::render(render, safe),
    }
}

/// The device write that carries `msg` as `render` says.
pub fn render(render: &CommandRender, msg: &Message) -> Result<DeviceWrite, RenderError> {
    match render {
        CommandRender::Template(t) => {
            let mut line = String::new();
            t.render(msg, &mut line).map_err(RenderError::Template)?;
            Ok(DeviceWrite::Line(line.into_bytes()))
        }
        CommandRender::Modbus(writes) => writes
            .iter()
            .map(|w| {
                let v = msg
                    .get_path(&w.field)
                    .ok_or_else(|| RenderError::NoValue(w.field.clone()))?;
                crate::protocols::modbus::encode_write(w, &v).map_err(RenderError::Register)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(DeviceWrite::Modbus),
        CommandRender::Can(CanWrite::Message { message, signals }) => {
            // Fields a `map` command leaves out are signals not given: they take the DBC's
            // initial value. Other types default every field, so every signal is given.
            if let Message::Map(m) = msg {
                if let Some((k, _)) = m
                    .values
                    .iter()
                    .find(|(k, _)| k != "id" && !signals.iter().any(|(_, path)| path == k))
                {
                    return Err(RenderError::NotASignal(k.clone()));
                }
            }
            let mut values: Vec<(String, f64)> = Vec::with_capacity(signals.len());
            for (sig, path) in signals {
                match msg.get_path(path) {
                    None => {}
                    // A text value, even one that reads as a number, is not a signal value.
                    Some(v @ (Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_))) => {
                        if let Some(f) = v.as_f64() {
                            values.push((sig.clone(), f));
                        }
                    }
                    Some(value) => {
                        return Err(RenderError::NotANumber {
                            path: path.clone(),
                            value,
                        })
                    }
                }
            }
            let data = crate::protocols::can::dbc::encode(message, &values)
                .map_err(RenderError::Signal)?;
            Ok(DeviceWrite::Can(CanFrame {
                id: message.id,
                extended: message.extended,
                rtr: false,
                fd: message.fd,
                dlc: data.len() as u8,
                data,
            }))
        }
        CommandRender::Can(CanWrite::Raw { ids }) => {
            let Message::Frame(f) = msg else {
                return Err(RenderError::NotAFrame);
            };
            if !ids.contains(&f.id) {
                return Err(RenderError::IdNotAllowed(f.id));
            }
            let limit = if f.is_extended { 0x1FFF_FFFF } else { 0x7FF };
            if f.id > limit {
                return Err(RenderError::IdTooLong {
                    id: f.id,
                    extended: f.is_extended,
                });
            }
            // CAN FD has no remote frames; a remote frame asks for up to 8 bytes, carrying none.
            if f.is_rtr && (f.is_fd || f.dlc > 8 || !f.data.is_empty()) {
                return Err(RenderError::RemoteNotClassic);
            }
            if f.data.len() > 64 || (!f.is_rtr && f.dlc as usize != f.data.len()) {
                return Err(RenderError::DlcMismatch {
                    dlc: f.dlc,
                    len: f.data.len(),
                });
            }
            Ok(DeviceWrite::Can(CanFrame {
                id: f.id,
                extended: f.is_extended,
                rtr: f.is_rtr,
                fd: f.is_fd || f.data.len() > 8,
                dlc: f.dlc,
                data: f.data.clone(),
            }))
        }
        CommandRender::Dynamixel(c) => {
            let Message::JointState(m) = msg else {
                return Err(RenderError::NotAJointState);
            };
            Ok(DeviceWrite::Dynamixel(
                crate::protocols::dynamixel::command::goals(c, m)?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::MessageType;

    fn frame(id: i64, extended: bool, dlc: i64, data: &[u8]) -> Message {
        let mut m = MessageType::Frame.new_message();
        m.set_path("id", &Scalar::Int(id)).unwrap();
        m.set_path("is_extended", &Scalar::Bool(extended)).unwrap();
        m.set_path("dlc", &Scalar::Int(dlc)).unwrap();
        if let Message::Frame(f) = &mut m {
            f.data = data.to_vec();
        }
        m
    }

    #[test]
    fn a_raw_frame_is_written_only_with_an_allowed_id_that_fits_and_a_matching_dlc() {
        let raw = CommandRender::Can(CanWrite::Raw {
            ids: vec![0x300, 0x1FFF_FFFF + 1],
        });
        let ok = render(&raw, &frame(0x300, false, 2, &[1, 2])).unwrap();
        assert!(matches!(
            ok,
            DeviceWrite::Can(CanFrame {
                id: 0x300,
                dlc: 2,
                ..
            })
        ));
        let err = |m: &Message| render(&raw, m).unwrap_err().to_string();
        assert_eq!(
            err(&frame(0x301, false, 0, &[])),
            "id 0x301 is not in this actuator's `ids`"
        );
        assert_eq!(
            err(&frame(0x2000_0000, true, 0, &[])),
            "id 0x20000000 does not fit an extended identifier"
        );
        assert_eq!(
            err(&frame(0x300, false, 3, &[1, 2])),
            "dlc 3 does not match 2 data bytes"
        );
        assert_eq!(
            err(&MessageType::Twist.new_message()),
            "a raw CAN command is a can_msgs/Frame"
        );
        let mut remote_fd = frame(0x300, false, 4, &[]);
        remote_fd.set_path("is_rtr", &Scalar::Bool(true)).unwrap();
        let remote_ok = render(&raw, &remote_fd).unwrap();
        assert!(matches!(
            remote_ok,
            DeviceWrite::Can(CanFrame {
                rtr: true,
                fd: false,
                dlc: 4,
                ..
            })
        ));
        remote_fd.set_path("is_fd", &Scalar::Bool(true)).unwrap();
        assert_eq!(
            err(&remote_fd),
            "a remote frame is classic CAN: no is_fd, at most dlc 8 and no data"
        );
    }

    #[test]
    fn an_id_too_long_for_a_standard_frame_names_the_standard_identifier() {
        let raw = CommandRender::Can(CanWrite::Raw { ids: vec![0x800] });
        assert_eq!(
            render(&raw, &frame(0x800, false, 0, &[]))
                .unwrap_err()
                .to_string(),
            "id 0x800 does not fit a standard identifier"
        );
    }
}
