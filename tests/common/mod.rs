//! Integration-test harness: a real mosquitto on a free loopback port, the real `botbus`
//! binary, pseudo-terminal devices, and an independent rumqttc subscriber that decodes
//! MessagePack payloads with rmpv. Every resource is unique per test, so tests run in parallel.
#![allow(dead_code)]

use bytes::Bytes;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

pub use botbus::sim::pty::Pty;

/// How long any condition may take to come true. Generous: the machines are noisy.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A name unique to this process and call: robot ids, client ids, file names.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `botbus` binary cargo built for these tests.
pub fn botbus_bin() -> &'static str {
    env!("CARGO_BIN_EXE_botbus")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Removes every inherited `BOTBUS_*` variable so the developer's environment cannot change
/// what a test checks.
fn scrub_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("BOTBUS_") {
            cmd.env_remove(k);
        }
    }
}

/// `$<body>*<checksum>\r\n`, with the NMEA checksum computed here.
pub fn nmea(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}\r\n")
}

/// Polls `cond` every 50 ms until it is true or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// mosquitto

fn mosquitto_path() -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("mosquitto");
            if p.is_file() {
                return p;
            }
        }
    }
    for p in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "mosquitto is not installed (looked on PATH and in /usr/sbin); scripts/test installs it"
    );
}

