//! The MQTT bus: one task owns the broker connection; everyone else holds a cheap
//! [`BusHandle`]. Publishing never blocks a device or the safety path.

pub mod connection;
mod data;
pub mod link;
pub mod outbox;
mod oversized;
pub mod session;
mod task;

pub use crate::config::broker_url::{BrokerUrl, BrokerUrlError};
use crate::config::Settings;
use bytes::Bytes;
pub use data::DataSender;
pub use rumqttc::QoS;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

#[derive(Debug, Error)]
pub enum BusError {
    #[error("the bus has stopped")]
    Closed,
    #[error("the bus queue is full; message dropped")]
    Full,
    #[error("{0}")]
    Config(String),
}

/// One message to publish. Topics are shared, so a stream allocates its topic once.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The spool record holding this message, when it came from the disk spool.
    pub spool_id: Option<u64>,
}

impl Outgoing {
    pub fn new(
        topic: impl Into<Arc<str>>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Self {
        Outgoing {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            spool_id: None,
        }
    }
}

/// A message received on a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Set (to its size) when the message was larger than `max_incoming`: it was
    /// acknowledged and skipped, and `payload` is empty.
    pub oversized: Option<usize>,
}

pub fn qos_from_u8(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

pub fn qos_to_u8(q: QoS) -> u8 {
    q as u8
}

/// Certificates for `mqtts://`.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct BusConfig {
    pub url: BrokerUrl,
    pub client_id: String,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: TlsFiles,
    /// Largest packet accepted from the broker.
    pub max_incoming: usize,
    /// The Last Will, published by the broker if we vanish.
    pub will: Option<Outgoing>,
    /// Published first on every connection (status, catalog).
    pub birth: Vec<Outgoing>,
    /// Subscribed again on every CONNACK.
    pub subscriptions: Vec<(String, QoS)>,
    /// Memory budget for QoS 1/2 messages waiting for the broker.
    pub backlog_bytes: u64,
    pub drop_oldest: bool,
    pub max_inflight: usize,
    /// Capacity of the incoming message queue; beyond it messages are dropped and counted.
    pub incoming_capacity: usize,
    /// Answers the watchdog's pings while the bus task's loops turn.
    pub pulse: crate::service::Pulse,
}

impl std::fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusConfig")
            .field("url", &self.url.to_string())
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl BusConfig {
    /// Broker, credentials and TLS from the daemon settings, shared by daemon and tools.
    pub fn from_settings(settings: &Settings, client_id: String) -> Result<BusConfig, BusError> {
        let m = &settings.mqtt;
        let url = BrokerUrl::parse(&m.url).map_err(|e| BusError::Config(e.to_string()))?;
        let password = settings
            .password()
            .map_err(|e| BusError::Config(e.to_string()))?;
        let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        Ok(BusConfig {
            url,
            client_id,
            keep_alive: Duration::from_secs(m.keep_alive_s.max(1) as u64),
            username: (!m.username.is_empty()).then(|| m.username.clone()),
            password,
            tls: TlsFiles {
                ca_file: path(&m.ca_file),
                cert_file: path(&m.cert_file),
                key_file: path(&m.key_file),
            },
            max_incoming: m.max_payload_bytes + 1024,
            will: None,
            birth: Vec::new(),
            subscriptions: Vec::new(),
            backlog_bytes: settings.spool.max_bytes,
            drop_oldest: settings.spool.on_full == crate::config::settings::OnFull::DropOldest,
            max_inflight: 1000,
            incoming_capacity: 4096,
            pulse: crate::service::Pulse::none(),
        })
    }
}

/// Counters that feed `diagnostics.mqtt`.
#[derive(Debug, Default)]
pub struct BusStats {
    pub connected: AtomicBool,
    pub reconnects: AtomicU64,
    /// QoS 1/2 messages waiting for the broker's acknowledgement (in the spool), now.
    pub spooled: AtomicU64,
    /// QoS 1/2 messages lost: spool full (by `on_full`), or the bus queue full.
    pub dropped: AtomicU64,
    /// QoS 0 messages not sent: no broker connection, or the bus queue full.
    pub dropped_qos0: AtomicU64,
    /// Incoming messages dropped because their consumer fell behind.
    pub dropped_incoming: AtomicU64,
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub received: AtomicU64,
}

impl BusStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Whether the broker connection is up, as a watchable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Down,
    Up,
}

pub(crate) enum Command {
    Publish(Outgoing),
    SetBirth(Vec<Outgoing>),
    Subscribe(String, QoS),
    /// Publish the final messages, wait for every ack up to the deadline, disconnect cleanly.
    Shutdown {
        last: Vec<Outgoing>,
        grace: Duration,
        done: oneshot::Sender<bool>,
    },
}

/// The cheap, cloneable way into the bus. Devices send their samples through a
/// [`DataSender`] of their own, which waits instead of dropping; everything else (acks,
/// status, diagnostics) goes through the control queue, which never waits on them.
#[derive(Clone)]
pub struct BusHandle {
    tx: mpsc::Sender<Command>,
    data: mpsc::UnboundedSender<data::Batch>,
    link: watch::Receiver<LinkState>,
    stats: Arc<BusStats>,
}

