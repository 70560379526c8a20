//! The SocketCAN driver: a kernel CAN interface (`can0`, `vcan0`) through the socketcan
//! crate, classic and CAN-FD frames, feeding the same CAN core as slcan adapters.

use super::runner::{Driver, Ended, OpenError, Written};
use super::{DeviceWrite, WriteError};
use crate::messages::Time;
use crate::protocols::can::{CanCore, CanFrame};
use crate::protocols::{Output, ProtocolError};
use socketcan::tokio::CanFdSocket;
use socketcan::{CanAnyFrame, CanFdFrame, EmbeddedFrame, ExtendedId, Frame, Id, StandardId};
use std::time::Duration;

pub struct SocketCanDriver {
    pub interface: String,
    pub core: CanCore,
}

fn id_of(f: &CanFrame) -> Option<Id> {
    if f.extended {
        ExtendedId::new(f.id).map(Id::Extended)
    } else {
        StandardId::new(f.id as u16).map(Id::Standard)
    }
}

/// Our frame as the kernel's: classic up to 8 bytes, FD beyond.
fn to_socketcan(f: &CanFrame) -> Option<CanAnyFrame> {
    let id = id_of(f)?;
    if f.data.len() > 8 {
        return CanFdFrame::new(id, &f.data).map(CanAnyFrame::Fd);
    }
    let frame = if f.rtr {
        socketcan::CanFrame::new_remote(id, f.dlc as usize)?
    } else {
        socketcan::CanFrame::new(id, &f.data)?
    };
    Some(CanAnyFrame::from(frame))
}

fn from_socketcan(f: &CanAnyFrame) -> Option<CanFrame> {
    let (raw_id, extended, rtr, dlc, data) = match f {
        CanAnyFrame::Normal(d) => (
            d.raw_id(),
            d.is_extended(),
            false,
            d.dlc(),
            d.data().to_vec(),
        ),
        CanAnyFrame::Remote(r) => (r.raw_id(), r.is_extended(), true, r.dlc(), Vec::new()),
        CanAnyFrame::Fd(d) => (
            d.raw_id(),
            d.is_extended(),
            false,
            d.data().len(),
            d.data().to_vec(),
        ),
        CanAnyFrame::Error(_) => return None,
    };
    Some(CanFrame {
        id: raw_id,
        extended,
        rtr,
        dlc: dlc as u8,
        data,
    })
}

impl Driver for SocketCanDriver {
    type Conn = CanFdSocket;
    type Event = CanAnyFrame;
    const KIND: &'static str = "CAN interface";
    const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

    fn describe(&self) -> String {
        format!("socketcan:{}", self.interface)
    }

    async fn open(&mut self) -> Result<CanFdSocket, OpenError> {
        CanFdSocket::open(&self.interface).map_err(|source| OpenError::Interface {
            interface: self.interface.clone(),
            source,
        })
    }

    async fn next_event(&mut self, sock: &mut CanFdSocket) -> Result<CanAnyFrame, Ended> {
        sock.read_frame()
            .await
            .map_err(|e| Ended::Lost(e.to_string()))
    }

    async fn on_event(
        &mut self,
        _sock: &mut CanFdSocket,
        frame: CanAnyFrame,
        out: &mut Vec<Output>,
    ) -> Result<(), Ended> {
        match from_socketcan(&frame) {
            Some(frame) => self.core.on_frame(&frame, Time::now(), out),
            None => out.push(Output::Error(ProtocolError::Can("CAN error frame".into()))),
        }
        Ok(())
    }

    async fn write(&mut self, sock: &mut CanFdSocket, write: &DeviceWrite) -> Written {
        let DeviceWrite::Can(f) = write else {
            return Written::kept(Err(WriteError::Unwritable(
                "a CAN bus takes CAN frames".into(),
            )));
        };
        let Some(frame) = to_socketcan(f) else {
            return Written::kept(Err(WriteError::Unwritable(
                "the frame does not fit CAN".into(),
            )));
        };
        // A bus that refuses a frame (bus off, full queue) is still open: the session goes on.
        Written::kept(
            match tokio::time::timeout(Duration::from_secs(1), sock.write_frame(&frame)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(WriteError::LinkFailed(format!("write failed: {e}"))),
                Err(_) => Err(WriteError::TimedOut("write timed out (bus off?)".into())),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_convert_both_ways() {
        for f in [
            CanFrame {
                id: 0x123,
                extended: false,
                rtr: false,
                dlc: 2,
                data: vec![1, 2],
            },
            CanFrame {
                id: 0x1ABCDEF0,
                extended: true,
                rtr: false,
                dlc: 8,
                data: vec![9; 8],
            },
            CanFrame {
                id: 0x7FF,
                extended: false,
                rtr: true,
                dlc: 4,
                data: vec![],
            },
            CanFrame {
                id: 0x42,
                extended: false,
                rtr: false,
                dlc: 12,
                data: vec![7; 12],
            },
        ] {
            let back = from_socketcan(&to_socketcan(&f).unwrap()).unwrap();
            assert_eq!(back, f);
        }
        assert!(to_socketcan(&CanFrame {
            id: 0x800,
            extended: false,
            rtr: false,
            dlc: 0,
            data: vec![]
        })
        .is_none());
    }
}
