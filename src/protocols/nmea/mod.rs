//! NMEA 0183 GPS receivers: their robot-file keys ([`config`]), validation into [`Nmea`]
//! ([`validate`]), the sans-IO sentence decoder ([`decoder`]) and a simulated receiver
//! ([`sim`]).

pub mod config;
pub mod decoder;
pub mod sim;
pub mod validate;

#[cfg(test)]
mod fuzz;

pub use config::{NmeaConfig, NmeaStreamConfig};
pub use decoder::*;
pub use validate::{Nmea, NMEA_IDLE_TIMEOUT_MS};
