//! Integration tests for issue 7 (fleet tools and the `botbus::fleet` library): `botbus topic list|echo|hz|pub`, `botbus robots` and `botbus cmd` run as processes against a real mosquitto and real daemons fed by pseudo-terminal devices; `FleetClient` in-process; shared subscriptions; and both `fleet_monitor` examples against `botbus demo`.

mod common;

use botbus::fleet::{FleetClient, FleetOptions, RobotEvent};
use botbus::messages::{NavSatFix, Time, Twist, Vector3};
use common::*;
use nix::sys::signal::Signal;
use rumqttc::QoS;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

const VERSION: &str = env!("CARGO_PKG_VERSION");

// ---------------------------------------------------------------------------------------
// Robot files

/// A microcontroller with a battery stream and a `drive` actuator like the demo robot's
/// (limits ±1 m/s and ±2 rad/s, `max_age_ms` = 1000).
fn drive_base_device(path: &Path) -> String {
    format!(
        "{}{}",
        base_device(path, None),
        drive_command("reject", 5000, None)
    )
}

/// A device with one namespaced QoS 2 stream.
fn arm_device(path: &Path) -> String {
    format!(
        r#"{}  [[devices.streams]]
  sensor = "arm/temp"
  type = "sensor_msgs/Temperature"
  when = {{ tag = "T" }}
  fields = {{ temperature = "t" }}
  qos = 2
"#,
        lines_device("arm", path)
    )
}

/// Waits until mosquitto has added `filter` for a client whose id starts with
/// `client_prefix` (the fleet tools' ids are `botbus-fleet-<pid>-<random>`): from then on
/// it routes matching messages there.
async fn wait_subscribed(broker: &Broker, client_prefix: &str, filter: &str) {
    let found = |log: &str| {
        log.lines().any(|l| {
            l.split_once(": ").is_some_and(|(_, rest)| {
                rest.starts_with(client_prefix) && rest.ends_with(&format!(" {filter}"))
            })
        })
    };
    assert!(
        eventually(DEADLINE, || found(&broker.log())).await,
        "mosquitto did not subscribe {client_prefix}* to {filter} within {DEADLINE:?}"
    );
}

/// A FleetClient with an id of our own, to find it in the broker's log.
async fn fleet_client(broker: &Broker, tag: &str) -> (FleetClient, String) {
    let mut opts = FleetOptions::new(&broker.url()).expect("the test broker's URL is valid");
    let id = unique(tag);
    opts.bus.client_id = id.clone();
    let fleet = FleetClient::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("FleetClient::connect: {e}"));
    (fleet, id)
}

