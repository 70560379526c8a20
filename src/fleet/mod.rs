//! The fleet side: [`FleetClient`] for Rust fleet controllers, and the `botbus topic ...`
//! and `botbus cmd` tools built on it.

pub mod client;
pub mod cmd;
pub mod echo;
pub mod hz;
pub mod json;
pub mod list;

pub use client::{
    Ack, FleetClient, FleetError, FleetOptions, RobotEvent, RobotEvents, Subscription,
};