/// A real mosquitto broker on a free loopback port, killed on drop. `stop`, `start_again`
/// and `restart` keep the same port, for fault tests.
pub struct Mosquitto {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// How many times it has been started, to name each run's log.
    runs: u32,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let mut dir = tempfile::Builder::new()
            .prefix("botbus-mosquitto-")
            .tempdir()
            .expect("temp dir");
        for _ in 0..8 {
            let mut m = Mosquitto {
                port: free_port(),
                dir,
                child: None,
                runs: 0,
            };
            match m.launch() {
                Ok(()) => return m,
                // Another test may have taken the port between probe and bind: try another.
                Err(e) => {
                    eprintln!("mosquitto did not start on port {}: {e}; retrying", m.port);
                    dir = std::mem::replace(&mut m.dir, TempDir::new().expect("temp dir"));
                }
            }
        }
        panic!("mosquitto could not start on any port");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("mosquitto-{}.log", self.runs))
    }

    fn launch(&mut self) -> Result<(), String> {
        self.runs += 1;
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n",
                self.port
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run mosquitto: {e}"))?;
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log()));
            }
            // "running" is logged after the listener is bound, so the port is ours, not a
            // neighbour's that happened to pick the same number.
            let log = self.log();
            if log.contains(" running") && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= end {
                self.stop();
                return Err(format!("not accepting after 10 s; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The current run's log.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Kills the broker (SIGKILL: clients see the connection drop, retained state is lost).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return,
                // The old socket may linger briefly; mosquitto binds with SO_REUSEADDR, but
                // be patient anyway.
                Err(e) if Instant::now() < end => {
                    eprintln!("mosquitto restart on port {}: {e}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("mosquitto did not restart on port {}: {e}", self.port),
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- mosquitto log (port {}) -----\n{}",
                self.port,
                self.log()
            );
        }
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// The daemon

/// How to run `botbus run`.
pub struct DaemonOptions {
    pub robot_toml: String,
    pub broker_url: String,
    /// The state directory (boot counter); share it between runs to see the counter rise.
    pub state_dir: PathBuf,
    pub client_id: String,
    pub keep_alive_s: u16,
    pub diagnostics_period_s: f64,
    /// Extra environment, e.g. `BOTBUS_MQTT__KEEP_ALIVE_S`.
    pub env: Vec<(String, String)>,
}

impl DaemonOptions {
    pub fn new(robot_toml: impl Into<String>, broker: &Mosquitto, state_dir: &Path) -> Self {
        DaemonOptions {
            robot_toml: robot_toml.into(),
            broker_url: broker.url(),
            state_dir: state_dir.to_path_buf(),
            client_id: unique("botbus-daemon"),
            keep_alive_s: 2,
            diagnostics_period_s: 0.5,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// The real `botbus run` process, with its stderr in a file; killed on drop, and its log
/// printed when the test failed.
pub struct Daemon {
    child: Child,
    status: Option<ExitStatus>,
    dir: TempDir,
    log: PathBuf,
}

impl Daemon {
    pub fn start(opts: DaemonOptions) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("botbus-daemon-")
            .tempdir()
            .expect("temp dir");
        let robot = dir.path().join("robot.toml");
        std::fs::write(&robot, &opts.robot_toml).expect("write robot file");
        let settings = dir.path().join("botbus.toml");
        std::fs::write(
            &settings,
            format!(
                "[mqtt]\nurl = \"{}\"\nclient_id = \"{}\"\nkeep_alive_s = {}\n\n[state]\ndir = \"{}\"\n\n[diagnostics]\nperiod_s = {}\n\n[log]\nlevel = \"info\"\n",
                opts.broker_url,
                opts.client_id,
                opts.keep_alive_s,
                opts.state_dir.display(),
                opts.diagnostics_period_s
            ),
        )
        .expect("write settings file");
        let log = dir.path().join("daemon.log");
        let log_file = std::fs::File::create(&log).expect("daemon log");
        let mut cmd = Command::new(botbus_bin());
        scrub_env(&mut cmd);
        cmd.arg("run")
            .arg("--robot")
            .arg(&robot)
            .arg("--config")
            .arg(&settings)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file);
        let child = cmd.spawn().expect("run the botbus binary");
        Daemon {
            child,
            status: None,
            dir,
            log,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            kill(self.pid(), sig).expect("signal the daemon");
        }
    }

    /// Whether it is still running (it must never exit on its own).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(s)) => {
                self.status = Some(s);
                false
            }
            _ => true,
        }
    }

    /// Waits for the process to exit, or `None` after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        loop {
            if !self.is_running() {
                return self.status;
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- botbus daemon log ({}) -----\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Devices

/// A device on a pseudo-terminal: the daemon opens `path()` as its serial port; the test
/// writes what the device would send.
pub struct PtyDevice {
    pub pty: Pty,
}

impl PtyDevice {
    pub fn open() -> PtyDevice {
        PtyDevice {
            pty: Pty::open().expect("open a pseudo-terminal"),
        }
    }

    pub fn path(&self) -> &Path {
        self.pty.path()
    }

    pub async fn send(&mut self, text: &str) {
        tokio::time::timeout(DEADLINE, self.pty.write_all(text.as_bytes()))
            .await
            .expect("pty write timed out")
            .expect("pty write");
    }
}

// ---------------------------------------------------------------------------------------
// The independent subscriber

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
    pub async fn connect(broker: &Mosquitto, filters: &[&str]) -> Subscriber {
        let mut opts = MqttOptions::new(unique("test-sub"), "127.0.0.1", broker.port());
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ctl_tx, control) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Msg::from_publish(p));
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ctl_tx.send(Control::ConnAck);
                    }
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        let _ = ctl_tx.send(Control::SubAck(s.return_codes));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
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
    pub async fn wait_for(&mut self, what: &str, mut pred: impl FnMut(&Msg) -> bool) -> Msg {
        if let Some(i) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(i).expect("index in range");
        }
        let end = tokio::time::Instant::now() + DEADLINE;
        let start = self.seen.len();
        loop {
            match self.next_until(end).await {
                Some(m) if pred(&m) => return m,
                Some(m) => self.backlog.push_back(m),
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

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).expect("create file");
    f.write_all(text.as_bytes()).expect("write file");
    p
}

// ---------------------------------------------------------------------------------------
// Fault injection: a mosquitto with persistence and unbounded queues, a TCP proxy that
// cuts and stalls the link, a paced line feeder, a telemetry collector that survives broker
// restarts, and the daemon's resident memory.

/// How a [`FaultBroker`] is configured.
#[derive(Debug, Clone, Copy)]
pub struct FaultBrokerOptions {
    /// `persistence true` with a database in the broker's temp dir, saved every second and
    /// on a graceful stop, so sessions and queued messages survive a restart.
    pub persistence: bool,
}

/// A real mosquitto for fault tests, killed on drop. Unlike [`Mosquitto`] it never drops
/// queued QoS 1 messages for a slow subscriber (`max_queued_messages 0`: a replayed spool is
/// a burst of thousands), can persist its state, can be stopped gracefully (SIGTERM, as
/// `systemctl restart` does) and logs no per-packet lines (soak runs are long).
pub struct FaultBroker {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    runs: u32,
    opts: FaultBrokerOptions,
}

impl FaultBroker {
    pub fn start(opts: FaultBrokerOptions) -> FaultBroker {
        let mut dir = tempfile::Builder::new()
            .prefix("botbus-fault-broker-")
            .tempdir()
            .expect("temp dir");
        for _ in 0..8 {
            let mut b = FaultBroker {
                port: free_port(),
                dir,
                child: None,
                runs: 0,
                opts,
            };
            match b.launch() {
                Ok(()) => return b,
                Err(e) => {
                    eprintln!("mosquitto did not start on port {}: {e}; retrying", b.port);
                    dir = std::mem::replace(&mut b.dir, TempDir::new().expect("temp dir"));
                }
            }
        }
        panic!("mosquitto could not start on any port");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("mosquitto-{}.log", self.runs))
    }

    fn launch(&mut self) -> Result<(), String> {
        self.runs += 1;
        let conf = self.dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n\
             log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\n",
            self.port
        );
        if self.opts.persistence {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                self.dir.path().display()
            ));
        } else {
            text.push_str("persistence false\n");
        }
        let root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        if root {
            // As root, mosquitto switches to the `mosquitto` user, which cannot write the
            // database into this private temp dir.
            text.push_str("user root\n");
        }
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run mosquitto: {e}"))?;
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log()));
            }
            let log = self.log();
            if log.contains(" running") && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= end {
                self.stop();
                return Err(format!("not accepting after 10 s; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The current run's log.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Kills the broker with SIGKILL: nothing is saved beyond the last autosave.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker with SIGTERM, as a service manager does; mosquitto saves its
    /// database on the way out. SIGKILL after 10 s.
    pub fn stop_graceful(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                if Instant::now() >= end {
                    eprintln!("mosquitto ignored SIGTERM for 10 s; killing it");
                    let _ = c.kill();
                    let _ = c.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the broker again on the same port (with its database, when persistent).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(e) if Instant::now() < end => {
                    eprintln!("mosquitto restart on port {}: {e}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("mosquitto did not restart on port {}: {e}", self.port),
            }
        }
    }

    /// A graceful restart: SIGTERM, then start again.
    pub fn restart_graceful(&mut self) {
        self.stop_graceful();
        self.start_again();
    }
}

impl Drop for FaultBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- mosquitto log (port {}, run {}) -----\n{}",
                self.port,
                self.runs,
                self.log()
            );
        }
        self.stop();
    }
}

