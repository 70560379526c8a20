//! The independent subscriber: rumqttc clients (not botbus's bus) that decode every payload
//! with rmpv. [`Subscriber`] hands messages out one by one to waits that claim them;
//! [`Collector`] is its variant for long, lossy runs (fault tests, the soak), keeping
//! samples compactly, reconnecting forever and resubscribing when the broker lost its
//! session. Both connect the same way ([`client_options`], [`spawn_client`]).

use super::broker::Broker;
use super::util::{eventually, unique, DEADLINE};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One received message with its payload decoded by rmpv.
#[derive(Clone)]
pub struct Msg {
    pub topic: String,
    pub retain: bool,
    pub qos: u8,
    pub payload: Bytes,
    pub value: rmpv::Value,
    pub decode_error: Option<String>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (retain {}, qos {}): {}",
            self.topic, self.retain, self.qos, self.value
        )?;
        if let Some(e) = &self.decode_error {
            write!(f, " [not MessagePack: {e}]")?;
        }
        Ok(())
    }
}

/// Looks up `a.b.0.c` in a decoded value: map keys by name, array items by index.
pub fn lookup<'a>(v: &'a rmpv::Value, path: &str) -> Option<&'a rmpv::Value> {
    let mut cur = v;
    for seg in path.split('.') {
        cur = match cur {
            rmpv::Value::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_str() == Some(seg))
                .map(|(_, v)| v)?,
            rmpv::Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

impl Msg {
    fn from_publish(p: rumqttc::Publish) -> Msg {
        let mut rd = &p.payload[..];
        let (value, decode_error) = match rmpv::decode::read_value(&mut rd) {
            Ok(v) if rd.is_empty() => (v, None),
            Ok(v) => (v, Some(format!("{} trailing bytes", rd.len()))),
            Err(e) => (rmpv::Value::Nil, Some(e.to_string())),
        };
        Msg {
            topic: p.topic,
            retain: p.retain,
            qos: p.qos as u8,
            payload: p.payload,
            value,
            decode_error,
        }
    }

    pub fn opt(&self, path: &str) -> Option<&rmpv::Value> {
        lookup(&self.value, path)
    }

    pub fn get(&self, path: &str) -> &rmpv::Value {
        self.opt(path)
            .unwrap_or_else(|| panic!("no field `{path}` in {self:?}"))
    }

    pub fn f64(&self, path: &str) -> f64 {
        self.get(path)
            .as_f64()
            .unwrap_or_else(|| panic!("`{path}` is not a number in {self:?}"))
    }

    pub fn u64(&self, path: &str) -> u64 {
        self.get(path)
            .as_u64()
            .unwrap_or_else(|| panic!("`{path}` is not an unsigned integer in {self:?}"))
    }

    pub fn i64(&self, path: &str) -> i64 {
        self.get(path)
            .as_i64()
            .unwrap_or_else(|| panic!("`{path}` is not an integer in {self:?}"))
    }

    pub fn str(&self, path: &str) -> &str {
        self.get(path)
            .as_str()
            .unwrap_or_else(|| panic!("`{path}` is not a string in {self:?}"))
    }

    pub fn bool(&self, path: &str) -> bool {
        self.get(path)
            .as_bool()
            .unwrap_or_else(|| panic!("`{path}` is not a bool in {self:?}"))
    }

    pub fn array(&self, path: &str) -> &[rmpv::Value] {
        self.get(path)
            .as_array()
            .unwrap_or_else(|| panic!("`{path}` is not an array in {self:?}"))
    }

    /// Also decodes the payload with rmp_serde into a JSON tree (NaN becomes null), the
    /// way a serde consumer would see it.
    pub fn json(&self) -> serde_json::Value {
        rmp_serde::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("rmp_serde cannot decode {self:?}: {e}"))
    }

    /// In a diagnostics message, the entry of device `name`.
    pub fn diag_device(&self, name: &str) -> Option<&rmpv::Value> {
        self.opt("devices")?
            .as_array()?
            .iter()
            .find(|d| lookup(d, "name").and_then(|n| n.as_str()) == Some(name))
    }
}