/// Keeps writing `text` to a pty device every 100 ms until aborted, like a live sensor.
fn feed(mut dev: PtyDevice, text: &str) -> tokio::task::JoinHandle<()> {
    let text = text.to_string();
    tokio::spawn(async move {
        loop {
            dev.send(&text).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

// ---------------------------------------------------------------------------------------
// topic list and robots

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_list_and_robots_show_two_daemons_robots_with_state_boot_and_topics_and_mark_unlisted_ones(
) {
    let broker = Broker::start();
    let (state_a, state_b) = (state_dir(), state_dir());
    let (a, b) = (unique("lista"), unique("listb"));
    // Robot b has started six times before: its boot count is 7.
    std::fs::create_dir_all(state_b.path().join(&b)).unwrap();
    std::fs::write(state_b.path().join(&b).join("boot"), "6\n").unwrap();
    let (gps, base, arm) = (PtyDevice::open(), PtyDevice::open(), PtyDevice::open());
    let mut sub = Subscriber::connect(&broker, &["robot/#"]).await;
    let _daemon_a = Daemon::start(DaemonOptions::new(
        format!(
            "id = \"{a}\"\n{}{}",
            gps_device(gps.path(), 0),
            drive_base_device(base.path())
        ),
        &broker,
        state_a.path(),
    ));
    let mut daemon_b = Daemon::start(DaemonOptions::new(
        format!("id = \"{b}\"\n{}", arm_device(arm.path())),
        &broker,
        state_b.path(),
    ));
    let feeders = [
        feed(gps, &crlf(NOVATEL_GGA)),
        feed(base, "tag=BAT v=12.4 i=0.8\r\n"),
        feed(arm, "tag=T t=41.5\r\n"),
    ];
    sub.wait_state(&a, "online").await;
    sub.wait_state(&b, "online").await;
    for t in [format!("robot/{a}/gps/fix"), format!("robot/{b}/arm/temp")] {
        sub.wait_topic(&t).await;
    }
    // A topic no catalog names, retained so the listing sees it whenever it subscribes.
    let mystery = format!("robot/{a}/mystery");
    sub.client
        .publish(
            &mystery,
            QoS::AtLeastOnce,
            true,
            msgpack(&serde_json::json!({"what": 42})),
        )
        .await
        .unwrap();
    sub.wait_topic(&mystery).await;

    let url = broker.url();
    let run = botbus(&["topic", "list", "--url", &url, "--wait-s", "2", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    let listing: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("topic list --json is not JSON ({e}):\n{run}"));
    let robots: BTreeMap<String, &serde_json::Value> = listing["robots"]
        .as_array()
        .unwrap_or_else(|| panic!("no robots array:\n{run}"))
        .iter()
        .map(|r| (r["robot"].as_str().unwrap_or_default().to_string(), r))
        .collect();
    assert_eq!(
        robots.keys().cloned().collect::<Vec<_>>(),
        {
            let mut ids = vec![a.clone(), b.clone()];
            ids.sort();
            ids
        },
        "{run}"
    );
    for (id, boot) in [(&a, 1), (&b, 7)] {
        let r = robots[id.as_str()];
        assert_eq!(r["state"], "online", "{id}: {r}");
        assert_eq!(r["boot"], boot, "{id}: {r}");
        assert_eq!(r["version"], VERSION, "{id}: {r}");
    }
    let topics: BTreeMap<String, &serde_json::Value> = listing["topics"]
        .as_array()
        .unwrap_or_else(|| panic!("no topics array:\n{run}"))
        .iter()
        .map(|t| (t["topic"].as_str().unwrap_or_default().to_string(), t))
        .collect();
    let topic = |t: &str| {
        *topics
            .get(t)
            .unwrap_or_else(|| panic!("{t} is not listed:\n{run}"))
    };
    for (t, robot, ty, qos, kind) in [
        (
            format!("robot/{a}/gps/fix"),
            &a,
            "sensor_msgs/NavSatFix",
            0,
            "stream",
        ),
        (
            format!("robot/{a}/battery"),
            &a,
            "sensor_msgs/BatteryState",
            1,
            "stream",
        ),
        (
            format!("robot/{a}/cmd/drive"),
            &a,
            "geometry_msgs/Twist",
            1,
            "command",
        ),
        (format!("robot/{a}/status"), &a, "botbus/status", 1, "meta"),
        (
            format!("robot/{b}/arm/temp"),
            &b,
            "sensor_msgs/Temperature",
            2,
            "stream",
        ),
        (
            format!("robot/{b}/catalog"),
            &b,
            "botbus/catalog",
            1,
            "meta",
        ),
    ] {
        let row = topic(&t);
        assert_eq!(row["robot"], robot.as_str(), "{row}");
        assert_eq!(row["type"], ty, "{row}");
        assert_eq!(row["qos"], qos, "{row}");
        assert_eq!(row["kind"], kind, "{row}");
    }
    // Fed at 10 Hz during the 2 s listen.
    for t in [format!("robot/{a}/gps/fix"), format!("robot/{b}/arm/temp")] {
        let rate = topic(&t)["rate_hz"]
            .as_f64()
            .unwrap_or_else(|| panic!("no rate for {t}:\n{run}"));
        assert!((2.0..30.0).contains(&rate), "{t} at {rate} Hz:\n{run}");
    }
    let odd = topic(&mystery);
    assert_eq!(odd["kind"], "unlisted", "{odd}");
    assert_eq!(odd["type"], "?", "{odd}");
    assert_eq!(odd["qos"], serde_json::Value::Null, "{odd}");
    assert_eq!(odd["robot"], a.as_str(), "{odd}");

    // Robot b stops: its Last Will or its goodbye says offline, and the listing shows it.
    daemon_b.signal(Signal::SIGTERM);
    assert!(
        daemon_b.wait_exit(DEADLINE).await.is_some(),
        "the daemon did not exit on SIGTERM"
    );
    sub.wait_state(&b, "offline").await;
    let (table, robots_run) = tokio::join!(
        botbus(&["topic", "list", "--url", &url, "--wait-s", "2"]),
        botbus(&["robots", "--url", &url, "--wait-s", "1"]),
    );
    for feeder in feeders {
        feeder.abort();
    }
    for run in [&table, &robots_run] {
        assert_eq!(run.code, Some(0), "{run}");
        assert!(
            run.stdout
                .lines()
                .next()
                .is_some_and(|h| h.split_whitespace().collect::<Vec<_>>()
                    == ["ROBOT", "STATE", "BOOT", "VERSION"]),
            "the robot table comes first:\n{run}"
        );
        let row = |id: &str| -> Vec<String> {
            run.stdout
                .lines()
                .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
                .find(|cols| cols.first().map(String::as_str) == Some(id))
                .unwrap_or_else(|| panic!("no row for {id}:\n{run}"))
        };
        assert_eq!(row(&a), [a.as_str(), "online", "1", VERSION], "{run}");
        assert_eq!(row(&b), [b.as_str(), "offline", "7", VERSION], "{run}");
    }
    let line = |t: &str| -> &str {
        table
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(t))
            .unwrap_or_else(|| panic!("no line for {t}:\n{table}"))
    };
    let fix = line(&format!("robot/{a}/gps/fix"));
    let cols: Vec<&str> = fix.split_whitespace().collect();
    assert_eq!(cols[1..3], ["sensor_msgs/NavSatFix", "0"], "{fix}");
    assert!(fix.contains(" Hz"), "the rate is shown: {fix}");
    let temp = line(&format!("robot/{b}/arm/temp"));
    assert_eq!(
        temp.split_whitespace().collect::<Vec<_>>()[1..3],
        ["sensor_msgs/Temperature", "2"],
        "{temp}"
    );
    let drive = line(&format!("robot/{a}/cmd/drive"));
    assert!(
        drive.contains("geometry_msgs/Twist") && drive.contains("command"),
        "{drive}"
    );
    let odd = line(&mystery);
    assert!(odd.contains("not in any catalog"), "{odd}");
    assert!(
        !robots_run.stdout.contains("/status") && !robots_run.stdout.contains("TOPIC"),
        "robots prints only the robot table:\n{robots_run}"
    );
}

// ---------------------------------------------------------------------------------------
// topic echo and topic pub

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_echo_prints_json_equal_to_what_topic_pub_sent() {
    let broker = Broker::start();
    let url = broker.url();
    let id = unique("echo");
    let sent = [
        serde_json::json!({
            "header": {"seq": 0, "stamp": {"sec": 1_700_000_000, "nanosec": 5}, "frame_id": "gps"},
            "nested": {"a": {"b": [1, 2, {"c": "deep"}]}, "empty_map": {}, "empty_list": []},
            "negative": -42,
            "min_i64": i64::MIN,
            "max_u64": u64::MAX,
            "float": -0.125,
            "pi": std::f64::consts::PI,
            "tiny": 1e-300,
            "yes": true,
            "no": false,
            "nothing": null,
            "text": "héllo \"quoted\" ✓ \n line",
        }),
        serde_json::json!([1, -2, 2.5, "x", [true, false, null], {"k": "v"}]),
        serde_json::json!("just a string"),
        serde_json::json!({"linear": {"x": 0.5, "y": -1.0e10, "z": 0}, "angular": {"z": -2.25}}),
    ];
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    // Retained, so the echo below sees every one whenever it subscribes.
    for (i, v) in sent.iter().enumerate() {
        let topic = format!("robot/{id}/echo/{i}");
        let text = v.to_string();
        let run = botbus(&["topic", "pub", &topic, &text, "--url", &url, "--retain"]).await;
        assert_eq!(run.code, Some(0), "{run}");
        let m = sub.wait_topic(&topic).await;
        assert_eq!(
            &m.payload[..],
            msgpack(v),
            "topic pub sends the JSON as named MessagePack"
        );
    }

    let filter = format!("robot/{id}/echo/+");
    let run = botbus(&["topic", "echo", &filter, "--url", &url, "--count", "4"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "--count 4 prints four lines:\n{run}");
    let mut got = BTreeMap::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let topic = v["topic"].as_str().unwrap_or_default().to_string();
        got.insert(topic, v["payload"].clone());
    }
    for (i, v) in sent.iter().enumerate() {
        assert_eq!(
            got.get(&format!("robot/{id}/echo/{i}")),
            Some(v),
            "payload {i} as echoed:\n{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_echo_prints_one_field_hex_yaml_and_payloads_that_are_not_msgpack_without_crashing() {
    let broker = Broker::start();
    let url = broker.url();
    let id = unique("echomodes");
    let sub = Subscriber::connect(&broker, &[]).await;
    let mut payloads = BTreeMap::new();
    for k in 0..3u64 {
        let topic = format!("robot/{id}/s/{k}");
        let bytes = msgpack(&serde_json::json!({
            "header": {"seq": 10 * k + 3, "frame_id": "imu"},
            "data": k as f64 + 0.5,
            "flags": [k == 1, "on"],
        }));
        payloads.insert(topic, bytes);
    }
    let junk = [
        (
            format!("robot/{id}/junk/reserved"),
            b"\xc1 never msgpack".to_vec(),
        ),
        (format!("robot/{id}/junk/truncated"), vec![0x92, 0x01]),
        // An array claiming four billion items: decoding must not try to allocate them.
        (
            format!("robot/{id}/junk/huge"),
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        ),
        (format!("robot/{id}/junk/text"), b"12.4,0.8\n".to_vec()),
    ];
    for (topic, bytes) in payloads.iter().chain(junk.iter().map(|(t, b)| (t, b))) {
        sub.client
            .publish(topic.as_str(), QoS::AtLeastOnce, true, bytes.clone())
            .await
            .unwrap();
    }
    // The retained messages are in place once a new subscriber gets them all.
    let mut check = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    for t in payloads.keys().chain(junk.iter().map(|(t, _)| t)) {
        check.wait_topic(t).await;
    }

    let s = format!("robot/{id}/s/+");
    let j = format!("robot/{id}/junk/+");
    let one = format!("robot/{id}/s/1");
    let (field, raw, junk_run, pretty) = tokio::join!(
        botbus(&[
            "topic",
            "echo",
            &s,
            "--url",
            &url,
            "--count",
            "3",
            "--field",
            "header.seq"
        ]),
        botbus(&["topic", "echo", &s, "--url", &url, "--count", "3", "--raw"]),
        botbus(&["topic", "echo", &j, "--url", &url, "--count", "4"]),
        botbus(&["topic", "echo", &one, "--url", &url, "--count", "1", "--pretty"]),
    );

    assert_eq!(field.code, Some(0), "{field}");
    let seqs: BTreeSet<&str> = field.stdout.lines().collect();
    assert_eq!(
        seqs,
        BTreeSet::from(["3", "13", "23"]),
        "--field header.seq prints just the seqs:\n{field}"
    );
    assert_eq!(field.stdout.lines().count(), 3, "{field}");

    assert_eq!(raw.code, Some(0), "{raw}");
    let mut hexes = BTreeMap::new();
    for line in raw.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("payload").is_none(), "--raw does not decode: {line}");
        hexes.insert(
            v["topic"].as_str().unwrap_or_default().to_string(),
            v["hex"].as_str().unwrap_or_default().to_string(),
        );
    }
    let want: BTreeMap<String, String> =
        payloads.iter().map(|(t, b)| (t.clone(), hex(b))).collect();
    assert_eq!(hexes, want, "--raw prints the exact bytes as hex:\n{raw}");

    assert_eq!(junk_run.code, Some(0), "no crash on junk:\n{junk_run}");
    assert!(
        !junk_run.stderr.contains("panicked"),
        "no panic on junk:\n{junk_run}"
    );
    let mut seen = BTreeSet::new();
    for line in junk_run.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let topic = v["topic"].as_str().unwrap_or_default();
        let (_, bytes) = junk
            .iter()
            .find(|(t, _)| t == topic)
            .unwrap_or_else(|| panic!("unexpected topic: {line}"));
        assert_eq!(v["hex"], hex(bytes), "shown as hex: {line}");
        assert!(
            v["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("not MessagePack")),
            "with a note: {line}"
        );
        seen.insert(topic.to_string());
    }
    assert_eq!(
        seen.len(),
        junk.len(),
        "every junk payload is shown:\n{junk_run}"
    );

    assert_eq!(pretty.code, Some(0), "{pretty}");
    let want = format!(
        "---\ntopic: {one}\npayload:\n  header:\n    seq: 13\n    frame_id: imu\n  data: 1.5\n  flags: [true, on]\n"
    );
    assert_eq!(pretty.stdout, want, "--pretty prints a YAML-style block");
}

// ---------------------------------------------------------------------------------------
// topic hz

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_hz_reports_the_rate_and_the_messages_lost_in_a_seq_gap() {
    let broker = Broker::start();
    let id = unique("hz");
    let topic = format!("robot/{id}/imu");
    let filter = format!("robot/{id}/+");
    let hz = Proc::spawn(&[
        "topic",
        "hz",
        &filter,
        "--url",
        &broker.url(),
        "--seconds",
        "3",
    ]);
    wait_subscribed(&broker, &format!("botbus-fleet-{}-", hz.pid()), &filter).await;

    // seq 0..30 at 10 Hz, with 10..14 missing: five lost.
    let publisher = Subscriber::connect(&broker, &[]).await;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for seq in (0u64..30).filter(|s| !(10..15).contains(s)) {
        tick.tick().await;
        publisher
            .client
            .publish(
                &topic,
                QoS::AtLeastOnce,
                false,
                msgpack(&serde_json::json!({"header": {"seq": seq}, "data": 1.0})),
            )
            .await
            .unwrap();
    }
    let run = hz.finish(DEADLINE).await;
    assert_eq!(run.code, Some(0), "{run}");
    let last = run
        .stdout
        .lines()
        .rfind(|l| l.starts_with(&format!("{topic}:")))
        .unwrap_or_else(|| panic!("no report for {topic}:\n{run}"));
    assert!(last.contains("lost 5"), "the gap 10..14 is 5 lost: {last}");
    assert!(!last.contains("duplicates"), "{last}");
    let after = |key: &str| -> f64 {
        let rest = last
            .split(key)
            .nth(1)
            .unwrap_or_else(|| panic!("no `{key}` in {last}"));
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after `{key}` in {last}"))
    };
    let rate = after("rate ");
    assert!((5.0..20.0).contains(&rate), "about 10 Hz: {last}");
    assert!(after("mean ") > 40.0 && after("mean ") < 250.0, "{last}");
    assert!(after(" n ") >= 12.0, "most messages were counted: {last}");
}

// ---------------------------------------------------------------------------------------
// cmd

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmd_exits_0_with_the_ack_1_with_the_reason_and_3_without_an_ack() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("cmd");
    let mut base = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/diagnostics")]).await;
    let _daemon = Daemon::start(DaemonOptions::new(
        format!("id = \"{id}\"\n{}", drive_base_device(base.path())),
        &broker,
        state.path(),
    ));
    sub.wait_device(&id, "base", true).await;
    let url = broker.url();

    let ok = botbus(&[
        "cmd",
        &id,
        "drive",
        r#"{"linear": {"x": 0.5}, "angular": {"z": -1.0}}"#,
        "--url",
        &url,
    ])
    .await;
    assert_eq!(ok.code, Some(0), "accepted:\n{ok}");
    let ack: serde_json::Value = serde_json::from_str(ok.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not the ack as JSON ({e}):\n{ok}"));
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["applied"]["linear"]["x"], 0.5, "{ack}");
    assert_eq!(ack["applied"]["angular"]["z"], -1.0, "{ack}");
    // Accepted means written.
    let mut written = String::new();
    let mut buf = [0u8; 256];
    let end = tokio::time::Instant::now() + DEADLINE;
    while !written.contains("D 0.500 -1.000\n") {
        match tokio::time::timeout_at(end, base.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => written.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => panic!("the device never received the command; it got {written:?}"),
        }
    }

    let started = std::time::Instant::now();
    let (rejected, no_ack) = tokio::join!(
        botbus(&[
            "cmd",
            &id,
            "drive",
            r#"{"linear": {"x": 3.0}}"#,
            "--url",
            &url
        ]),
        botbus(&[
            "cmd",
            &unique("nobody"),
            "drive",
            r#"{"linear": {"x": 0.1}}"#,
            "--url",
            &url,
            "--timeout-ms",
            "500"
        ]),
    );
    assert_eq!(rejected.code, Some(1), "rejected:\n{rejected}");
    assert!(
        rejected.stderr.contains("rejected") && rejected.stderr.contains("linear.x = 3"),
        "the reason is on stderr:\n{rejected}"
    );
    let ack: serde_json::Value = serde_json::from_str(rejected.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is the ack as JSON ({e}):\n{rejected}"));
    assert_eq!(ack["ok"], false, "{ack}");

    assert_eq!(no_ack.code, Some(3), "no ack:\n{no_ack}");
    assert!(no_ack.stderr.contains("no ack"), "{no_ack}");
    assert!(no_ack.stdout.trim().is_empty(), "{no_ack}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "--timeout-ms 500 gives up in time: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn tool_input_errors_exit_2_with_one_line_and_publish_nothing() {
    // Port 1 has no broker: each of these must be refused before any connection.
    let url = "mqtt://127.0.0.1:1";
    for args in [
        &["cmd", "r1", "drive", "5", "--url", url][..],
        &["cmd", "r1", "drive", "{not json", "--url", url],
        &["cmd", "r1", "+", "{}", "--url", url],
        &["cmd", "r/1", "drive", "{}", "--url", url],
        &["topic", "pub", "robot/r1/cmd/+", "{}", "--url", url],
        &[
            "topic",
            "pub",
            "robot/r1/x",
            "{}",
            "--qos",
            "3",
            "--url",
            url,
        ],
        &["topic", "echo", "robot/#/x", "--url", url],
    ] {
        let run = botbus(args).await;
        assert_eq!(run.code, Some(2), "{args:?}:\n{run}");
        assert_eq!(run.stderr.trim().lines().count(), 1, "{args:?}:\n{run}");
        assert!(run.stderr.starts_with("botbus: "), "{args:?}:\n{run}");
        assert!(
            !run.stderr.contains("broker") && !run.stderr.contains("reach"),
            "refused before connecting: {args:?}:\n{run}"
        );
    }
}

#[tokio::test]
async fn topic_pub_fails_when_the_broker_never_acknowledges_a_qos_1_message() {
    // A broker that accepts the connection and then takes everything without a PUBACK.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("mqtt://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut buf = [0u8; 4096];
                if sock.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let _ = sock.write_all(&[0x20, 0x02, 0x00, 0x00]).await; // CONNACK
                while sock.read(&mut buf).await.unwrap_or(0) > 0 {}
            });
        }
    });
    let run = botbus(&[
        "topic",
        "pub",
        "a/b",
        "{\"x\": 1}",
        "--qos",
        "1",
        "--url",
        &url,
    ])
    .await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("did not acknowledge"), "{run}");
    let run = botbus(&[
        "topic",
        "pub",
        "a/b",
        "{\"x\": 1}",
        "--qos",
        "0",
        "--url",
        &url,
    ])
    .await;
    assert_eq!(
        run.code,
        Some(0),
        "QoS 0 has no acknowledgement to wait for:\n{run}"
    );
}

