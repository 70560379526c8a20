//! What viewers see of the bus (`botbus foxglove`, `record`, `play`): each topic typed
//! from the retained catalogs, payloads as JSON, and a JSON Schema per type.

pub mod feed;
pub mod json;
pub mod schema;
pub mod topics;

pub use feed::{Feed, Item};
pub use topics::{Change, Channel, TopicKind, Topics};
