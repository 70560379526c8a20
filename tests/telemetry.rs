//! Integration tests for issue 2 (the walking skeleton): the real `botbus` binary bridges NMEA and text-line devices on pseudo-terminals (and TCP) to a real mosquitto, checked by independent subscribers (rumqttc + rmpv, the CLI tools and Python paho-mqtt).

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

// Real sentences, copied verbatim from tests/fixtures/nmea (their checksums are the receivers').
// NOVATEL_GGA (novatel-oem.nmea) is a shared fixture, in tests/common/fixtures.rs.
/// sirf-iv-bu353s4.nmea: 37°47.0873' S, 175°18.8938' E, 59.9 m MSL, geoid 23.7 m, GPS fix.
const SIRF_GGA: &str = "$GPGGA,030719.000,3747.0873,S,17518.8938,E,1,08,1.1,59.9,M,23.7,M,,0000*7D";
/// trimble-rtk.nmea: 41°34.49795459' N, 93°45.03431408' W, 278.161 m MSL, geoid -31.442 m, DGPS.
const TRIMBLE_GGA: &str =
    "$GNGGA,132819.60,4134.49795459,N,09345.03431408,W,2,10,0.9,278.161,M,-31.442,M,6.6,0133*6A";

/// What the three sentences above must decode to: (latitude, longitude, ellipsoid altitude,
/// ROS status). Worked out by hand from the sentences: degrees + minutes / 60, and
/// altitude = MSL altitude + geoid separation.
fn expected_fixes() -> [(f64, f64, f64, i64); 3] {
    [
        (
            29.0 + 26.6326 / 60.0,
            -(98.0 + 36.8840 / 60.0),
            255.75 - 26.00,
            0,
        ),
        (
            -(37.0 + 47.0873 / 60.0),
            175.0 + 18.8938 / 60.0,
            59.9 + 23.7,
            0,
        ),
        // GGA quality 2 (differential) is ROS STATUS_SBAS_FIX = 1.
        (
            41.0 + 34.49795459 / 60.0,
            -(93.0 + 45.03431408 / 60.0),
            278.161 - 31.442,
            1,
        ),
    ]
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        close(got, want, tol),
        "{what}: got {got}, want {want} (± {tol})"
    );
}

fn gps_and_base_robot(id: &str, gps: &Path, base: &Path) -> String {
    format!(
        "id = \"{id}\"\n{}{}",
        gps_device(gps, 1),
        base_device(base, None)
    )
}

/// Waits for `n` new messages on `topic`.
async fn take(sub: &mut Subscriber, topic: &str, n: usize) -> Vec<Msg> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(sub.wait_topic(topic).await);
    }
    out
}

fn is_nan_f32(v: &rmpv::Value) -> bool {
    matches!(v, rmpv::Value::F32(x) if x.is_nan())
}

#[tokio::test]
async fn gps_fix_and_battery_are_decoded_with_seq_counting_from_zero_per_topic() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("decode");
    let mut gps = PtyDevice::open();
    let mut base = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    let _daemon = Daemon::start(DaemonOptions::new(
        gps_and_base_robot(&id, gps.path(), base.path()),
        &broker,
        state.path(),
    ));
    sub.wait_device(&id, "gps", true).await;
    sub.wait_device(&id, "base", true).await;

    let before = unix_now();
    gps.send(&[NOVATEL_GGA, SIRF_GGA, TRIMBLE_GGA].map(crlf).concat())
        .await;
    // The IMU line matches no `when` and must not reach the battery topic.
    base.send("tag=BAT v=12.4 i=0.8\r\ntag=IMU ax=0.1 az=9.81\r\ntag=BAT v=12.3 i=-1.5\r\ntag=BAT v=11.95 i=2.25\r\n")
        .await;

    let fixes = take(&mut sub, &format!("robot/{id}/gps/fix"), 3).await;
    let after = unix_now();
    for (i, (m, (lat, lon, alt, status))) in fixes.iter().zip(expected_fixes()).enumerate() {
        assert!(m.decode_error.is_none(), "{m:?}");
        assert_eq!(m.u64("header.seq"), i as u64, "{m:?}");
        assert_eq!(m.str("header.frame_id"), "gps");
        let sec = m.i64("header.stamp.sec");
        assert!(
            (before - 1..=after + 1).contains(&sec),
            "stamp {sec} not the read time"
        );
        assert!(m.u64("header.stamp.nanosec") < 1_000_000_000);
        assert_close("latitude", m.f64("latitude"), lat, 1e-9);
        assert_close("longitude", m.f64("longitude"), lon, 1e-9);
        assert_close("altitude", m.f64("altitude"), alt, 1e-6);
        assert_eq!(m.i64("status.status"), status, "{m:?}");
        assert_eq!(m.u64("status.service"), 1, "GPS service: {m:?}");
        assert_eq!(m.array("position_covariance").len(), 9);
        let cov_type = m.u64("position_covariance_type");
        assert!(cov_type <= 3, "{m:?}");
        assert_eq!(m.qos, 1, "the stream's QoS is 1");
        assert!(!m.retain);
        // Named map, readable by any serde consumer.
        assert!(m.json()["latitude"].is_number());
    }

    let batteries = take(&mut sub, &format!("robot/{id}/battery"), 3).await;
    let sent = [(12.4f32, 0.8f32), (12.3, -1.5), (11.95, 2.25)];
    for (i, (m, (v, c))) in batteries.iter().zip(sent).enumerate() {
        assert_eq!(m.u64("header.seq"), i as u64, "{m:?}");
        assert_eq!(m.str("header.frame_id"), "base");
        assert_eq!(
            m.get("voltage"),
            &rmpv::Value::F32(v),
            "voltage is the f32 sent: {m:?}"
        );
        assert_eq!(m.get("current"), &rmpv::Value::F32(c), "{m:?}");
        for unknown in ["charge", "percentage", "temperature"] {
            assert!(
                is_nan_f32(m.get(unknown)),
                "{unknown} is NaN when unknown: {m:?}"
            );
        }
        assert_eq!(m.qos, 1);
    }
}

