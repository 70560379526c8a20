//! Modbus RTU/TCP units: their robot-file keys ([`config`]), validation into [`Modbus`]
//! ([`validate`]), the sans-IO register planner and codec ([`registers`]) and a simulated
//! bus of units ([`sim`]).

pub mod config;
pub mod registers;
pub mod sim;
pub mod validate;

#[cfg(test)]
mod fuzz;

pub use config::{
    ModbusCommandConfig, ModbusConfig, ModbusStreamConfig, RegisterConfig, RegisterFormat,
    RegisterKind, WordOrder, WriteConfig,
};
pub use registers::*;
pub use validate::{Modbus, Poll};
