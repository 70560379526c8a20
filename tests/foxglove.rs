//! `botbus foxglove` driven by the real `@foxglove/ws-protocol` client from npm
//! (tests/foxglove/client.mjs), once with each WebSocket subprotocol name: live demo
//! telemetry with schemas, checked against a paho subscriber, and robots that come and go.
//! And by Foxglove Studio itself, in headless chromium: it plots the demo robot's battery
//! voltage (tests/foxglove/app, tests/foxglove/screenshot.mjs).

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value as Json;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// `botbus foxglove` on a free port; returns it and its ws:// URL (from its first line).
async fn start_server(url: &str, filter: &str) -> (Proc, String) {
    let mut p = Proc::spawn(&["foxglove", filter, "--url", url, "--listen", "127.0.0.1:0"]);
    let (first, lines) = first_line(&mut p.child, "botbus foxglove").await;
    drain(lines);
    let ws = first
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no ws:// address in: {first}"))
        .to_string();
    assert!(
        first.contains("foxglove.websocket.v1 or foxglove.sdk.v1"),
        "{first}"
    );
    (p, ws)
}

/// The npm client, printing one JSON event per line (see tests/foxglove/client.mjs).
struct Client {
    child: tokio::process::Child,
    events: Arc<Mutex<Vec<Json>>>,
}

impl Client {
    fn start(ws: &str, subprotocol: &str, subscribe: &[&str], seconds: u64) -> Client {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(repo_path("tests/foxglove/client.mjs")).args([
            ws,
            subprotocol,
            "--seconds",
            &seconds.to_string(),
        ]);
        for t in subscribe {
            cmd.args(["--subscribe", t]);
        }
        let mut child = cmd
            .current_dir(repo_path("tests/foxglove"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run node");
        let events: Arc<Mutex<Vec<Json>>> = Arc::default();
        let ev = events.clone();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("client.mjs printed non-JSON ({e}): {line}"));
                ev.lock().unwrap().push(v);
            }
        });
        Client { child, events }
    }

    fn events(&self) -> Vec<Json> {
        self.events.lock().unwrap().clone()
    }

    async fn wait(&self, what: &str, mut pred: impl FnMut(&Json) -> bool) -> Json {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "no {what} within {DEADLINE:?}; events: {:#?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(mut self) -> Vec<Json> {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("client.mjs did not exit")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            status.success(),
            "client.mjs: {status}; events: {:#?}",
            self.events()
        );
        self.events()
    }
}

