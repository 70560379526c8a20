//! A subscription for viewers: the messages of a filter, and the channel changes that the
//! retained statuses and catalogs of every robot cause, in one ordered feed.

use super::topics::{Change, Topics};
use crate::bus::Incoming;
use crate::fleet::{FleetClient, FleetError};
use tokio::sync::mpsc;

/// One step of the feed.
#[derive(Debug)]
pub enum Item {
    /// A channel of the filter appeared or went away.
    Change(Change),
    /// A message of the filter.
    Message(Incoming),
}

pub struct Feed {
    pub topics: Topics,
    filter: String,
    /// The meta filters the user's filter does not cover, subscribed on their own.
    meta: Vec<mpsc::Receiver<Incoming>>,
    data: mpsc::Receiver<Incoming>,
}

/// The next meta message, from whichever separate subscription has one.
async fn next_meta(meta: &mut [mpsc::Receiver<Incoming>]) -> Option<Incoming> {
    if meta.is_empty() {
        return std::future::pending().await;
    }
    let recvs = meta.iter_mut().map(|rx| Box::pin(rx.recv()));
    futures_util::future::select_all(recvs).await.0
}

/// Whether every topic that MQTT filter `g` matches also matches `f`.
pub fn subsumes(f: &str, g: &str) -> bool {
    let (mut fs, mut gs) = (f.split('/'), g.split('/'));
    loop {
        match (fs.next(), gs.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(b)) if b != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Feed {
    /// Subscribes to the meta topics (to type every topic), then to `filter`. A meta
    /// filter that `filter` covers is not subscribed twice: a broker may send a message
    /// once per matching subscription, and a recording would hold it twice.
    pub async fn subscribe(
        client: &FleetClient,
        prefix: &str,
        filter: &str,
    ) -> Result<Feed, FleetError> {
        let topics = Topics::new(prefix);
        let matched = crate::fleet::client::match_filter(filter).to_string();
        let mut meta = Vec::new();
        // The broker sends retained messages in subscription order, so the catalogs are
        // known before the data they type.
        for f in topics.meta_filters() {
            if !subsumes(&matched, &f) {
                meta.push(client.subscribe_raw(&f).await?);
            }
        }
        let data = client.subscribe_raw(filter).await?;
        Ok(Feed {
            topics,
            filter: matched,
            meta,
            data,
        })
    }

    /// The next items; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Vec<Item>> {
        // Meta first: a catalog that also matches the filter is routed to both receivers,
        // and its channels must exist before its message is forwarded.
        let (m, is_data) = tokio::select! {
            biased;
            m = next_meta(&mut self.meta) => (m?, false),
            m = self.data.recv() => (m?, true),
        };
        let filter = &self.filter;
        // Data on a meta topic the filter covers types topics too; elsewhere this finds
        // nothing to change.
        let changes = self.topics.observe(&m.topic, &m.payload);
        let mut items: Vec<Item> = changes
            .into_iter()
            .filter(|c| {
                let topic = match c {
                    Change::Advertise(c) => &c.topic,
                    Change::Unadvertise(t) => t,
                };
                rumqttc::matches(topic, filter)
            })
            .map(Item::Change)
            .collect();
        if is_data {
            items.push(Item::Message(m));
        }
        Some(items)
    }
}

#[cfg(test)]
mod tests {
    use super::subsumes;

    #[test]
    fn a_filter_covers_another_when_every_topic_of_that_one_matches() {
        assert!(subsumes("robot/#", "robot/+/status"));
        assert!(subsumes("#", "robot/+/catalog"));
        assert!(subsumes("robot/+/status", "robot/+/status"));
        assert!(subsumes("robot/+/+", "robot/+/status"));
        assert!(!subsumes("robot/r1/#", "robot/+/status"));
        assert!(!subsumes("robot/+/battery", "robot/+/status"));
        assert!(!subsumes("robot/+", "robot/+/status"));
        assert!(!subsumes("robot/+/status", "robot/#"));
        assert!(!subsumes("robot/+/+", "robot/+/#"));
        assert!(!subsumes("fleet/#", "robot/+/status"));
    }
}
