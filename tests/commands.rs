//! Integration tests for issue 3 (remote commands and the actuator safety layer): the real `botbus` binary against a real mosquitto, with the actuator on a pseudo-terminal whose every received line is checked, and commands sent by an independent rumqttc client or the `botbus cmd` / `botbus topic pub` tools.

mod common;

use common::*;
use nix::sys::signal::Signal;
use rumqttc::QoS;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The line the `drive` actuator's safe values render to.
const SAFE: &str = "D 0.000 0.000";
/// "Nothing was written": how long the device must stay silent after an ack.
const QUIET: Duration = Duration::from_secs(1);

/// Timing tests (deadman) take this shared; the CPU-heavy flood takes it exclusively, so the
/// flood cannot skew a measured latency.
static TIMING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

// ---------------------------------------------------------------------------------------
// A robot with one `drive` actuator on a pty, its daemon, and an independent client.

/// The robot: one `base` device on a pty with the `drive` actuator (max 5 commands a second).
fn robot_toml(id: &str, device: &Path, out_of_range: &str, timeout_ms: u64) -> String {
    format!(
        "id = \"{id}\"\n{}{}",
        lines_device("base", device),
        drive_command(out_of_range, timeout_ms, Some(5))
    )
}

/// The daemon's resident set size, from /proc.
fn rss_kib(pid: i32) -> u64 {
    rss_kb(nix::unistd::Pid::from_raw(pid))
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

struct Rig {
    // Dropped in this order: the daemon first, the broker last.
    daemon: Daemon,
    sub: Subscriber,
    dev: PtyDevice,
    toml: String,
    id: String,
    boot: u64,
    state: tempfile::TempDir,
    broker: Broker,
}

/// Publishes `json` (encoded as MessagePack) retained on `topic` with
/// `botbus topic pub --retain`.
fn publish_retained(broker: &Broker, topic: &str, json: &str) {
    let out = botbus_command()
        .args(["topic", "pub", topic, json, "--retain", "--url"])
        .arg(broker.url())
        .output()
        .expect("run botbus topic pub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Rig {
    /// A running daemon whose device got its connect-time safe line and whose command
    /// subscription is in place.
    async fn start(out_of_range: &str, timeout_ms: u64) -> Rig {
        Rig::start_with(out_of_range, timeout_ms, false, &[]).await
    }

    /// Like [`Rig::start`], with the daemon's broker link through a [`Proxy`] when
    /// `proxied`, and each `(actuator, JSON command)` of `retained` left retained on the
    /// broker before the daemon starts.
    async fn start_with(
        out_of_range: &str,
        timeout_ms: u64,
        proxied: bool,
        retained: &[(&str, serde_json::Value)],
    ) -> Rig {
        // With a proxy between the daemon and the broker, for tests that cut its link.
        let broker = if proxied {
            Broker::options().proxy().start()
        } else {
            Broker::start()
        };
        let id = unique("cmd");
        let dev = PtyDevice::open();
        let toml = robot_toml(&id, dev.path(), out_of_range, timeout_ms);
        let state = state_dir();
        let sub = Subscriber::connect(
            &broker,
            &[&format!("robot/{id}/status"), &format!("robot/{id}/ack/#")],
        )
        .await;
        for (actuator, json) in retained {
            publish_retained(
                &broker,
                &format!("robot/{id}/cmd/{actuator}"),
                &json.to_string(),
            );
        }
        let daemon = Daemon::start(DaemonOptions::new(toml.clone(), &broker, state.path()));
        let mut rig = Rig {
            daemon,
            sub,
            dev,
            toml,
            id,
            boot: 0,
            state,
            broker,
        };
        rig.boot = rig.wait_started(None).await;
        rig
    }

    /// Waits for the device's connect-time safe line and for the `online` status (the
    /// daemon subscribes to its command topics before it publishes `online`).
    async fn wait_started(&mut self, boot: Option<u64>) -> u64 {
        self.dev.expect_line(SAFE).await;
        let topic = format!("robot/{}/status", self.id);
        let online = self
            .sub
            .wait_for("status online", |m| {
                m.topic == topic
                    && m.opt("state").and_then(|s| s.as_str()) == Some("online")
                    && boot.is_none_or(|b| m.opt("boot").and_then(|v| v.as_u64()) == Some(b))
            })
            .await;
        online.u64("boot")
    }

    fn topic(&self, kind: &str, actuator: &str) -> String {
        format!("robot/{}/{kind}/{actuator}", self.id)
    }

    async fn publish(&self, actuator: &str, payload: Vec<u8>) {
        self.sub
            .client
            .publish(
                self.topic("cmd", actuator),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("queue PUBLISH");
    }

    async fn ack(&mut self, actuator: &str) -> Msg {
        let topic = self.topic("ack", actuator);
        self.sub.wait_topic(&topic).await
    }

    /// Publishes a command and returns its ack as JSON.
    async fn command(&mut self, actuator: &str, payload: Vec<u8>) -> serde_json::Value {
        self.publish(actuator, payload).await;
        self.ack(actuator).await.json()
    }

    /// SIGTERM, then a new daemon with the same robot file and state directory.
    async fn restart_daemon(&mut self) {
        self.daemon.signal(Signal::SIGTERM);
        let status = self.daemon.wait_exit(DEADLINE).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "the daemon did not exit 0 on SIGTERM: {status:?}"
        );
        self.dev.expect_line(SAFE).await;
        self.daemon = Daemon::start(DaemonOptions::new(
            self.toml.clone(),
            &self.broker,
            self.state.path(),
        ));
        self.boot = self.wait_started(Some(self.boot + 1)).await;
    }

    /// Leaves each `(actuator, JSON command)` retained on the broker while the daemon's
    /// link is down, as for a robot that was away: when the daemon subscribes again, the
    /// broker hands them over with the retain flag set. (Published while the daemon is
    /// connected, a retained message reaches it as an ordinary one, retain flag clear.)
    async fn retain_while_away(&mut self, commands: &[(&str, serde_json::Value)]) {
        let proxy = self.broker.proxy();
        let before = proxy.connections();
        // The daemon's connection stays open but carries nothing: the live copies the
        // broker sends it now are held in the proxy.
        proxy.stall(true);
        for (actuator, json) in commands {
            let topic = format!("robot/{}/cmd/{actuator}", self.id);
            publish_retained(&self.broker, &topic, &json.to_string());
            // A new subscription gets the retained copy: it is in place.
            self.sub.subscribe(&topic).await;
            let id = json["id"].as_u64().expect("the command has an id");
            self.sub
                .wait_for(&format!("command {id} retained on {topic}"), |m| {
                    m.topic == topic && m.retain && m.opt("id").and_then(|v| v.as_u64()) == Some(id)
                })
                .await;
        }
        proxy.cut();
        // Forwarding resumes only once the daemon is on a new connection: the old one is
        // closed by then, and the live copies held in it are gone.
        assert!(
            eventually(DEADLINE, || proxy.connections() > before).await,
            "the daemon did not reconnect after its link was cut"
        );
        proxy.stall(false);
    }
}

/// Checks a rejection ack: `ok: false`, no `applied`, the command's id, and an error that
/// contains `reason`.
fn assert_rejected(ack: &serde_json::Value, id: serde_json::Value, reason: &str) {
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["applied"], serde_json::Value::Null, "{ack}");
    assert_eq!(ack["id"], id, "the ack must echo the command's id: {ack}");
    let error = ack["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {ack}"));
    assert!(
        error.contains(reason),
        "error {error:?} does not mention {reason:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Valid commands, limits, finiteness, age, rate

#[tokio::test]
async fn a_valid_twist_reaches_the_device_as_its_rendered_line_and_is_acked_with_the_applied_values(
) {
    let mut rig = Rig::start("reject", 500).await;
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 7, "linear": {"x": 0.5}, "angular": {"z": 0.1}})),
        )
        .await;
    rig.dev.expect_line("D 0.500 0.100").await;
    assert_eq!(
        ack,
        serde_json::json!({
            "id": 7, "ok": true, "error": null,
            "applied": {"linear": {"x": 0.5}, "angular": {"z": 0.1}}
        })
    );
    let ack_msg = rig.sub.seen_on(&rig.topic("ack", "drive")).remove(0);
    assert_eq!(ack_msg.qos, 1, "acks are published at QoS 1");
    assert!(!ack_msg.retain, "acks are not retained");
}