#[tokio::test]
async fn status_is_online_after_connect_and_offline_after_sigterm_with_exit_code_zero() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("sigterm");
    let gps = PtyDevice::open();
    let status_topic = format!("robot/{id}/status");
    let mut sub = Subscriber::connect(&broker, &[&status_topic]).await;
    let mut daemon = Daemon::start(DaemonOptions::new(
        format!("id = \"{id}\"\n{}", gps_device(gps.path(), 0)),
        &broker,
        state.path(),
    ));

    let online = sub.wait_topic(&status_topic).await;
    assert_eq!(online.str("state"), "online", "{online:?}");
    assert_eq!(online.u64("boot"), 1);
    assert_eq!(online.str("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(online.qos, 1);

    // A subscriber arriving later gets it retained.
    let mut late = Subscriber::connect(&broker, &[&status_topic]).await;
    let retained = late.wait_topic(&status_topic).await;
    assert!(retained.retain, "status must be retained: {retained:?}");
    assert_eq!(retained.str("state"), "online");

    daemon.signal(Signal::SIGTERM);
    let exit = daemon
        .wait_exit(DEADLINE)
        .await
        .expect("daemon still running after SIGTERM");
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM: {exit:?}");

    let offline = sub
        .wait_for("status offline", |m| {
            m.topic == status_topic && m.opt("state").and_then(|s| s.as_str()) == Some("offline")
        })
        .await;
    assert_eq!(offline.u64("boot"), 1);
    let mut later = Subscriber::connect(&broker, &[&status_topic]).await;
    let retained = later.wait_topic(&status_topic).await;
    assert!(retained.retain);
    assert_eq!(retained.str("state"), "offline", "{retained:?}");
}

#[tokio::test]
async fn last_will_marks_the_robot_offline_after_sigkill() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("will");
    let gps = PtyDevice::open();
    let status_topic = format!("robot/{id}/status");
    let mut sub = Subscriber::connect(&broker, &[&status_topic]).await;
    // The environment override beats the settings file's keep_alive_s = 2.
    let mut daemon = Daemon::start(
        DaemonOptions::new(
            format!("id = \"{id}\"\n{}", gps_device(gps.path(), 0)),
            &broker,
            state.path(),
        )
        .env("BOTBUS_MQTT__KEEP_ALIVE_S", "1"),
    );
    let online = sub
        .wait_for("status online", |m| {
            m.topic == status_topic && m.opt("state").and_then(|s| s.as_str()) == Some("online")
        })
        .await;

    daemon.signal(Signal::SIGKILL);
    daemon
        .wait_exit(DEADLINE)
        .await
        .expect("SIGKILL ends the daemon");

    // Only the broker can have published this: the daemon was killed without warning.
    let will = sub
        .wait_for("status offline (the Will)", |m| {
            m.topic == status_topic && m.opt("state").and_then(|s| s.as_str()) == Some("offline")
        })
        .await;
    assert_eq!(
        will.u64("boot"),
        online.u64("boot"),
        "the Will carries this boot"
    );
    assert_eq!(will.str("version"), env!("CARGO_PKG_VERSION"));
    let mut late = Subscriber::connect(&broker, &[&status_topic]).await;
    let retained = late.wait_topic(&status_topic).await;
    assert!(retained.retain, "the Will is retained: {retained:?}");
    assert_eq!(retained.str("state"), "offline");
}

