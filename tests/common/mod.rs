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
