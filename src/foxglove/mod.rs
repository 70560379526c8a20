//! `botbus foxglove`: a Foxglove WebSocket server for live topics. Every topic of the
//! filter is a channel (`/` + the MQTT topic) with `json` encoding and the JSON Schema of
//! its type, advertised as robots come and withdrawn as they go, so Foxglove and
//! Lichtblick plot any field at once.

pub mod hub;
pub mod protocol;
mod server;

use crate::fleet::{FleetClient, FleetError, FleetOptions};
use crate::view::json::viewer_json;
use crate::view::schema::{schema, schema_with_sample};
use crate::view::{channel_topic, now_ns, Change, Feed, Item};
use hub::Hub;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;

/// Where the server listens unless `--listen` says otherwise: this computer only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

#[derive(Debug, Error)]
pub enum FoxgloveError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        addr: SocketAddr,
        reason: std::io::Error,
    },
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("cannot write to the terminal: {0}")]
    Output(std::io::Error),
}

/// Serves `filter` on `listen` until `stop`. The first line on `out` names the address.
pub async fn run(
    opts: FleetOptions,
    filter: &str,
    listen: SocketAddr,
    stop: impl Future<Output = ()>,
    out: &mut (impl Write + Send),
) -> Result<(), FoxgloveError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|reason| FoxgloveError::Listen {
            addr: listen,
            reason,
        })?;
    let addr = listener.local_addr().unwrap_or(listen);
    let (prefix, url) = (opts.topic_prefix.clone(), opts.bus.url.to_string());
    let client = FleetClient::connect(opts).await?;
    let mut feed = Feed::subscribe(&client, &prefix, filter).await?;
    let hub = Arc::new(Hub::default());
    let server = tokio::spawn(server::serve(listener, hub.clone(), now_ns().to_string()));
    writeln!(
        out,
        "foxglove: serving ws://{addr} (subprotocol {}) with {filter} from {url}",
        protocol::SUBPROTOCOLS.join(" or ")
    )
    .and_then(|_| out.flush())
    .map_err(FoxgloveError::Output)?;
    tracing::info!(%addr, filter, "foxglove server up; clients cannot publish (read-only)");
    tokio::pin!(stop);
    loop {
        tokio::select! {
            items = feed.next() => match items {
                Some(items) => items.into_iter().for_each(|i| forward(&hub, &feed, i)),
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    server.abort();
    client.close().await;
    Ok(())
}

fn forward(hub: &Hub, feed: &Feed, item: Item) {
    match item {
        // A `map` stream's fields are known only from its data: it is offered with its
        // first message (below), so viewers can list and plot them.
        Item::Change(Change::Advertise(c)) if c.schema_name == "map" => {}
        Item::Change(Change::Advertise(c)) => {
            hub.advertise(
                &channel_topic(&c.topic),
                &c.schema_name,
                &schema(&c.schema_name),
            );
        }
        Item::Change(Change::Unadvertise(t)) => hub.unadvertise(&channel_topic(&t)),
        Item::Message(m) => {
            if m.oversized.is_some() {
                return;
            }
            let json = match viewer_json(&m.payload) {
                Ok(j) => j,
                Err(e) => {
                    tracing::debug!(topic = m.topic, "not MessagePack, not forwarded: {e}");
                    return;
                }
            };
            let name = channel_topic(&m.topic);
            let id = match hub.channel_of(&name) {
                Some(id) => id,
                // Retained or late data of a robot that went offline: not offered again.
                None if feed.topics.robot_down(&m.topic) => return,
                // A topic no catalog announced, a `map` stream, or one seen before its
                // catalog: offered with its first message.
                None => {
                    let c = feed.topics.channel(&m.topic, m.qos as u8, m.retain);
                    let s = schema_with_sample(&c.schema_name, Some(&json));
                    hub.advertise(&name, &c.schema_name, &s)
                }
            };
            hub.publish(id, now_ns(), Arc::from(json.to_string().into_bytes()));
        }
    }
}
