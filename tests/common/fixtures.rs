//! Shared robot fixtures: robot-file snippets and device data that several suites use (a
//! GPS, a text-line base with a battery stream and a `drive` actuator, a counter device),
//! a real NMEA sentence with its hand-worked fix, the shipped demo robot, and MessagePack
//! encoding of JSON commands.

use super::subscriber::{lookup, Collector, Msg};
use super::util::{repo_path, DEADLINE};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// novatel-oem.nmea (tests/fixtures/nmea), verbatim: 29°26.6326' N, 98°36.8840' W, 255.75 m
/// MSL, geoid -26.00 m, GPS fix. Without its line end (see [`crlf`]).
pub const NOVATEL_GGA: &str =
    "$GPGGA,222306.75,2926.6326,N,09836.8840,W,1,08,1.2,255.75,M,-26.00,M,,*57";

/// What [`NOVATEL_GGA`] decodes to: latitude, longitude, ellipsoid altitude (MSL + geoid),
/// worked out by hand.
pub fn novatel_fix() -> (f64, f64, f64) {
    (
        29.0 + 26.6326 / 60.0,
        -(98.0 + 36.8840 / 60.0),
        255.75 - 26.00,
    )
}

/// A sentence as a receiver sends it, ending in `\r\n`.
pub fn crlf(sentence: &str) -> String {
    format!("{sentence}\r\n")
}

/// A `[[devices]]` table: an NMEA GPS at 9600 baud publishing `gps/fix` (NavSatFix from
/// GGA) at `qos`.
pub fn gps_device(path: &Path, qos: u8) -> String {
    format!(
        r#"
[[devices]]
name = "gps"
protocol = "nmea"
serial = {{ path = "{}", baud = 9600 }}
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/NavSatFix"
  source = "GGA"
  qos = {qos}
"#,
        path.display()
    )
}

/// The head of a `[[devices]]` table: a text-line (`kv`) device `name` at 115200 baud.
pub fn lines_device(name: &str, path: &Path) -> String {
    format!(
        r#"
[[devices]]
name = "{name}"
protocol = "lines"
serial = {{ path = "{}", baud = 115200 }}
format = "kv"
"#,
        path.display()
    )
}

/// The `base` microcontroller with its QoS 1 `battery` stream (`tag=BAT v=.. i=..`
/// lines), downsampled to `max_rate_hz` when given.
pub fn base_device(path: &Path, max_rate_hz: Option<f64>) -> String {
    let rate = max_rate_hz
        .map(|r| format!("  max_rate_hz = {r}\n"))
        .unwrap_or_default();
    format!(
        r#"{}  [[devices.streams]]
  sensor = "battery"
  type = "sensor_msgs/BatteryState"
  when = {{ tag = "BAT" }}
  fields = {{ voltage = "v", current = "i" }}
  qos = 1
{rate}"#,
        lines_device("base", path)
    )
}

/// The demo robot's `drive` actuator (a Twist rendered as `D <linear.x> <angular.z>`,
/// limits ±1 m/s and ±2 rad/s, safe values 0, `max_age_ms` = 1000), for a device table.
pub fn drive_command(out_of_range: &str, timeout_ms: u64, max_rate_hz: Option<u32>) -> String {
    let rate = max_rate_hz
        .map(|r| format!("  max_rate_hz = {r}\n"))
        .unwrap_or_default();
    format!(
        r#"  [[devices.commands]]
  actuator = "drive"
  type = "geometry_msgs/Twist"
  template = "D {{linear.x:.3}} {{angular.z:.3}}"
  limits = {{ "linear.x" = [-1.0, 1.0], "angular.z" = [-2.0, 2.0] }}
  out_of_range = "{out_of_range}"
  timeout_ms = {timeout_ms}
  safe = {{ "linear.x" = 0.0, "angular.z" = 0.0 }}
{rate}  max_age_ms = 1000
"#
    )
}

/// A robot with one text-line device, `pump`, whose `tag=T n=<k>` lines become a QoS 1
/// `std_msgs/Float64` stream on `robot/<id>/counter` with `data = k`.
pub fn counter_robot(id: &str, path: &Path) -> String {
    format!(
        r#"id = "{id}"
{}  [[devices.streams]]
  sensor = "counter"
  type = "std_msgs/Float64"
  when = {{ tag = "T" }}
  fields = {{ data = "n" }}
  qos = 1
"#,
        lines_device("pump", path)
    )
}

/// Whether a diagnostics report says [`counter_robot`]'s `pump` device is open.
pub fn pump_connected(m: &Msg) -> Option<bool> {
    lookup(m.diag_device("pump")?, "connected")?.as_bool()
}

/// How many lines [`counter_robot`]'s `pump` device has read, by a diagnostics report.
pub fn pump_frames(m: &Msg) -> u64 {
    m.diag_device("pump")
        .and_then(|d| lookup(d, "frames"))
        .and_then(|f| f.as_u64())
        .unwrap_or(0)
}

/// Waits for a diagnostics report of [`counter_robot`] `id` with its device open and the
/// broker connected (`col` must be subscribed to `robot/<id>/diagnostics`).
pub async fn wait_pump_ready(col: &Collector, id: &str) -> Msg {
    col.wait_msg(
        &format!("robot/{id}/diagnostics"),
        DEADLINE,
        "diagnostics with the device and the broker connected",
        |m| pump_connected(m) == Some(true) && m.bool("mqtt.connected"),
    )
    .await
}

/// robots/demo.toml as shipped.
pub fn demo_robot() -> String {
    std::fs::read_to_string(repo_path("robots/demo.toml")).expect("read robots/demo.toml")
}

/// The `[[devices]]` table of robots/demo.toml whose name is `name`, as shipped.
pub fn demo_device(name: &str) -> String {
    demo_robot()
        .split("[[devices]]\n")
        .skip(1)
        .find(|d| d.contains(&format!("name = \"{name}\"")))
        .map(|d| format!("[[devices]]\n{d}"))
        .unwrap_or_else(|| panic!("robots/demo.toml has no device `{name}`"))
}

/// `v` as a MessagePack map with named fields, as a command payload.
pub fn msgpack(v: &serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("encode msgpack")
}

/// Seconds since 1970.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}
