//! The joint-state poll: one Sync Read of present current, velocity and position as a
//! single contiguous range for every joint on a bus, and its answers in SI units. One
//! range means one request and one short answer per servo each cycle, instead of three.

use super::answer::{read_answer, sync_read_answers};
use super::error::DynamixelError;
use super::instruction::sync_read;
use super::status::Status;
use super::table::{Item, Model};
use super::units::Units;

/// One joint's state, from one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointState {
    pub position_rad: f64,
    pub velocity_rad_s: f64,
    /// Present current, in A.
    pub effort_a: f64,
    /// The device raised its alert bit: its Hardware Error Status is worth reading.
    pub alert: bool,
}

/// A built joint-state poll for some ids on a bus of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct JointPoll {
    ids: Vec<u8>,
    units: Units,
    address: u16,
    length: u16,
    current_at: usize,
    velocity_at: usize,
    position_at: usize,
    request: Vec<u8>,
}

impl JointPoll {
    /// The poll of `ids` (device ids, each once). The range runs from Present Current to
    /// the end of Present Position: address 126, 10 bytes on the X series, 574, 10 bytes on
    /// the P series.
    pub fn new(model: Model, ids: &[u8]) -> Result<Self, DynamixelError> {
        let current = model.item("present_current")?;
        let velocity = model.item("present_velocity")?;
        let position = model.item("present_position")?;
        let address = current.address.min(velocity.address).min(position.address);
        let end = |i: Item| i.address + i.size as u16;
        let length = end(current).max(end(velocity)).max(end(position)) - address;
        let at = |i: Item| (i.address - address) as usize;
        Ok(JointPoll {
            ids: ids.to_vec(),
            units: model.units(),
            address,
            length,
            current_at: at(current),
            velocity_at: at(velocity),
            position_at: at(position),
            request: sync_read(address, length, ids)?,
        })
    }

    /// The Sync Read to send each cycle.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    pub fn ids(&self) -> &[u8] {
        &self.ids
    }

    /// `(address, length)` of the range read.
    pub fn range(&self) -> (u16, u16) {
        (self.address, self.length)
    }

    /// Each polled id's state, in the order polled, from the statuses read after the
    /// request (missing, refused and wrong-sized answers are that id's error).
    pub fn decode(&self, statuses: &[Status]) -> Vec<(u8, Result<JointState, DynamixelError>)> {
        sync_read_answers(&self.ids, self.length, statuses)
            .into_iter()
            .map(|(id, s)| (id, s.and_then(|s| self.state(s))))
            .collect()
    }

    /// One answer's state, for a driver that takes statuses as they arrive.
    pub fn decode_status(&self, status: &Status) -> Result<JointState, DynamixelError> {
        if !self.ids.contains(&status.id) {
            return Err(DynamixelError::Malformed {
                id: status.id,
                reason: "an answer from an id the joint poll does not read",
            });
        }
        read_answer(status, status.id, self.length)?;
        self.state(status)
    }

    fn state(&self, status: &Status) -> Result<JointState, DynamixelError> {
        let p = &status.params;
        let raw = || {
            Some((
                i16::from_le_bytes(le(p, self.current_at)?),
                i32::from_le_bytes(le(p, self.velocity_at)?),
                i32::from_le_bytes(le(p, self.position_at)?),
            ))
        };
        let (current, velocity, position) = raw().ok_or(DynamixelError::WrongLength {
            id: status.id,
            want: self.length as usize,
            got: p.len(),
        })?;
        Ok(JointState {
            position_rad: self.units.position_rad(position),
            velocity_rad_s: self.units.velocity_rad_s(velocity),
            effort_a: self.units.current_a(current),
            alert: status.error.alert,
        })
    }
}

/// The `N` bytes of `p` at `at`, if it has them.
fn le<const N: usize>(p: &[u8], at: usize) -> Option<[u8; N]> {
    p.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::super::packet::encode_status;
    use super::super::status::{events, StatusError};
    use super::*;
    use std::f64::consts::PI;

    fn answer(id: u8, error: u8, current: i16, velocity: i32, position: i32) -> Status {
        let mut params = current.to_le_bytes().to_vec();
        params.extend_from_slice(&velocity.to_le_bytes());
        params.extend_from_slice(&position.to_le_bytes());
        let wire = encode_status(id, StatusError::from_byte(error), &params).unwrap();
        events(&[&wire]).remove(0).unwrap()
    }

    #[test]
    fn the_x_series_poll_is_one_sync_read_of_ten_bytes_at_126() {
        let poll = JointPoll::new(Model::XSeries, &[1, 2]).unwrap();
        assert_eq!(poll.range(), (126, 10));
        assert_eq!(poll.request(), sync_read(126, 10, &[1, 2]).unwrap());
        assert_eq!(&poll.request()[7..14], &[0x82, 126, 0, 10, 0, 1, 2]);
        assert_eq!(
            JointPoll::new(Model::Ph54, &[1]).unwrap().range(),
            (574, 10)
        );
    }

    #[test]
    fn answers_decode_to_si_units_per_id() {
        let poll = JointPoll::new(Model::XSeries, &[1, 2, 3]).unwrap();
        let statuses = [
            answer(2, 0x80, 100, 1, 3072),
            answer(1, 0, -100, -10, 0),
            answer(3, 0x04, 0, 0, 0),
        ];
        let got = poll.decode(&statuses);
        let one = got[0].1.as_ref().unwrap();
        assert!((one.position_rad + PI).abs() < 1e-12);
        assert!((one.velocity_rad_s + 10.0 * 0.229 * 2.0 * PI / 60.0).abs() < 1e-12);
        assert!((one.effort_a + 0.269).abs() < 1e-12);
        assert!(!one.alert);
        let two = got[1].1.as_ref().unwrap();
        assert!((two.position_rad - PI / 2.0).abs() < 1e-12);
        assert!(two.alert);
        assert!(matches!(
            got[2],
            (3, Err(DynamixelError::Device { id: 3, .. }))
        ));
        assert_eq!(poll.decode_status(&statuses[0]), Ok(*two));
        assert!(poll.decode_status(&answer(9, 0, 0, 0, 0)).is_err());
    }

    #[test]
    fn a_short_answer_is_an_error_not_a_panic() {
        let poll = JointPoll::new(Model::XSeries, &[1]).unwrap();
        let short = Status {
            id: 1,
            error: StatusError::NONE,
            params: vec![0; 6],
        };
        assert_eq!(
            poll.decode(&[short]),
            vec![(
                1,
                Err(DynamixelError::WrongLength {
                    id: 1,
                    want: 10,
                    got: 6
                })
            )]
        );
    }

    #[test]
    fn bad_id_lists_are_refused() {
        assert!(JointPoll::new(Model::XSeries, &[]).is_err());
        assert!(JointPoll::new(Model::XSeries, &[1, 1]).is_err());
        assert!(JointPoll::new(Model::XSeries, &[253]).is_err());
    }
}
