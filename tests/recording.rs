//! `botbus record` and `botbus play` against independent peers: the demo recorded while a
//! paho subscriber listens, the file read back with the PyPI `mcap` reader, and played onto
//! a fresh mosquitto where paho checks bytes, order, QoS, retain flags and pace.

mod common;

use common::*;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Equal JSON, numbers within f32 precision (paho widens an f32 to a double; the
/// recording prints its shortest decimal).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-6 * x.abs().max(1.0)
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

/// A recorded JSON payload without the `nsec` added for Foxglove.
fn without_nsec(mut v: Json) -> Json {
    if let Some(stamp) = v.pointer_mut("/header/stamp").and_then(Json::as_object_mut) {
        stamp.remove("nsec");
    }
    v
}

async fn record(url: &str, file: &std::path::Path, raw: bool, seconds: &str) -> Run {
    let f = file.to_str().unwrap();
    let mut args = vec![
        "record",
        "robot/#",
        "-o",
        f,
        "--seconds",
        seconds,
        "--url",
        url,
    ];
    if raw {
        args.push("--raw");
    }
    botbus(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_recording_reads_back_in_python_as_paho_saw_it_and_plays_back_the_same() {
    if !require(Peer::Mcap) {
        return;
    }
    let (_demo, url) = start_demo(0).await;
    let paho = PahoLog::start(&url, "robot/#", 60).await;
    let dir = temp_dir("record");
    let (json_file, raw_file) = (dir.path().join("demo.mcap"), dir.path().join("raw.mcap"));
    let (a, b) = tokio::join!(
        record(&url, &json_file, false, "4"),
        record(&url, &raw_file, true, "4")
    );
    let saw = paho.finish(Duration::from_millis(300)).await;
    for run in [&a, &b] {
        assert_eq!(run.code, Some(0), "{run}");
        assert!(run.stdout.starts_with("recording robot/# from "), "{run}");
        assert!(run.stdout.contains("\nrecorded "), "{run}");
    }

    // What the demo's catalog says each topic is.
    let catalog = saw
        .iter()
        .find(|m| m.topic == "robot/demo/catalog")
        .expect("paho saw the retained catalog");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for s in catalog.payload["streams"].as_array().unwrap() {
        types.insert(
            s["topic"].as_str().unwrap().into(),
            s["type"].as_str().unwrap().into(),
        );
    }
    for c in catalog.payload["commands"].as_array().unwrap() {
        types.insert(
            c["topic"].as_str().unwrap().into(),
            c["type"].as_str().unwrap().into(),
        );
        types.insert(c["ack_topic"].as_str().unwrap().into(), "botbus/ack".into());
    }
    for meta in ["status", "catalog", "diagnostics"] {
        types.insert(format!("robot/demo/{meta}"), format!("botbus/{meta}"));
    }

    let dump = mcap_dump(&json_file, false).await;
    assert_eq!(
        dump["compression"],
        serde_json::json!(["zstd"]),
        "{}",
        dump["compression"]
    );
    // Four seconds, a chunk closed at least every second.
    assert!(
        dump["chunks"].as_u64().unwrap() >= 3,
        "chunks: {}",
        dump["chunks"]
    );
    assert!(dump["library"].as_str().unwrap().starts_with("botbus "));
    let messages = dump["messages"].as_array().unwrap();
    let counted: u64 = dump["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        counted,
        messages.len() as u64,
        "the summary counts every message"
    );
    assert!(
        messages.len() > 100,
        "{} messages in 4 s of the demo",
        messages.len()
    );

    // Every channel: `/` + the MQTT topic, json, and the schema of the catalog's type.
    let channels = dump["channels"].as_object().unwrap();
    for c in channels.values() {
        let topic = c["topic"].as_str().unwrap();
        let mqtt = topic.strip_prefix('/').expect("a leading /");
        assert_eq!(c["message_encoding"], "json", "{c}");
        assert_eq!(c["schema_encoding"], "jsonschema", "{c}");
        assert_eq!(
            c["schema_name"].as_str(),
            types.get(mqtt).map(String::as_str),
            "{topic}"
        );
        assert_eq!(c["schema"]["type"], "object", "{topic}");
    }
    let battery = channels
        .values()
        .find(|c| c["topic"] == "/robot/demo/battery")
        .expect("a battery channel");
    assert_eq!(battery["metadata"]["qos"], "1");
    assert_eq!(battery["schema"]["properties"]["voltage"]["type"], "number");

    // Every recorded message is one paho saw, with the same payload; its publish time is
    // its header.stamp, and it was logged while the recording ran.
    let (first_log, last_log) = (
        messages
            .iter()
            .map(|m| m["log_time"].as_u64().unwrap())
            .min()
            .unwrap(),
        messages
            .iter()
            .map(|m| m["log_time"].as_u64().unwrap())
            .max()
            .unwrap(),
    );
    for m in messages {
        let topic = m["topic"].as_str().unwrap().strip_prefix('/').unwrap();
        let data = without_nsec(m["data"].clone());
        assert!(
            saw.iter()
                .any(|p| p.topic == topic && same(&p.payload, &data)),
            "recorded but not seen by paho: {topic} {data}"
        );
        if let Some(stamp) = data.pointer("/header/stamp") {
            let ns =
                stamp["sec"].as_u64().unwrap() * 1_000_000_000 + stamp["nanosec"].as_u64().unwrap();
            assert_eq!(m["publish_time"].as_u64(), Some(ns), "{topic}");
        }
    }
    assert!(
        last_log - first_log > 3_000_000_000,
        "the recording spans its 4 s"
    );
    // And every message paho saw well inside that window was recorded.
    let margin = 300_000_000;
    let inside: Vec<&PahoMsg> = saw
        .iter()
        .filter(|p| p.t > first_log + margin && p.t + margin < last_log)
        .collect();
    assert!(inside.len() > 50);
    for p in &inside {
        let name = format!("/{}", p.topic);
        assert!(
            messages.iter().any(|m| m["topic"] == name.as_str()
                && same(&p.payload, &without_nsec(m["data"].clone()))),
            "paho saw {} {} during the recording, but it is not in the file",
            p.topic,
            p.payload
        );
    }

    // --raw keeps the bytes as they came: each is a payload paho saw, byte for byte.
    let raw = mcap_dump(&raw_file, false).await;
    let raw_messages = raw["messages"].as_array().unwrap();
    assert!(raw_messages.len() > 100);
    for c in raw["channels"].as_object().unwrap().values() {
        assert_eq!(c["message_encoding"], "msgpack", "{c}");
    }
    let seen_bytes: BTreeSet<(&str, &str)> = saw
        .iter()
        .map(|p| (p.topic.as_str(), p.hex.as_str()))
        .collect();
    for m in raw_messages {
        let topic = m["topic"].as_str().unwrap().strip_prefix('/').unwrap();
        assert!(
            seen_bytes.contains(&(topic, m["hex"].as_str().unwrap())),
            "{topic}: {m}"
        );
    }

    // Played onto a fresh broker, from either file: the same bytes in the same order per
    // topic, the original QoS, the retained topics retained, no command, and the pace.
    for (file, dumped, rate) in [(&raw_file, &raw, 1.0), (&json_file, &dump, 2.0)] {
        let broker = Broker::start();
        let listener = PahoLog::start(&broker.url(), "robot/#", 60).await;
        let f = file.to_str().unwrap();
        let run = botbus(&[
            "play",
            f,
            "--url",
            &broker.url(),
            "--rate",
            &rate.to_string(),
        ])
        .await;
        assert_eq!(run.code, Some(0), "{run}");
        assert!(
            run.stdout
                .contains("command topics not replayed (name them with --topics): robot/demo/cmd/"),
            "{run}"
        );
        let got = listener.finish(Duration::from_millis(500)).await;
        assert!(
            got.iter().all(|p| !p.topic.contains("/cmd/")),
            "a command was replayed"
        );

        let recorded = dumped["messages"].as_array().unwrap();
        let played: Vec<&Json> = recorded
            .iter()
            .filter(|m| !m["topic"].as_str().unwrap().contains("/cmd/"))
            .collect();
        assert_eq!(
            got.len(),
            played.len(),
            "{file:?}: every message but the commands"
        );
        let mut by_topic: BTreeMap<&str, Vec<&PahoMsg>> = BTreeMap::new();
        for p in &got {
            by_topic.entry(p.topic.as_str()).or_default().push(p);
        }
        for (topic, ps) in &by_topic {
            let name = format!("/{topic}");
            let rec: Vec<&&Json> = played
                .iter()
                .filter(|m| m["topic"] == name.as_str())
                .collect();
            assert_eq!(ps.len(), rec.len(), "{topic}");
            for (p, m) in ps.iter().zip(&rec) {
                // The JSON recording is re-encoded from its schema: still the same bytes.
                let original = saw.iter().find(|s| {
                    s.topic == *topic && same(&s.payload, &without_nsec(m["data"].clone()))
                });
                let want = m
                    .get("hex")
                    .and_then(Json::as_str)
                    .or(original.map(|s| s.hex.as_str()));
                assert_eq!(Some(p.hex.as_str()), want, "{topic}: played bytes differ");
            }
            // A stream's QoS, as paho (subscribed at 1) gets it.
            let qos = catalog.payload["streams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["topic"] == *topic)
                .map(|s| s["qos"].as_u64().unwrap().min(1) as u8);
            if let Some(q) = qos {
                assert!(ps.iter().all(|p| p.qos == q), "{topic}: QoS {q} expected");
            }
        }
        // The pace: the span of arrivals is the recorded span over the rate, within 20 %.
        let span_rec = played.last().unwrap()["log_time"].as_u64().unwrap()
            - played[0]["log_time"].as_u64().unwrap();
        let span_got = got.last().unwrap().t - got[0].t;
        let ratio = span_got as f64 / (span_rec as f64 / rate);
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{file:?}: played over {span_got} ns, recorded {span_rec} ns at rate {rate}"
        );
        // And each message on its time, not a burst then a wait: its arrival offset is
        // its recorded offset over the rate, within 20 % (plus 150 ms for the broker).
        let by_bytes: BTreeMap<(&str, &str), u64> = played
            .iter()
            .filter_map(|m| {
                let topic = m["topic"].as_str()?.strip_prefix('/')?;
                let hex = m.get("hex").and_then(Json::as_str).or_else(|| {
                    saw.iter()
                        .find(|s| {
                            s.topic == topic && same(&s.payload, &without_nsec(m["data"].clone()))
                        })
                        .map(|s| s.hex.as_str())
                })?;
                Some(((topic, hex), m["log_time"].as_u64()?))
            })
            .collect();
        let log0 = played[0]["log_time"].as_u64().unwrap();
        for p in &got {
            let Some(log) = by_bytes.get(&(p.topic.as_str(), p.hex.as_str())) else {
                continue;
            };
            let want = (log - log0) as f64 / rate;
            let was = (p.t - got[0].t) as f64;
            assert!(
                (was - want).abs() <= 0.2 * want + 150e6,
                "{file:?}: {} arrived at +{:.0} ms, recorded at +{:.0} ms (rate {rate})",
                p.topic,
                was / 1e6,
                want / 1e6
            );
        }
        // Retained topics were published retained: a new subscriber gets them at once.
        let late = PahoLog::start(&broker.url(), "robot/demo/+", 60).await;
        let retained = late.finish(Duration::from_millis(500)).await;
        let topics: BTreeSet<&str> = retained
            .iter()
            .filter(|p| p.retain)
            .map(|p| p.topic.as_str())
            .collect();
        assert_eq!(
            topics,
            BTreeSet::from(["robot/demo/catalog", "robot/demo/status"])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_killed_mid_way_keeps_all_but_its_last_second() {
    if !require(Peer::Mcap) {
        return;
    }
    let (_demo, url) = start_demo(0).await;
    let dir = temp_dir("record-kill");
    let file = dir.path().join("cut.mcap");
    let f = file.to_str().unwrap().to_string();
    let mut rec = Proc::spawn(&["record", "robot/#", "-o", &f, "--url", &url]);
    let (first, _rest) = first_line(&mut rec.child, "botbus record").await;
    assert!(first.starts_with("recording "), "{first}");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rec.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = rec.child.wait().await;

    let dump = mcap_dump(&file, true).await;
    let messages = dump["messages"].as_array().unwrap();
    let last = messages
        .iter()
        .map(|m| m["log_time"].as_u64().unwrap())
        .max()
        .expect("messages survive");
    // At most the last second (and a tick) is lost...
    assert!(
        killed_at - last < 1_600_000_000,
        "the last readable message is {} ms older than the kill",
        (killed_at - last) / 1_000_000
    );
    // ...and everything before it is there: from the start, without a hole (the demo
    // publishes several topics at 10 Hz).
    let mut times: Vec<u64> = messages
        .iter()
        .map(|m| m["log_time"].as_u64().unwrap())
        .collect();
    times.sort();
    assert!(
        times[0] < started + 500_000_000,
        "the first second is missing"
    );
    let hole = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        hole < 300_000_000,
        "a {} ms hole in the readable part",
        hole / 1_000_000
    );
    // play takes what is there.
    let broker = Broker::start();
    let run = botbus(&["play", &f, "--url", &broker.url(), "--rate", "20"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.starts_with("played "), "{run}");
}
