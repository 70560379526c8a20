//! Validated parts every protocol shares (streams, commands, byte transports) and the
//! [`Checker`] that builds them from robot-file keys, collecting each problem with its key
//! path. Each protocol folder builds on this module; it knows none of them, so neither
//! `config` nor `protocols` cycles back through it.

pub mod check;
pub mod command;
pub mod stream;
pub mod transport;

pub use check::{valid_name, Checker, Problem, RESERVED_SEGMENTS};
pub use command::{Command, CommandKeys, Limit, OutOfRange};
pub use stream::{Stream, StreamKeys, StreamSpec};
pub use transport::{FlowControlConfig, ParityConfig, SerialConfig, SerialSpec, TransportSpec};
