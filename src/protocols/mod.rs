//! One folder per protocol, each holding its robot-file keys (`config`), their validation
//! into a closed runtime type (`validate`), its sans-IO core and its simulator. A core takes
//! bytes from a device and gives samples and counted errors; commands in, bytes out. No I/O
//! and no clocks in a core, so every one is tested with byte fixtures.

pub mod can;
pub mod dynamixel;
pub mod framing;
pub mod lines;
pub mod modbus;
pub mod nmea;

use crate::messages::{Message, Time};
use thiserror::Error;

/// A write a simulated device received (a rendered command), reported to whoever runs the
/// simulator so it can show it.
#[derive(Debug, Clone)]
pub struct Received {
    pub device: String,
    pub line: String,
}

/// What a protocol core makes of the bytes it is fed.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A message body for the stream at this index of the device's streams, read at
    /// `stamp`. Its header is left for the stream layer to fill (stamp, frame, seq).
    Sample {
        stream: usize,
        stamp: Time,
        message: Message,
    },
    /// One well-formed frame (sentence, line) was read, whether or not a stream took it.
    Frame,
    /// A corrupt or unusable frame: counted in diagnostics, never published.
    Error(ProtocolError),
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Framing(#[from] framing::FramingError),
    #[error(transparent)]
    Nmea(#[from] nmea::NmeaError),
    #[error(transparent)]
    Lines(#[from] lines::LinesError),
    #[error("{0}")]
    Can(String),
    #[error(transparent)]
    CanBus(#[from] can::BusFault),
    #[error(transparent)]
    Dynamixel(#[from] dynamixel::DynamixelError),
}

impl ProtocolError {
    /// The diagnostics counters, beside `errors`, that this error adds one to.
    pub fn counters(&self) -> &'static [&'static str] {
        match self {
            ProtocolError::CanBus(fault) => fault.counters(),
            ProtocolError::Dynamixel(dynamixel::DynamixelError::Crc { .. }) => &["crc_errors"],
            _ => &[],
        }
    }
}

/// What a command (or a safe state) asks a device to do.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceWrite {
    /// A rendered text line, newline included.
    Line(Vec<u8>),
    /// Modbus register and coil writes, in order.
    Modbus(Vec<modbus::WriteOp>),
    /// A CAN frame.
    Can(can::CanFrame),
    /// Dynamixel goals or a safe state.
    Dynamixel(dynamixel::DxlWrite),
}

/// Why a device write did not happen, as the command's ack reports it. The kinds are kept
/// apart because they call for different reactions: a device that is away gets its safe
/// values on reconnect anyway, one that refused (a Modbus exception) is alive, and a
/// failed or silent link means the write must be tried again.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WriteError {
    /// The device is not open; nothing was written.
    #[error("device is disconnected")]
    Disconnected,
    /// Safe values were queued after this command, which was dropped unwritten.
    #[error("superseded by the safe state")]
    Superseded,
    /// No confirmation in time, from the device or from its driver.
    #[error("{0}")]
    TimedOut(String),
    /// The device answered and said no (e.g. a Modbus exception).
    #[error("{0}")]
    DeviceRefused(String),
    /// The link failed while writing (port gone, I/O error, garbled answer).
    #[error("{0}")]
    LinkFailed(String),
    /// The write cannot be carried by this device (e.g. a CAN-FD frame on an slcan adapter).
    #[error("{0}")]
    Unwritable(String),
}

/// A device's protocol core, built from its validated config.
pub trait Decoder: Send {
    /// Feeds bytes read at `stamp`; results are appended to `out`.
    fn feed(&mut self, bytes: &[u8], stamp: Time, out: &mut Vec<Output>);
    /// Drops partial input, after the device was reopened.
    fn reset(&mut self);
    /// Bytes of an unfinished frame held for the next `feed`. Never more than the
    /// protocol's line limit: a device that never ends a line cannot grow memory.
    fn pending(&self) -> usize;
    /// Bytes to send each time the device is opened (e.g. an adapter's setup).
    fn setup(&self) -> Vec<u8> {
        Vec::new()
    }
    /// The bytes that carry out a write on this protocol.
    fn encode_write(&self, w: &DeviceWrite) -> Result<Vec<u8>, WriteError> {
        match w {
            DeviceWrite::Line(bytes) => Ok(bytes.clone()),
            _ => Err(WriteError::Unwritable(
                "this device takes text lines".into(),
            )),
        }
    }
}
