//! Integration tests for issue 6 (CAN: slcan adapters, DBC signals, raw frames): the real `botbus` binary against a real mosquitto, with the test playing the slcan adapter on a pseudo-terminal, Python cantools as the independent DBC implementation and `botbus sim` as the simulated adapter. The same robot file on a SocketCAN interface is tested in tests/socketcan.rs.

mod common;

use common::can::*;
use common::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tempfile::TempDir;
use tokio::time::Instant;

/// "Nothing was written": how long the adapter must stay silent.
const QUIET: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------------------
// The slcan adapter, played by the test on the master side of a pty

/// What a real slcan adapter answers each line it receives: `z\r` (`Z\r`) to a frame it
/// queued, `\r` to a command.
fn slcan_answer(line: &str) -> &'static [u8] {
    match line.as_bytes().first() {
        Some(b't' | b'r') => b"z\r",
        Some(b'T' | b'R') => b"Z\r",
        _ => b"\r",
    }
}

/// The adapter: a pty device whose lines end in `\r` and that answers like a real one.
fn adapter() -> PtyDevice {
    PtyDevice::open().with_eol(b'\r').answering(slcan_answer)
}

/// Close, bitrate 500 kbit/s, open: what the daemon must send first.
async fn expect_setup(a: &mut PtyDevice) {
    let got = [
        a.line("the setup").await,
        a.line("the setup").await,
        a.line("the setup").await,
    ];
    assert_eq!(got, ["C", "S6", "O"], "the slcan setup sequence");
}

// ---------------------------------------------------------------------------------------
// 1. Decoding against cantools

