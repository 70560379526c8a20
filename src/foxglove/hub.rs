//! The channels on offer and the fan-out to connected clients. A client that falls behind
//! skips messages (and is told so) rather than slowing the bridge or the other clients.

use super::protocol::ChannelAd;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Events buffered per client before a slow one starts skipping.
const BACKLOG: usize = 4096;

#[derive(Debug, Clone)]
pub enum Event {
    Advertise(Arc<ChannelAd>),
    Unadvertise(u32),
    Message {
        channel: u32,
        log_time_ns: u64,
        payload: Arc<[u8]>,
    },
}

#[derive(Default)]
struct State {
    channels: BTreeMap<u32, Arc<ChannelAd>>,
    by_topic: HashMap<String, u32>,
    next_id: u32,
}

pub struct Hub {
    state: Mutex<State>,
    tx: broadcast::Sender<Event>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            state: Mutex::default(),
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Hub {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers `topic`; a topic already offered with another schema is withdrawn first
    /// (clients must not decode new data with an old schema). Returns the channel id.
    pub fn advertise(&self, topic: &str, schema_name: &str, schema: &serde_json::Value) -> u32 {
        let mut st = self.state();
        let schema = schema.to_string();
        if let Some(id) = st.by_topic.get(topic).copied() {
            let same =
                st.channels[&id].schema_name == schema_name && st.channels[&id].schema == schema;
            if same {
                return id;
            }
            st.channels.remove(&id);
            st.by_topic.remove(topic);
            let _ = self.tx.send(Event::Unadvertise(id));
        }
        st.next_id += 1;
        let id = st.next_id;
        let ad = Arc::new(ChannelAd {
            id,
            topic: topic.to_string(),
            encoding: "json".into(),
            schema_name: schema_name.to_string(),
            schema,
            schema_encoding: "jsonschema".into(),
        });
        st.channels.insert(id, ad.clone());
        st.by_topic.insert(topic.to_string(), id);
        let _ = self.tx.send(Event::Advertise(ad));
        id
    }

    pub fn unadvertise(&self, topic: &str) {
        let mut st = self.state();
        if let Some(id) = st.by_topic.remove(topic) {
            st.channels.remove(&id);
            let _ = self.tx.send(Event::Unadvertise(id));
        }
    }

    pub fn channel_of(&self, topic: &str) -> Option<u32> {
        self.state().by_topic.get(topic).copied()
    }

    pub fn has(&self, id: u32) -> bool {
        self.state().channels.contains_key(&id)
    }

    /// Sends a message to the clients subscribed to `channel`.
    pub fn publish(&self, channel: u32, log_time_ns: u64, payload: Arc<[u8]>) {
        let _ = self.tx.send(Event::Message {
            channel,
            log_time_ns,
            payload,
        });
    }

    /// For a client that missed events: the channels of `known` that are gone, and those
    /// on offer that it does not know.
    pub fn changes_since(&self, known: &BTreeSet<u32>) -> (Vec<u32>, Vec<ChannelAd>) {
        let st = self.state();
        let gone = known
            .iter()
            .filter(|id| !st.channels.contains_key(id))
            .copied()
            .collect();
        let new = st
            .channels
            .values()
            .filter(|c| !known.contains(&c.id))
            .map(|c| (**c).clone())
            .collect();
        (gone, new)
    }

    /// For a new client: the channels on offer now, and every event after them.
    pub fn join(&self) -> (Vec<Arc<ChannelAd>>, broadcast::Receiver<Event>) {
        let st = self.state();
        (st.channels.values().cloned().collect(), self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_client_joining_sees_what_is_on_offer_then_every_change() {
        let hub = Hub::default();
        let a = hub.advertise("/robot/r1/battery", "sensor_msgs/BatteryState", &json!({}));
        assert_eq!(
            hub.advertise("/robot/r1/battery", "sensor_msgs/BatteryState", &json!({})),
            a
        );
        let (now, mut rx) = hub.join();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].topic, "/robot/r1/battery");
        // A new schema for the topic: withdrawn, then offered under a new id.
        let b = hub.advertise("/robot/r1/battery", "map", &json!({}));
        assert_ne!(a, b);
        assert!(matches!(rx.recv().await, Ok(Event::Unadvertise(id)) if id == a));
        assert!(matches!(rx.recv().await, Ok(Event::Advertise(ad)) if ad.id == b));
        hub.publish(b, 7, Arc::from(&b"{}"[..]));
        assert!(
            matches!(rx.recv().await, Ok(Event::Message { channel, log_time_ns: 7, .. }) if channel == b)
        );
        hub.unadvertise("/robot/r1/battery");
        assert!(matches!(rx.recv().await, Ok(Event::Unadvertise(id)) if id == b));
        assert!(!hub.has(b));
        assert_eq!(hub.channel_of("/robot/r1/battery"), None);
    }

    #[test]
    fn a_lagging_client_learns_which_channels_went_and_came() {
        let hub = Hub::default();
        let a = hub.advertise("/a", "map", &json!({}));
        let b = hub.advertise("/b", "map", &json!({}));
        let known = BTreeSet::from([a, b]);
        hub.unadvertise("/a");
        let c = hub.advertise("/c", "map", &json!({}));
        let (gone, new) = hub.changes_since(&known);
        assert_eq!(gone, [a]);
        assert_eq!(new.iter().map(|ad| ad.id).collect::<Vec<_>>(), [c]);
    }
}