#[tokio::test]
async fn an_out_of_range_command_is_rejected_with_the_limit_and_never_reaches_the_device() {
    let mut rig = Rig::start("reject", 500).await;
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 21, "linear": {"x": 1.5}, "angular": {"z": 0.1}})),
        )
        .await;
    assert_rejected(&ack, serde_json::json!(21), "linear.x");
    assert_rejected(&ack, serde_json::json!(21), "outside the limits [-1, 1]");
    rig.dev
        .expect_silence(QUIET, "after an out-of-range command")
        .await;
}

#[tokio::test]
async fn an_out_of_range_command_is_clamped_when_configured_and_the_ack_shows_the_clamped_values() {
    let mut rig = Rig::start("clamp", 500).await;
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 22, "linear": {"x": 1.5}, "angular": {"z": -3.0}})),
        )
        .await;
    rig.dev.expect_line("D 1.000 -2.000").await;
    assert_eq!(
        ack,
        serde_json::json!({
            "id": 22, "ok": true, "error": null,
            "applied": {"linear": {"x": 1.0}, "angular": {"z": -2.0}}
        })
    );
}

#[tokio::test]
async fn nan_and_infinite_numbers_are_rejected_naming_the_field_and_nothing_is_written() {
    let mut rig = Rig::start("reject", 500).await;
    for (n, (field, value)) in [("x", f64::NAN), ("z", f64::INFINITY)]
        .into_iter()
        .enumerate()
    {
        // {"id": n, "linear"|"angular": {field: value}}, written by hand: JSON has no NaN.
        let mut buf = Vec::new();
        rmp::encode::write_map_len(&mut buf, 2).unwrap();
        rmp::encode::write_str(&mut buf, "id").unwrap();
        rmp::encode::write_uint(&mut buf, n as u64).unwrap();
        rmp::encode::write_str(&mut buf, if field == "x" { "linear" } else { "angular" }).unwrap();
        rmp::encode::write_map_len(&mut buf, 1).unwrap();
        rmp::encode::write_str(&mut buf, field).unwrap();
        rmp::encode::write_f64(&mut buf, value).unwrap();
        let ack = rig.command("drive", buf).await;
        let path = if field == "x" {
            "linear.x"
        } else {
            "angular.z"
        };
        assert_rejected(&ack, serde_json::json!(n), path);
        assert_rejected(&ack, serde_json::json!(n), "NaN or infinite");
    }
    rig.dev
        .expect_silence(QUIET, "after NaN and infinity")
        .await;
}

