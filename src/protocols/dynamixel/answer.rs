//! Reading the answers to requests: a ping's model number and firmware, a read's data,
//! and the statuses of a sync read (or bulk read) matched to the ids that were asked.

use super::error::DynamixelError;
use super::status::Status;

/// What a device says about itself when pinged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingAnswer {
    pub id: u8,
    pub model_number: u16,
    pub firmware: u8,
}

/// A ping's answer: model number (LSB, MSB) and firmware version.
pub fn ping_answer(status: &Status) -> Result<PingAnswer, DynamixelError> {
    match status.check()?.params[..] {
        [lo, hi, firmware] => Ok(PingAnswer {
            id: status.id,
            model_number: u16::from_le_bytes([lo, hi]),
            firmware,
        }),
        _ => Err(DynamixelError::WrongLength {
            id: status.id,
            want: 3,
            got: status.params.len(),
        }),
    }
}

/// The data of `status` when it is `id`'s error-free answer of `length` bytes. An alert
/// alone does not refuse the data; it is on `status.error` for whoever reports it.
pub fn read_answer(status: &Status, id: u8, length: u16) -> Result<&[u8], DynamixelError> {
    if status.id != id {
        return Err(DynamixelError::WrongId {
            want: id,
            got: status.id,
        });
    }
    status.check()?;
    if status.params.len() != length as usize {
        return Err(DynamixelError::WrongLength {
            id,
            want: length as usize,
            got: status.params.len(),
        });
    }
    Ok(&status.params)
}

/// For each id asked by a sync read of `length` bytes, in the order asked: its status
/// when it answered without error and with `length` bytes, or why not. A device that
/// answered twice counts by its first answer; answers from ids not asked are ignored.
pub fn sync_read_answers<'a>(
    ids: &[u8],
    length: u16,
    statuses: &'a [Status],
) -> Vec<(u8, Result<&'a Status, DynamixelError>)> {
    ids.iter()
        .map(|&id| {
            let answer = match statuses.iter().find(|s| s.id == id) {
                Some(s) => read_answer(s, id, length).map(|_| s),
                None => Err(DynamixelError::NoAnswer { id }),
            };
            (id, answer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::status::{events, ErrorNumber, StatusError};
    use super::*;

    fn parse(bytes: &[u8]) -> Vec<Status> {
        events(&[bytes])
            .into_iter()
            .map(|e| e.expect("a status"))
            .collect()
    }

    /// e-Manual, Protocol 2.0, "Ping" example 1: XM430-W210, model 1030, firmware 38.
    #[test]
    fn the_emanual_ping_answer_is_an_xm430_w210() {
        let s = parse(&[
            0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x07, 0x00, 0x55, 0x00, 0x06, 0x04, 0x26, 0x65, 0x5D,
        ]);
        assert_eq!(
            ping_answer(&s[0]),
            Ok(PingAnswer {
                id: 1,
                model_number: 1030,
                firmware: 38
            })
        );
    }

    /// e-Manual, Protocol 2.0, "Read" example: Present Position of ID 1 is 166.
    #[test]
    fn the_emanual_read_answer_holds_166() {
        let s = parse(&[
            0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x08, 0x00, 0x55, 0x00, 0xA6, 0x00, 0x00, 0x00, 0x8C,
            0xC0,
        ]);
        let data = read_answer(&s[0], 1, 4).unwrap();
        assert_eq!(i32::from_le_bytes(data.try_into().unwrap()), 166);
        assert_eq!(
            read_answer(&s[0], 2, 4),
            Err(DynamixelError::WrongId { want: 2, got: 1 })
        );
        assert_eq!(
            read_answer(&s[0], 1, 2),
            Err(DynamixelError::WrongLength {
                id: 1,
                want: 2,
                got: 4
            })
        );
    }

    /// e-Manual, Protocol 2.0, "Sync Read" example: IDs 1 and 2 answer 166 and 2079.
    #[test]
    fn the_emanual_sync_read_answers_match_their_ids() {
        let mut wire = vec![
            0xFF, 0xFF, 0xFD, 0x00, 0x02, 0x08, 0x00, 0x55, 0x00, 0x1F, 0x08, 0x00, 0x00, 0xBA,
            0xBE,
        ];
        wire.extend_from_slice(&[
            0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x08, 0x00, 0x55, 0x00, 0xA6, 0x00, 0x00, 0x00, 0x8C,
            0xC0,
        ]);
        let s = parse(&wire);
        let got = sync_read_answers(&[1, 2, 3], 4, &s);
        let value = |r: &Result<&Status, DynamixelError>| {
            let p = &r.as_ref().unwrap().params;
            i32::from_le_bytes([p[0], p[1], p[2], p[3]])
        };
        assert_eq!((got[0].0, value(&got[0].1)), (1, 166));
        assert_eq!((got[1].0, value(&got[1].1)), (2, 2079));
        assert_eq!(got[2], (3, Err(DynamixelError::NoAnswer { id: 3 })));
    }

    #[test]
    fn a_refusal_is_the_devices_error_and_an_alert_alone_is_not() {
        let refused = Status {
            id: 4,
            error: StatusError::from_byte(0x07),
            params: vec![],
        };
        assert_eq!(
            read_answer(&refused, 4, 0),
            Err(DynamixelError::Device {
                id: 4,
                error: StatusError {
                    alert: false,
                    number: Some(ErrorNumber::Access)
                }
            })
        );
        assert_eq!(
            DynamixelError::Device {
                id: 4,
                error: refused.error
            }
            .to_string(),
            "dynamixel id 4 answered: access error: the item is read-only, write-only or \
             undefined, or EEPROM is locked while torque is on"
        );
        let alert = Status {
            id: 4,
            error: StatusError::from_byte(0x80),
            params: vec![1],
        };
        assert_eq!(read_answer(&alert, 4, 1), Ok(&[1][..]));
        assert!(ping_answer(&alert).is_err());
    }
}
