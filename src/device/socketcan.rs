//! The SocketCAN driver: a kernel CAN interface (`can0`, `vcan0`) through the socketcan
//! crate, classic and CAN-FD frames, feeding the same CAN core as slcan adapters.

use super::runner::{Driver, Ended, OpenError, Written};
use super::{DeviceWrite, WriteError};
use crate::messages::Time;
use crate::protocols::can::{BusFault, CanCore, CanFrame};
use crate::protocols::{Output, ProtocolError};
use socketcan::errors::ErrorCause;
use socketcan::{
    CanAnyFrame, CanError, CanErrorFrame, CanFdFrame, CanFdSocket, EmbeddedFrame, ExtendedId,
    Frame, Id, Socket, SocketOptions, StandardId,
};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// An open interface. Our own `AsyncFd` rather than socketcan's tokio socket, because a
/// read must also wake on a socket error: when the interface is removed or goes down the
/// kernel reports ENODEV or ENETDOWN as an error (EPOLLERR), never as readable data, and a
/// read that waits for data alone would wait forever on a vanished interface.
pub type CanConn = AsyncFd<CanFdSocket>;

/// The receive buffer asked of the kernel: room for about 16,000 frames (each costs about
/// 1 KB of buffer), two seconds of a bus at 8,000 frames/s, so that a moment in which the
/// bus task holds the device back (backpressure) loses nothing. The default (about 200 KB)
/// holds a couple of hundred.
const RECEIVE_BUFFER: usize = 16 << 20;

pub struct SocketCanDriver {
    interface: String,
    core: CanCore,
    /// A read error met while draining a batch, reported by the next `next_event` so the
    /// frames read before it are carried out first.
    failed: Option<String>,
}

impl SocketCanDriver {
    pub fn new(interface: String, core: CanCore) -> SocketCanDriver {
        SocketCanDriver {
            interface,
            core,
            failed: None,
        }
    }
}

/// Frames read per wake-up at most: a busy bus is read in batches, one pass through the
/// runner for each rather than for each frame, yet a write never waits long behind them.
const BATCH: usize = 64;

fn id_of(f: &CanFrame) -> Option<Id> {
    if f.extended {
        ExtendedId::new(f.id).map(Id::Extended)
    } else {
        StandardId::new(f.id as u16).map(Id::Standard)
    }
}

/// Our frame as the kernel's: FD when it is one (the DBC said so, or it is longer than 8
/// bytes), classic otherwise.
fn to_socketcan(f: &CanFrame) -> Option<CanAnyFrame> {
    let id = id_of(f)?;
    if f.fd || f.data.len() > 8 {
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
    let (raw_id, extended, rtr, fd, dlc, data) = match f {
        CanAnyFrame::Normal(d) => (
            d.raw_id(),
            d.is_extended(),
            false,
            false,
            d.dlc(),
            d.data().to_vec(),
        ),
        CanAnyFrame::Remote(r) => (
            r.raw_id(),
            r.is_extended(),
            true,
            false,
            r.dlc(),
            Vec::new(),
        ),
        CanAnyFrame::Fd(d) => (
            d.raw_id(),
            d.is_extended(),
            false,
            true,
            d.data().len(),
            d.data().to_vec(),
        ),
        CanAnyFrame::Error(_) => return None,
    };
    Some(CanFrame {
        id: raw_id,
        extended,
        rtr,
        fd,
        dlc: dlc as u8,
        data,
    })
}

/// What an error frame reports, and whether the controller went bus-off.
fn fault_of(frame: CanErrorFrame) -> BusFault {
    let error = CanError::from(frame);
    let bus_off = error.causes().any(|c| matches!(c, ErrorCause::BusOff));
    BusFault {
        bus_off,
        detail: error.to_string(),
    }
}

/// Asks for [`RECEIVE_BUFFER`]: with `SO_RCVBUFFORCE` as root (past `rmem_max`), else as
/// much as `SO_RCVBUF` gives. A smaller buffer still works, so failure is only logged.
fn grow_receive_buffer(sock: &CanFdSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        if let Err(e) = setsockopt(sock, sockopt::RcvBuf, &RECEIVE_BUFFER) {
            tracing::debug!("cannot grow the CAN receive buffer: {e}");
        }
    }
}

