//! botbus: a robot telemetry bridge. Serial and CAN devices in, MessagePack over MQTT out,
//! and remote commands back through a safety layer.
//!
//! # Layout
//! - [`config`]: daemon settings and robot files, validated in one step.
//! - [`messages`]: the ROS 2 message types, field paths and their MessagePack encoding.
//! - [`protocols`]: sans-IO protocol cores (NMEA, text lines), tested with byte fixtures.
pub mod config;
pub mod messages;
pub mod protocols;
pub mod backoff;
pub mod bus;