/// The devices and messages the cross-checks cover: comma_body (Motorola, signed), Tesla
/// (signed Intel 13-bit, Motorola with offsets, a multiplexed Intel message) and GM (signed
/// Motorola with an offset, Intel and Motorola multiplexors, a mixed-order message).
const DECODE_SET: [(&str, &str, &[&str]); 3] = [
    (
        "comma",
        "comma_body.dbc",
        &["MOTORS_DATA", "MOTORS_CURRENT", "BODY_DATA"],
    ),
    (
        "tesla",
        "tesla_model3_party.dbc",
        &["DI_torque", "EPAS3S_sysStatus", "VCFRONT_LVPowerState"],
    ),
    (
        "gm",
        "gm_global_a_high_voltage_management.dbc",
        &[
            "Pack_Stats",
            "Battery_temp",
            "Battery_Module_1",
            "Charger_parameters",
        ],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_encoded_by_cantools_publish_the_physical_values_cantools_decodes() {
    let test = "random_frames_encoded_by_cantools_publish_the_physical_values_cantools_decodes";
    if !require(Peer::Cantools) {
        return;
    }
    let dir = temp_dir("botbus-can-decode-");
    let mut adapters: Vec<PtyDevice> = DECODE_SET.iter().map(|_| adapter()).collect();
    let mut toml = String::from("id = \"@ID@\"\n");
    let mut peer_args = vec![seed(test).to_string(), "8".to_string()];
    let mut dbcs = Vec::new();
    for ((device, file, messages), adapter) in DECODE_SET.iter().zip(&adapters) {
        let dbc = copy_dbc(dir.path(), file);
        toml.push_str(&format!(
            "\n[[devices]]\nname = \"{device}\"\nprotocol = \"slcan\"\n\
             serial = {{ path = \"{}\", baud = 115200 }}\nbitrate = 500000\ndbc = \"{}\"\n",
            adapter.path().display(),
            dbc.display()
        ));
        for m in *messages {
            toml.push_str(&format!(
                "  [[devices.streams]]\n  sensor = \"{device}/{m}\"\n  can_message = \"{m}\"\n  qos = 1\n"
            ));
        }
        peer_args.push(dbc.display().to_string());
        peer_args.push(messages.join(","));
        dbcs.push(dbc);
    }
    let frames: Vec<PeerFrame> = cantools(
        dir.path(),
        &[vec!["frames".to_string()], peer_args].concat(),
        "",
    )
    .iter()
    .map(|l| parse_peer_frame(l))
    .collect();
    assert!(frames.len() >= 80, "cantools made {} frames", frames.len());

    let mut rig = Rig::start(&toml).await;
    for a in &mut adapters {
        expect_setup(a).await;
    }
    rig.wait_online().await;

    let mut multiplexed_pages = BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for (n, f) in frames.iter().enumerate() {
        let k = dbcs.iter().position(|d| *d == f.dbc).expect("a known DBC");
        let device = DECODE_SET[k].0;
        adapters[k].send(&slcan_line(f.id, &f.data)).await;
        let sensor = format!("{device}/{}", f.message);
        let m = rig
            .sample(&sensor, &format!("frame {n} on {sensor}"), |_| true)
            .await;
        let what = format!(
            "frame {n}: {} 0x{:X} [{}] from {}",
            f.message,
            f.id,
            hex_upper(&f.data),
            DECODE_SET[k].1
        );
        assert_map_equals(&m, &f.values, &what);
        for switch in ["VCFRONT_LVPowerStateIndex", "Switch", "Cell_Bank_Number_1"] {
            if let Some(v) = f.values.get(switch) {
                multiplexed_pages
                    .entry(f.message.clone())
                    .or_default()
                    .insert(v.to_string());
            }
        }
    }
    // Every page of each multiplexed message was exercised (they take turns).
    let pages: BTreeMap<&str, usize> = multiplexed_pages
        .iter()
        .map(|(m, p)| (m.as_str(), p.len()))
        .collect();
    assert_eq!(
        pages,
        BTreeMap::from([
            ("Battery_Module_1", 8),
            ("Battery_temp", 2),
            ("VCFRONT_LVPowerState", 2)
        ]),
        "pages seen per multiplexed message"
    );
    assert!(rig.daemon.is_running());
}

// ---------------------------------------------------------------------------------------
// 2. Encoding against cantools

/// Command actuators whose every signal maps to a field named like the signal, lowercased.
/// A device name, its DBC file, and its actuators as `(actuator, DBC message)`.
type EncodeDevice = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const ENCODE_SET: [EncodeDevice; 3] = [
    ("comma", "comma_body.dbc", &[("comma/torque", "TORQUE_CMD")]),
    (
        "tesla",
        "tesla_model3_party.dbc",
        &[
            ("tesla/steering", "EPAS3S_sysStatus"),
            ("tesla/torque", "DI_torque"),
        ],
    ),
    (
        "gm",
        "gm_global_a_high_voltage_management.dbc",
        &[("gm/pack", "Pack_Stats"), ("gm/cells", "Battery_Module_1")],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commanded_values_come_back_from_cantools_decoding_the_frames_on_the_wire() {
    let test = "commanded_values_come_back_from_cantools_decoding_the_frames_on_the_wire";
    if !require(Peer::Cantools) {
        return;
    }
    let dir = temp_dir("botbus-can-encode-");
    let mut adapters: Vec<PtyDevice> = ENCODE_SET.iter().map(|_| adapter()).collect();
    let mut peer_args = vec!["frames".to_string(), seed(test).to_string(), "10".into()];
    let mut dbcs = Vec::new();
    let mut toml = String::from("id = \"@ID@\"\n");
    for ((device, file, commands), adapter) in ENCODE_SET.iter().zip(&adapters) {
        let dbc = copy_dbc(dir.path(), file);
        toml.push_str(&format!(
            "\n[[devices]]\nname = \"{device}\"\nprotocol = \"slcan\"\n\
             serial = {{ path = \"{}\", baud = 115200 }}\nbitrate = 500000\ndbc = \"{}\"\n",
            adapter.path().display(),
            dbc.display()
        ));
        let text = std::fs::read_to_string(&dbc).expect("read DBC");
        for (actuator, message) in *commands {
            // Every signal of the message, from the DBC text (not from botbus).
            let signals = dbc_signal_names(&text, message);
            assert!(!signals.is_empty(), "{message} has signals");
            let mapping: Vec<String> = signals
                .iter()
                .map(|s| format!("{s} = \"{}\"", s.to_lowercase()))
                .collect();
            toml.push_str(&format!(
                "  [[devices.commands]]\n  actuator = \"{actuator}\"\n  type = \"map\"\n  \
                 can_message = \"{message}\"\n  signals = {{ {} }}\n  safe = {{ {} = 0 }}\n",
                mapping.join(", "),
                signals[0].to_lowercase()
            ));
        }
        peer_args.push(dbc.display().to_string());
        peer_args.push(
            commands
                .iter()
                .map(|(_, m)| *m)
                .collect::<Vec<_>>()
                .join(","),
        );
        dbcs.push(dbc);
    }
    let wanted: Vec<PeerFrame> = cantools(dir.path(), &peer_args, "")
        .iter()
        .map(|l| parse_peer_frame(l))
        .collect();
    assert!(
        wanted.len() >= 50,
        "cantools made {} value sets",
        wanted.len()
    );

    let mut rig = Rig::start(&toml).await;
    for (k, a) in adapters.iter_mut().enumerate() {
        expect_setup(a).await;
        // Then the safe frame of each of the device's actuators ("device connected").
        for _ in ENCODE_SET[k].2 {
            a.line("a safe frame").await;
        }
    }
    rig.wait_online().await;
    for a in &mut adapters {
        a.lines_for(QUIET).await;
    }

    // Command each value set; the daemon writes one frame per command.
    let mut sent = Vec::new();
    for (n, w) in wanted.iter().enumerate() {
        let k = dbcs.iter().position(|d| *d == w.dbc).expect("a known DBC");
        let (actuator, _) = ENCODE_SET[k]
            .2
            .iter()
            .find(|(_, m)| *m == w.message)
            .expect("a commanded message");
        let fields: serde_json::Map<String, serde_json::Value> = w
            .values
            .iter()
            .map(|(s, v)| (s.to_lowercase(), v.clone()))
            .collect();
        let ack = rig
            .command(actuator, serde_json::Value::Object(fields.clone()))
            .await;
        assert_ok(&ack, &format!("command {n} on {actuator} ({fields:?})"));
        for (field, v) in &fields {
            let applied = ack["applied"][field].as_f64();
            assert!(
                applied.is_some_and(|a| close(a, v.as_f64().unwrap())),
                "command {n}: applied {field} in {ack}, commanded {v}"
            );
        }
        let line = adapters[k].line(&format!("the frame of command {n}")).await;
        let (id, data) = parse_slcan(&line);
        assert_eq!(id, w.id, "command {n} on {actuator}: frame {line:?}");
        sent.push((n, w, line, data));
    }

    // cantools decodes every frame the daemon wrote.
    let input: String = sent
        .iter()
        .map(|(_, w, _, data)| format!("{}\t{:X}\t{}\n", w.dbc.display(), w.id, hex_upper(data)))
        .collect();
    let decoded = cantools(dir.path(), &["decode".to_string()], &input);
    assert_eq!(decoded.len(), sent.len(), "{decoded:?}");
    for ((n, w, line, _), d) in sent.iter().zip(&decoded) {
        let (name, json) = d.split_once('\t').expect("message \\t json");
        assert_eq!(name, w.message, "command {n}: frame {line:?}");
        let back: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).expect("json");
        for (signal, v) in &w.values {
            let want = v.as_f64().unwrap();
            let got = back.get(signal).and_then(|v| v.as_f64());
            assert!(
                got.is_some_and(|g| close(g, want)),
                "command {n} on {}: {signal} = {want} was commanded; cantools decodes {got:?} \
                 from {line:?}\n  commanded: {:?}\n  decoded:   {back:?}",
                w.message,
                w.values
            );
        }
    }
    assert!(rig.daemon.is_running());
}

/// The signal names of `message` in DBC text: the `SG_` lines under its `BO_` line.
fn dbc_signal_names(text: &str, message: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("BO_ ") {
            inside = t.split_whitespace().nth(2) == Some(&format!("{message}:"));
        } else if inside && t.starts_with("SG_ ") {
            out.push(
                t.split_whitespace()
                    .nth(1)
                    .expect("signal name")
                    .to_string(),
            );
        } else if inside && t.is_empty() {
            inside = false;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 3. End to end over a pty: telemetry, raw frames, commands, deadman, garbage

/// An adapter on a pty and a daemon for `body_robot`, past the setup and the safe frames.
async fn body_rig(dir: &TempDir) -> (Rig, PtyDevice) {
    let dbc = copy_dbc(dir.path(), "comma_body.dbc");
    let mut a = adapter();
    let transport = format!(
        "serial = {{ path = \"{}\", baud = 115200 }}",
        a.path().display()
    );
    let mut rig = Rig::start(&body_robot(&transport, &dbc)).await;
    // On connect: close, bitrate, open, then every actuator's safe frame.
    expect_setup(&mut a).await;
    let mut safe = vec![
        a.line("a safe frame").await,
        a.line("a safe frame").await,
        a.line("a safe frame").await,
    ];
    safe.sort();
    let mut want = SAFE_FRAMES.to_vec();
    want.sort();
    assert_eq!(safe, want, "the safe frames written on connect");
    rig.wait_online().await;
    a.lines_for(QUIET).await;
    (rig, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slcan_frames_publish_hand_computed_signals_and_raw_frames_and_garbage_is_counted() {
    let dir = temp_dir("botbus-can-e2e-");
    let (mut rig, mut a) = body_rig(&dir).await;

    // Telemetry: hand-computed signal values.
    a.send(&slcan_line(0x201, MOTORS)).await;
    let m = rig.sample("body/motors", "MOTORS_DATA", |_| true).await;
    assert_motors(&m);
    // BODY_DATA: MCU_TEMP byte 0 = 250 × 0.1 = 25.0 °C; BATT_VOLTAGE bytes 1–2 = 0x0A28 =
    // 2600 × 0.01 = 26.0 V; byte 3 = 0xAF: BATT_PERCENTAGE bits 7..1 = 87,
    // CHARGER_CONNECTED bit 0 = 1.
    a.send_bytes(b"t2034FA0A28AF\r").await;
    let m = rig.sample("body/power", "BODY_DATA", |_| true).await;
    assert!((m.f64("MCU_TEMP") - 25.0).abs() < 1e-9, "{m:?}");
    assert!((m.f64("BATT_VOLTAGE") - 26.0).abs() < 1e-9, "{m:?}");
    assert_eq!(m.i64("BATT_PERCENTAGE"), 87, "{m:?}");
    assert_eq!(m.i64("CHARGER_CONNECTED"), 1, "{m:?}");
    assert_eq!(m.json().as_object().map(|o| o.len()), Some(5), "{m:?}");
    // The same frame from an adapter with timestamps on (4 hex digits of milliseconds
    // after the data), with the percentage changed to 86 (byte 3 = 0xAD).
    a.send_bytes(b"t2034FA0A28AD1A2B\r").await;
    let m = rig
        .sample("body/power", "BODY_DATA with a timestamp", |_| true)
        .await;
    assert_eq!(m.i64("BATT_PERCENTAGE"), 86, "{m:?}");
    assert_eq!(m.i64("CHARGER_CONNECTED"), 1, "{m:?}");
    assert!((m.f64("BATT_VOLTAGE") - 26.0).abs() < 1e-9, "{m:?}");

    // Raw frames: `ids = [0x7AB]` takes only 0x7AB; the stream without ids takes all,
    // extended identifiers and empty frames included.
    a.send_bytes(b"t7AB3DEADBE\rt1111FF\rT1ABCDEF02CAFE\rt7AB0\r")
        .await;
    let m = rig.sample("can/raw", "raw 0x7AB", |_| true).await;
    assert_raw(&m, 0x7AB, false, &[0xDE, 0xAD, 0xBE]);
    let m = rig
        .sample("can/raw", "the second raw 0x7AB", |_| true)
        .await;
    assert_raw(&m, 0x7AB, false, &[]);
    let m = rig
        .sample("can/all", "0x111 on can/all", |m| m.u64("id") == 0x111)
        .await;
    assert_raw(&m, 0x111, false, &[0xFF]);
    let m = rig
        .sample("can/all", "the extended frame on can/all", |m| {
            m.u64("id") == 0x1ABCDEF0
        })
        .await;
    assert_raw(&m, 0x1ABCDEF0, true, &[0xCA, 0xFE]);
    let m = rig
        .sample("can/all", "MOTORS_DATA on can/all", |m| {
            m.u64("id") == 0x201
        })
        .await;
    assert_raw(&m, 0x201, false, MOTORS);

    // Garbage on the line: binary junk, a BEL (the adapter's error reply), a `t` line too
    // short to hold an identifier, and one with non-hex data. Each is counted; the good
    // frame after them still decodes.
    rig.sub.forget_backlog();
    let before = rig
        .diag_entry("can", "a diagnostics report", |_| true)
        .await
        .diag_device("can")
        .map(|d| (field_u64(d, "errors"), field_u64(d, "frames")))
        .expect("the can device");
    a.send_bytes(b"\x00\xff\xfe\x80\x01junk\r\x07t12\rt2018ZZ38012C12340A5C\r")
        .await;
    a.send(&slcan_line(0x201, MOTORS)).await;
    let m = rig
        .sample("body/motors", "MOTORS_DATA after the garbage", |_| true)
        .await;
    assert_motors(&m);
    let d = rig
        .diag_entry("can", "the garbage counted in diagnostics", |d| {
            field_u64(d, "errors") >= before.0 + 4 && field_u64(d, "frames") > before.1
        })
        .await;
    let entry = d.diag_device("can").expect("the can device");
    assert_eq!(
        field_u64(entry, "errors"),
        before.0 + 4,
        "four bad lines, four errors: {d:?}"
    );
    assert_eq!(
        lookup(entry, "connected").and_then(|v| v.as_bool()),
        Some(true),
        "garbage does not disconnect the adapter: {d:?}"
    );
    let last = lookup(entry, "last_error")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(!last.is_empty(), "last_error names the bad line: {d:?}");
    assert!(rig.daemon.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dbc_command_is_written_exactly_its_deadman_sends_the_safe_frame_and_bad_values_write_nothing(
) {
    let dir = temp_dir("botbus-can-cmd-");
    let (mut rig, mut a) = body_rig(&dir).await;

    // A command frame on the wire: TORQUE_L 100 = 0x0064, TORQUE_R -200 = 0xFF38, COUNTER
    // and CHECKSUM (not mapped) 0.
    let sent_at = Instant::now();
    let ack = rig
        .command(
            "body/torque",
            serde_json::json!({"left": 100, "right": -200}),
        )
        .await;
    assert_ok(&ack, "torque 100/-200");
    assert_eq!(ack["applied"]["left"].as_f64(), Some(100.0), "{ack}");
    assert_eq!(ack["applied"]["right"].as_f64(), Some(-200.0), "{ack}");
    assert_eq!(a.line("the torque frame").await, "t25060064FF380000");
    // The deadman: timeout_ms = 500 after the command, the safe frame, once.
    assert_eq!(a.line("the deadman's safe frame").await, SAFE_FRAMES[0]);
    let after = sent_at.elapsed();
    assert!(
        after >= Duration::from_millis(490),
        "the deadman fired {after:?} after the command; timeout_ms is 500"
    );
    a.expect_silence(Duration::from_millis(800), "after the deadman's safe frame")
        .await;

    // Rejections write nothing: outside the robot file's limits, outside the DBC range
    // (MAX_RPM_L is [0|1000] in the DBC while its 16 bits would hold 1500).
    let ack = rig
        .command("body/torque", serde_json::json!({"left": 600, "right": 0}))
        .await;
    assert_rejected(&ack, "limits", "torque 600 (limit 500)");
    let ack = rig
        .command(
            "body/torque",
            serde_json::json!({"left": 0, "right": -500.5}),
        )
        .await;
    assert_rejected(&ack, "limits", "torque right -500.5 (limit -500)");
    let ack = rig
        .command(
            "body/max_rpm",
            serde_json::json!({"left": 1500, "right": 0}),
        )
        .await;
    assert_rejected(&ack, "DBC range", "MAX_RPM_L 1500 (DBC max 1000)");
    let ack = rig
        .command("body/max_rpm", serde_json::json!({"left": 0, "right": -1}))
        .await;
    assert_rejected(&ack, "DBC range", "MAX_RPM_R -1 (DBC min 0)");
    a.expect_silence(QUIET, "after rejected commands").await;

    // An accepted one is written exactly: 800 = 0x0320, 900 = 0x0384, CHECKSUM 0.
    let ack = rig
        .command(
            "body/max_rpm",
            serde_json::json!({"left": 800, "right": 900}),
        )
        .await;
    assert_ok(&ack, "max rpm 800/900");
    assert_eq!(a.line("the max rpm frame").await, "t25150320038400");
    a.expect_silence(QUIET, "after the accepted command (no deadman on max_rpm)")
        .await;
    assert!(rig.daemon.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_command_with_a_non_numeric_signal_value_or_an_unknown_field_is_rejected_naming_it_and_writes_nothing(
) {
    let dir = temp_dir("botbus-can-strict-");
    let (mut rig, mut a) = body_rig(&dir).await;

    // `body/max_rpm` has no limits, so the render is all that stands between these
    // commands and the wire. (Each command also carries an `id`, which is allowed.)
    let ack = rig
        .command(
            "body/max_rpm",
            serde_json::json!({"left": "max", "right": 10}),
        )
        .await;
    assert_rejected(&ack, "left", "MAX_RPM_L given a string");
    assert_rejected(&ack, "not a number", "MAX_RPM_L given a string");
    let ack = rig
        .command(
            "body/max_rpm",
            serde_json::json!({"left": 1, "right": 2, "lfet": 3}),
        )
        .await;
    assert_rejected(&ack, "`lfet`", "a misspelt field");
    assert_rejected(&ack, "unknown field", "a misspelt field");
    // On an actuator with limits and a deadman, a misspelt field is refused just the same.
    let ack = rig
        .command(
            "body/torque",
            serde_json::json!({"left": 1, "right": 2, "rigth": 3}),
        )
        .await;
    assert_rejected(&ack, "`rigth`", "a misspelt torque field");
    a.expect_silence(QUIET, "after map commands with bad fields")
        .await;

    // The same commands without the bad field are written exactly: 1 = 0x0001, 2 = 0x0002,
    // CHECKSUM 0; then the torque deadman's safe frame.
    let ack = rig
        .command("body/max_rpm", serde_json::json!({"left": 1, "right": 2}))
        .await;
    assert_ok(&ack, "max rpm 1/2");
    assert_eq!(a.line("the max rpm frame").await, "t25150001000200");
    let ack = rig
        .command("body/torque", serde_json::json!({"left": 1, "right": 2}))
        .await;
    assert_ok(&ack, "torque 1/2");
    assert_eq!(a.line("the torque frame").await, "t2506000100020000");
    assert_eq!(a.line("the deadman's safe frame").await, SAFE_FRAMES[0]);
    a.expect_silence(QUIET, "after the deadman's safe frame")
        .await;
    assert!(rig.daemon.is_running());
}

/// A `can_msgs/Frame` command. Its `id` is the CAN identifier, so the ack echoes that.
fn raw_frame(id: u64, data: rmpv::Value, dlc: u64) -> rmpv::Value {
    rmpv::Value::Map(vec![
        (rmpv::Value::from("id"), rmpv::Value::from(id)),
        (rmpv::Value::from("dlc"), rmpv::Value::from(dlc)),
        (rmpv::Value::from("data"), data),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_frame_command_is_written_only_for_an_allowed_id() {
    let dir = temp_dir("botbus-can-raw-");
    let (mut rig, mut a) = body_rig(&dir).await;

    let ack = rig
        .command_value(
            "can/raw",
            raw_frame(0x300, rmpv::Value::Binary(vec![0xAB, 0xCD]), 2),
        )
        .await;
    assert_ok(&ack, "raw frame 0x300 with bin data");
    assert_eq!(a.line("the raw frame").await, "t3002ABCD");
    let ack = rig
        .command_value(
            "can/raw",
            raw_frame(0x300, rmpv::Value::Array(vec![rmpv::Value::from(0x12)]), 1),
        )
        .await;
    assert_ok(&ack, "raw frame 0x300 with data as a list of ints");
    assert_eq!(a.line("the raw frame").await, "t300112");

    let ack = rig
        .command_value("can/raw", raw_frame(0x301, rmpv::Value::Binary(vec![1]), 1))
        .await;
    assert_rejected(&ack, "0x301", "raw frame 0x301 (allowed: 0x300)");
    a.expect_silence(QUIET, "after a raw frame with an id outside the allowlist")
        .await;
    assert!(rig.daemon.is_running());
}

// ---------------------------------------------------------------------------------------
// 4. botbus sim

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botbus_sim_plays_the_demo_can_adapter_and_receives_a_torque_command() {
    // robots/demo.toml's CAN device as shipped, with its path moved into a temp folder and
    // its DBC file beside the robot file.
    let dir = temp_dir("botbus-can-sim-");
    let body = demo_device("body");
    assert!(body.contains("protocol = \"slcan\""), "{body}");
    assert!(body.contains("dbc = \"comma_body.dbc\""), "{body}");
    std::fs::copy(
        repo_path("robots/comma_body.dbc"),
        dir.path().join("comma_body.dbc"),
    )
    .expect("copy robots/comma_body.dbc");
    let toml = format!(
        "id = \"@ID@\"\n\n{}",
        body.replace("/tmp/botbus-demo", &dir.path().display().to_string())
    );
    // The simulator does not care about the robot id; the daemon's is made unique.
    let robot = write_file(dir.path(), "robot.toml", &toml.replace("@ID@", "can-sim"));
    let sim = Sim::start(&robot);
    let link = dir.path().join("can").display().to_string();
    sim.lines
        .wait(0, "the simulated adapter linked to its path", |l| {
            l.starts_with("body (slcan): ") && l.ends_with(&format!(" <- {link}"))
        })
        .await;

    // The daemon reads the same file; its copy lives elsewhere, so the DBC path is absolute.
    let daemon_toml = toml.replace(
        "dbc = \"comma_body.dbc\"",
        &format!("dbc = \"{}\"", dir.path().join("comma_body.dbc").display()),
    );
    let mut rig = Rig::start(&daemon_toml).await;
    let m = rig
        .sample("body/motors", "MOTORS_DATA from the simulator", |_| true)
        .await;
    for s in ["SPEED_L", "SPEED_R", "COUNTER", "CHECKSUM"] {
        assert!(m.opt(s).and_then(|v| v.as_f64()).is_some(), "{s}: {m:?}");
    }
    assert!((-1000.0..=1000.0).contains(&m.f64("SPEED_L")), "{m:?}");
    let m = rig
        .sample("body/power", "BODY_DATA from the simulator", |_| true)
        .await;
    assert!((0.0..=60.0).contains(&m.f64("BATT_VOLTAGE")), "{m:?}");
    assert!((0.0..=100.0).contains(&m.f64("BATT_PERCENTAGE")), "{m:?}");
    rig.wait_online().await;

    let from = sim.lines.all().len();
    let ack = rig
        .command(
            "body/torque",
            serde_json::json!({"left": 123, "right": -45}),
        )
        .await;
    assert_ok(&ack, "torque 123/-45");
    // 123 = 0x007B, -45 = 0xFFD3.
    let i = sim
        .lines
        .wait(from, "the simulator to receive the torque frame", |l| {
            l == "body received: frame 0x250 [007bffd30000] TORQUE_CMD TORQUE_L=123 TORQUE_R=-45 COUNTER=0 CHECKSUM=0"
        })
        .await;
    // The demo's deadman (500 ms) sends the safe torque afterwards.
    sim.lines
        .wait(i + 1, "the deadman's safe torque at the simulator", |l| {
            l.starts_with(
                "body received: frame 0x250 [000000000000] TORQUE_CMD TORQUE_L=0 TORQUE_R=0",
            )
        })
        .await;
    assert!(rig.daemon.is_running());
}
