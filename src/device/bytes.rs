//! The thin async driver of a byte-stream device (NMEA, text lines): open its transport
//! (retrying with backoff while it is missing), read in chunks into the protocol core,
//! publish the samples, and write the lines that commands render.

use super::refuse;
use crate::backoff::Backoff;
use crate::bus::BusHandle;
use crate::config::{Device, ProtocolSpec};
use crate::diagnostics::DeviceDiag;
use crate::messages::Time;
use crate::protocols::can::SlcanProtocol;
use crate::protocols::lines::LinesDecoder;
use crate::protocols::nmea::NmeaDecoder;
use crate::protocols::{Decoder, Output};
use crate::stream::StreamPublisher;
use crate::transport::{self, BoxedStream};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The protocol core of a byte-stream device; `None` for other protocols.
pub fn decoder_for(device: &Device) -> Option<Box<dyn Decoder>> {
    match &device.protocol {
        ProtocolSpec::Nmea => Some(Box::new(NmeaDecoder::new(&device.streams))),
        p @ ProtocolSpec::Lines { .. } => Some(Box::new(LinesDecoder::new(p, &device.streams))),
        ProtocolSpec::Slcan { bitrate } => {
            Some(Box::new(SlcanProtocol::new(*bitrate, &device.streams)))
        }
        ProtocolSpec::Modbus { .. } | ProtocolSpec::SocketCan => None,
    }
}

pub struct DeviceTask {
    pub device: Device,
    pub decoder: Box<dyn Decoder>,
    pub streams: Vec<StreamPublisher>,
    pub diag: Arc<DeviceDiag>,
    pub bus: BusHandle,
    pub writes: super::Writes,
    /// Whether the device is open, for the safety layer.
    pub link: watch::Sender<bool>,
}

enum Ended {
    Lost(String),
    Shutdown,
}

impl DeviceTask {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        // Capped at 1 s so a replugged adapter (or a udev symlink that reappears) is back
        // within about a second.
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let what = self.device.transport.describe();
        loop {
            if *shutdown.borrow() {
                return;
            }
            match transport::open(&self.device.transport).await {
                Err(e) => {
                    if backoff.attempts() == 0 {
                        tracing::warn!(device = %self.device.name, "device unavailable: {e}; retrying");
                        self.diag.error(format!("unavailable: {e}"));
                    }
                    let wake = Instant::now() + backoff.next_delay();
                    if !super::wait_to_retry(wake, &mut shutdown, &mut self.writes).await {
                        return;
                    }
                }
                Ok(io) => {
                    backoff.reset();
                    if self.diag.set_connected(true) {
                        tracing::info!(device = %self.device.name, path = %what, "device connected");
                    }
                    let _ = self.link.send(true);
                    self.decoder.reset();
                    let ended = self.pump(io, &mut shutdown).await;
                    self.diag.set_connected(false);
                    let _ = self.link.send(false);
                    match ended {
                        Ended::Shutdown => return,
                        Ended::Lost(reason) => {
                            tracing::warn!(device = %self.device.name, "device disconnected: {reason}");
                            self.diag.error(format!("disconnected: {reason}"));
                        }
                    }
                }
            }
        }
    }

    fn handle(&mut self, out: &mut Vec<Output>) {
        super::dispatch(out, &mut self.streams, &self.diag, &self.bus);
    }

    async fn pump(&mut self, io: BoxedStream, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let (mut rd, mut wr) = tokio::io::split(io);
        let setup = self.decoder.setup();
        if !setup.is_empty() {
            let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
                wr.write_all(&setup).await?;
                wr.flush().await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                return Ended::Lost("could not send the device's setup".into());
            }
        }
        let mut buf = vec![0u8; 8192];
        let mut out = Vec::with_capacity(64);
        let idle = self.device.idle_timeout;
        let mut last_byte = Instant::now();
        loop {
            let due = self.streams.iter().filter_map(|s| s.deadline()).min();
            let far = Instant::now() + Duration::from_secs(3600);
            let idle_at = idle.map(|d| last_byte + d);
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) => return Ended::Lost("end of stream".into()),
                    Err(e) => return Ended::Lost(e.to_string()),
                    Ok(n) => {
                        last_byte = Instant::now();
                        self.decoder.feed(&buf[..n], Time::now(), &mut out);
                        self.handle(&mut out);
                    }
                },
                _ = sleep_until(due.unwrap_or(far)), if due.is_some() => {
                    let now = Instant::now();
                    for s in &mut self.streams {
                        s.flush_due(now, &self.bus);
                    }
                }
                _ = sleep_until(idle_at.unwrap_or(far)), if idle_at.is_some() => {
                    return Ended::Lost(format!("no data for {} ms", idle.unwrap_or_default().as_millis()));
                }
                req = self.writes.next() => {
                    let Some(req) = req else { return Ended::Shutdown };
                    let bytes = match self.decoder.encode_write(&req.write) {
                        Ok(b) => b,
                        Err(e) => {
                            refuse(req, &e);
                            continue;
                        }
                    };
                    let result = tokio::time::timeout(WRITE_TIMEOUT, async {
                        wr.write_all(&bytes).await?;
                        wr.flush().await
                    }).await;
                    let result = match result {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(format!("write failed: {e}")),
                        Err(_) => Err("write timed out".to_string()),
                    };
                    let failed = result.clone().err();
                    if let Some(done) = req.done {
                        let _ = done.send(result);
                    }
                    if let Some(reason) = failed {
                        return Ended::Lost(reason);
                    }
                }
                _ = shutdown.changed() => return Ended::Shutdown,
            }
        }
    }
}
