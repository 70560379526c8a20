//! An NMEA device's keys → the validated [`Nmea`]: a byte transport and streams that each
//! name the sentence they read.

use super::config::{NmeaConfig, NmeaStreamConfig};
use crate::messages::MessageType;
use crate::spec::check::idle;
use crate::spec::{Checker, Stream, TransportSpec};
use crate::stream_keys;
use std::time::Duration;

/// A validated NMEA receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Nmea {
    pub transport: TransportSpec,
    pub idle_timeout: Option<Duration>,
    /// Each stream selects a sentence: a formatter such as `GGA`, or a full address such
    /// as `GPGGA`.
    pub streams: Vec<Stream<String>>,
}

/// Default `idle_timeout_ms` of NMEA devices.
pub const NMEA_IDLE_TIMEOUT_MS: u64 = 5000;

/// Validates one `protocol = "nmea"` device: its own keys in `table`, its `streams` and
/// `commands` items apart. Returns the device's name and what it is.
pub fn device(
    ck: &mut Checker,
    table: toml::Value,
    streams: Vec<toml::Value>,
    commands: Vec<toml::Value>,
    at: &str,
) -> Option<(String, Nmea)> {
    let d: Option<NmeaConfig> = ck.read(table, at);
    let streams: Vec<NmeaStreamConfig> = ck.read_items(streams, &format!("{at}.streams"));
    let Some(d) = d else {
        // Still check the streams, as far as they stand alone.
        for (i, s) in streams.into_iter().enumerate() {
            stream(ck, s, &format!("{at}.streams[{i}]"), "");
        }
        return None;
    };
    if !commands.is_empty() {
        ck.problem(
            format!("{at}.commands"),
            "nmea devices are read-only and take no commands",
        );
    }
    let name_ok = ck.check_name(&format!("{at}.name"), &d.name, false);
    let transport = ck.transport(d.serial, d.tcp, at);
    let device_frame = d.frame_id.unwrap_or_else(|| d.name.clone());
    let streams = streams
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| stream(ck, s, &format!("{at}.streams[{i}]"), &device_frame))
        .collect();
    // A GPS talks at least once a second; silence means an unplugged or wedged port.
    let idle_timeout = idle(d.idle_timeout_ms.unwrap_or(NMEA_IDLE_TIMEOUT_MS));
    let (true, Some(transport)) = (name_ok, transport) else {
        return None;
    };
    Some((
        d.name,
        Nmea {
            transport,
            idle_timeout,
            streams,
        },
    ))
}

fn stream(
    ck: &mut Checker,
    s: NmeaStreamConfig,
    at: &str,
    device_frame: &str,
) -> Option<Stream<String>> {
    let t = ck.msg_type(at, &s.msg_type, &[MessageType::NavSatFix, MessageType::Map]);
    let source_text = s.source;
    let spec = ck.stream(at, stream_keys!(s), t, device_frame);
    let source = source_text.trim().to_ascii_uppercase();
    let source_ok =
        (3..=6).contains(&source.len()) && source.bytes().all(|b| b.is_ascii_alphanumeric());
    if !source_ok {
        ck.problem(
            format!("{at}.source"),
            format!("`{source_text}` is not an NMEA sentence name such as GGA or RMC"),
        );
    }
    // Only sliced once known to be ASCII: `M🕴` is 5 bytes too (found by fuzzing: it
    // panicked here).
    let formatter = if source_ok && source.len() == 5 {
        &source[2..]
    } else {
        &source[..]
    };
    if t == Some(MessageType::NavSatFix) && source_ok && formatter != "GGA" && formatter != "RMC" {
        ck.problem(
            format!("{at}.source"),
            format!("sensor_msgs/NavSatFix is built from GGA or RMC, not `{source}`; use type \"map\" for other sentences"),
        );
        return None;
    }
    let (Some(spec), true) = (spec, source_ok) else {
        return None;
    };
    Some(Stream {
        spec,
        select: source,
    })
}