/// The MQTT options of every test client: loopback, keep-alive 5 s, 1 MiB packets.
fn client_options(id: String, port: u16, clean: bool) -> MqttOptions {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_clean_session(clean);
    opts
}

/// What a client's event loop hands on.
enum Incoming {
    Publish(Msg),
    ConnAck(rumqttc::ConnAck),
    SubAck(Vec<rumqttc::SubscribeReasonCode>),
}

/// Connects a client and polls its event loop forever (reconnecting after an error),
/// handing every publish, CONNACK and SUBACK to `on`.
fn spawn_client(
    opts: MqttOptions,
    mut on: impl FnMut(Incoming, &AsyncClient) + Send + 'static,
) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let cl = client.clone();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    on(Incoming::Publish(Msg::from_publish(p)), &cl)
                }
                Ok(Event::Incoming(Packet::ConnAck(c))) => on(Incoming::ConnAck(c), &cl),
                Ok(Event::Incoming(Packet::SubAck(s))) => on(Incoming::SubAck(s.return_codes), &cl),
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (client, task)
}

enum Control {
    ConnAck,
    SubAck(Vec<rumqttc::SubscribeReasonCode>),
}

/// An independent MQTT client (rumqttc, not botbus's bus) that records every message.
pub struct Subscriber {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Msg>,
    control: mpsc::UnboundedReceiver<Control>,
    task: tokio::task::JoinHandle<()>,
    /// Every message received so far, in order.
    pub seen: Vec<Msg>,
    /// Received messages no `wait_*` call has claimed yet, oldest first.
    backlog: std::collections::VecDeque<Msg>,
}