#[tokio::test]
async fn boot_counter_rises_by_one_across_restarts_with_the_same_state_dir() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("boot");
    let gps = PtyDevice::open();
    let robot = format!("id = \"{id}\"\n{}", gps_device(gps.path(), 0));
    let status_topic = format!("robot/{id}/status");
    let mut sub = Subscriber::connect(&broker, &[&status_topic]).await;
    let is_online = |boot: u64| {
        let t = status_topic.clone();
        move |m: &Msg| {
            m.topic == t
                && m.opt("state").and_then(|s| s.as_str()) == Some("online")
                && m.opt("boot").and_then(|b| b.as_u64()) == Some(boot)
        }
    };

    let mut first = Daemon::start(DaemonOptions::new(robot.clone(), &broker, state.path()));
    sub.wait_for("online with boot 1", is_online(1)).await;
    first.signal(Signal::SIGTERM);
    let exit = first.wait_exit(DEADLINE).await.expect("first run stops");
    assert!(exit.success(), "{exit:?}");

    let _second = Daemon::start(DaemonOptions::new(robot, &broker, state.path()));
    sub.wait_for("online with boot 2", is_online(2)).await;
    let catalog_topic = format!("robot/{id}/catalog");
    let mut late = Subscriber::connect(&broker, &[&catalog_topic]).await;
    let catalog = late.wait_topic(&catalog_topic).await;
    assert_eq!(catalog.u64("boot"), 2, "{catalog:?}");
    let seen_boots: Vec<u64> = sub
        .seen_on(&status_topic)
        .iter()
        .filter(|m| m.opt("state").and_then(|s| s.as_str()) == Some("online"))
        .map(|m| m.u64("boot"))
        .collect();
    assert_eq!(seen_boots, vec![1, 2]);
}

#[tokio::test]
async fn retained_catalog_lists_every_stream_and_command_with_type_and_qos() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("catalog");
    let gps = PtyDevice::open();
    let base = PtyDevice::open();
    let robot = format!(
        r#"id = "{id}"
[[devices]]
name = "gps"
protocol = "nmea"
serial = {{ path = "{gps}", baud = 9600 }}
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/NavSatFix"
  source = "GGA"
  qos = 1
  [[devices.streams]]
  sensor = "gps/rmc"
  type = "map"
  source = "RMC"
  qos = 0
  retain = true
  max_rate_hz = 2

[[devices]]
name = "base"
protocol = "lines"
serial = {{ path = "{base}", baud = 115200 }}
format = "kv"
  [[devices.streams]]
  sensor = "power/battery"
  type = "sensor_msgs/BatteryState"
  when = {{ tag = "BAT" }}
  fields = {{ voltage = "v" }}
  qos = 2
  [[devices.commands]]
  actuator = "drive"
  type = "geometry_msgs/Twist"
  template = "D {{linear.x:.3}} {{angular.z:.3}}"
  limits = {{ "linear.x" = [-1.0, 1.0], "angular.z" = [-2.0, 2.0] }}
  timeout_ms = 500
  safe = {{ "linear.x" = 0.0, "angular.z" = 0.0 }}
"#,
        gps = gps.path().display(),
        base = base.path().display()
    );
    let status_topic = format!("robot/{id}/status");
    let catalog_topic = format!("robot/{id}/catalog");
    let mut sub = Subscriber::connect(&broker, &[&status_topic]).await;
    let _daemon = Daemon::start(DaemonOptions::new(robot, &broker, state.path()));
    sub.wait_topic(&status_topic).await;

    // Connects only after start-up: the catalog must be retained.
    let mut late = Subscriber::connect(&broker, &[&catalog_topic]).await;
    let cat = late.wait_topic(&catalog_topic).await;
    assert!(cat.retain, "catalog must be retained: {cat:?}");
    assert_eq!(cat.qos, 1);
    assert_eq!(cat.str("robot"), id);
    assert_eq!(cat.u64("boot"), 1);

    let streams = cat.array("streams");
    assert_eq!(streams.len(), 3, "{cat:?}");
    let expect = [
        (
            format!("robot/{id}/gps/fix"),
            "sensor_msgs/NavSatFix",
            1,
            false,
            "gps",
        ),
        (format!("robot/{id}/gps/rmc"), "map", 0, true, "gps"),
        (
            format!("robot/{id}/power/battery"),
            "sensor_msgs/BatteryState",
            2,
            false,
            "base",
        ),
    ];
    for (topic, ty, qos, retain, device) in expect {
        let s = streams
            .iter()
            .find(|s| lookup(s, "topic").and_then(|t| t.as_str()) == Some(topic.as_str()))
            .unwrap_or_else(|| panic!("catalog has no stream {topic}: {cat:?}"));
        assert_eq!(lookup(s, "type").and_then(|v| v.as_str()), Some(ty), "{s}");
        assert_eq!(lookup(s, "qos").and_then(|v| v.as_u64()), Some(qos), "{s}");
        assert_eq!(
            lookup(s, "retain").and_then(|v| v.as_bool()),
            Some(retain),
            "{s}"
        );
        assert_eq!(
            lookup(s, "device").and_then(|v| v.as_str()),
            Some(device),
            "{s}"
        );
    }

    let commands = cat.array("commands");
    assert_eq!(commands.len(), 1, "{cat:?}");
    let c = &commands[0];
    let field = |k: &str| lookup(c, k).unwrap_or_else(|| panic!("command entry has no `{k}`: {c}"));
    assert_eq!(
        field("topic").as_str(),
        Some(format!("robot/{id}/cmd/drive").as_str())
    );
    assert_eq!(
        field("ack_topic").as_str(),
        Some(format!("robot/{id}/ack/drive").as_str())
    );
    assert_eq!(field("type").as_str(), Some("geometry_msgs/Twist"));
    assert_eq!(field("device").as_str(), Some("base"));
    assert_eq!(field("timeout_ms").as_u64(), Some(500));
    // `limits` is keyed by field path, so "linear.x" is one key, not a nested map.
    let limits = field("limits").as_map().expect("limits is a map");
    let (_, range) = limits
        .iter()
        .find(|(k, _)| k.as_str() == Some("linear.x"))
        .unwrap_or_else(|| panic!("no linear.x limit: {c}"));
    let range: Vec<f64> = range
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(range, vec![-1.0, 1.0]);
}

