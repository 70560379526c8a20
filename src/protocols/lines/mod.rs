//! Text-line microcontrollers: their robot-file keys ([`config`]), validation into
//! [`Lines`] ([`validate`]), the sans-IO line decoder ([`decoder`]), command line
//! templates ([`template`]) and a simulated microcontroller ([`sim`]).

pub mod config;
pub mod decoder;
pub mod sim;
pub mod template;
pub mod validate;

#[cfg(test)]
mod fuzz;

pub use config::{LineFormatConfig, LinesCommandConfig, LinesConfig, LinesStreamConfig};
pub use decoder::*;
pub use template::Template;
pub use validate::{LineFormat, LineSelect, Lines};