#[tokio::test]
async fn a_command_stamped_ten_seconds_ago_is_rejected_as_stale_and_a_fresh_one_is_written() {
    let mut rig = Rig::start("reject", 500).await;
    let stale = msgpack(&serde_json::json!({
        "id": 41,
        "header": {"stamp": {"sec": unix_now() - 10, "nanosec": 0}},
        "linear": {"x": 0.3}
    }));
    let ack = rig.command("drive", stale).await;
    assert_rejected(&ack, serde_json::json!(41), "stale");
    rig.dev.expect_silence(QUIET, "after a stale command").await;

    // The same command stamped now passes: the header itself is not what was rejected.
    // The stamp carries the nanoseconds too, or truncation alone could make it ~1 s old.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let fresh = msgpack(&serde_json::json!({
        "id": 42,
        "header": {"stamp": {"sec": now.as_secs(), "nanosec": now.subsec_nanos()}},
        "linear": {"x": 0.3}
    }));
    let ack = rig.command("drive", fresh).await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.dev.expect_line("D 0.300 0.000").await;
}

#[tokio::test]
async fn a_second_command_faster_than_max_rate_hz_is_rejected_and_only_the_first_is_written() {
    let mut rig = Rig::start("reject", 500).await;
    rig.publish(
        "drive",
        msgpack(&serde_json::json!({"id": 51, "linear": {"x": 0.2}})),
    )
    .await;
    rig.publish(
        "drive",
        msgpack(&serde_json::json!({"id": 52, "linear": {"x": 0.3}})),
    )
    .await;
    let mut acks = [rig.ack("drive").await.json(), rig.ack("drive").await.json()];
    acks.sort_by_key(|a| a["id"].as_u64());
    assert_eq!(acks[0]["id"], 51);
    assert_eq!(acks[0]["ok"], true, "{}", acks[0]);
    assert_rejected(&acks[1], serde_json::json!(52), "too fast");
    rig.dev.expect_line("D 0.200 0.000").await;
    // The next line is the deadman's, never the rejected command's.
    rig.dev.expect_line(SAFE).await;
    rig.dev
        .expect_silence(QUIET, "after the deadman line")
        .await;
}

// ---------------------------------------------------------------------------------------
// E-stop, malformed input, routing