#[tokio::test]
async fn bad_checksum_sentence_is_counted_not_published() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("checksum");
    let mut gps = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    let _daemon = Daemon::start(DaemonOptions::new(
        format!("id = \"{id}\"\n{}", gps_device(gps.path(), 1)),
        &broker,
        state.path(),
    ));
    sub.wait_device(&id, "gps", true).await;

    // The NovAtel sentence with its checksum changed from 57 to 58, after a line that is
    // not NMEA at all, then a good sentence.
    let bad = NOVATEL_GGA.replace("*57", "*58");
    gps.send(&format!("hello, I am not NMEA\r\n{bad}\r\n{SIRF_GGA}\r\n"))
        .await;

    let fix_topic = format!("robot/{id}/gps/fix");
    let fix = sub.wait_topic(&fix_topic).await;
    assert_eq!(
        fix.u64("header.seq"),
        0,
        "only the good sentence is published: {fix:?}"
    );
    assert_close(
        "latitude",
        fix.f64("latitude"),
        -(37.0 + 47.0873 / 60.0),
        1e-9,
    );

    let diag_topic = format!("robot/{id}/diagnostics");
    let diag = sub
        .wait_for("diagnostics counting the two bad lines", |m| {
            m.topic == diag_topic
                && m.diag_device("gps")
                    .and_then(|d| lookup(d, "errors"))
                    .and_then(|e| e.as_u64())
                    .is_some_and(|e| e >= 2)
        })
        .await;
    let d = diag.diag_device("gps").unwrap();
    assert_eq!(
        lookup(d, "errors").and_then(|v| v.as_u64()),
        Some(2),
        "{diag:?}"
    );
    assert_eq!(
        lookup(d, "frames").and_then(|v| v.as_u64()),
        Some(1),
        "{diag:?}"
    );
    assert_eq!(lookup(d, "connected").and_then(|v| v.as_bool()), Some(true));
    let last = lookup(d, "last_error")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(
        last.contains("bad checksum"),
        "last_error: {last:?} in {diag:?}"
    );
    for key in ["connected", "reconnects", "spooled", "dropped"] {
        assert!(
            diag.opt(&format!("mqtt.{key}")).is_some(),
            "diagnostics lacks mqtt.{key}: {diag:?}"
        );
    }
    assert!(diag.opt("header.seq").is_some());

    // The diagnostics came after the good fix was processed, so a published bad sentence
    // would already be here.
    assert_eq!(
        sub.seen_on(&fix_topic).len(),
        1,
        "{:?}",
        sub.seen_on(&fix_topic)
    );
}