impl BusHandle {
    /// A device's own way to send samples, with its own credit (backpressure, not loss).
    pub fn data_sender(&self) -> DataSender {
        DataSender::new(self.data.clone())
    }

    /// Queues a message on the control queue without waiting. A full queue drops it and
    /// counts the drop.
    pub fn publish(&self, msg: Outgoing) -> Result<(), BusError> {
        let counter = if msg.qos == QoS::AtMostOnce {
            &self.stats.dropped_qos0
        } else {
            &self.stats.dropped
        };
        self.tx
            .try_send(Command::Publish(msg))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    BusError::Full
                }
                mpsc::error::TrySendError::Closed(_) => BusError::Closed,
            })
    }

    /// [`BusHandle::publish`] for a producer that can wait: it waits for room in the
    /// queue instead of dropping (`botbus play` sending a recording as fast as asked).
    pub async fn publish_waiting(&self, msg: Outgoing) -> Result<(), BusError> {
        self.tx
            .send(Command::Publish(msg))
            .await
            .map_err(|_| BusError::Closed)
    }

    /// Replaces the messages published on every (re)connection.
    pub async fn set_birth(&self, birth: Vec<Outgoing>) -> Result<(), BusError> {
        self.tx
            .send(Command::SetBirth(birth))
            .await
            .map_err(|_| BusError::Closed)
    }

    pub async fn subscribe(&self, filter: impl Into<String>, qos: QoS) -> Result<(), BusError> {
        self.tx
            .send(Command::Subscribe(filter.into(), qos))
            .await
            .map_err(|_| BusError::Closed)
    }

    pub fn link(&self) -> watch::Receiver<LinkState> {
        self.link.clone()
    }

    pub fn is_connected(&self) -> bool {
        *self.link.borrow() == LinkState::Up
    }

    pub fn stats(&self) -> &Arc<BusStats> {
        &self.stats
    }

    /// Waits until the broker connection is up, or the timeout passes.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut link = self.link.clone();
        tokio::time::timeout(timeout, link.wait_for(|s| *s == LinkState::Up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes `last` (e.g. the offline status), flushes what is in flight within
    /// `grace`, and disconnects cleanly so the broker does not send the Will. True when
    /// the broker acknowledged everything in flight (and `last`) before the end.
    pub async fn shutdown(&self, last: Vec<Outgoing>, grace: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Command::Shutdown { last, grace, done })
            .await
            .is_err()
        {
            return false;
        }
        matches!(
            tokio::time::timeout(grace + Duration::from_secs(1), wait).await,
            Ok(Ok(true))
        )
    }
}

#[cfg(test)]
impl BusHandle {
    /// A handle whose publishes land in the returned queue instead of on a broker, for
    /// unit tests of what publishes through the bus.
    /// Data batches are taken one at a time, so a test that reads nothing sees devices
    /// run out of credit.
    pub(crate) fn capture() -> (BusHandle, mpsc::Receiver<Outgoing>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let (data, mut data_rx) = mpsc::unbounded_channel::<data::Batch>();
        let (out_tx, out_rx) = mpsc::channel(1024);
        let (_link_tx, link) = watch::channel(LinkState::Up);
        tokio::spawn(async move {
            loop {
                let msgs = tokio::select! {
                    Some(c) = rx.recv() => match c {
                        Command::Publish(m) => vec![m],
                        _ => continue,
                    },
                    Some(b) = data_rx.recv() => b.msgs,
                    else => return,
                };
                for m in msgs {
                    if out_tx.send(m).await.is_err() {
                        return;
                    }
                }
            }
        });
        let stats = Arc::new(BusStats::default());
        (
            BusHandle {
                tx,
                data,
                link,
                stats,
            },
            out_rx,
        )
    }
}

/// Starts the bus task with a memory queue (fleet tools). Returns the handle and the
/// queue of subscribed messages.
pub fn start(config: BusConfig) -> (BusHandle, mpsc::Receiver<Incoming>) {
    let outbox = outbox::Outbox::memory(config.backlog_bytes, config.drop_oldest);
    start_with(config, outbox)
}

/// Starts the bus task over the given outbox (the daemon passes its disk spool).
pub fn start_with(
    config: BusConfig,
    outbox: outbox::Outbox,
) -> (BusHandle, mpsc::Receiver<Incoming>) {
    let (tx, rx) = mpsc::channel(8192);
    let (data, data_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(config.incoming_capacity.max(1));
    let (link_tx, link_rx) = watch::channel(LinkState::Down);
    let stats = Arc::new(BusStats::default());
    let queues = task::Queues {
        control: rx,
        data: data_rx,
        incoming: in_tx,
    };
    tokio::spawn(task::run(config, outbox, queues, link_tx, stats.clone()));
    (
        BusHandle {
            tx,
            data,
            link: link_rx,
            stats,
        },
        in_rx,
    )
}
