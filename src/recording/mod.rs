//! `botbus record` and `botbus play`: MCAP recordings of the bus that Foxglove and
//! Lichtblick open as they are, and that play back onto MQTT rosbag-style.

pub mod play;
pub mod record;
pub mod writer;

pub use play::{play, PlayError, PlayOptions, Played};
pub use record::{record, RecordError};
pub use writer::{Encoding, Totals};