#[tokio::test]
async fn device_path_that_appears_after_start_up_is_picked_up_while_other_devices_keep_running() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("hotplug");
    let links = tempfile::tempdir().unwrap();
    let gps_link = links.path().join("ttyGPS0");
    let mut base = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    let mut daemon = Daemon::start(DaemonOptions::new(
        gps_and_base_robot(&id, &gps_link, base.path()),
        &broker,
        state.path(),
    ));

    let diag = sub.wait_device(&id, "gps", false).await;
    let d = diag.diag_device("gps").unwrap();
    let last = lookup(d, "last_error")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(
        !last.is_empty(),
        "a missing device has a last_error: {diag:?}"
    );
    sub.wait_device(&id, "base", true).await;

    // The other device works meanwhile.
    base.send("tag=BAT v=24.5 i=3\r\n").await;
    let bat = sub.wait_topic(&format!("robot/{id}/battery")).await;
    assert_eq!(bat.get("voltage"), &rmpv::Value::F32(24.5));

    // Still retrying, still alive.
    sub.forget_backlog();
    sub.wait_device(&id, "gps", false).await;
    assert!(
        daemon.is_running(),
        "the daemon must not exit while a device is missing"
    );

    let mut gps = PtyDevice::open();
    std::os::unix::fs::symlink(gps.path(), &gps_link).unwrap();
    sub.wait_device(&id, "gps", true).await;
    gps.send(&crlf(NOVATEL_GGA)).await;
    let fix = sub.wait_topic(&format!("robot/{id}/gps/fix")).await;
    assert_eq!(fix.u64("header.seq"), 0);
    assert_close("latitude", fix.f64("latitude"), 29.0 + 26.6326 / 60.0, 1e-9);
    assert!(daemon.is_running());
}

#[tokio::test]
async fn tcp_device_is_read_like_a_serial_port() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("tcp");
    // A ser2net-style serial server: the daemon connects to it as a client.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let robot = format!(
        r#"id = "{id}"
[[devices]]
name = "gps"
protocol = "nmea"
tcp = "{addr}"
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/NavSatFix"
  source = "GGA"
  qos = 1
"#
    );
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/gps/fix")]).await;
    let _daemon = Daemon::start(DaemonOptions::new(robot, &broker, state.path()));
    let (mut conn, _) = tokio::time::timeout(DEADLINE, server.accept())
        .await
        .expect("the daemon connects to the serial server")
        .unwrap();
    conn.write_all([NOVATEL_GGA, TRIMBLE_GGA].map(crlf).concat().as_bytes())
        .await
        .unwrap();
    let fixes = take(&mut sub, &format!("robot/{id}/gps/fix"), 2).await;
    let want = expected_fixes();
    for (i, (m, w)) in fixes.iter().zip([want[0], want[2]]).enumerate() {
        assert_eq!(m.u64("header.seq"), i as u64);
        assert_close("latitude", m.f64("latitude"), w.0, 1e-9);
        assert_close("longitude", m.f64("longitude"), w.1, 1e-9);
        assert_close("altitude", m.f64("altitude"), w.2, 1e-6);
    }
}

#[tokio::test]
async fn max_rate_hz_downsamples_a_burst_and_publishes_the_latest_value() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("rate");
    let mut base = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    let _daemon = Daemon::start(DaemonOptions::new(
        format!("id = \"{id}\"\n{}", base_device(base.path(), Some(5.0))),
        &broker,
        state.path(),
    ));
    sub.wait_device(&id, "base", true).await;

    let volts: Vec<f32> = (0..50).map(|i| 10.0 + i as f32 * 0.125).collect();
    let burst: String = volts
        .iter()
        .map(|v| format!("tag=BAT v={v} i=1\n"))
        .collect();
    base.send(&burst).await;

    let topic = format!("robot/{id}/battery");
    let last = *volts.last().unwrap();
    sub.wait_for("the latest voltage of the burst", |m| {
        m.topic == topic && m.get("voltage") == &rmpv::Value::F32(last)
    })
    .await;
    // Nothing may follow the latest value: no stale sample is held back and sent later.
    let tail: Vec<Msg> = sub
        .drain_for(Duration::from_millis(700))
        .await
        .into_iter()
        .filter(|m| m.topic == topic)
        .collect();
    assert!(
        tail.is_empty(),
        "published after the latest value: {tail:?}"
    );

    let got = sub.seen_on(&topic);
    assert!(
        got.len() <= 12,
        "50 lines at max_rate_hz = 5 gave {} messages: {got:?}",
        got.len()
    );
    let seqs: Vec<u64> = got.iter().map(|m| m.u64("header.seq")).collect();
    assert_eq!(
        seqs,
        (0..got.len() as u64).collect::<Vec<_>>(),
        "seq counts published messages"
    );
    let published: Vec<f32> = got
        .iter()
        .map(|m| match m.get("voltage") {
            rmpv::Value::F32(v) => *v,
            other => panic!("voltage is not f32: {other}"),
        })
        .collect();
    assert!(
        published.windows(2).all(|w| w[0] < w[1]),
        "samples in order: {published:?}"
    );
    assert!(published.iter().all(|v| volts.contains(v)), "{published:?}");
}