#[tokio::test]
async fn estop_writes_the_safe_values_rejects_commands_survives_a_restart_and_releases() {
    let mut rig = Rig::start("reject", 500).await;
    let ack = rig
        .command(
            "estop",
            msgpack(&serde_json::json!({"id": 61, "engage": true})),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["id"], 61, "{ack}");
    rig.dev.expect_line(SAFE).await;

    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 62, "linear": {"x": 0.2}})),
        )
        .await;
    assert_rejected(&ack, serde_json::json!(62), "estop");
    assert_eq!(ack["error"], "estop");
    rig.dev.expect_silence(QUIET, "during an e-stop").await;

    // Latched on disk: a restarted daemon comes back stopped.
    rig.restart_daemon().await;
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 63, "linear": {"x": 0.2}})),
        )
        .await;
    assert_eq!(
        ack["error"], "estop",
        "the e-stop must survive a restart: {ack}"
    );
    assert_eq!(ack["ok"], false, "{ack}");
    rig.dev
        .expect_silence(QUIET, "during an e-stop after a restart")
        .await;

    let ack = rig
        .command(
            "estop",
            msgpack(&serde_json::json!({"id": 64, "engage": false})),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 65, "linear": {"x": 0.4}})),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.dev.expect_line("D 0.400 0.000").await;
}

#[tokio::test]
async fn malformed_and_hostile_payloads_each_get_a_rejection_ack_and_the_daemon_keeps_running() {
    let mut rig = Rig::start("reject", 500).await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // rmpv reads the reserved byte 0xc1 as nil, so either reason is fine here.
        ("a reserved byte", b"\xc1garbage".to_vec(), ""),
        (
            "an array32 header claiming 4 billion items",
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
            "MessagePack",
        ),
        ("5000 nested arrays", vec![0x91; 5000], "nested too deeply"),
        (
            "an unknown field",
            msgpack(&serde_json::json!({"linear": {"q": 1}})),
            "unknown field",
        ),
        (
            "a field of the wrong type",
            msgpack(&serde_json::json!({"linear": {"x": "fast"}})),
            "invalid type",
        ),
        ("not a map", msgpack(&serde_json::json!([0.5, 0.1])), "map"),
    ];
    for (what, payload, reason) in cases {
        let ack = rig.command("drive", payload).await;
        assert_eq!(ack["ok"], false, "{what}: {ack}");
        assert_eq!(ack["applied"], serde_json::Value::Null, "{what}: {ack}");
        let error = ack["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{what}: no reason given: {ack}");
        assert!(
            error.contains(reason),
            "{what}: error {error:?} does not mention {reason:?}"
        );
    }
    rig.dev
        .expect_silence(QUIET, "after malformed payloads")
        .await;
    assert!(rig.daemon.is_running(), "the daemon exited");
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 71, "linear": {"x": 0.1}})),
        )
        .await;
    assert_eq!(ack["ok"], true, "a valid command after the garbage: {ack}");
    rig.dev.expect_line("D 0.100 0.000").await;
}

#[tokio::test]
async fn a_command_for_an_unknown_actuator_gets_a_rejection_ack_on_its_own_ack_topic() {
    let mut rig = Rig::start("reject", 500).await;
    let ack = rig
        .command(
            "nope",
            msgpack(&serde_json::json!({"id": 81, "linear": {"x": 0.1}})),
        )
        .await;
    assert_rejected(&ack, serde_json::json!(81), "unknown actuator");
    rig.dev
        .expect_silence(QUIET, "after a command for `nope`")
        .await;
}

// ---------------------------------------------------------------------------------------
// Deadman and shutdown

/// Sends one command, reads its line, optionally kills the broker, and returns how long
/// after the command line the deadman's safe line arrived.
async fn deadman_latency(kill_broker: bool) -> Duration {
    let _timing = TIMING.read().await;
    let mut rig = Rig::start("reject", 500).await;
    rig.publish(
        "drive",
        msgpack(&serde_json::json!({"id": 91, "linear": {"x": 0.6}})),
    )
    .await;
    let written = rig.dev.expect_line("D 0.600 0.000").await;
    if kill_broker {
        rig.broker.stop();
    }
    let safe = rig.dev.expect_line(SAFE).await;
    let latency = safe - written;
    println!(
        "deadman latency (timeout_ms 500, broker {}): {} ms",
        if kill_broker { "killed" } else { "up" },
        latency.as_millis()
    );
    if !kill_broker {
        // Once per timeout: no second safe line while no new command came.
        rig.dev
            .expect_silence(QUIET, "after the deadman line")
            .await;
    }
    latency
}

#[tokio::test]
async fn deadman_writes_the_safe_line_within_timeout_ms_plus_100_ms_after_the_last_command() {
    let latency = deadman_latency(false).await;
    assert!(
        latency >= Duration::from_millis(400) && latency <= Duration::from_millis(600),
        "the safe line came {latency:?} after the command; want 400..=600 ms"
    );
}

