//! The Foxglove WebSocket protocol v1, sans-IO: the server's JSON and binary messages, the
//! client's requests, and each connection's subscriptions. One wire format, offered
//! under both of its subprotocol names.
//! Spec: github.com/foxglove/ws-protocol, docs/spec.md.

use serde::{Deserialize, Serialize};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use thiserror::Error;

/// The name the spec, Lichtblick before 2025-12 and `@foxglove/ws-protocol` use.
pub const SUBPROTOCOL_WEBSOCKET_V1: &str = "foxglove.websocket.v1";
/// The name the current Foxglove SDK servers and apps use; the protocol is the same.
pub const SUBPROTOCOL_SDK_V1: &str = "foxglove.sdk.v1";
pub const SUBPROTOCOLS: [&str; 2] = [SUBPROTOCOL_WEBSOCKET_V1, SUBPROTOCOL_SDK_V1];

/// The subprotocol to answer with: the first one the client offers that we speak.
pub fn choose_subprotocol<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    offered
        .into_iter()
        .find_map(|o| SUBPROTOCOLS.into_iter().find(|s| *s == o.trim()))
}

/// Opcode of a binary Message Data frame.
const MESSAGE_DATA: u8 = 0x01;

/// One channel as advertised.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAd {
    pub id: u32,
    pub topic: String,
    pub encoding: String,
    pub schema_name: String,
    /// The JSON Schema as a string, as the spec wants it.
    pub schema: String,
    pub schema_encoding: String,
}

/// What the server sends as text frames.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ServerMsg {
    #[serde(rename_all = "camelCase")]
    ServerInfo {
        name: String,
        capabilities: Vec<String>,
        supported_encodings: Vec<String>,
        metadata: BTreeMap<String, String>,
        session_id: String,
    },
    /// `level`: 0 info, 1 warning, 2 error.
    Status {
        level: u8,
        message: String,
    },
    Advertise {
        channels: Vec<ChannelAd>,
    },
    #[serde(rename_all = "camelCase")]
    Unadvertise {
        channel_ids: Vec<u32>,
    },
}

impl ServerMsg {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages encode")
    }

    pub fn warning(message: String) -> ServerMsg {
        ServerMsg::Status { level: 1, message }
    }

    pub fn error(message: String) -> ServerMsg {
        ServerMsg::Status { level: 2, message }
    }
}

/// A Message Data frame: opcode, subscription id, receive time (ns), payload.
pub fn message_data(subscription: u32, log_time_ns: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + payload.len());
    out.push(MESSAGE_DATA);
    out.extend_from_slice(&subscription.to_le_bytes());
    out.extend_from_slice(&log_time_ns.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeTo {
    pub id: u32,
    pub channel_id: u32,
}

/// What a client sends as text frames, as far as this server takes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ClientMsg {
    Subscribe {
        subscriptions: Vec<SubscribeTo>,
    },
    #[serde(rename_all = "camelCase")]
    Unsubscribe {
        subscription_ids: Vec<u32>,
    },
}

#[derive(Debug, Error, PartialEq)]
pub enum ClientError {
    #[error("not a request this server understands: {0}")]
    Unreadable(String),
    #[error("binary requests need a capability this server does not offer")]
    Binary,
    #[error("subscription {0} is already in use")]
    DuplicateSubscription(u32),
    #[error("no channel {0}")]
    NoChannel(u32),
    #[error("no subscription {0}")]
    NoSubscription(u32),
}

/// One connection's subscriptions: subscription id ↔ channel id.
#[derive(Debug, Default)]
pub struct Subscriptions {
    by_id: BTreeMap<u32, u32>,
}

impl Subscriptions {
    /// Applies a client's text frame. `known` says whether a channel is advertised now.
    /// Each problem is reported back to that client; the rest of the request still applies.
    pub fn apply(&mut self, text: &str, known: impl Fn(u32) -> bool) -> Vec<ClientError> {
        let msg = match serde_json::from_str::<ClientMsg>(text) {
            Ok(m) => m,
            Err(e) => return vec![ClientError::Unreadable(e.to_string())],
        };
        let mut errors = Vec::new();
        match msg {
            ClientMsg::Subscribe { subscriptions } => {
                for s in subscriptions {
                    match self.by_id.entry(s.id) {
                        Entry::Occupied(_) => errors.push(ClientError::DuplicateSubscription(s.id)),
                        Entry::Vacant(_) if !known(s.channel_id) => {
                            errors.push(ClientError::NoChannel(s.channel_id))
                        }
                        Entry::Vacant(v) => {
                            v.insert(s.channel_id);
                        }
                    }
                }
            }
            ClientMsg::Unsubscribe { subscription_ids } => {
                for id in subscription_ids {
                    if self.by_id.remove(&id).is_none() {
                        errors.push(ClientError::NoSubscription(id));
                    }
                }
            }
        }
        errors
    }

    /// The subscriptions to a channel (a client may hold several).
    pub fn of_channel(&self, channel: u32) -> impl Iterator<Item = u32> + '_ {
        self.by_id
            .iter()
            .filter(move |(_, c)| **c == channel)
            .map(|(s, _)| *s)
    }

    /// Drops the subscriptions to channels that were unadvertised.
    pub fn forget_channels(&mut self, gone: &[u32]) {
        self.by_id.retain(|_, c| !gone.contains(c));
    }
}

#[cfg(test)]
mod tests;
