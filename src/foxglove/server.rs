//! The WebSocket side: accepts clients offering either subprotocol name, sends them the
//! channels on offer, and forwards the messages of the channels they subscribe to.

use super::hub::{Event, Hub};
use super::protocol::SUBPROTOCOLS;
use super::protocol::{choose_subprotocol, message_data, ClientError, ServerMsg, Subscriptions};
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The largest request a client may send (a subscribe to thousands of channels fits).
const MAX_REQUEST: usize = 1 << 20;

/// Accepts clients until the task is dropped.
pub async fn serve(listener: TcpListener, hub: Arc<Hub>, session_id: String) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let hub = hub.clone();
                let session_id = session_id.clone();
                tokio::spawn(async move {
                    if let Err(e) = client(stream, peer, hub, session_id).await {
                        tracing::info!(%peer, "foxglove client: {e}");
                    }
                });
            }
            // Out of file descriptors, say: wait instead of spinning.
            Err(e) => {
                tracing::warn!("cannot accept a foxglove client: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// The handshake: answers with the subprotocol the client offered, or refuses with 400.
#[allow(clippy::result_large_err)] // the error type is tungstenite's callback contract
fn negotiate(req: &Request, mut res: Response) -> Result<Response, ErrorResponse> {
    let offered = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .flat_map(|h| h.to_str().unwrap_or_default().split(','));
    match choose_subprotocol(offered) {
        Some(p) => {
            res.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static(p));
            Ok(res)
        }
        None => {
            let mut e = ErrorResponse::new(Some(format!(
                "offer one of the WebSocket subprotocols {}",
                SUBPROTOCOLS.join(", ")
            )));
            *e.status_mut() = StatusCode::BAD_REQUEST;
            Err(e)
        }
    }
}

async fn client(
    stream: TcpStream,
    peer: SocketAddr,
    hub: Arc<Hub>,
    session_id: String,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let _ = stream.set_nodelay(true);
    // A client sends only small JSON requests; a bigger one is refused, not buffered.
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_REQUEST))
        .max_frame_size(Some(MAX_REQUEST));
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, negotiate, Some(config)).await?;
    tracing::info!(%peer, "foxglove client connected");
    let (mut tx, mut rx) = ws.split();
    let (on_offer, mut events) = hub.join();
    let info = ServerMsg::ServerInfo {
        name: format!("botbus {}", crate::meta::VERSION),
        capabilities: Vec::new(),
        supported_encodings: Vec::new(),
        metadata: BTreeMap::new(),
        session_id,
    };
    tx.send(Message::Text(info.to_text().into())).await?;
    // The channels this client was told of, to put right what it missed if it lags.
    let mut known: BTreeSet<u32> = on_offer.iter().map(|c| c.id).collect();
    if !on_offer.is_empty() {
        let channels = on_offer.iter().map(|c| (**c).clone()).collect();
        tx.send(text(ServerMsg::Advertise { channels })).await?;
    }
    let mut subs = Subscriptions::default();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(Event::Advertise(ad)) => {
                    known.insert(ad.id);
                    tx.send(text(ServerMsg::Advertise { channels: vec![(*ad).clone()] })).await?;
                }
                Ok(Event::Unadvertise(id)) => {
                    known.remove(&id);
                    subs.forget_channels(&[id]);
                    tx.send(text(ServerMsg::Unadvertise { channel_ids: vec![id] })).await?;
                }
                Ok(Event::Message { channel, log_time_ns, payload }) => {
                    let ids: Vec<u32> = subs.of_channel(channel).collect();
                    for s in ids {
                        let frame = message_data(s, log_time_ns, &payload);
                        tx.feed(Message::Binary(frame.into())).await?;
                    }
                    tx.flush().await?;
                }
                Err(RecvError::Lagged(n)) => {
                    let m = format!("this client fell behind: {n} events were skipped");
                    tx.send(text(ServerMsg::warning(m))).await?;
                    // Channel changes may be among them: compare with what is on offer.
                    let (gone, new) = hub.changes_since(&known);
                    if !gone.is_empty() {
                        subs.forget_channels(&gone);
                        gone.iter().for_each(|id| { known.remove(id); });
                        tx.send(text(ServerMsg::Unadvertise { channel_ids: gone })).await?;
                    }
                    if !new.is_empty() {
                        known.extend(new.iter().map(|c| c.id));
                        tx.send(text(ServerMsg::Advertise { channels: new })).await?;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    for e in subs.apply(&t, |c| hub.has(c)) {
                        tx.send(text(ServerMsg::error(e.to_string()))).await?;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = ClientError::Binary.to_string();
                    tx.send(text(ServerMsg::error(e))).await?;
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // tungstenite queued the reply to a Close; send it to finish the handshake.
                Some(Ok(Message::Close(_))) | None => {
                    let _ = tx.close().await;
                    break;
                }
                Some(Err(e)) => return Err(e),
            },
        }
    }
    tracing::info!(%peer, "foxglove client left");
    Ok(())
}

fn text(m: ServerMsg) -> Message {
    Message::Text(m.to_text().into())
}
