//! What viewers see of the bus (`botbus foxglove`, `record`, `play`): each topic typed
//! from the retained catalogs, payloads as JSON, and a JSON Schema per type.

pub mod feed;
pub mod json;
pub mod schema;
pub mod topics;

pub use feed::{Feed, Item};
pub use topics::{is_command_topic, Change, Channel, TopicKind, Topics};

/// Now, in nanoseconds since the Unix epoch: a message's arrival (log) time.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The viewer channel name of an MQTT topic, with a leading `/` as ROS users expect.
pub fn channel_topic(mqtt_topic: &str) -> String {
    format!("/{mqtt_topic}")
}