impl Driver for SocketCanDriver {
    type Conn = CanConn;
    type Event = Vec<CanAnyFrame>;
    const KIND: &'static str = "CAN interface";
    /// Opening a socket is one cheap syscall, so a vanished interface (a USB adapter
    /// unplugged, `ip link del`) is looked for twice a second and is back within that.
    const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_millis(500));

    fn describe(&self) -> String {
        format!("socketcan:{}", self.interface)
    }

    async fn open(&mut self) -> Result<CanConn, OpenError> {
        let failed = |source| OpenError::Interface {
            interface: self.interface.clone(),
            source,
        };
        let sock = CanFdSocket::open(&self.interface).map_err(failed)?;
        // Error frames are what the controller says about the bus: counted, not dropped.
        sock.set_error_filter_accept_all().map_err(failed)?;
        grow_receive_buffer(&sock);
        sock.set_nonblocking(true).map_err(failed)?;
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::ERROR;
        // SAFETY: `sock` owns its descriptor, which stays open, and its `as_raw_fd` stays
        // the same, for as long as the AsyncFd holds it.
        unsafe { AsyncFd::register_with_interest(sock, interest) }.map_err(|e| failed(e.into()))
    }

    async fn next_event(&mut self, sock: &mut CanConn) -> Result<Vec<CanAnyFrame>, Ended> {
        if let Some(reason) = self.failed.take() {
            return Err(Ended::Lost(reason));
        }
        let first = sock
            .async_io(Interest::READABLE | Interest::ERROR, |s| s.read_frame())
            .await
            .map_err(|e| Ended::Lost(e.to_string()))?;
        // Whatever else is queued, without waiting: nothing below awaits, so cancelling
        // this future can only happen before the first frame was taken.
        let mut frames = Vec::with_capacity(BATCH);
        frames.push(first);
        while frames.len() < BATCH {
            match sock.get_ref().read_frame() {
                Ok(f) => frames.push(f),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.failed = Some(e.to_string());
                    break;
                }
            }
        }
        Ok(frames)
    }

    async fn on_event(
        &mut self,
        _sock: &mut CanConn,
        frames: Vec<CanAnyFrame>,
        out: &mut Vec<Output>,
    ) -> Result<(), Ended> {
        let stamp = Time::now();
        for frame in frames {
            match frame {
                CanAnyFrame::Error(e) => {
                    out.push(Output::Error(ProtocolError::CanBus(fault_of(e))))
                }
                frame => {
                    if let Some(frame) = from_socketcan(&frame) {
                        self.core.on_frame(&frame, stamp, out);
                    }
                }
            }
        }
        Ok(())
    }

    async fn write(&mut self, sock: &mut CanConn, write: &DeviceWrite) -> Written {
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
            match tokio::time::timeout(
                Duration::from_secs(1),
                sock.async_io(Interest::WRITABLE, |s| s.write_frame(&frame)),
            )
            .await
            {
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

    fn frame(id: u32, extended: bool, rtr: bool, fd: bool, dlc: u8, data: &[u8]) -> CanFrame {
        CanFrame {
            id,
            extended,
            rtr,
            fd,
            dlc,
            data: data.to_vec(),
        }
    }

    #[test]
    fn frames_convert_both_ways() {
        for f in [
            frame(0x123, false, false, false, 2, &[1, 2]),
            frame(0x1ABCDEF0, true, false, false, 8, &[9; 8]),
            frame(0x7FF, false, true, false, 4, &[]),
            // FD: longer than classic, and FD at a classic length because the DBC says so.
            frame(0x42, false, false, true, 12, &[7; 12]),
            frame(0x43, false, false, true, 8, &[5; 8]),
        ] {
            let back = from_socketcan(&to_socketcan(&f).unwrap()).unwrap();
            assert_eq!(back, f);
        }
        assert!(matches!(
            to_socketcan(&frame(0x44, false, false, false, 12, &[1; 12])),
            Some(CanAnyFrame::Fd(_))
        ));
        assert!(to_socketcan(&frame(0x800, false, false, false, 0, &[])).is_none());
    }

    #[test]
    fn error_frames_are_faults_and_bus_off_is_told_apart() {
        // The kernel's error classes (linux/can/error.h): CAN_ERR_BUSOFF, and
        // CAN_ERR_CRTL with data[1] = CAN_ERR_CRTL_RX_PASSIVE.
        let bus_off = CanErrorFrame::new_error(0x40, &[0; 8]).unwrap();
        let fault = fault_of(bus_off);
        assert!(fault.bus_off, "{fault:?}");
        assert_eq!(fault.counters(), ["error_frames", "bus_off"]);
        assert!(
            fault.to_string().starts_with("CAN error frame: "),
            "{fault}"
        );

        let passive = CanErrorFrame::new_error(0x04, &[0, 0x10, 0, 0, 0, 0, 0, 0]).unwrap();
        let fault = fault_of(passive);
        assert!(!fault.bus_off, "{fault:?}");
        assert_eq!(fault.counters(), ["error_frames"]);
    }
}
