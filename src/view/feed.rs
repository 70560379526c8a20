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
    status: mpsc::Receiver<Incoming>,
    catalog: mpsc::Receiver<Incoming>,
    data: mpsc::Receiver<Incoming>,
}

impl Feed {
    /// Subscribes to the meta topics (to type every topic), then to `filter`.
    pub async fn subscribe(
        client: &FleetClient,
        prefix: &str,
        filter: &str,
    ) -> Result<Feed, FleetError> {
        let topics = Topics::new(prefix);
        let [status, catalog] = topics.meta_filters();
        // The broker sends retained messages in subscription order, so the catalogs are
        // known before the data they type.
        let status = client.subscribe_raw(&status).await?;
        let catalog = client.subscribe_raw(&catalog).await?;
        let data = client.subscribe_raw(filter).await?;
        Ok(Feed {
            topics,
            filter: crate::fleet::client::match_filter(filter).to_string(),
            status,
            catalog,
            data,
        })
    }

    /// The next items; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Vec<Item>> {
        // Meta first: a catalog that also matches the filter is routed to both receivers,
        // and its channels must exist before its message is forwarded.
        let meta = tokio::select! {
            biased;
            m = self.status.recv() => m,
            m = self.catalog.recv() => m,
            m = self.data.recv() => return m.map(|m| vec![Item::Message(m)]),
        }?;
        let filter = &self.filter;
        let changes = self.topics.observe(&meta.topic, &meta.payload);
        Some(
            changes
                .into_iter()
                .filter(|c| {
                    let topic = match c {
                        Change::Advertise(c) => &c.topic,
                        Change::Unadvertise(t) => t,
                    };
                    rumqttc::matches(topic, filter)
                })
                .map(Item::Change)
                .collect(),
        )
    }
}