#[tokio::test]
async fn deadman_writes_the_safe_line_on_time_with_the_broker_killed() {
    let latency = deadman_latency(true).await;
    assert!(
        latency >= Duration::from_millis(400) && latency <= Duration::from_millis(600),
        "with the broker killed the safe line came {latency:?} after the command; want 400..=600 ms"
    );
}

#[tokio::test]
async fn sigterm_writes_the_safe_line_exits_zero_and_leaves_the_status_offline() {
    // A 10 s deadman, so the safe line can only come from the shutdown.
    let mut rig = Rig::start("reject", 10_000).await;
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 101, "linear": {"x": 0.7}})),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.dev.expect_line("D 0.700 0.000").await;
    rig.daemon.signal(Signal::SIGTERM);
    match rig.dev.line_within(Duration::from_secs(5)).await {
        Some((line, _)) => assert_eq!(line, SAFE, "the line written on SIGTERM"),
        None => panic!("no safe line within 5 s of SIGTERM"),
    }
    let status = rig.daemon.wait_exit(DEADLINE).await;
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "exit status after SIGTERM: {status:?}"
    );
    // A client arriving now reads the retained status.
    let mut late = Subscriber::connect(&rig.broker, &[&format!("robot/{}/status", rig.id)]).await;
    let st = late.wait_topic(&format!("robot/{}/status", rig.id)).await;
    assert!(st.retain, "the status must be retained: {st:?}");
    assert_eq!(st.str("state"), "offline", "{st:?}");
    assert_eq!(st.u64("boot"), rig.boot, "{st:?}");
}

// ---------------------------------------------------------------------------------------
// Hostile flood

/// xorshift64*: deterministic, so a failing flood can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const KEYS: &[&str] = &[
    "linear", "angular", "x", "y", "z", "id", "header", "stamp", "sec", "nanosec", "frame_id",
    "engage",
];

fn random_value(rng: &mut Rng, depth: u32) -> rmpv::Value {
    use rmpv::Value;
    let kinds = if depth == 0 { 7 } else { 10 };
    match rng.below(kinds) {
        0 => Value::Nil,
        1 => Value::Boolean(rng.below(2) == 1),
        2 => Value::from(rng.next() as i64 >> rng.below(64)),
        // Any bit pattern: NaNs, infinities, subnormals.
        3 => Value::F64(f64::from_bits(rng.next())),
        4 => Value::F32(f32::from_bits(rng.next() as u32)),
        5 => Value::from(KEYS[rng.below(KEYS.len() as u64) as usize]),
        6 => {
            let n = rng.below(16) as usize;
            Value::Binary(rng.bytes(n))
        }
        7 | 8 => Value::Map(
            (0..rng.below(5))
                .map(|_| {
                    let k = if rng.below(8) == 0 {
                        random_value(rng, 0)
                    } else {
                        Value::from(KEYS[rng.below(KEYS.len() as u64) as usize])
                    };
                    (k, random_value(rng, depth - 1))
                })
                .collect(),
        ),
        _ => Value::Array(
            (0..rng.below(5))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
    }
}

fn random_payload(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0..=4 => {
            let n = rng.below(300) as usize;
            rng.bytes(n)
        }
        5..=8 => {
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &random_value(rng, 5)).expect("encode");
            buf
        }
        // Headers that claim huge sizes, and deep nesting.
        _ => match rng.below(5) {
            0 => [vec![0xdd, 0xff, 0xff, 0xff, 0xff], rng.bytes(8)].concat(),
            1 => [vec![0xdf, 0xff, 0xff, 0xff, 0xff], rng.bytes(8)].concat(),
            2 => [vec![0xdb, 0xff, 0xff, 0xff, 0xff], rng.bytes(8)].concat(),
            3 => [vec![0xc6, 0xff, 0xff, 0xff, 0xff], rng.bytes(8)].concat(),
            _ => vec![0x81 + rng.below(2) as u8 * 0x10; 10 + rng.below(3000) as usize],
        },
    }
}

