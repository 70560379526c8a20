//! Integration-test harness: a real mosquitto on a free loopback port, the real `botbus`
//! binary, pseudo-terminal devices, and an independent rumqttc subscriber that decodes
//! MessagePack payloads with rmpv. Every resource is unique per test, so tests run in
//! parallel. This file only declares the modules and re-exports them.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod broker;
pub mod can;
pub mod daemon;
pub mod fixtures;
pub mod paho;
pub mod peers;
pub mod pki;
pub mod process;
pub mod proxy;
pub mod pty;
pub mod rig;
pub mod subscriber;
pub mod util;

pub use broker::*;
pub use daemon::*;
pub use fixtures::*;
pub use paho::*;
pub use peers::{require, Peer};
pub use process::*;
pub use proxy::*;
pub use pty::*;
pub use rig::*;
pub use subscriber::*;
pub use util::*;