impl Subscriber {
    /// Connects to the broker and subscribes to `filters` at QoS 1; returns once the broker
    /// has acknowledged every subscription.
    pub async fn connect(broker: &Broker, filters: &[&str]) -> Subscriber {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ctl_tx, control) = mpsc::unbounded_channel();
        let opts = client_options(unique("test-sub"), broker.port(), true);
        let (client, task) = spawn_client(opts, move |event, _| {
            let _ = match event {
                Incoming::Publish(m) => tx.send(m).map_err(drop),
                Incoming::ConnAck(_) => ctl_tx.send(Control::ConnAck).map_err(drop),
                Incoming::SubAck(codes) => ctl_tx.send(Control::SubAck(codes)).map_err(drop),
            };
        });
        let mut sub = Subscriber {
            client,
            rx,
            control,
            task,
            seen: Vec::new(),
            backlog: std::collections::VecDeque::new(),
        };
        sub.wait_control(|c| matches!(c, Control::ConnAck), "ConnAck")
            .await;
        for f in filters {
            sub.subscribe(f).await;
        }
        sub
    }

    async fn wait_control(&mut self, want: impl Fn(&Control) -> bool, what: &str) -> Control {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(end, self.control.recv()).await {
                Ok(Some(c)) if want(&c) => return c,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    panic!("test subscriber: no {what} from the broker within {DEADLINE:?}")
                }
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        let Control::SubAck(codes) = self
            .wait_control(|c| matches!(c, Control::SubAck(_)), "SubAck")
            .await
        else {
            unreachable!()
        };
        assert!(
            codes
                .iter()
                .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
            "subscription to {filter} refused: {codes:?}"
        );
    }

    /// The next message, or `None` at `end`.
    pub async fn next_until(&mut self, end: tokio::time::Instant) -> Option<Msg> {
        match tokio::time::timeout_at(end, self.rx.recv()).await {
            Ok(Some(m)) => {
                self.seen.push(m.clone());
                Some(m)
            }
            _ => None,
        }
    }

    /// Takes the oldest unclaimed message matching `pred`, waiting for it if none has come
    /// yet; panics after `DEADLINE` listing what came. Messages that do not match stay
    /// unclaimed, so waiting for one topic never loses another topic's messages.
    pub async fn wait_for(&mut self, what: &str, pred: impl FnMut(&Msg) -> bool) -> Msg {
        let start = self.seen.len();
        match self.try_wait_for(DEADLINE, pred).await {
            Some(m) => m,
            None => {
                let came: Vec<String> = self.seen[start..]
                    .iter()
                    .map(|m| format!("  {m:?}"))
                    .collect();
                panic!(
                    "waited {DEADLINE:?} for {what}; received meanwhile ({}):\n{}",
                    came.len(),
                    came.join("\n")
                );
            }
        }
    }

    /// Like [`Subscriber::wait_for`], but `None` after `within` (for "never came" checks).
    pub async fn try_wait_for(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Msg) -> bool,
    ) -> Option<Msg> {
        if let Some(i) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(i);
        }
        let end = tokio::time::Instant::now() + within;
        loop {
            match self.next_until(end).await {
                Some(m) if pred(&m) => return Some(m),
                Some(m) => self.backlog.push_back(m),
                None => return None,
            }
        }
    }

    /// Waits for the next message on exactly `topic`.
    pub async fn wait_topic(&mut self, topic: &str) -> Msg {
        self.wait_for(&format!("a message on {topic}"), |m| m.topic == topic)
            .await
    }

    /// Drops every unclaimed message, so later waits see only what arrives from now on.
    pub fn forget_backlog(&mut self) {
        self.backlog.clear();
    }

    /// Collects every message that arrives within `window` (for "nothing else came" checks);
    /// they are not left unclaimed.
    pub async fn drain_for(&mut self, window: Duration) -> Vec<Msg> {
        let end = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Some(m) = self.next_until(end).await {
            out.push(m);
        }
        out
    }

    /// All messages seen so far on `topic`.
    pub fn seen_on(&self, topic: &str) -> Vec<Msg> {
        self.seen
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }

    /// Waits for the retained status of robot `id` to say `state` (`online`, `offline`).
    pub async fn wait_state(&mut self, id: &str, state: &str) -> Msg {
        let topic = format!("robot/{id}/status");
        self.wait_for(&format!("{id} {state}"), |m| {
            m.topic == topic && m.opt("state").and_then(|s| s.as_str()) == Some(state)
        })
        .await
    }

    /// Waits for a diagnostics report in which device `name` has `connected == up` (the
    /// oldest unclaimed one; call `forget_backlog` first to require a fresh report).
    pub async fn wait_device(&mut self, robot_id: &str, name: &str, up: bool) -> Msg {
        let topic = format!("robot/{robot_id}/diagnostics");
        self.wait_for(
            &format!("diagnostics with device {name} connected = {up}"),
            |m| {
                m.topic == topic
                    && m.diag_device(name)
                        .and_then(|d| lookup(d, "connected"))
                        .and_then(|c| c.as_bool())
                        == Some(up)
            },
        )
        .await
    }
}

/// Waits on the broker's plain listener for the robot's retained status to say `online`.
pub async fn sees_online(broker: &Broker, robot: &str, within: Duration) -> bool {
    let topic = format!("robot/{robot}/status");
    let mut sub = Subscriber::connect(broker, &[&topic]).await;
    sub.try_wait_for(within, |m| {
        m.opt("state").and_then(|s| s.as_str()) == Some("online")
    })
    .await
    .is_some()
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A telemetry message reduced to what seq checks need.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seq: u64,
    /// The `data` field (std_msgs/Float64).
    pub data: f64,
    /// When the collector received it.
    pub at: Instant,
}

/// Everything a [`Collector`] received.
#[derive(Default)]
pub struct Collected {
    /// Messages with `header.seq` and a numeric `data` field, per topic, in arrival order.
    pub samples: std::collections::HashMap<String, Vec<Sample>>,
    /// Every other message (status, diagnostics, ...), in arrival order.
    pub msgs: Vec<Msg>,
    pub connacks: u64,
    pub subacks: u64,
}

impl Collected {
    pub fn samples(&self, topic: &str) -> &[Sample] {
        self.samples.get(topic).map_or(&[], |v| v.as_slice())
    }

