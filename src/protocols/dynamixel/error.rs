//! What can go wrong between botbus and a Dynamixel bus: a corrupt or foreign packet on
//! the wire, a device that answered with an error, an answer that does not match its
//! request, and a request or config that cannot be built.

use super::packet::{MAX_LENGTH, MAX_PACKET};
use super::status::StatusError;
use super::table::Model;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DynamixelError {
    /// A packet whose CRC does not match its bytes: corrupted on the wire.
    #[error("dynamixel packet from id {id} has CRC {got:#06x}, its bytes make {want:#06x}")]
    Crc { id: u8, got: u16, want: u16 },
    /// A header followed by an id or length no packet has: noise that looked like a header.
    #[error(
        "dynamixel header with id {id} and length {length} starts no packet \
         (ids 0..=252 or 254, lengths 3..={MAX_LENGTH})"
    )]
    BadHeader { id: u8, length: u16 },
    /// A well-formed packet that is not a status, e.g. our own request echoed back by a
    /// half-duplex adapter.
    #[error("dynamixel packet from id {id} is instruction {instruction:#04x}, not a status")]
    NotStatus { id: u8, instruction: u8 },
    /// A status packet with a valid CRC that still cannot be read.
    #[error("dynamixel status from id {id}: {reason}")]
    Malformed { id: u8, reason: &'static str },
    /// The device answered and said no (its error number is set).
    #[error("dynamixel id {id} answered: {error}")]
    Device { id: u8, error: StatusError },
    #[error("expected an answer from dynamixel id {want}, got one from id {got}")]
    WrongId { want: u8, got: u8 },
    #[error("dynamixel id {id} answered {got} bytes, {want} were asked for")]
    WrongLength { id: u8, want: usize, got: usize },
    #[error("no answer from dynamixel id {id}")]
    NoAnswer { id: u8 },
    #[error("{id} is not a dynamixel device id (0..=252)")]
    BadId { id: u8 },
    #[error("dynamixel id {id} is listed twice in one request")]
    DuplicateId { id: u8 },
    #[error("a dynamixel {what} needs at least one entry")]
    Empty { what: &'static str },
    #[error("a dynamixel packet of {bytes} bytes is over the {MAX_PACKET}-byte limit")]
    TooLong { bytes: usize },
    /// Sync Write gives every device the same number of bytes.
    #[error("sync write data for dynamixel id {id} is {got} bytes, for the first id {want}")]
    DataLength { id: u8, want: usize, got: usize },
    #[error("the {model} control table has no item {name:?}")]
    UnknownItem { model: Model, name: String },
    #[error("{value} does not fit the {size}-byte item {item}")]
    OutOfRange {
        item: &'static str,
        size: u8,
        value: i64,
    },
    #[error(
        "unknown dynamixel model {name:?}: use x (or xm430, xm540, xh430, xh540, xd430, \
         xd540, xw430, xw540), ph54, ph42, pm54 or pm42"
    )]
    UnknownModel { name: String },
    #[error("dynamixel model {name:?} is not supported: {reason}")]
    UnsupportedModel { name: String, reason: &'static str },
    #[error("{quantity} is not a finite number")]
    NotFinite { quantity: &'static str },
}
