//! Integration tests for `botbus bench` (issue 11): the real binary benchmarks a real
//! daemon child on a pty against the harness's mosquitto, and a small simulated fleet.
//! Nothing here asserts speed; only that every figure is there and nothing was lost.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `botbus bench ARGS`, killed if it takes longer than a minute.
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(botbus_bin())
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run botbus bench");
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            panic!("botbus bench {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn report(args: &[&str]) -> Value {
    let out = bench(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn has(v: &Value, path: &str) -> Value {
    let mut at = v;
    for key in path.split('.') {
        at = at
            .get(key)
            .unwrap_or_else(|| panic!("`{path}` missing in {v}"));
    }
    at.clone()
}

#[test]
fn a_qos_1_run_against_mosquitto_delivers_every_sample_and_times_commands() {
    let broker = Broker::start();
    let url = broker.url();
    let v = report(&[
        "--url",
        &url,
        "--qos",
        "1",
        "--rate",
        "500",
        "--seconds",
        "1",
        "--commands",
        "20",
        "--json",
    ]);
    for key in botbus::bench::report::FIELDS {
        has(&v, key);
    }
    for key in [
        "telemetry.throughput_msg_s",
        "telemetry.duplicates",
        "telemetry.latency.p50_ms",
        "telemetry.latency.p99_ms",
        "telemetry.latency.p999_ms",
        "drops.dropped",
        "drops.dropped_qos0",
        "daemon.cpu_us_per_msg",
        "daemon.peak_rss_kib",
        "commands.to_device.p50_ms",
        "commands.to_device.p99_ms",
        "commands.to_ack.p50_ms",
        "commands.to_ack.p99_ms",
    ] {
        has(&v, key);
    }
    assert_eq!(v["mode"], "rate");
    assert_eq!(v["qos"], 1);
    let sent = has(&v, "telemetry.sent").as_u64().unwrap();
    assert_eq!(sent, 500);
    assert_eq!(has(&v, "telemetry.delivered").as_u64(), Some(sent), "{v}");
    assert_eq!(has(&v, "telemetry.latency.samples").as_u64(), Some(sent));
    assert_eq!(has(&v, "drops.dropped").as_u64(), Some(0), "{v}");
    assert_eq!(has(&v, "drops.device_frames").as_u64(), Some(sent), "{v}");
    assert!(has(&v, "daemon.cpu_us_per_msg").is_number(), "{v}");
    assert!(has(&v, "daemon.peak_rss_kib").as_u64() > Some(0), "{v}");
    assert_eq!(has(&v, "commands.sent").as_u64(), Some(20));
    assert_eq!(has(&v, "commands.written").as_u64(), Some(20), "{v}");
    assert_eq!(has(&v, "commands.acked_ok").as_u64(), Some(20), "{v}");
    assert_eq!(has(&v, "commands.to_device.samples").as_u64(), Some(20));
    assert_eq!(has(&v, "commands.to_ack.samples").as_u64(), Some(20));
}

#[test]
fn five_simulated_robots_deliver_every_sample() {
    let broker = Broker::start();
    let url = broker.url();
    let v = report(&["--url", &url, "--robots", "5", "--seconds", "1", "--json"]);
    assert_eq!(v["mode"], "robots");
    assert_eq!(has(&v, "fleet.robots").as_u64(), Some(5));
    let sent = has(&v, "fleet.telemetry.sent").as_u64().unwrap();
    assert_eq!(sent, 5 * 3 * 10, "{v}");
    assert_eq!(
        has(&v, "fleet.telemetry.delivered").as_u64(),
        Some(sent),
        "{v}"
    );
    assert!(has(&v, "fleet.received_msg_s").as_f64() > Some(0.0), "{v}");
    assert!(has(&v, "fleet.telemetry.latency.p99_ms").is_number(), "{v}");
}

#[test]
fn a_bad_flag_value_is_one_clear_line_and_exit_2() {
    let out = bench(&["--qos", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .next()
            .is_some_and(|l| l.contains("--qos") && l.contains("3 is not in 0..=2")),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_broker_that_does_not_answer_is_one_line_and_exit_1() {
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let out = bench(&["--url", &url, "--seconds", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!("botbus: cannot reach the broker at {url}"),
        "{err}"
    );
}
