//! Configuration: daemon settings (`config/botbus.toml`) and robot files (`robots/<id>.toml`),
//! validated in one step into the types everything else is built from.

pub mod broker_url;
pub mod robot;
pub mod settings;
mod validate;

#[cfg(test)]
mod fuzz;

pub use crate::spec::{
    valid_name, Command, Limit, OutOfRange, Problem, SerialSpec, StreamSpec, TransportSpec,
    RESERVED_SEGMENTS,
};
pub use robot::{CommandRender, CommandSpec, Device, DeviceKind, Robot};
pub use settings::{LoadedSettings, Settings, SettingsError};
pub use validate::RobotFileError;