#[tokio::test]
async fn ten_thousand_random_payloads_leave_the_daemon_running_with_flat_rss_and_commands_working()
{
    let _timing = TIMING.write().await;
    let mut rig = Rig::start("reject", 500).await;
    let pid = rig.daemon.pid().as_raw();
    let drive = rig.topic("cmd", "drive");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut probe_no = 0u64;
    let started = std::time::Instant::now();

    // A QoS 1 probe to an unknown actuator, after QoS 0 messages from the same client: the
    // broker and the daemon keep their order, so its ack means the flood was taken in (or
    // dropped by the daemon's bounded queue, which may drop the probe too: then retry).
    async fn sync(rig: &mut Rig, n: &mut u64) {
        let topic = rig.topic("ack", "probe");
        let end = Instant::now() + DEADLINE;
        let first = *n + 1;
        while Instant::now() < end {
            *n += 1;
            rig.publish("probe", msgpack(&serde_json::json!({"id": *n})))
                .await;
            let retry = Instant::now() + Duration::from_secs(1);
            while let Some(m) = rig.sub.next_until(retry).await {
                let id = m.opt("id").and_then(|v| v.as_u64());
                if m.topic == topic && id.is_some_and(|id| id >= first) {
                    return;
                }
            }
        }
        panic!("no probe was acked within {DEADLINE:?}");
    }

    let mut rss_after_1000 = 0;
    for i in 0..10_000u32 {
        let payload = random_payload(&mut rng);
        rig.sub
            .client
            .publish(drive.clone(), QoS::AtMostOnce, false, payload)
            .await
            .expect("queue PUBLISH");
        // Paced so the daemon's bounded incoming queue never overflows: every payload
        // reaches the decoder.
        if i % 500 == 499 {
            sync(&mut rig, &mut probe_no).await;
        }
        if i == 999 {
            rss_after_1000 = rss_kib(pid);
        }
    }
    sync(&mut rig, &mut probe_no).await;
    let rss_after_10000 = rss_kib(pid);
    println!(
        "flood: VmRSS {rss_after_1000} KiB after 1,000 payloads, {rss_after_10000} KiB after 10,000 ({:+} KiB), {:.1} s",
        rss_after_10000 as i64 - rss_after_1000 as i64,
        started.elapsed().as_secs_f64()
    );
    assert!(rig.daemon.is_running(), "the daemon died in the flood");
    assert!(
        rss_after_10000 <= rss_after_1000 + 20 * 1024,
        "RSS grew from {rss_after_1000} KiB to {rss_after_10000} KiB"
    );

    // Random payloads that happen to be valid Twists were accepted. Let the rate limit
    // pass, and the deadman (500 ms) of the last of them fire: a command that meets that
    // safe write in flight is superseded by it, as the supervisor's tests require.
    tokio::time::sleep(Duration::from_millis(800)).await;
    rig.publish(
        "drive",
        msgpack(&serde_json::json!({"id": "after-flood", "linear": {"x": 0.9}})),
    )
    .await;
    let topic = rig.topic("ack", "drive");
    let ack = rig
        .sub
        .wait_for("the ack of the command after the flood", |m| {
            m.topic == topic && m.opt("id").and_then(|v| v.as_str()) == Some("after-flood")
        })
        .await;
    assert!(ack.bool("ok"), "{ack:?}");
    let acks = rig.sub.seen_on(&topic).len();
    println!("flood: {acks} acks on {topic}");
    assert_eq!(
        acks, 10_001,
        "every payload must be answered by exactly one ack"
    );
    let skipped = rig.dev.wait_line("D 0.900 0.000").await;
    for line in &skipped {
        // Only valid, in-limit Twists (random ones and safe values) may have been written.
        let parts: Vec<&str> = line.split(' ').collect();
        assert!(
            parts.len() == 3
                && parts[0] == "D"
                && parts[1]
                    .parse::<f64>()
                    .is_ok_and(|x| (-1.0..=1.0).contains(&x))
                && parts[2]
                    .parse::<f64>()
                    .is_ok_and(|z| (-2.0..=2.0).contains(&z)),
            "the flood wrote {line:?} to the device"
        );
    }
    assert!(rig.daemon.is_running(), "the daemon died after the flood");
}

// ---------------------------------------------------------------------------------------
// The fleet tools

