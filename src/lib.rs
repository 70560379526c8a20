//! botbus: a robot telemetry bridge. Serial and CAN devices in, MessagePack over MQTT out,
//! and remote commands back through a safety layer.
//!
//! # Layout
//! - [`config`]: daemon settings and robot files, validated in one step into a [`config::Robot`],
//!   whose devices are a closed enum with one variant per protocol.
//! - [`spec`]: the validated parts every protocol shares (streams, commands, transports) and
//!   the checker that collects every problem with its key path.
//! - [`messages`]: the ROS 2 message types, field paths and their MessagePack encoding.
//! - [`protocols`]: one folder per protocol (`nmea`, `lines`, `modbus`, `can`), each with its
//!   robot-file keys, their validation, its sans-IO core and its simulator.
//! - [`transport`]: opens serial ports and TCP serial servers as byte streams.
//! - [`device`]: the one device runner (open, reconnect with backoff, link state, safe-first
//!   writes, shutdown) and each protocol's thin driver (open, next event, write).
//! - [`stream`]: per-topic `seq`, rate limiting and encoding of telemetry.
//! - [`bus`]: the one task that owns the MQTT connection, and the handle to it.
//! - [`tls`]: TLS to the broker: certificates as people make them, the TLS doctor of
//!   `botbus check`, and handshake failures in plain words.
//! - [`safety`]: the command checks (limits, age, rate, e-stop), payload decoding, device
//!   writes, and the sans-IO supervisor (e-stop latch, retained commands, deadman, broker
//!   loss, safe-write retries, shutdown).
//! - [`commands`]: the async shell around the supervisor: feeds it commands, link changes
//!   and device answers, writes to devices and publishes acks.
//! - [`spool`]: the disk spool that keeps QoS 1/2 messages until the broker acknowledges them.
//! - [`meta`]: topic names, the `status` and `catalog` payloads.
//! - [`diagnostics`]: device and bus counters, published periodically.
//! - [`state`]: the boot counter in the state directory.
//! - [`daemon`]: `botbus run`, wiring all of the above.
//! - [`sim`]: runs the protocols' simulators on pseudo-terminals or TCP ports.
//! - [`demo`]: the zero-setup demo with an embedded broker.
//! - [`bench`](mod@bench): `botbus bench`, the end-to-end benchmark (device → daemon → broker →
//!   subscriber, commands back, `mosquitto_pub` baseline, simulated fleets).
//! - [`fleet`]: fleet-side tools (`topic echo`) and MessagePack ↔ JSON.
//! - [`view`]: what viewers see: topics typed from the catalogs, JSON payloads, JSON Schemas.
//! - [`foxglove`]: `botbus foxglove`, a Foxglove WebSocket server for live topics.
//! - [`recording`]: `botbus record` and `botbus play`, MCAP files of the bus.
//! - [`backoff`]: jittered exponential backoff.
//! - [`certs`]: `botbus certs`, sans-IO: a CA, the broker's certificate and per-robot and
//!   fleet client certificates for mutual TLS with per-robot ACLs.
//! - [`cli`]: the command line's arguments, each command's output and its exit codes.
pub mod backoff;
pub mod bench;
pub mod bus;
pub mod certs;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod device;
pub mod diagnostics;
pub mod fleet;
pub mod foxglove;
pub mod messages;
pub mod meta;
pub mod protocols;
pub mod recording;
pub mod safety;
pub mod service;
pub mod sim;
pub mod spec;
pub mod spool;
pub mod state;
pub mod stream;
pub mod tls;
pub mod transport;
pub mod view;

/// Shared pieces of the fuzz targets beside each parser (test builds only).
#[cfg(test)]
mod fuzzing;
