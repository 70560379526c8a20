//! [`FleetClient`]: the Rust API for fleet controllers. It connects with the same settings
//! as the daemon and the CLI tools, subscribes with typed decoding, sends commands and
//! returns their acks, and reports robots going online and offline.
//!
//! ```no_run
//! use botbus::fleet::{FleetClient, FleetOptions};
//! use botbus::messages::{NavSatFix, Twist, Vector3};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), botbus::fleet::FleetError> {
//! let fleet = FleetClient::connect(FleetOptions::new("mqtt://127.0.0.1:1883")?).await?;
//! let mut fixes = fleet.subscribe::<NavSatFix>("robot/+/gps/fix").await?;
//! while let Some((robot, fix)) = fixes.next().await {
//!     println!("{robot}: {:.6} {:.6}", fix.latitude, fix.longitude);
//!     let go = Twist { linear: Vector3 { x: 0.2, ..Default::default() }, ..Default::default() };
//!     let ack = fleet.command(&robot, "drive", &go, Duration::from_secs(2)).await?;
//!     println!("accepted: {}", ack.ok);
//! }
//! # Ok(())
//! # }
//! ```

use super::json;
use crate::bus::{self, BusConfig, BusHandle, Incoming, Outgoing, QoS};
use crate::config::Settings;
use crate::meta::{Status, Topics};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;

#[derive(Debug, Error)]
pub enum FleetError {
    #[error("cannot reach the broker at {0}")]
    Unreachable(String),
    #[error("{0}")]
    Config(String),
    /// A broker URL that does not parse (the message never repeats a password in it).
    #[error("invalid broker URL: {0}")]
    BadUrl(#[from] crate::bus::BrokerUrlError),
    #[error("`{0}` is not a valid MQTT topic filter")]
    BadFilter(String),
    #[error("no ack from {robot}/{actuator} within {ms} ms")]
    NoAck {
        robot: String,
        actuator: String,
        ms: u128,
    },
    #[error("the connection to the broker was closed")]
    Closed,
    #[error("the broker did not acknowledge the message on {0} in time")]
    NotAcknowledged(String),
    #[error("cannot encode the command: {0}")]
    Encode(String),
}

/// How to reach the broker.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub bus: BusConfig,
    pub topic_prefix: String,
    pub connect_timeout: Duration,
}

impl FleetOptions {
    /// Defaults for `url` (anonymous, no TLS, prefix `robot`). The URL is often typed by a
    /// user, so a bad one is [`FleetError::BadUrl`], not a panic.
    pub fn new(url: &str) -> Result<FleetOptions, FleetError> {
        crate::bus::BrokerUrl::parse(url)?;
        let mut settings = Settings::default();
        settings.mqtt.url = url.to_string();
        FleetOptions::from_settings(&settings)
    }

    /// The broker, credentials, TLS and topic prefix of the daemon's settings.
    pub fn from_settings(settings: &Settings) -> Result<FleetOptions, FleetError> {
        let client_id = format!(
            "botbus-fleet-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        );
        let mut bus = BusConfig::from_settings(settings, client_id)
            .map_err(|e| FleetError::Config(e.to_string()))?;
        bus.incoming_capacity = 65_536;
        Ok(FleetOptions {
            bus,
            topic_prefix: settings.mqtt.topic_prefix.clone(),
            connect_timeout: Duration::from_secs(10),
        })
    }
}

/// A command's acknowledgement, as the robot sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ack {
    pub id: serde_json::Value,
    pub ok: bool,
    pub error: Option<String>,
    /// The values written, after clamping.
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub applied: serde_json::Value,
}

/// A robot came online or went offline (from its retained `status`, or its Last Will).
#[derive(Debug, Clone, PartialEq)]
pub enum RobotEvent {
    Online {
        robot: String,
        boot: u64,
        version: String,
    },
    Offline {
        robot: String,
        boot: u64,
    },
}

/// The filter without a `$share/<group>/` prefix: what topics are matched against.
pub fn match_filter(filter: &str) -> &str {
    match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or(rest, |(_, f)| f),
        None => filter,
    }
}

/// [`valid_filter`], with the message a user reads when it is not.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if valid_filter(filter) {
        Ok(())
    } else {
        Err(format!(
            "`{filter}` is not a valid MQTT topic filter (`+` and `#` fill a whole level; `#` only last)"
        ))
    }
}

pub fn valid_filter(filter: &str) -> bool {
    let f = match_filter(filter);
    !f.is_empty() && rumqttc::valid_filter(f) && (filter == f || filter.matches('/').count() >= 2)
}

type Route = (String, mpsc::Sender<Incoming>);

/// A connection for fleet controllers. Cheap to clone.
#[derive(Clone)]
pub struct FleetClient {
    bus: BusHandle,
    routes: Arc<Mutex<Vec<Route>>>,
    prefix: String,
}

