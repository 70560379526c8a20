//! The driver of a byte-stream device (NMEA, text lines, slcan adapters): reads in chunks
//! into the protocol core and writes the bytes that commands render. It opens through a
//! function, so tests can hand it `tokio::io::duplex` pipes as well as pseudo-terminals.

use super::runner::{Driver, Ended, OpenError, Written};
use super::{DeviceWrite, WriteError};
use crate::messages::Time;
use crate::protocols::{Decoder, Output};
use crate::spec::TransportSpec;
use crate::transport::{self, BoxedStream};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};

const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens the device's byte stream, once per attempt.
pub type Opener =
    Box<dyn FnMut() -> Pin<Box<dyn Future<Output = Result<BoxedStream, OpenError>> + Send>> + Send>;

/// Opens a configured transport (serial port or TCP serial server).
pub fn transport_opener(spec: &TransportSpec) -> Opener {
    let spec = spec.clone();
    Box::new(move || {
        let spec = spec.clone();
        Box::pin(async move { Ok(transport::open(&spec).await?) })
    })
}

pub struct BytesDriver {
    describe: String,
    open: Opener,
    decoder: Box<dyn Decoder>,
    /// Without a byte for this long the device counts as gone and is reopened.
    idle_timeout: Option<Duration>,
    last_byte: Instant,
    buf: Vec<u8>,
}

impl BytesDriver {
    pub fn new(
        describe: String,
        open: Opener,
        decoder: Box<dyn Decoder>,
        idle_timeout: Option<Duration>,
    ) -> BytesDriver {
        BytesDriver {
            describe,
            open,
            decoder,
            idle_timeout,
            last_byte: Instant::now(),
            buf: vec![0u8; 8192],
        }
    }

    /// The driver of a device reached through a configured transport.
    pub fn over(
        transport: &TransportSpec,
        decoder: Box<dyn Decoder>,
        idle_timeout: Option<Duration>,
    ) -> BytesDriver {
        BytesDriver::new(
            transport.describe(),
            transport_opener(transport),
            decoder,
            idle_timeout,
        )
    }
}

/// Writes and flushes within [`WRITE_TIMEOUT`].
async fn send(io: &mut BoxedStream, bytes: &[u8]) -> Result<(), WriteError> {
    let r = tokio::time::timeout(WRITE_TIMEOUT, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(WriteError::LinkFailed(format!("write failed: {e}"))),
        Err(_) => Err(WriteError::TimedOut("write timed out".into())),
    }
}

impl Driver for BytesDriver {
    type Conn = BoxedStream;
    type Event = usize;
    const KIND: &'static str = "device";
    // Capped at 1 s so a replugged adapter (or a udev symlink that reappears) is back
    // within about a second.
    const RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn open(&mut self) -> Result<BoxedStream, OpenError> {
        let mut io = (self.open)().await?;
        self.decoder.reset();
        let setup = self.decoder.setup();
        if !setup.is_empty() && send(&mut io, &setup).await.is_err() {
            return Err(OpenError::Setup);
        }
        self.last_byte = Instant::now();
        Ok(io)
    }

    async fn next_event(&mut self, io: &mut BoxedStream) -> Result<usize, Ended> {
        let idle_at = self.idle_timeout.map(|d| self.last_byte + d);
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            r = io.read(&mut self.buf) => match r {
                Ok(0) => Err(Ended::Lost("end of stream".into())),
                Err(e) => Err(Ended::Lost(e.to_string())),
                Ok(n) => {
                    self.last_byte = Instant::now();
                    Ok(n)
                }
            },
            _ = sleep_until(idle_at.unwrap_or(far)), if idle_at.is_some() => {
                let ms = self.idle_timeout.unwrap_or_default().as_millis();
                Err(Ended::Lost(format!("no data for {ms} ms")))
            }
        }
    }

    async fn on_event(
        &mut self,
        _io: &mut BoxedStream,
        n: usize,
        out: &mut Vec<Output>,
    ) -> Result<(), Ended> {
        self.decoder.feed(&self.buf[..n], Time::now(), out);
        Ok(())
    }

    async fn write(&mut self, io: &mut BoxedStream, write: &DeviceWrite) -> Written {
        let bytes = match self.decoder.encode_write(write) {
            Ok(b) => b,
            Err(e) => return Written::kept(Err(e)),
        };
        // A failed or stalled write means the link is gone: reopen it.
        let result = send(io, &bytes).await;
        let ended = result.as_ref().err().map(|e| Ended::Lost(e.to_string()));
        Written { result, ended }
    }
}