fn check_cmd(dir: &Path, robot: &Path) -> std::process::Output {
    botbus_command()
        .arg("check")
        .arg("--robot")
        .arg(robot)
        .current_dir(dir)
        .output()
        .expect("run botbus check")
}

/// A robot file with one problem in each of several places; every one must be reported.
const BROKEN_ROBOT: &str = r#"id = "r1"
owner = "nobody"

[[devices]]
name = "gps"
protocol = "nmea"
serial = { path = "/dev/null", baud = 9600 }
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/NavSatFix"
  source = "GGA"
  qos = 1
  [[devices.streams]]
  sensor = "gps/raw"
  type = "map"
  source = "RMC"
  qos = 7
  [[devices.streams]]
  sensor = "status/extra"
  type = "map"
  source = "GSA"

[[devices]]
name = "base"
protocol = "lines"
serial = { path = "/dev/null", baud = 115200 }
format = "kv"
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/BatteryState"
  fields = { voltage = "v" }
  [[devices.streams]]
  sensor = "cmd/echo"
  type = "map"
"#;

#[test]
fn check_reports_every_problem_with_its_key_path_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let robot = write_file(dir.path(), "x.toml", BROKEN_ROBOT);
    let out = check_cmd(dir.path(), &robot);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ok"));
    let file = robot.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    let expect: [(&str, &[&str]); 5] = [
        ("owner", &["unknown", "`owner`"]),
        ("devices[0].streams[1].qos", &["must be 0, 1 or 2, not 7"]),
        ("devices[0].streams[2].sensor", &["reserved", "`status`"]),
        ("devices[1].streams[1].sensor", &["reserved", "`cmd`"]),
        (
            "devices[1].streams[0].sensor",
            &["duplicate sensor `gps/fix`"],
        ),
    ];
    for (path, words) in expect {
        let prefix = format!("{file}: {path}: ");
        let hit = lines
            .iter()
            .find(|l| l.contains(&prefix) && words.iter().all(|w| l.contains(w)));
        assert!(
            hit.is_some(),
            "no line `{prefix}...` with {words:?}; stderr:\n{stderr}"
        );
    }
    assert_eq!(
        lines.len(),
        expect.len(),
        "one line per problem; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_names_the_key_path_of_unknown_keys_and_wrong_types_inside_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let robot = write_file(
        dir.path(),
        "y.toml",
        r#"id = "r1"

[[devices]]
name = "arm"
protocol = "lines"
colour = "red"
serial = { path = "/dev/null" }
format = "kv"

[[devices]]
name = "lidar"
protocol = "nmea"
serial = { path = "/dev/null", baud = "fast" }
"#,
    );
    let out = check_cmd(dir.path(), &robot);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    let file = robot.display().to_string();
    for (path, word) in [
        ("devices[0].colour", "unknown"),
        ("devices[1].serial.baud", "fast"),
    ] {
        let prefix = format!("{file}: {path}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&prefix) && l.contains(word)),
            "no line `{prefix}...` mentioning {word:?}; stderr:\n{stderr}"
        );
    }
}

#[test]
fn check_still_reports_stream_problems_of_a_device_with_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let robot = write_file(
        dir.path(),
        "z.toml",
        r#"id = "r1"

[[devices]]
name = "gps"
protocol = "nmea"
colour = "red"
serial = { path = "/dev/null", baud = 9600 }
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/NavSatFix"
  source = "GGA"
  qos = 9
"#,
    );
    let out = check_cmd(dir.path(), &robot);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    let file = robot.display().to_string();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&format!("{file}: devices[0]")) && l.contains("colour")),
        "the unknown key is reported; stderr:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&format!("{file}: devices[0].streams[0].qos: ")) && l.contains("not 9")),
        "all problems, not just the first: the stream's qos must be reported too; stderr:\n{stderr}"
    );
}