impl FleetClient {
    pub async fn connect(opts: FleetOptions) -> Result<FleetClient, FleetError> {
        let url = opts.bus.url.to_string();
        let (bus, mut incoming) = bus::start(opts.bus);
        if !bus.wait_connected(opts.connect_timeout).await {
            bus.shutdown(Vec::new(), Duration::from_millis(100)).await;
            return Err(FleetError::Unreachable(url));
        }
        let routes: Arc<Mutex<Vec<Route>>> = Arc::default();
        let r = routes.clone();
        tokio::spawn(async move {
            while let Some(m) = incoming.recv().await {
                let targets: Vec<mpsc::Sender<Incoming>> = {
                    let mut routes = r.lock().unwrap_or_else(|e| e.into_inner());
                    routes.retain(|(_, tx)| !tx.is_closed());
                    routes
                        .iter()
                        .filter(|(f, _)| rumqttc::matches(&m.topic, match_filter(f)))
                        .map(|(_, tx)| tx.clone())
                        .collect()
                };
                for tx in targets {
                    let _ = tx.send(m.clone()).await;
                }
            }
        });
        Ok(FleetClient {
            bus,
            routes,
            prefix: opts.topic_prefix,
        })
    }

    /// The raw messages of a filter (MQTT wildcards and `$share/<group>/...` allowed).
    pub async fn subscribe_raw(
        &self,
        filter: &str,
    ) -> Result<mpsc::Receiver<Incoming>, FleetError> {
        if !valid_filter(filter) {
            return Err(FleetError::BadFilter(filter.to_string()));
        }
        let (tx, rx) = mpsc::channel(4096);
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((filter.to_string(), tx));
        self.bus
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|_| FleetError::Closed)?;
        Ok(rx)
    }

    /// Messages of a filter decoded as `T`, with the robot id taken from the topic.
    /// Messages that do not decode as `T` are skipped (and logged at debug level).
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        filter: &str,
    ) -> Result<Subscription<T>, FleetError> {
        let rx = self.subscribe_raw(filter).await?;
        Ok(Subscription {
            rx,
            prefix: self.prefix.clone(),
            _t: std::marker::PhantomData,
        })
    }

    /// Robots going online and offline, starting with every robot's retained status.
    pub async fn robot_events(&self) -> Result<RobotEvents, FleetError> {
        let rx = self
            .subscribe_raw(&format!("{}/+/status", self.prefix))
            .await?;
        Ok(RobotEvents {
            rx,
            prefix: self.prefix.clone(),
        })
    }

    /// Sends `command` to `robot`'s `actuator` and waits for its ack. An `id` is added to
    /// the command (when it is a map without one) to match the ack.
    pub async fn command<C: Serialize>(
        &self,
        robot: &str,
        actuator: &str,
        command: &C,
        timeout: Duration,
    ) -> Result<Ack, FleetError> {
        let mut value =
            serde_json::to_value(command).map_err(|e| FleetError::Encode(e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            if !obj.contains_key("id") {
                obj.insert("id".into(), serde_json::json!(rand::random::<u32>()));
            }
        }
        let id = value.get("id").cloned().unwrap_or(serde_json::Value::Null);
        let topics = Topics::new(&self.prefix, robot);
        let mut acks = self.subscribe_raw(&topics.ack(actuator)).await?;
        // The broker handles a connection's packets in order, so the subscription is in
        // place before the command goes out.
        self.bus
            .publish(Outgoing::new(
                topics.command(actuator),
                json::from_json(&value).map_err(|e| FleetError::Encode(e.to_string()))?,
                QoS::AtLeastOnce,
                false,
            ))
            .map_err(|_| FleetError::Closed)?;
        let wait = async {
            while let Some(m) = acks.recv().await {
                let Ok(v) = json::decode_msgpack(&m.payload) else {
                    continue;
                };
                let ack = json::to_json(&v);
                if ack.get("id") == Some(&id) {
                    if let Ok(a) = serde_json::from_value::<Ack>(ack) {
                        return Some(a);
                    }
                }
            }
            None
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(FleetError::Closed),
            Err(_) => Err(FleetError::NoAck {
                robot: robot.to_string(),
                actuator: actuator.to_string(),
                ms: timeout.as_millis(),
            }),
        }
    }

    /// Publishes `value` as MessagePack.
    pub fn publish<V: Serialize>(
        &self,
        topic: &str,
        value: &V,
        qos: QoS,
        retain: bool,
    ) -> Result<(), FleetError> {
        let payload =
            rmp_serde::to_vec_named(value).map_err(|e| FleetError::Encode(e.to_string()))?;
        self.bus
            .publish(Outgoing::new(topic.to_string(), payload, qos, retain))
            .map_err(|_| FleetError::Closed)
    }

    /// Publishes a message as it is (its payload already MessagePack), waiting for room
    /// in the queue rather than dropping it.
    pub async fn publish_outgoing(&self, message: Outgoing) -> Result<(), FleetError> {
        self.bus
            .publish_waiting(message)
            .await
            .map_err(|_| FleetError::Closed)
    }

    /// Flushes what is in flight and disconnects.
    pub async fn close(&self) {
        self.close_within(Duration::from_secs(2)).await;
    }

    /// [`FleetClient::close`] with its own grace period; whether everything in flight was
    /// acknowledged in it.
    pub async fn close_within(&self, grace: Duration) -> bool {
        self.bus.shutdown(Vec::new(), grace).await
    }
}