// ---------------------------------------------------------------------------------------
// The library API

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_client_yields_typed_fixes_and_robots_going_online_and_offline() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("libfix");
    let (fleet, client_id) = fleet_client(&broker, "test-fleet").await;
    let mut events = fleet.robot_events().await.unwrap();
    let mut fixes = fleet
        .subscribe::<NavSatFix>("robot/+/gps/fix")
        .await
        .unwrap();
    wait_subscribed(&broker, &client_id, "robot/+/status").await;
    wait_subscribed(&broker, &client_id, "robot/+/gps/fix").await;

    let mut gps = PtyDevice::open();
    let daemon = Daemon::start(DaemonOptions::new(
        format!("id = \"{id}\"\n{}", gps_device(gps.path(), 1)),
        &broker,
        state.path(),
    ));
    let event = tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("no robot event within the deadline");
    assert_eq!(
        event,
        Some(RobotEvent::Online {
            robot: id.clone(),
            boot: 1,
            version: VERSION.into()
        })
    );

    // The device talks until the first fix arrives.
    let end = tokio::time::Instant::now() + DEADLINE;
    let (robot, fix) = loop {
        gps.send(&crlf(NOVATEL_GGA)).await;
        match tokio::time::timeout(Duration::from_millis(300), fixes.next()).await {
            Ok(Some(got)) => break got,
            Ok(None) => panic!("the subscription ended"),
            Err(_) if tokio::time::Instant::now() < end => {}
            Err(_) => panic!("no NavSatFix within {DEADLINE:?}"),
        }
    };
    assert_eq!(robot, id);
    let (lat, lon, alt) = novatel_fix();
    assert!((fix.latitude - lat).abs() < 1e-9, "{fix:?}");
    assert!((fix.longitude - lon).abs() < 1e-9, "{fix:?}");
    assert!((fix.altitude - alt).abs() < 1e-6, "{fix:?}");
    assert_eq!(fix.status.status, 0, "GGA quality 1 is STATUS_FIX: {fix:?}");
    assert_eq!(fix.header.frame_id, "gps");

    daemon.signal(Signal::SIGTERM);
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(end, events.next()).await {
            Ok(Some(RobotEvent::Offline { robot, boot })) => {
                assert_eq!((robot.as_str(), boot), (id.as_str(), 1));
                break;
            }
            Ok(Some(RobotEvent::Online { robot, .. })) => {
                assert_eq!(robot, id, "no other robot is on this broker")
            }
            Ok(None) => panic!("the event stream ended"),
            Err(_) => panic!("no Offline event within {DEADLINE:?} of SIGTERM"),
        }
    }
    fleet.close().await;
}

