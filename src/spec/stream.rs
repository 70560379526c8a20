//! A validated telemetry stream: the keys every protocol shares ([`StreamSpec`]) and the
//! protocol's own selection of what it publishes ([`Stream::select`]).

use super::Checker;
use crate::messages::MessageType;
use std::time::Duration;

/// What every stream has, whatever its protocol: where and how it is published.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// The topic suffix after `<prefix>/<id>/`.
    pub sensor: String,
    pub msg_type: MessageType,
    pub qos: u8,
    pub retain: bool,
    /// From `max_rate_hz`: the least time between two publishes.
    pub min_interval: Option<Duration>,
    pub frame_id: String,
}

/// A stream of one protocol: the shared spec and what the protocol selects (`S`), so a
/// core only ever sees selections of its own kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream<S> {
    pub spec: StreamSpec,
    pub select: S,
}

/// The keys every stream has as written. Each protocol's stream config lists them itself
/// (serde's `flatten` cannot deny unknown keys) and hands them over with [`crate::stream_keys!`].
#[derive(Debug, Clone)]
pub struct StreamKeys {
    pub sensor: String,
    pub qos: u8,
    pub retain: bool,
    pub max_rate_hz: Option<f64>,
    pub frame_id: Option<String>,
}

/// Takes the keys every stream has out of a protocol's stream config.
#[macro_export]
macro_rules! stream_keys {
    ($s:expr) => {
        $crate::spec::StreamKeys {
            sensor: $s.sensor,
            qos: $s.qos,
            retain: $s.retain,
            max_rate_hz: $s.max_rate_hz,
            frame_id: $s.frame_id,
        }
    };
}

impl Checker {
    /// Checks the shared keys of the stream at `at`. `t` is the type the protocol read (its
    /// problem is already reported when `None`); the stream's frame defaults to the device's.
    pub fn stream(
        &mut self,
        at: &str,
        keys: StreamKeys,
        t: Option<MessageType>,
        device_frame: &str,
    ) -> Option<StreamSpec> {
        let mut ok = self.check_name(&format!("{at}.sensor"), &keys.sensor, true);
        if keys.qos > 2 {
            self.problem(
                format!("{at}.qos"),
                format!("must be 0, 1 or 2, not {}", keys.qos),
            );
            ok = false;
        }
        let rate = self.rate(at, "max_rate_hz", keys.max_rate_hz);
        let (true, Some(min_interval), Some(msg_type)) = (ok, rate, t) else {
            return None;
        };
        Some(StreamSpec {
            sensor: keys.sensor,
            msg_type,
            qos: keys.qos,
            retain: keys.retain,
            min_interval,
            frame_id: keys.frame_id.unwrap_or_else(|| device_frame.to_string()),
        })
    }
}