#[test]
fn check_accepts_a_good_robot_file_and_lists_its_topics() {
    let dir = tempfile::tempdir().unwrap();
    let robot = write_file(
        dir.path(),
        "good.toml",
        &gps_and_base_robot(
            "good-robot",
            Path::new("/dev/ttyUSB0"),
            Path::new("/dev/ttyACM0"),
        ),
    );
    let out = check_cmd(dir.path(), &robot);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.lines().any(|l| l.trim() == "ok"), "{stdout}");
    for (topic, ty) in [
        ("robot/good-robot/gps/fix", "sensor_msgs/NavSatFix"),
        ("robot/good-robot/battery", "sensor_msgs/BatteryState"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(topic) && l.contains(ty) && l.contains("qos 1")),
            "{topic} with {ty} and qos 1 not listed:\n{stdout}"
        );
    }
    assert!(stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn check_exits_quietly_when_its_reader_has_gone_away() {
    // `botbus check ... | head -1`: the reader leaves before the listing is written. Its
    // read end is closed before botbus starts, so the very first write fails.
    let dir = tempfile::tempdir().unwrap();
    let robot = write_file(
        dir.path(),
        "good.toml",
        &gps_and_base_robot(
            "pipe-robot",
            Path::new("/dev/ttyUSB0"),
            Path::new("/dev/ttyACM0"),
        ),
    );
    let (read_end, write_end) = nix::unistd::pipe().expect("a pipe");
    drop(read_end);
    let mut cmd = std::process::Command::new(botbus_bin());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("BOTBUS_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .arg("check")
        .arg("--robot")
        .arg(&robot)
        .current_dir(dir.path())
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .expect("run botbus check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stderr.trim().is_empty(), "{stderr}");
}

#[tokio::test]
async fn topic_echo_count_prints_json_lines_with_the_decoded_payload() {
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("echo");
    let mut base = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/diagnostics")]).await;
    let _daemon = Daemon::start(DaemonOptions::new(
        format!("id = \"{id}\"\n{}", base_device(base.path(), None)),
        &broker,
        state.path(),
    ));
    sub.wait_device(&id, "base", true).await;

    let topic = format!("robot/{id}/battery");
    let work = tempfile::tempdir().unwrap();
    let mut echo = tokio::process::Command::new(botbus_bin())
        .args([
            "topic",
            "echo",
            &topic,
            "--url",
            &broker.url(),
            "--count",
            "2",
        ])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run botbus topic echo");

    // The tool subscribes at its own pace: keep the device talking until it has its two.
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(150));
    let status = loop {
        tokio::select! {
            s = echo.wait() => break s.unwrap(),
            _ = tick.tick() => base.send("tag=BAT v=12.5 i=-0.25\r\n").await,
            _ = tokio::time::sleep_until(end) => panic!("topic echo --count 2 did not finish within {DEADLINE:?}"),
        }
    };
    let mut stdout = String::new();
    echo.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    let mut stderr = String::new();
    echo.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "{status:?}; stderr:\n{stderr}");

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "--count 2 prints two lines:\n{stdout}");
    let mut seqs = Vec::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["topic"], topic.as_str(), "{line}");
        let p = &v["payload"];
        assert_eq!(p["voltage"].as_f64(), Some(12.5), "{line}");
        assert_eq!(p["current"].as_f64(), Some(-0.25), "{line}");
        assert!(p["temperature"].is_null(), "NaN prints as null: {line}");
        assert_eq!(p["header"]["frame_id"], "base", "{line}");
        seqs.push(
            p["header"]["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("no seq: {line}")),
        );
    }
    assert!(seqs[1] > seqs[0], "{seqs:?}");
}

#[tokio::test]
async fn demo_prints_navsatfix_battery_and_imu_and_exits_zero() {
    let work = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(botbus_bin())
        .args(["demo", "--seconds", "4"])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run botbus demo");
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .expect("demo --seconds 4 did not exit within 40 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{stderr}\nstdout:\n{stdout}"
    );

    let mut fix = None;
    let mut battery = None;
    let mut imu = None;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("demo line is not JSON ({e}): {line}"));
        match v["topic"].as_str() {
            Some("robot/demo/gps/fix") => fix = Some(v),
            Some("robot/demo/battery") => battery = Some(v),
            Some("robot/demo/imu") => imu = Some(v),
            _ => {}
        }
    }
    let fix = fix.unwrap_or_else(|| panic!("no NavSatFix line:\n{stdout}"));
    let battery = battery.unwrap_or_else(|| panic!("no BatteryState line:\n{stdout}"));
    let imu = imu.unwrap_or_else(|| panic!("no Imu line:\n{stdout}"));
    let lat = fix["payload"]["latitude"].as_f64().expect("latitude");
    assert!((-90.0..=90.0).contains(&lat), "{fix}");
    assert!(fix["payload"]["longitude"].is_number(), "{fix}");
    assert_eq!(
        fix["payload"]["position_covariance"]
            .as_array()
            .map(Vec::len),
        Some(9),
        "{fix}"
    );
    assert!(fix["payload"]["header"]["seq"].is_u64(), "{fix}");
    assert!(
        battery["payload"]["voltage"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{battery}"
    );
    for axis in ["x", "y", "z"] {
        assert!(
            imu["payload"]["linear_acceleration"][axis].is_number(),
            "{imu}"
        );
        assert!(
            imu["payload"]["angular_velocity"][axis].is_number(),
            "{imu}"
        );
    }
}