    /// The distinct `data` values received on `topic`, as integers.
    pub fn data_set(&self, topic: &str) -> std::collections::BTreeSet<u64> {
        self.samples(topic).iter().map(|s| s.data as u64).collect()
    }

    /// The newest message on `topic` among the non-sample messages.
    pub fn last(&self, topic: &str) -> Option<&Msg> {
        self.msgs.iter().rev().find(|m| m.topic == topic)
    }
}

/// How a [`Collector`] connects.
#[derive(Debug, Clone)]
pub enum SessionKind {
    Clean,
    /// `clean_session = false` with this client id: a persistent broker queues for it
    /// while it is away (and across a graceful broker restart).
    Persistent(String),
}

/// The [`Subscriber`] for long, lossy runs: it keeps samples compactly,
/// reconnects forever and resubscribes whenever the broker lost its session.
pub struct Collector {
    state: std::sync::Arc<std::sync::Mutex<Collected>>,
    task: tokio::task::JoinHandle<()>,
    pub client: AsyncClient,
}

impl Collector {
    /// Connects to the broker on `port`, subscribes to `filters` at QoS 1 and returns once
    /// the broker acknowledged them.
    pub async fn connect(broker: &Broker, filters: &[&str], session: SessionKind) -> Collector {
        let port = broker.port();
        let id = match &session {
            SessionKind::Clean => unique("test-collector"),
            SessionKind::Persistent(id) => id.clone(),
        };
        let opts = client_options(id, port, matches!(session, SessionKind::Clean));
        let state = std::sync::Arc::new(std::sync::Mutex::new(Collected::default()));
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let (st, fl) = (state.clone(), filters.clone());
        let (client, task) = spawn_client(opts, move |event, cl| {
            let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Incoming::Publish(m) => {
                    let at = Instant::now();
                    let sample = match (
                        m.opt("header.seq").and_then(|v| v.as_u64()),
                        m.opt("data").and_then(|v| v.as_f64()),
                    ) {
                        (Some(seq), Some(data)) => Some(Sample { seq, data, at }),
                        _ => None,
                    };
                    match sample {
                        Some(x) => s.samples.entry(m.topic.clone()).or_default().push(x),
                        None => s.msgs.push(m),
                    }
                }
                Incoming::ConnAck(c) => {
                    s.connacks += 1;
                    if !c.session_present {
                        for f in &fl {
                            let _ = cl.try_subscribe(f.as_str(), QoS::AtLeastOnce);
                        }
                    }
                }
                Incoming::SubAck(_) => s.subacks += 1,
            }
        });
        let c = Collector {
            state,
            task,
            client,
        };
        let n = filters.len() as u64;
        assert!(
            eventually(DEADLINE, || c.lock().subacks >= n).await,
            "collector: the broker on port {port} did not acknowledge {filters:?}"
        );
        c
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        // A test that failed while holding the lock must not take the collector down too.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls `cond` every 20 ms; panics naming `what` after `within`.
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        mut cond: impl FnMut(&Collected) -> bool,
    ) {
        let end = Instant::now() + within;
        loop {
            if cond(&self.lock()) {
                return;
            }
            if Instant::now() >= end {
                panic!("waited {within:?} for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a message on `topic` received after this call that satisfies `pred`.
    pub async fn wait_msg(
        &self,
        topic: &str,
        within: Duration,
        what: &str,
        mut pred: impl FnMut(&Msg) -> bool,
    ) -> Msg {
        let from = self.lock().msgs.len();
        let end = Instant::now() + within;
        loop {
            {
                let s = self.lock();
                if let Some(m) = s.msgs[from..].iter().find(|m| m.topic == topic && pred(m)) {
                    return m.clone();
                }
            }
            if Instant::now() >= end {
                let s = self.lock();
                let last = s.last(topic).map(|m| format!("{m:?}")).unwrap_or_default();
                panic!("waited {within:?} for {what} on {topic}; the last one: {last}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