#[tokio::test]
async fn botbus_cmd_prints_the_ack_and_exits_0_or_1_and_topic_pub_reaches_the_device() {
    let mut rig = Rig::start("reject", 500).await;
    let url = rig.broker.url();
    let id = rig.id.clone();

    let Run {
        code,
        stdout: out,
        stderr: err,
    } = botbus(&[
        "cmd",
        &id,
        "drive",
        r#"{"linear":{"x":0.2}}"#,
        "--url",
        &url,
    ])
    .await;
    assert_eq!(code, Some(0), "accepted: stdout {out:?}, stderr {err:?}");
    let ack: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("stdout is not the ack as JSON ({e}): {out:?}"));
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["error"], serde_json::Value::Null, "{ack}");
    assert_eq!(ack["applied"]["linear"]["x"], 0.2, "{ack}");
    assert!(
        ack["id"].is_number(),
        "cmd adds an id to match the ack: {ack}"
    );
    rig.dev.expect_line("D 0.200 0.000").await;
    rig.dev.expect_line(SAFE).await; // the deadman

    let Run {
        code,
        stdout: out,
        stderr: err,
    } = botbus(&[
        "cmd",
        &id,
        "drive",
        r#"{"linear":{"x":5.0}}"#,
        "--url",
        &url,
    ])
    .await;
    assert_eq!(code, Some(1), "rejected: stdout {out:?}, stderr {err:?}");
    assert!(
        err.contains("outside the limits"),
        "the reason must be on stderr: {err:?}"
    );
    rig.dev
        .expect_silence(QUIET, "after a rejected `botbus cmd`")
        .await;

    let Run {
        code,
        stdout: out,
        stderr: err,
    } = botbus(&[
        "topic",
        "pub",
        &format!("robot/{id}/cmd/drive"),
        r#"{"linear":{"x":0.1}}"#,
        "--url",
        &url,
    ])
    .await;
    assert_eq!(code, Some(0), "topic pub: stdout {out:?}, stderr {err:?}");
    rig.dev.expect_line("D 0.100 0.000").await;
}

#[tokio::test]
async fn botbus_cmd_exits_3_when_no_daemon_answers_within_the_timeout() {
    let broker = Broker::start();
    let Run {
        code,
        stdout: out,
        stderr: err,
    } = botbus(&[
        "cmd",
        "ghost",
        "drive",
        r#"{"linear":{"x":0.2}}"#,
        "--url",
        &broker.url(),
        "--timeout-ms",
        "500",
    ])
    .await;
    assert_eq!(code, Some(3), "stdout {out:?}, stderr {err:?}");
    assert!(err.contains("no ack"), "stderr {err:?}");
}

#[tokio::test]
async fn an_oversized_retained_command_is_refused_without_dropping_the_broker_connection() {
    let mut rig = Rig::start("reject", 500).await;
    // 70 kB: above the default mqtt.max_payload_bytes of 64 KiB. Retained, so a daemon
    // that dropped the connection over it would get it again at every reconnect.
    let big = serde_json::json!({"id": 77, "linear": {"x": 0.1}, "pad": "a".repeat(70_000)});
    let topic = rig.topic("cmd", "drive");
    let out = std::process::Command::new(botbus_bin())
        .args([
            "topic",
            "pub",
            &topic,
            &big.to_string(),
            "--retain",
            "--url",
        ])
        .arg(rig.broker.url())
        .output()
        .expect("run botbus topic pub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ack = rig.ack("drive").await.json();
    assert_eq!(ack["ok"], false, "{ack}");
    assert!(
        ack["error"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeds the limit"),
        "{ack}"
    );
    rig.dev
        .expect_silence(QUIET, "after an oversized command")
        .await;
    // The connection survived: a valid command still goes through, and the daemon
    // connected to the broker exactly once.
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 78, "linear": {"x": 0.2}})),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.dev.expect_line("D 0.200 0.000").await;
    let log = rig.daemon.log();
    assert_eq!(log.matches("connected to broker").count(), 1, "{log}");
}

