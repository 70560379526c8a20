//! Configuration: daemon settings (`config/botbus.toml`) and robot files (`robots/<id>.toml`).

pub mod robot;
pub mod settings;
mod validate;

pub use settings::{LoadedSettings, Settings, SettingsError};
pub use validate::{
    valid_name, CommandRender, CommandSpec, Device, Limit, Problem, ProtocolSpec, Robot,
    RobotFileError, SerialSpec, StreamSelect, StreamSpec, TransportSpec, RESERVED_SEGMENTS,
};