/// The robot id in `<prefix>/<id>/...`.
pub fn robot_of<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    topic
        .strip_prefix(prefix)?
        .strip_prefix('/')?
        .split('/')
        .next()
}

/// What follows `<prefix>/<robot>/` in `topic`; empty for `<prefix>/<robot>` itself (or a
/// topic of another robot or prefix).
pub fn rest_of<'a>(prefix: &str, robot: &str, topic: &'a str) -> &'a str {
    topic
        .strip_prefix(prefix)
        .and_then(|t| t.strip_prefix('/'))
        .and_then(|t| t.strip_prefix(robot))
        .and_then(|t| t.strip_prefix('/'))
        .unwrap_or("")
}

/// Typed messages of one subscription.
pub struct Subscription<T> {
    rx: mpsc::Receiver<Incoming>,
    prefix: String,
    _t: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next `(robot id, message)`; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<(String, T)> {
        loop {
            let m = self.rx.recv().await?;
            match rmp_serde::from_slice::<T>(&m.payload) {
                Ok(v) => {
                    let robot = robot_of(&self.prefix, &m.topic).unwrap_or("").to_string();
                    return Some((robot, v));
                }
                Err(e) => {
                    tracing::debug!(topic = %m.topic, "skipping a message that does not decode: {e}")
                }
            }
        }
    }

    /// The next message together with its full topic.
    pub async fn next_with_topic(&mut self) -> Option<(String, T)> {
        loop {
            let m = self.rx.recv().await?;
            if let Ok(v) = rmp_serde::from_slice::<T>(&m.payload) {
                return Some((m.topic, v));
            }
        }
    }
}

/// Robot online/offline events.
pub struct RobotEvents {
    rx: mpsc::Receiver<Incoming>,
    prefix: String,
}

impl RobotEvents {
    pub async fn next(&mut self) -> Option<RobotEvent> {
        loop {
            let m = self.rx.recv().await?;
            let Some(robot) = robot_of(&self.prefix, &m.topic) else {
                continue;
            };
            let Ok(s) = rmp_serde::from_slice::<Status>(&m.payload) else {
                continue;
            };
            let robot = robot.to_string();
            return Some(if s.state == "online" {
                RobotEvent::Online {
                    robot,
                    boot: s.boot,
                    version: s.version,
                }
            } else {
                RobotEvent::Offline {
                    robot,
                    boot: s.boot,
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_subscription_filters_match_their_inner_filter() {
        assert_eq!(
            match_filter("$share/ops/robot/+/gps/fix"),
            "robot/+/gps/fix"
        );
        assert_eq!(match_filter("robot/#"), "robot/#");
        assert!(valid_filter("$share/ops/robot/#"));
        assert!(!valid_filter("$share/ops"));
        assert!(!valid_filter("robot/#/x"));
        assert!(!valid_filter("robot/a+"));
    }

    #[test]
    fn options_for_a_bad_url_are_an_error_naming_the_url() {
        for url in [
            "not a url",
            "http://broker:1883",
            "mqtt://",
            "mqtt://h:1883/path",
        ] {
            match FleetOptions::new(url) {
                Err(FleetError::BadUrl(why)) => {
                    assert!(why.to_string().contains('`'), "{url}: {why}")
                }
                other => panic!("{url}: expected BadUrl, got {:?}", other.map(|o| o.bus.url)),
            }
        }
    }

    #[test]
    fn a_password_in_a_bad_url_is_not_repeated_in_the_error() {
        let err = FleetOptions::new("mqtt://ops:hunter2@broker:1883/x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("invalid broker URL: "), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn options_for_a_good_url_keep_its_host_port_and_tls() {
        let opts = FleetOptions::new("mqtts://broker.example:8884").unwrap();
        assert_eq!(
            (
                opts.bus.url.host.as_str(),
                opts.bus.url.port,
                opts.bus.url.tls
            ),
            ("broker.example", 8884, true)
        );
        assert_eq!(opts.topic_prefix, "robot");
    }

    #[test]
    fn robot_ids_come_from_the_topic() {
        assert_eq!(robot_of("robot", "robot/r1/gps/fix"), Some("r1"));
        assert_eq!(robot_of("robot", "robots/r1/x"), None);
        assert_eq!(robot_of("fleet/a", "fleet/a/r2/status"), Some("r2"));
    }
}