/// A robot with a `drive` actuator on a pty, its daemon, and the device's output.
struct DriveRig {
    _state: tempfile::TempDir,
    _daemon: Daemon,
    id: String,
    dev: PtyDevice,
    written: String,
}

impl DriveRig {
    async fn start(broker: &Broker, tag: &str) -> DriveRig {
        let state = state_dir();
        let id = unique(tag);
        let dev = PtyDevice::open();
        let mut sub = Subscriber::connect(broker, &[&format!("robot/{id}/diagnostics")]).await;
        let daemon = Daemon::start(DaemonOptions::new(
            format!("id = \"{id}\"\n{}", drive_base_device(dev.path())),
            broker,
            state.path(),
        ));
        sub.wait_device(&id, "base", true).await;
        DriveRig {
            _state: state,
            _daemon: daemon,
            id,
            dev,
            written: String::new(),
        }
    }

    /// Waits until the device has received `line`.
    async fn expect_written(&mut self, line: &str) {
        let want = format!("{line}\n");
        let mut buf = [0u8; 256];
        let end = tokio::time::Instant::now() + DEADLINE;
        while !self.written.contains(&want) {
            match tokio::time::timeout_at(end, self.dev.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.written.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => panic!(
                    "the device never received {line:?}; it got {:?}",
                    self.written
                ),
            }
        }
    }
}