/// The channel of `topic` among the advertisements.
fn advertised<'a>(events: &'a [Json], topic: &str) -> Option<&'a Json> {
    events
        .iter()
        .filter(|e| e["event"] == "advertise")
        .flat_map(|e| e["channels"].as_array().unwrap())
        .find(|c| c["topic"] == topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_client_gets_live_demo_telemetry_with_schemas_under_either_subprotocol_name() {
    if !require(Peer::WsProtocol) || !require(Peer::Paho) {
        return;
    }
    let (_demo, url) = start_demo(0).await;
    let (_server, ws) = start_server(&url, "robot/#").await;
    let paho = PahoLog::start(&url, "robot/demo/battery", 60).await;
    let battery = "/robot/demo/battery";
    let old = Client::start(&ws, "foxglove.websocket.v1", &[battery], 4);
    let new = Client::start(&ws, "foxglove.sdk.v1", &[battery], 4);
    let (old, new) = (old.finish().await, new.finish().await);
    let saw = paho.finish(Duration::from_millis(200)).await;

    for (events, name) in [(&old, "foxglove.websocket.v1"), (&new, "foxglove.sdk.v1")] {
        assert_eq!(events[0]["event"], "open", "{events:#?}");
        assert_eq!(
            events[0]["protocol"], name,
            "the server answers with the offered name"
        );
        assert!(events.iter().any(|e| e["event"] == "serverInfo"));
        assert!(!events.iter().any(|e| e["event"] == "error"), "{events:#?}");
        let ch = advertised(events, battery).expect("the battery is advertised");
        assert_eq!(ch["encoding"], "json");
        assert_eq!(ch["schemaName"], "sensor_msgs/BatteryState");
        assert_eq!(ch["schemaEncoding"], "jsonschema");
        let schema: Json = serde_json::from_str(ch["schema"].as_str().unwrap()).unwrap();
        assert_eq!(schema["properties"]["voltage"]["type"], "number");
        // The meta topics are channels too, named as `topic list` names their types.
        for (topic, schema_name) in [
            ("/robot/demo/status", "botbus/status"),
            ("/robot/demo/catalog", "botbus/catalog"),
            ("/robot/demo/diagnostics", "botbus/diagnostics"),
            ("/robot/demo/gps/fix", "sensor_msgs/NavSatFix"),
        ] {
            let c = advertised(events, topic).unwrap_or_else(|| panic!("{topic} not advertised"));
            assert_eq!(c["schemaName"], schema_name, "{topic}");
        }
        // A map stream is offered with its first message, its fields in the schema.
        let motor = advertised(events, "/robot/demo/motor/state").expect("motor/state");
        assert_eq!(motor["schemaName"], "map");
        let schema: Json = serde_json::from_str(motor["schema"].as_str().unwrap()).unwrap();
        assert_eq!(
            schema["properties"]["speed_rpm"]["type"], "number",
            "{schema}"
        );
        // Messages: the voltage paho decoded from the MessagePack of the same seq.
        let msgs: Vec<&Json> = events
            .iter()
            .filter(|e| e["event"] == "message" && e["topic"] == battery)
            .collect();
        assert!(
            msgs.len() >= 4,
            "{name}: {} battery messages in 4 s at 2 Hz",
            msgs.len()
        );
        for m in &msgs {
            let seq = &m["data"]["header"]["seq"];
            let p = saw
                .iter()
                .find(|p| &p.payload["header"]["seq"] == seq)
                .unwrap_or_else(|| panic!("paho never saw battery seq {seq}"));
            let (a, b) = (
                m["data"]["voltage"].as_f64().unwrap(),
                p.payload["voltage"].as_f64().unwrap(),
            );
            assert_eq!(
                a as f32, b as f32,
                "seq {seq}: {a} over Foxglove, {b} over MQTT"
            );
            assert_eq!(m["data"]["charge"], Json::Null, "NaN is null");
            let stamp = &m["data"]["header"]["stamp"];
            assert_eq!(
                stamp["nsec"], stamp["nanosec"],
                "Foxglove's nsec beside nanosec"
            );
            let t: u64 = m["timestamp"].as_str().unwrap().parse().unwrap();
            assert!(
                t >= p.t - 1_000_000_000 && t <= p.t + 1_000_000_000,
                "receive time {t}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_offering_neither_subprotocol_name_is_refused_with_400() {
    let broker = Broker::start();
    let (_server, ws) = start_server(&broker.url(), "robot/#").await;
    let addr = ws.strip_prefix("ws://").unwrap();
    for offer in ["foxglove.sdk.v2", ""] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let header = if offer.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Protocol: {offer}\r\n")
        };
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{header}\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut reply = String::new();
        let _ = tokio::time::timeout(DEADLINE, s.read_to_string(&mut reply)).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{offer:?}: {reply}");
        assert!(
            reply.contains(
                "offer one of the WebSocket subprotocols foxglove.websocket.v1, foxglove.sdk.v1"
            ),
            "{reply}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_that_comes_is_advertised_and_one_that_goes_is_unadvertised() {
    if !require(Peer::WsProtocol) {
        return;
    }
    let broker = Broker::start();
    let (_server, ws) = start_server(&broker.url(), "robot/#").await;
    let id = unique("churn");
    let battery = format!("/robot/{id}/battery");
    let client = Client::start(&ws, "foxglove.sdk.v1", &[], 30);
    client
        .wait("the server info", |e| e["event"] == "serverInfo")
        .await;

    // A robot comes: its catalog's streams and its meta topics appear.
    let state = state_dir();
    let dir = temp_dir("churn");
    let robot = format!(
        "id = \"{id}\"\n{}",
        base_device(&dir.path().join("tty-unplugged"), None)
    );
    let mut daemon = Daemon::start(DaemonOptions::new(robot.clone(), &broker, state.path()));
    let battery_ad = |e: &Json| {
        e["event"] == "advertise"
            && e["channels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["topic"] == battery.as_str())
    };
    let channel_id = |e: &Json| {
        e["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["topic"] == battery.as_str())
            .unwrap()["id"]
            .clone()
    };
    let ad = client
        .wait("the robot's battery advertised", battery_ad)
        .await;
    let channel = channel_id(&ad);
    let events = client.events();
    let status = advertised(&events, &format!("/robot/{id}/status")).expect("status advertised");
    assert_eq!(status["schemaName"], "botbus/status");

    // It goes (SIGTERM: offline status): its channels are withdrawn, the status stays.
    daemon.signal(Signal::SIGTERM);
    client
        .wait("the robot's battery unadvertised", |e| {
            e["event"] == "unadvertise" && e["channelIds"].as_array().unwrap().contains(&channel)
        })
        .await;
    let gone: Vec<Json> = client
        .events()
        .iter()
        .filter(|e| e["event"] == "unadvertise")
        .flat_map(|e| e["channelIds"].as_array().unwrap().clone())
        .collect();
    assert!(
        !gone.contains(&status["id"]),
        "the status channel stays, to show the robot offline"
    );
    // And stays gone (late data of an offline robot does not bring it back)...
    assert!(
        daemon.wait_exit(DEADLINE).await.is_some(),
        "the daemon did not stop"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ads = client.events().iter().filter(|e| battery_ad(e)).count();
    assert_eq!(
        ads, 1,
        "the battery was offered again while the robot was offline"
    );
    // ...until the robot comes back: offered again, under a new channel id.
    let _again = Daemon::start(DaemonOptions::new(robot, &broker, state.path()));
    let end = tokio::time::Instant::now() + DEADLINE;
    let back = loop {
        if let Some(e) = client.events().iter().filter(|e| battery_ad(e)).nth(1) {
            break e.clone();
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the battery was not offered again: {:#?}",
            client.events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(channel_id(&back), channel, "a new channel id");
}

/// `python3 -m http.server` on Foxglove Studio's static site (tests/foxglove/app/dist);
/// returns it and its http:// base URL (from its first line).
async fn serve_app() -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(common::peers::python())
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
        .current_dir(repo_path("tests/foxglove/app/dist"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3 -m http.server");
    let (first, lines) = first_line(&mut child, "http.server").await;
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let base = first
        .split(['(', ')'])
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no http:// address in: {first}"))
        .trim_end_matches('/')
        .to_string();
    drain(lines);
    (child, base)
}

/// `s` percent-encoded for a query string value.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The Plot series of tests/foxglove/app/main.js, as Studio 1.48 draws it in a 1280x800
/// screenshot: the legend swatch in the series colour #4e98e2 exactly, and the line, 1 px
/// and antialiased against the panel's light grey, so any clearly blue pixel.
struct PlotPixels {
    /// Pixels of exactly #4e98e2 at the top of the panel, where the legend is.
    legend: usize,
    /// Blue pixels in the plot area: right of the sidebar (the left third), below the
    /// legend, above the x axis labels.
    line: usize,
    /// The columns those span.
    columns: usize,
}

fn plot_pixels(png_file: &std::path::Path) -> PlotPixels {
    let file = std::fs::File::open(png_file).unwrap();
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (frame.width as usize, frame.height as usize);
    let channels = frame.color_type.samples();
    assert!(channels >= 3, "{:?}: not a colour image", frame.color_type);
    let px = |x: usize, y: usize| {
        let i = y * frame.line_size + x * channels;
        (buf[i] as i32, buf[i + 1] as i32, buf[i + 2] as i32)
    };
    let (mut legend, mut line, mut columns) = (0, 0, std::collections::BTreeSet::new());
    for y in 0..h {
        for x in w / 3..w {
            let (r, g, b) = px(x, y);
            if y < 80 && (r, g, b) == (0x4e, 0x98, 0xe2) {
                legend += 1;
            }
            if (80..h - 40).contains(&y) && b >= r + 40 && b >= g + 15 {
                line += 1;
                columns.insert(x);
            }
        }
    }
    PlotPixels {
        legend,
        line,
        columns: columns.len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_foxglove_app_plots_the_demo_battery_voltage() {
    if !require(Peer::FoxgloveApp) {
        return;
    }
    let (_demo, url) = start_demo(0).await;
    let (_server, ws) = start_server(&url, "robot/#").await;
    let (_http, site) = serve_app().await;
    let page = format!(
        "{site}/index.html?ds=foxglove-websocket&ds.url={}&layoutId=botbus-plot",
        query_value(&ws)
    );
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/foxglove-plot.png");
    let _ = std::fs::remove_file(&shot);
    // Studio loads, connects, subscribes, and plots 8 s of the 2 Hz battery (16 points).
    let run = tokio::process::Command::new("node")
        .arg(repo_path("tests/foxglove/screenshot.mjs"))
        .args([&page, shot.to_str().unwrap(), "--wait-seconds", "8"])
        .current_dir(repo_path("tests/foxglove"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("screenshot.mjs did not finish within 90 s")
        .expect("run node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "screenshot.mjs: {}\n{said}",
        out.status
    );

    // Studio took every channel's schema (it drops a channel whose schema it cannot parse).
    assert!(!said.contains("schema"), "Studio refused a schema:\n{said}");
    let p = plot_pixels(&shot);
    let seen = format!(
        "{} legend pixels, {} line pixels in {} columns; see {}; screenshot.mjs said:\n{said}",
        p.legend,
        p.line,
        p.columns,
        shot.display()
    );
    assert!(
        p.legend >= 30,
        "Studio did not show the Plot panel with its series: {seen}"
    );
    // With no data the plot area has no blue at all (0 pixels); 16 points span about 200
    // columns and a few thousand pixels.
    assert!(
        p.line >= 300 && p.columns >= 50,
        "Studio plotted no battery voltage: {seen}"
    );
}
