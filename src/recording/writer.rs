//! An MCAP file of bus messages: one channel per topic (with its QoS, retain flag and kind
//! in the channel metadata, for `play`), zstd chunks closed at least every second so a
//! recording cut off by a crash loses at most its last second.

use crate::view::json::{stamp_ns, viewer_json};
use crate::view::schema::schema_with_sample;
use crate::view::{Channel, TopicKind};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How often the open chunk is closed and written out.
pub const CHUNK_PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("cannot create {path}: {reason}")]
    Create {
        path: String,
        reason: std::io::Error,
    },
    #[error("cannot write the recording: {0}")]
    Mcap(mcap::McapError),
}

// By hand, not `#[from]`: that would also make it the `source`, and the CLI would print
// the cause twice.
impl From<mcap::McapError> for WriteError {
    fn from(e: mcap::McapError) -> WriteError {
        WriteError::Mcap(e)
    }
}

/// How payloads are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON, as Foxglove and Lichtblick read it.
    Json,
    /// The MessagePack bytes as they came (`--raw`).
    Msgpack,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Msgpack => "msgpack",
        }
    }
}

pub fn kind_name(k: TopicKind) -> &'static str {
    match k {
        TopicKind::Stream => "stream",
        TopicKind::Command => "command",
        TopicKind::Ack => "ack",
        TopicKind::Meta => "meta",
        TopicKind::Unlisted => "unlisted",
    }
}

/// What a recording holds, for the summary line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub messages: u64,
    pub channels: usize,
    /// Payloads that are not MessagePack (so have no JSON), left out.
    pub skipped: u64,
}

/// The file under the MCAP writer: buffered, and synced to the disk at every flush (a
/// chunk closed each second), so a power loss too keeps all but the last second.
struct Synced(BufWriter<File>);

impl Write for Synced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}

impl Seek for Synced {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.seek(pos)
    }
}

pub struct Recorder {
    mcap: mcap::Writer<Synced>,
    encoding: Encoding,
    /// Topic → (channel id, schema name, next sequence number).
    channels: HashMap<String, (u16, String, u32)>,
    /// (name, text) → schema id: one record per distinct schema.
    schemas: BTreeMap<(String, String), u16>,
    last_chunk: Instant,
    unflushed: bool,
    totals: Totals,
}

impl Recorder {
    pub fn create(path: &Path, encoding: Encoding) -> Result<Recorder, WriteError> {
        let file = File::create(path).map_err(|reason| WriteError::Create {
            path: path.display().to_string(),
            reason,
        })?;
        let mcap = mcap::WriteOptions::new()
            .compression(Some(mcap::Compression::Zstd))
            .profile("")
            .library(format!("botbus {}", crate::meta::VERSION))
            .create(Synced(BufWriter::new(file)))?;
        Ok(Recorder {
            mcap,
            encoding,
            channels: HashMap::new(),
            schemas: BTreeMap::new(),
            last_chunk: Instant::now(),
            unflushed: false,
            totals: Totals::default(),
        })
    }

    /// Records one message that arrived at `log_time_ns`; `channel` types its topic.
    pub fn write(
        &mut self,
        channel: &Channel,
        payload: &[u8],
        log_time_ns: u64,
    ) -> Result<(), WriteError> {
        let json = match viewer_json(payload) {
            Ok(j) => Some(j),
            Err(_) if self.encoding == Encoding::Msgpack => None,
            Err(e) => {
                tracing::debug!(topic = channel.topic, "not MessagePack, not recorded: {e}");
                self.totals.skipped += 1;
                return Ok(());
            }
        };
        let publish_time = json.as_ref().and_then(stamp_ns).unwrap_or(log_time_ns);
        let (id, sequence) = self.next_in_channel(channel, json.as_ref())?;
        let header = mcap::records::MessageHeader {
            channel_id: id,
            sequence,
            log_time: log_time_ns,
            publish_time,
        };
        match (&json, self.encoding) {
            (Some(j), Encoding::Json) => {
                let text = j.to_string();
                self.mcap.write_to_known_channel(&header, text.as_bytes())?
            }
            _ => self.mcap.write_to_known_channel(&header, payload)?,
        }
        self.totals.messages += 1;
        self.unflushed = true;
        Ok(())
    }

    /// The channel of `channel.topic` and the sequence number of its next message; the
    /// channel is added on the topic's first message. A topic whose type changes (a robot
    /// restarted with another file) gets a new channel.
    fn next_in_channel(
        &mut self,
        channel: &Channel,
        sample: Option<&serde_json::Value>,
    ) -> Result<(u16, u32), WriteError> {
        if let Some((id, name, next)) = self.channels.get_mut(&channel.topic) {
            if *name == channel.schema_name {
                let sequence = *next;
                *next = next.wrapping_add(1);
                return Ok((*id, sequence));
            }
        }
        let s = schema_with_sample(&channel.schema_name, sample);
        let text = serde_json::to_string_pretty(&s).expect("a schema encodes");
        let key = (channel.schema_name.clone(), text);
        let schema_id = match self.schemas.get(&key) {
            Some(id) => *id,
            None => {
                let id = self
                    .mcap
                    .add_schema(&key.0, "jsonschema", key.1.as_bytes())?;
                self.schemas.insert(key, id);
                id
            }
        };
        let metadata = BTreeMap::from([
            ("qos".to_string(), channel.qos.to_string()),
            ("retain".to_string(), channel.retain.to_string()),
            ("kind".to_string(), kind_name(channel.kind).to_string()),
        ]);
        let id = self.mcap.add_channel(
            schema_id,
            &crate::view::channel_topic(&channel.topic),
            self.encoding.name(),
            &metadata,
        )?;
        self.channels
            .insert(channel.topic.clone(), (id, channel.schema_name.clone(), 1));
        self.totals.channels = self.channels.len();
        Ok((id, 0))
    }

    /// Closes the open chunk once a [`CHUNK_PERIOD`] has passed since the last one.
    pub fn tick(&mut self, now: Instant) -> Result<(), WriteError> {
        if self.unflushed && now >= self.last_chunk + CHUNK_PERIOD {
            self.mcap.flush()?;
            self.unflushed = false;
            self.last_chunk = now;
        }
        Ok(())
    }

    /// Writes the summary and index and closes the file.
    pub fn finish(mut self) -> Result<Totals, WriteError> {
        self.mcap.finish()?;
        Ok(self.totals)
    }
}

#[cfg(test)]
mod tests;