#[tokio::test]
async fn a_retained_command_is_not_replayed_when_the_daemon_comes_back() {
    let mut rig = Rig::start("reject", 500).await;
    let topic = rig.topic("cmd", "drive");
    let out = std::process::Command::new(botbus_bin())
        .args([
            "topic",
            "pub",
            &topic,
            r#"{"id": 91, "linear": {"x": 0.9}}"#,
            "--retain",
            "--url",
        ])
        .arg(rig.broker.url())
        .output()
        .expect("run botbus topic pub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Live, it is an ordinary command (the broker clears the retain flag for subscribers
    // already there).
    let ack = rig.ack("drive").await.json();
    assert_eq!(ack["ok"], true, "{ack}");
    rig.dev.expect_line("D 0.900 0.000").await;
    rig.dev.expect_line(SAFE).await; // deadman
                                     // After a restart the broker replays it as retained: refused, nothing written.
    rig.restart_daemon().await;
    let ack = rig.ack("drive").await.json();
    assert_rejected(&ack, serde_json::json!(91), "retained");
    rig.dev
        .expect_silence(QUIET, "after the replayed retained command")
        .await;
}

#[tokio::test]
async fn a_retained_estop_engage_stops_the_robot_but_a_retained_release_is_refused() {
    // A long deadman and broker grace (timeout_ms): after the device's connect-time safe
    // line, every safe line is the e-stop's.
    let timeout_ms = 30_000;
    // Retained before the daemon starts: the broker delivers it on subscribe, retain flag
    // set.
    let mut rig = Rig::start_with(
        "reject",
        timeout_ms,
        true,
        &[("estop", serde_json::json!({"id": 100, "engage": true}))],
    )
    .await;
    let ack = rig.ack("estop").await.json();
    assert_eq!(
        ack,
        serde_json::json!({"id": 100, "ok": true, "error": null, "applied": {"engage": true}}),
        "a retained e-stop engage is honoured"
    );
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 101, "linear": {"x": 0.2}})),
        )
        .await;
    assert_rejected(&ack, serde_json::json!(101), "estop");
    assert_eq!(ack["error"], "estop", "{ack}");
    // A live release, and the robot drives again. Before that line the device got only
    // safe lines (the e-stop's, when it came after the device's connect-time one).
    let ack = rig
        .command(
            "estop",
            msgpack(&serde_json::json!({"id": 102, "engage": false})),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let moving_at = Instant::now();
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 103, "linear": {"x": 0.2}})),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let skipped = rig.dev.wait_line("D 0.200 0.000").await;
    assert!(
        skipped.iter().all(|l| l == SAFE),
        "the device received {skipped:?} while the e-stop was engaged"
    );

    // While the robot drives, an e-stop engage is left retained while its link is down:
    // it comes back to it, and stops it at once.
    rig.retain_while_away(&[("estop", serde_json::json!({"id": 104, "engage": true}))])
        .await;
    let ack = rig.ack("estop").await.json();
    assert_eq!(
        ack,
        serde_json::json!({"id": 104, "ok": true, "error": null, "applied": {"engage": true}}),
        "a retained e-stop engage is honoured after a reconnect"
    );
    rig.dev.expect_line(SAFE).await;
    // max_rate_hz = 5: the next drive command is 200 ms after the last accepted one, so
    // only the e-stop can refuse it.
    tokio::time::sleep_until(moving_at + Duration::from_millis(250)).await;
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 105, "linear": {"x": 0.3}})),
        )
        .await;
    assert_rejected(&ack, serde_json::json!(105), "estop");
    assert_eq!(ack["error"], "estop", "{ack}");
    rig.dev.expect_silence(QUIET, "during an e-stop").await;

    // A retained release (it replaces the retained engage) and a retained drive command
    // are both refused; the e-stop holds.
    rig.retain_while_away(&[
        ("estop", serde_json::json!({"id": 106, "engage": false})),
        (
            "drive",
            serde_json::json!({"id": 107, "linear": {"x": 0.4}}),
        ),
    ])
    .await;
    let ack = rig.ack("estop").await.json();
    assert_rejected(&ack, serde_json::json!(106), "retained");
    let ack = rig.ack("drive").await.json();
    assert_rejected(&ack, serde_json::json!(107), "retained");
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 108, "linear": {"x": 0.5}})),
        )
        .await;
    assert_rejected(&ack, serde_json::json!(108), "estop");
    assert_eq!(
        ack["error"], "estop",
        "a retained release must leave the e-stop engaged: {ack}"
    );
    rig.dev
        .expect_silence(QUIET, "after a retained release and a retained command")
        .await;

    // A live release works.
    let ack = rig
        .command(
            "estop",
            msgpack(&serde_json::json!({"id": 109, "engage": false})),
        )
        .await;
    assert_eq!(
        ack,
        serde_json::json!({"id": 109, "ok": true, "error": null, "applied": {"engage": false}})
    );
    let ack = rig
        .command(
            "drive",
            msgpack(&serde_json::json!({"id": 110, "linear": {"x": 0.6}})),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.dev.expect_line("D 0.600 0.000").await;

    // Clean up: an empty retained payload removes each retained command. The daemon gets
    // the empty payloads live, and refuses them without writing anything.
    for actuator in ["estop", "drive"] {
        let topic = rig.topic("cmd", actuator);
        rig.sub
            .client
            .publish(&topic, QoS::AtLeastOnce, true, Vec::new())
            .await
            .expect("queue PUBLISH");
        rig.sub
            .wait_for(&format!("the empty payload on {topic}"), |m| {
                m.topic == topic && m.payload.is_empty()
            })
            .await;
        let ack = rig.ack(actuator).await.json();
        assert_eq!(ack["ok"], false, "an empty {actuator} command: {ack}");
    }
    rig.dev
        .expect_silence(QUIET, "after the retained commands were removed")
        .await;
}
