//! `botbus play`: a recording published back onto MQTT as MessagePack, at its recorded
//! pace times `--rate`, with each topic's original QoS and retain flag. Command topics are
//! replayed only when `--topics` names them: an old recording must not drive a robot.

use crate::bus::{qos_from_u8, Outgoing};
use crate::fleet::client::match_filter;
use crate::fleet::{FleetClient, FleetError, FleetOptions};
use crate::view::json::{to_msgpack, EncodeError};
use crate::view::{is_command_topic, TopicKind};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

#[derive(Debug, Error)]
pub enum PlayError {
    #[error("cannot read {path}: {reason}")]
    Read {
        path: String,
        reason: std::io::Error,
    },
    #[error("{path} is not an MCAP file: {reason}")]
    NotMcap {
        path: String,
        reason: mcap::McapError,
    },
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// Speed: 2.0 plays twice as fast.
    pub rate: f64,
    pub looped: bool,
    /// Only topics matching this MQTT filter; it must name `cmd` to replay commands.
    pub topics: Option<String>,
}

/// What a pass over the file did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Played {
    pub messages: u64,
    /// Command topics left out because `--topics` did not name them.
    pub commands_held: BTreeSet<String>,
    /// Messages whose payload could not be turned back into MessagePack.
    pub unreadable: u64,
    /// Why the file ended early (a recording cut off), if it did.
    pub cut_off: Option<String>,
    /// Whether the broker acknowledged every QoS 1/2 message before the end.
    pub confirmed: bool,
}

/// How long the last QoS 1/2 messages may take to be acknowledged at the end.
const FLUSH: Duration = Duration::from_secs(10);

/// One recorded message, ready to publish `offset` after the first.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub offset: Duration,
    pub message: Outgoing,
}

/// Whether `topic` may be published: it matches `filter`, and a command topic only when
/// the filter has `cmd` as a literal level.
pub fn replayable(topic: &str, kind: TopicKind, filter: Option<&str>) -> bool {
    let Some(f) = filter.map(match_filter) else {
        return kind != TopicKind::Command;
    };
    if !rumqttc::matches(topic, f) {
        return false;
    }
    kind != TopicKind::Command || f.split('/').any(|level| level == "cmd")
}

/// Reads a recording into the messages to publish, in order.
pub fn read(
    buf: &[u8],
    path: &Path,
    opts: &PlayOptions,
    played: &mut Played,
) -> Result<Vec<Replay>, PlayError> {
    let stream =
        mcap::MessageStream::new_with_options(buf, mcap::read::Options::IgnoreEndMagic.into())
            .map_err(|reason| PlayError::NotMcap {
                path: path.display().to_string(),
                reason,
            })?;
    let mut schemas: HashMap<u16, serde_json::Value> = HashMap::new();
    let mut first = None;
    let mut any = false;
    let mut out = Vec::new();
    for m in stream {
        let m = match m {
            Ok(m) => m,
            Err(e) if !any => {
                return Err(PlayError::NotMcap {
                    path: path.display().to_string(),
                    reason: e,
                })
            }
            Err(e) => {
                played.cut_off = Some(e.to_string());
                break;
            }
        };
        any = true;
        let ch = &m.channel;
        let topic = ch.topic.strip_prefix('/').unwrap_or(&ch.topic);
        let meta = |k: &str| ch.metadata.get(k).map(String::as_str);
        // A command by its name (whatever the metadata says, or when there is none: a file
        // of another tool), or because `record` said so.
        let kind = if is_command_topic(topic) || meta("kind") == Some("command") {
            TopicKind::Command
        } else {
            TopicKind::Stream
        };
        if !replayable(topic, kind, opts.topics.as_deref()) {
            if kind == TopicKind::Command {
                played.commands_held.insert(topic.to_string());
            }
            continue;
        }
        let payload = match payload(&m, &mut schemas) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(topic, "cannot replay a message: {e}");
                played.unreadable += 1;
                continue;
            }
        };
        // Offsets count from the first message played, so `--topics` starts at once.
        let first_time = *first.get_or_insert(m.log_time);
        let qos = meta("qos").and_then(|q| q.parse().ok()).unwrap_or(1);
        let retain = meta("retain") == Some("true");
        out.push(Replay {
            offset: Duration::from_nanos(m.log_time.saturating_sub(first_time)),
            message: Outgoing::new(topic.to_string(), payload, qos_from_u8(qos), retain),
        });
    }
    // Cut at a record boundary, the stream ends cleanly: only the missing footer tells.
    if played.cut_off.is_none() && mcap::read::footer(buf).is_err() {
        played.cut_off = Some("it has no summary (the recorder was killed)".into());
    }
    Ok(out)
}

/// The MessagePack of a recorded message: as stored (`msgpack`), or from its JSON and the
/// channel's schema.
fn payload(
    m: &mcap::Message<'_>,
    schemas: &mut HashMap<u16, serde_json::Value>,
) -> Result<Vec<u8>, EncodeError> {
    match m.channel.message_encoding.as_str() {
        "msgpack" => Ok(m.data.to_vec()),
        "json" => {
            let value: serde_json::Value =
                serde_json::from_slice(&m.data).map_err(|e| EncodeError::Json("the payload", e))?;
            let schema = match &m.channel.schema {
                Some(s) => schemas.entry(s.id).or_insert_with(|| {
                    serde_json::from_slice(Cow::as_ref(&s.data)).unwrap_or_default()
                }),
                None => &serde_json::Value::Null,
            };
            to_msgpack(&value, schema)
        }
        other => Err(EncodeError::Unsupported(other.to_string())),
    }
}

/// Publishes `file` until done (or, with `--loop`, until `stop`).
pub async fn play(
    opts: FleetOptions,
    file: &Path,
    po: PlayOptions,
    stop: impl Future<Output = ()>,
) -> Result<Played, PlayError> {
    let buf = std::fs::read(file).map_err(|reason| PlayError::Read {
        path: file.display().to_string(),
        reason,
    })?;
    let mut played = Played::default();
    let replays = read(&buf, file, &po, &mut played)?;
    drop(buf);
    let client = FleetClient::connect(opts).await?;
    tokio::pin!(stop);
    let run = async {
        loop {
            let start = Instant::now();
            for r in &replays {
                tokio::time::sleep_until(start + r.offset.div_f64(po.rate)).await;
                client.publish_outgoing(r.message.clone()).await?;
                played.messages += 1;
            }
            if !po.looped || replays.is_empty() {
                return Ok::<(), FleetError>(());
            }
        }
    };
    let result = tokio::select! {
        r = run => r,
        _ = &mut stop => Ok(()),
    };
    played.confirmed = client.close_within(FLUSH).await;
    result?;
    Ok(played)
}

#[cfg(test)]
mod tests;
