//! CAN buses, through an slcan adapter or a SocketCAN interface: their robot-file keys
//! ([`config`]), validation into [`Can`] ([`validate`]), DBC signals ([`dbc`]), controller
//! error reports ([`fault`]), the
//! sans-IO frame core ([`frames`]), the slcan serial protocol ([`slcan`]) and a simulated
//! slcan adapter ([`sim`]).

pub mod config;
pub mod dbc;
pub mod fault;
pub mod frames;
pub mod sim;
pub mod slcan;
pub mod validate;

pub use config::{CanCommandConfig, CanConfig, CanStreamConfig};
pub use fault::BusFault;
pub use frames::*;
pub use validate::{Can, CanLink, CanSelect, CanWrite};