const PYTHON_SUBSCRIBER: &str = r#"
import json, math, os, sys, threading
import msgpack
import paho.mqtt.client as mqtt

host, port, robot, client_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
topics = ["robot/%s/gps/fix" % robot, "robot/%s/battery" % robot]
got = set()
threading.Timer(30.0, lambda: os._exit(3)).start()

def clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v

def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe([(t, 1) for t in topics])

def on_subscribe(client, userdata, mid, reason_codes, properties):
    print("READY", flush=True)

def on_message(client, userdata, msg):
    payload = msgpack.unpackb(msg.payload, raw=False)
    print(json.dumps({"topic": msg.topic, "python_type": type(payload).__name__, "payload": clean(payload)}), flush=True)
    got.add(msg.topic)
    if got == set(topics):
        client.disconnect()

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port, 30)
client.loop_forever()
os._exit(0)
"#;

async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Option<String> {
    tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the Python subscriber went quiet")
        .unwrap()
}

#[tokio::test]
async fn python_paho_subscriber_receives_the_fix_and_battery_as_dictionaries() {
    if !require(Peer::Paho) {
        return;
    }
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("python");
    let mut gps = PtyDevice::open();
    let mut base = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/diagnostics")]).await;
    let _daemon = Daemon::start(DaemonOptions::new(
        gps_and_base_robot(&id, gps.path(), base.path()),
        &broker,
        state.path(),
    ));
    sub.wait_device(&id, "gps", true).await;
    sub.wait_device(&id, "base", true).await;

    let work = tempfile::tempdir().unwrap();
    let script = write_file(work.path(), "subscriber.py", PYTHON_SUBSCRIBER);
    let mut py = tokio::process::Command::new(peers::python())
        .arg(&script)
        .args([
            "127.0.0.1",
            &broker.port().to_string(),
            &id,
            &unique("py-sub"),
        ])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3");
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("READY"));

    gps.send(&crlf(NOVATEL_GGA)).await;
    base.send("tag=BAT v=12.4 i=0.8\r\n").await;

    let mut fix = None;
    let mut battery = None;
    while fix.is_none() || battery.is_none() {
        let line = next_line(&mut lines)
            .await
            .expect("the Python subscriber ended early");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("Python printed non-JSON ({e}): {line}"));
        assert_eq!(
            v["python_type"], "dict",
            "a named map decodes to a dict: {line}"
        );
        if v["topic"] == format!("robot/{id}/gps/fix").as_str() {
            fix = Some(v["payload"].clone());
        } else if v["topic"] == format!("robot/{id}/battery").as_str() {
            battery = Some(v["payload"].clone());
        }
    }
    let status = tokio::time::timeout(DEADLINE, py.wait())
        .await
        .unwrap()
        .unwrap();
    let mut stderr = String::new();
    py.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "python: {status:?}\n{stderr}");

    let (fix, battery) = (fix.unwrap(), battery.unwrap());
    let (lat, lon, alt, _) = expected_fixes()[0];
    assert_close("latitude", fix["latitude"].as_f64().unwrap(), lat, 1e-9);
    assert_close("longitude", fix["longitude"].as_f64().unwrap(), lon, 1e-9);
    assert_close("altitude", fix["altitude"].as_f64().unwrap(), alt, 1e-6);
    assert_eq!(fix["header"]["seq"], 0);
    assert_eq!(fix["header"]["frame_id"], "gps");
    // Python holds the f32 widened exactly; serde_json's default float parser may be off in
    // the last f64 digit, so compare at the f32 precision that was sent.
    assert_eq!(
        battery["voltage"].as_f64().map(|v| v as f32),
        Some(12.4f32),
        "{battery}"
    );
    assert_eq!(
        battery["current"].as_f64().map(|v| v as f32),
        Some(0.8f32),
        "{battery}"
    );
    assert!(
        battery["temperature"].is_null(),
        "NaN when unknown: {battery}"
    );
    assert_eq!(battery["header"]["seq"], 0);
}