/// Settings for running the daemon against any URL (a [`Proxy`], a [`FaultBroker`]).
pub fn daemon_options_for_url(
    robot_toml: impl Into<String>,
    url: &str,
    state_dir: &Path,
) -> DaemonOptions {
    DaemonOptions {
        robot_toml: robot_toml.into(),
        broker_url: url.to_string(),
        state_dir: state_dir.to_path_buf(),
        client_id: unique("botbus-daemon"),
        keep_alive_s: 1,
        diagnostics_period_s: 0.5,
        env: Vec::new(),
    }
}

struct ProxyCtl {
    upstream: u16,
    /// While true, no byte is forwarded in either direction, on any connection (new ones
    /// are accepted and then held too), but every socket stays open: a half-open link.
    stalled: tokio::sync::watch::Sender<bool>,
    /// Bumped by [`Proxy::cut`]; each connection closes when it changes.
    cut: tokio::sync::watch::Sender<u64>,
    accepted: std::sync::Mutex<Vec<Instant>>,
}

/// A TCP proxy between the daemon and the broker, like the netproxy of Paho's interop
/// suite: it forwards both directions and can cut or stall the link on demand.
pub struct Proxy {
    port: u16,
    ctl: std::sync::Arc<ProxyCtl>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `upstream_port`.
    pub async fn start(upstream_port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let ctl = std::sync::Arc::new(ProxyCtl {
            upstream: upstream_port,
            stalled: tokio::sync::watch::channel(false).0,
            cut: tokio::sync::watch::channel(0).0,
            accepted: std::sync::Mutex::new(Vec::new()),
        });
        let c = ctl.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // Subscribed before anything else, so a cut from now on closes this one.
                let cut = c.cut.subscribe();
                c.accepted.lock().unwrap().push(Instant::now());
                tokio::spawn(proxy_connection(down, c.clone(), cut));
            }
        });
        Proxy { port, ctl, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to give the daemon (`BOTBUS_MQTT__URL`).
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Closes every current connection (both sides); new ones are accepted as usual.
    pub fn cut(&self) {
        self.ctl.cut.send_modify(|g| *g += 1);
    }

    /// Stops (`true`) or resumes (`false`) forwarding, keeping every socket open.
    pub fn stall(&self, on: bool) {
        self.ctl.stalled.send_replace(on);
    }

    /// How many connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.ctl.accepted.lock().unwrap().len()
    }

    /// When each connection was accepted.
    pub fn accepted_at(&self) -> Vec<Instant> {
        self.ctl.accepted.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn proxy_connection(
    down: tokio::net::TcpStream,
    ctl: std::sync::Arc<ProxyCtl>,
    mut cut: tokio::sync::watch::Receiver<u64>,
) {
    let up = tokio::select! {
        r = tokio::net::TcpStream::connect(("127.0.0.1", ctl.upstream)) => match r {
            Ok(s) => s,
            // Broker down: the client sees its connection closed.
            Err(_) => return,
        },
        _ = cut.changed() => return,
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    tokio::select! {
        _ = proxy_pump(dr, uw, ctl.stalled.subscribe()) => {}
        _ = proxy_pump(ur, dw, ctl.stalled.subscribe()) => {}
        _ = cut.changed() => {}
    }
    // Dropping the four halves closes both sockets.
}

async fn proxy_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as the stall began are held, not forwarded, until it ends.
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A pseudo-terminal like [`Pty`], but with both its fds close-on-exec, opened atomically
/// so. `Pty::open` uses `openpty`, whose fds every later child inherits: a daemon or a
/// mosquitto spawned by any test in this binary then holds the master open, and dropping
/// the `Pty` no longer hangs up the device. Unplug tests need the hangup to be real.
pub struct CloexecPty {
    master: tokio::io::unix::AsyncFd<nix::pty::PtyMaster>,
    _slave: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl CloexecPty {
    /// Opens a pty pair with the slave in raw mode (no echo, no line editing).
    pub fn open() -> CloexecPty {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("posix_openpt");
        nix::pty::grantpt(&master).expect("grantpt");
        nix::pty::unlockpt(&master).expect("unlockpt");
        let path = PathBuf::from(nix::pty::ptsname_r(&master).expect("ptsname"));
        let slave = nix::fcntl::open(
            &path,
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open the pty slave");
        let mut t = tcgetattr(&slave).expect("tcgetattr");
        cfmakeraw(&mut t);
        tcsetattr(&slave, SetArg::TCSANOW, &t).expect("tcsetattr");
        let flags = fcntl(&master, FcntlArg::F_GETFL).expect("F_GETFL");
        fcntl(
            &master,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .expect("F_SETFL");
        // SAFETY: `master` owns the fd and moves into the AsyncFd, which then owns it; no
        // other handle to the fd exists, so it cannot be closed behind tokio's back.
        let master = unsafe { tokio::io::unix::AsyncFd::register(master) }
            .unwrap_or_else(|e| panic!("register the pty: {e}"));
        CloexecPty {
            master,
            _slave: slave,
            path,
        }
    }

    /// The slave's path, for the robot file's `serial = { path = ... }`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl tokio::io::AsyncWrite for CloexecPty {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            let mut guard = std::task::ready!(self.master.poll_write_ready(cx))?;
            match guard.try_io(|f| std::io::Write::write(&mut f.get_ref(), data)) {
                Ok(r) => return std::task::Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Writes `tag=<tag> n=<base + k>` lines (k = 0, 1, 2, ...) into a pty at a steady rate, in
/// a batch every 10 ms, until stopped; a lines device turns each into one message.
pub struct Feeder {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<AtomicU64>,
    task: tokio::task::JoinHandle<CloexecPty>,
}

impl Feeder {
    pub fn start(mut pty: CloexecPty, tag: &str, base: u64, rate_hz: f64) -> Feeder {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let (s, w, tag) = (stop.clone(), written.clone(), tag.to_string());
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut next = 0u64;
            let mut text = String::new();
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                let target = (start.elapsed().as_secs_f64() * rate_hz) as u64;
                text.clear();
                for k in next..target {
                    text.push_str(&format!("tag={tag} n={}\n", base + k));
                }
                if !text.is_empty() {
                    pty.write_all(text.as_bytes())
                        .await
                        .expect("write to the pty");
                    next = target;
                    w.store(next, Ordering::SeqCst);
                }
            }
            pty
        });
        Feeder {
            stop,
            written,
            task,
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Stops writing; returns the pty and how many lines were written in all.
    pub async fn stop(self) -> (CloexecPty, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let pty = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the feeder did not stop: is the daemon still reading the pty?")
            .expect("feeder task");
        (pty, self.written.load(Ordering::SeqCst))
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

/// An independent rumqttc subscriber for long, lossy runs: it keeps samples compactly,
/// reconnects forever and resubscribes whenever the broker lost its session.
pub struct Collector {
    state: std::sync::Arc<std::sync::Mutex<Collected>>,
    task: tokio::task::JoinHandle<()>,
    pub client: AsyncClient,
}

impl Collector {
    /// Connects to the broker on `port`, subscribes to `filters` at QoS 1 and returns once
    /// the broker acknowledged them.
    pub async fn connect(port: u16, filters: &[&str], session: SessionKind) -> Collector {
        let id = match &session {
            SessionKind::Clean => unique("test-collector"),
            SessionKind::Persistent(id) => id.clone(),
        };
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_clean_session(matches!(session, SessionKind::Clean));
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let state = std::sync::Arc::new(std::sync::Mutex::new(Collected::default()));
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let (st, cl, fl) = (state.clone(), client.clone(), filters.clone());
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let m = Msg::from_publish(p);
                        let at = Instant::now();
                        let sample = match (
                            m.opt("header.seq").and_then(|v| v.as_u64()),
                            m.opt("data").and_then(|v| v.as_f64()),
                        ) {
                            (Some(seq), Some(data)) => Some(Sample { seq, data, at }),
                            _ => None,
                        };
                        let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                        match sample {
                            Some(x) => s.samples.entry(m.topic.clone()).or_default().push(x),
                            None => s.msgs.push(m),
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(c))) => {
                        st.lock().unwrap_or_else(|e| e.into_inner()).connacks += 1;
                        if !c.session_present {
                            for f in &fl {
                                let _ = cl.try_subscribe(f.as_str(), QoS::AtLeastOnce);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        st.lock().unwrap_or_else(|e| e.into_inner()).subacks += 1
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
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

/// A process's resident set size (`VmRSS` in /proc/<pid>/status), in kB.
pub fn rss_kb(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Writes straight to the process's stderr, past the test harness's output capture, so a
/// skipped hardware or interop test says so in a plain `cargo test` run (and in CI logs).
pub fn loud(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}
