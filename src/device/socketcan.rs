//! The SocketCAN driver: a kernel CAN interface (`can0`, `vcan0`) through the socketcan
//! crate, classic and CAN-FD frames, feeding the same CAN core as slcan adapters.

use super::{dispatch, refuse, DeviceWrite};
use crate::backoff::Backoff;
use crate::bus::BusHandle;
use crate::config::{Device, TransportSpec};
use crate::diagnostics::DeviceDiag;
use crate::messages::Time;
use crate::protocols::can::{CanCore, CanFrame};
use crate::stream::StreamPublisher;
use socketcan::tokio::CanFdSocket;
use socketcan::{CanAnyFrame, CanFdFrame, EmbeddedFrame, ExtendedId, Frame, Id, StandardId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

pub struct SocketCanTask {
    pub device: Device,
    pub core: CanCore,
    pub streams: Vec<StreamPublisher>,
    pub diag: Arc<DeviceDiag>,
    pub bus: BusHandle,
    pub writes: super::Writes,
    pub link: watch::Sender<bool>,
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

impl SocketCanTask {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let TransportSpec::SocketCan(iface) = self.device.transport.clone() else {
            return;
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            match CanFdSocket::open(&iface) {
                Err(e) => {
                    if backoff.attempts() == 0 {
                        tracing::warn!(device = %self.device.name, interface = %iface, "CAN interface unavailable: {e}; retrying");
                        self.diag.error(format!("unavailable: {iface}: {e}"));
                    }
                    let wake = Instant::now() + backoff.next_delay();
                    if !super::wait_to_retry(wake, &mut shutdown, &mut self.writes).await {
                        return;
                    }
                }
                Ok(sock) => {
                    backoff.reset();
                    if self.diag.set_connected(true) {
                        tracing::info!(device = %self.device.name, interface = %iface, "CAN interface open");
                    }
                    let _ = self.link.send(true);
                    let reason = self.pump(sock, &mut shutdown).await;
                    self.diag.set_connected(false);
                    let _ = self.link.send(false);
                    match reason {
                        None => return,
                        Some(r) => {
                            tracing::warn!(device = %self.device.name, "CAN interface lost: {r}");
                            self.diag.error(format!("disconnected: {r}"));
                        }
                    }
                }
            }
        }
    }

    /// Runs until the socket fails (`Some(reason)`) or shutdown (`None`).
    async fn pump(
        &mut self,
        sock: CanFdSocket,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<String> {
        let mut out = Vec::with_capacity(16);
        loop {
            let due = self.streams.iter().filter_map(|s| s.deadline()).min();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                r = sock.read_frame() => match r {
                    Ok(f) => {
                        match from_socketcan(&f) {
                            Some(frame) => self.core.on_frame(&frame, Time::now(), &mut out),
                            None => self.diag.error("CAN error frame".into()),
                        }
                        dispatch(&mut out, &mut self.streams, &self.diag, &self.bus);
                    }
                    Err(e) => return Some(e.to_string()),
                },
                _ = sleep_until(due.unwrap_or(far)), if due.is_some() => {
                    let now = Instant::now();
                    for s in &mut self.streams {
                        s.flush_due(now, &self.bus);
                    }
                }
                req = self.writes.next() => {
                    let req = req?;
                    let DeviceWrite::Can(f) = &req.write else {
                        refuse(req, "a CAN bus takes CAN frames");
                        continue;
                    };
                    let Some(frame) = to_socketcan(f) else {
                        refuse(req, "the frame does not fit CAN");
                        continue;
                    };
                    let result = match tokio::time::timeout(Duration::from_secs(1), sock.write_frame(&frame)).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(format!("write failed: {e}")),
                        Err(_) => Err("write timed out (bus off?)".to_string()),
                    };
                    if let Some(done) = req.done {
                        let _ = done.send(result);
                    }
                }
                _ = shutdown.changed() => return None,
            }
        }
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