fn twist(x: f64, z: f64) -> Twist {
    Twist {
        linear: Vector3 {
            x,
            ..Default::default()
        },
        angular: Vector3 {
            z,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_client_command_returns_the_ack_with_applied_values_or_the_rejection_reason() {
    let broker = Broker::start();
    let mut rig = DriveRig::start(&broker, "libcmd").await;
    let (fleet, _) = fleet_client(&broker, "test-fleet").await;

    let mut go = twist(0.5, -0.25);
    go.header.stamp = Time::now();
    let ack = fleet
        .command(&rig.id, "drive", &go, DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("command: {e}"));
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.error, None, "{ack:?}");
    assert_eq!(ack.applied["linear"]["x"], 0.5, "{ack:?}");
    assert_eq!(ack.applied["angular"]["z"], -0.25, "{ack:?}");
    assert!(ack.id.is_number(), "the id added to match the ack: {ack:?}");
    rig.expect_written("D 0.500 -0.250").await;

    let mut too_fast = twist(1.5, 0.0);
    too_fast.header.stamp = Time::now();
    let ack = fleet
        .command(&rig.id, "drive", &too_fast, DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("command: {e}"));
    assert!(!ack.ok, "out of range must be rejected: {ack:?}");
    assert!(
        ack.error
            .as_deref()
            .is_some_and(|e| e.contains("linear.x") && e.contains("outside the limits")),
        "{ack:?}"
    );
    assert_eq!(ack.applied, serde_json::Value::Null, "{ack:?}");

    // Nobody answers for a robot that does not exist: an error, in time.
    let started = std::time::Instant::now();
    let err = fleet
        .command(&unique("nobody"), "drive", &go, Duration::from_millis(500))
        .await
        .expect_err("no robot, no ack");
    assert!(err.to_string().contains("no ack"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    fleet.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_client_command_accepts_a_default_built_twist_as_the_rustdoc_example_sends_it() {
    // The rustdoc of `botbus::fleet::client` sends `Twist { linear: .., ..Default::default() }`,
    // whose header carries a zero stamp. That means "not stamped" (as in ROS), not "stamped
    // in 1970": an actuator with `max_age_ms` (the demo's `drive` has one) must accept it.
    let broker = Broker::start();
    let mut rig = DriveRig::start(&broker, "libdefault").await;
    let (fleet, _) = fleet_client(&broker, "test-fleet").await;
    let ack = fleet
        .command(&rig.id, "drive", &twist(0.25, 0.5), DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("command: {e}"));
    assert!(
        ack.ok,
        "a Twist built with ..Default::default() was rejected: {ack:?}"
    );
    rig.expect_written("D 0.250 0.500").await;
    // A header without a stamp (DESIGN.md section 5: the stamp is optional) is not stale
    // either.
    let ack = fleet
        .command(
            &rig.id,
            "drive",
            &serde_json::json!({"header": {"frame_id": "ops"}, "linear": {"x": 0.125}}),
            DEADLINE,
        )
        .await
        .unwrap_or_else(|e| panic!("command: {e}"));
    assert!(ack.ok, "a header without a stamp was rejected: {ack:?}");
    rig.expect_written("D 0.125 0.000").await;
    fleet.close().await;
}

// ---------------------------------------------------------------------------------------
// Shared subscriptions

const SHARED_COUNT: u64 = 40;

/// Publishes `{"header": {"seq": k}}` for k = 0..SHARED_COUNT on `topic`, QoS 1, and
/// returns once the broker has routed them all (to the publisher's own subscription too).
async fn publish_seqs(broker: &Broker, topic: &str) {
    let mut publisher = Subscriber::connect(broker, &[topic]).await;
    for seq in 0..SHARED_COUNT {
        publisher
            .client
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                msgpack(&serde_json::json!({"header": {"seq": seq}, "data": seq as f64})),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..SHARED_COUNT {
        publisher.wait_topic(topic).await;
    }
}

/// Each group member got some, none got one twice, and together they got all.
fn assert_split(a: &[u64], b: &[u64]) {
    let all: Vec<u64> = a.iter().chain(b).copied().collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both members get a share: {a:?} / {b:?}"
    );
    assert_eq!(all.len(), distinct.len(), "no message twice: {a:?} / {b:?}");
    assert_eq!(
        distinct,
        (0..SHARED_COUNT).collect::<BTreeSet<_>>(),
        "together every message: {a:?} / {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fleet_clients_in_one_share_group_split_a_stream_without_duplicates() {
    let broker = Broker::start();
    let id = unique("share");
    let group = unique("grp");
    let filter = format!("$share/{group}/robot/+/gps/fix");
    let (one, one_id) = fleet_client(&broker, "test-share").await;
    let (two, two_id) = fleet_client(&broker, "test-share").await;
    let mut rx_one = one.subscribe_raw(&filter).await.unwrap();
    let mut rx_two = two.subscribe_raw(&filter).await.unwrap();
    wait_subscribed(&broker, &one_id, &filter).await;
    wait_subscribed(&broker, &two_id, &filter).await;

    publish_seqs(&broker, &format!("robot/{id}/gps/fix")).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let seq = |m: &botbus::bus::Incoming| {
        botbus::fleet::hz::seq_of(&m.payload).expect("a seq in every message")
    };
    let end = tokio::time::Instant::now() + DEADLINE;
    while ((a.len() + b.len()) as u64) < SHARED_COUNT {
        tokio::select! {
            Some(m) = rx_one.recv() => a.push(seq(&m)),
            Some(m) = rx_two.recv() => b.push(seq(&m)),
            _ = tokio::time::sleep_until(end) => break,
        }
    }
    // Anything more would be a duplicate.
    let quiet = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        tokio::select! {
            Some(m) = rx_one.recv() => a.push(seq(&m)),
            Some(m) = rx_two.recv() => b.push(seq(&m)),
            _ = tokio::time::sleep_until(quiet) => break,
        }
    }
    assert_split(&a, &b);
    one.close().await;
    two.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_topic_echo_processes_in_one_share_group_split_a_stream_without_duplicates() {
    let broker = Broker::start();
    let id = unique("shareecho");
    let filter = format!("$share/{}/robot/+/gps/fix", unique("grp"));
    let url = broker.url();
    let args = [
        "topic",
        "echo",
        &filter,
        "--url",
        &url,
        "--field",
        "header.seq",
        "--idle-timeout-s",
        "3",
    ];
    let (one, two) = (Proc::spawn(&args), Proc::spawn(&args));
    wait_subscribed(&broker, &format!("botbus-fleet-{}-", one.pid()), &filter).await;
    wait_subscribed(&broker, &format!("botbus-fleet-{}-", two.pid()), &filter).await;

    publish_seqs(&broker, &format!("robot/{id}/gps/fix")).await;
    let (one, two) = tokio::join!(one.finish(DEADLINE), two.finish(DEADLINE));
    let seqs = |run: &Run| -> Vec<u64> {
        assert_eq!(run.code, Some(0), "{run}");
        run.stdout
            .lines()
            .map(|l| {
                l.parse()
                    .unwrap_or_else(|_| panic!("not a seq: {l:?}\n{run}"))
            })
            .collect()
    };
    assert_split(&seqs(&one), &seqs(&two));
}

// ---------------------------------------------------------------------------------------
// The examples against `botbus demo`

/// `cargo` in the package, without the variables cargo set for this test process: a build
/// script that watches one (ring's watches `CARGO_MANIFEST_DIR`) would otherwise rebuild
/// half the dependency tree, here and again in the next ordinary build.
fn cargo() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO"));
    for (k, _) in std::env::vars() {
        let set_by_cargo = k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&k.as_str());
        if set_by_cargo {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_fleet_monitor_example_shows_fixes_batteries_and_an_ok_ack_from_the_demo() {
    // Built before the demo starts, so a slow first build cannot outlast it.
    let build = cargo()
        .args(["build", "--quiet", "--example", "fleet_monitor"])
        .output();
    let build = tokio::time::timeout(Duration::from_secs(600), build)
        .await
        .expect("cargo build --example fleet_monitor took over 10 minutes")
        .expect("run cargo");
    assert!(
        build.status.success(),
        "the example does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let (_demo, url) = start_demo(12).await;
    let run = cargo()
        .args(["run", "--quiet", "--example", "fleet_monitor", "--"])
        .args(["--url", &url, "--seconds", "4", "--drive", "demo"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the example did not exit within 120 s")
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "exit {:?}\n--- stdout ---\n{stdout}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    let has = |prefix: &str| stdout.lines().any(|l| l.starts_with(prefix));
    assert!(has("online demo (boot "), "no online event:\n{report}");
    assert!(has("battery demo: "), "no battery:\n{report}");
    assert!(has("ack demo/drive: ok, applied {"), "no ok ack:\n{report}");
    let fix = stdout
        .lines()
        .find(|l| l.starts_with("fix demo: lat "))
        .unwrap_or_else(|| panic!("no fix:\n{report}"));
    let lat: f64 = fix
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no latitude in {fix}"));
    assert!((-90.0..=90.0).contains(&lat), "{fix}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_fleet_monitor_example_shows_fixes_batteries_and_an_ok_ack_from_the_demo() {
    if !require(Peer::Paho) {
        return;
    }
    let (_demo, url) = start_demo(12).await;
    let script = repo_path("examples/fleet_monitor.py");
    let run = tokio::process::Command::new(peers::python())
        .arg(&script)
        .args(["--url", &url, "--seconds", "4", "--drive", "demo"])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python example did not exit within 60 s")
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "exit {:?}\n--- stdout ---\n{stdout}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    let has = |prefix: &str, inner: &str| {
        stdout
            .lines()
            .any(|l| l.starts_with(prefix) && l.contains(inner))
    };
    assert!(has("online demo {", "'boot': "), "no status:\n{report}");
    assert!(has("fix demo {", "'latitude': "), "no fix:\n{report}");
    assert!(
        has("battery demo {", "'voltage': "),
        "no battery:\n{report}"
    );
    assert!(
        has("ack demo/drive {", "'ok': True"),
        "no ok ack:\n{report}"
    );
}
