//! `botbus record`: the messages of a filter into an MCAP file, until Ctrl-C or a time
//! limit, then the summary and index.

use super::writer::{Encoding, Recorder, Totals, WriteError, CHUNK_PERIOD};
use crate::fleet::{FleetClient, FleetError, FleetOptions};
use crate::view::now_ns;
use crate::view::{Feed, Item};
use std::future::Future;
use std::path::Path;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RecordError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// Records `filter` into `path` until `stop`; `started` is called once subscribed.
pub async fn record(
    opts: FleetOptions,
    filter: &str,
    path: &Path,
    encoding: Encoding,
    stop: impl Future<Output = ()>,
    started: impl FnOnce(),
) -> Result<Totals, RecordError> {
    let prefix = opts.topic_prefix.clone();
    let client = FleetClient::connect(opts).await?;
    let mut feed = Feed::subscribe(&client, &prefix, filter).await?;
    // Only now: a run that cannot reach the broker leaves an earlier file as it was.
    let mut rec = match Recorder::create(path, encoding) {
        Ok(r) => r,
        Err(e) => {
            client.close().await;
            return Err(e.into());
        }
    };
    started();
    let mut chunks = tokio::time::interval(CHUNK_PERIOD / 4);
    tokio::pin!(stop);
    let result = loop {
        tokio::select! {
            items = feed.next() => {
                let Some(items) = items else { break Ok(()) };
                if let Err(e) = take(&mut rec, &feed, items) {
                    break Err(e);
                }
            }
            _ = chunks.tick() => {
                if let Err(e) = rec.tick(Instant::now()) {
                    break Err(e);
                }
            }
            _ = &mut stop => break Ok(()),
        }
    };
    client.close().await;
    result?;
    Ok(rec.finish()?)
}

/// Writes the messages among `items`; all of them arrived now.
fn take(rec: &mut Recorder, feed: &Feed, items: Vec<Item>) -> Result<(), WriteError> {
    let arrived = now_ns();
    for item in items {
        if let Item::Message(m) = item {
            if m.oversized.is_none() {
                let channel = feed.topics.channel(&m.topic, m.qos as u8, m.retain);
                rec.write(&channel, &m.payload, arrived)?;
            }
        }
    }
    Ok(())
}
