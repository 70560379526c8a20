//! CAN test support shared by the slcan tests (tests/can.rs) and the SocketCAN tests
//! (tests/socketcan.rs): the DBC fixtures, Python cantools as the independent DBC
//! implementation, a rig that numbers its commands, and the comma body robot whose only
//! transport line differs between slcan and SocketCAN.

use super::*;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------------------
// Fixtures

pub fn fixture(name: &str) -> PathBuf {
    repo_path("tests/fixtures/dbc").join(name)
}

/// Copies a fixture DBC file into `dir` (a robot file's folder) and returns the copy.
pub fn copy_dbc(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(fixture(name), &to).expect("copy the DBC fixture");
    to
}

// ---------------------------------------------------------------------------------------
// The independent DBC implementation: Python cantools

/// `frames SEED COUNT (DBC MSG,MSG...)...` prints `COUNT` random frames per message, one
/// per line: `dbc \t message \t id-hex \t data-hex \t decoded-json`. Every signal gets a
/// random raw value inside its bits and its DBC range (the ends of the range one time in
/// five); a multiplexed message gets its pages in turn (from a random one), each frame with
/// the signals of its page only. cantools encodes the raw values and decodes the frame to
/// physical values (no value tables).
/// `decode` reads `dbc \t id-hex \t data-hex` lines and prints `message \t decoded-json`.
/// `fd DBC` prints the names of the messages cantools takes for CAN FD.
pub const CANTOOLS_PEER: &str = r#"
import json, math, random, sys

import cantools

_dbs = {}


def database(path):
    if path not in _dbs:
        _dbs[path] = cantools.database.load_file(path, strict=False)
    return _dbs[path]


def raw_bounds(s):
    """The raw values the signal's bits hold, narrowed to its DBC [min|max] if given."""
    if s.is_signed:
        lo, hi = -(1 << (s.length - 1)), (1 << (s.length - 1)) - 1
    else:
        lo, hi = 0, (1 << s.length) - 1
    ends = [None if p is None else (p - s.offset) / s.scale for p in (s.minimum, s.maximum)]
    if s.scale < 0:
        ends.reverse()
    if ends[0] is not None:
        lo = max(lo, math.ceil(ends[0] - 1e-9))
    if ends[1] is not None:
        hi = min(hi, math.floor(ends[1] + 1e-9))
    return lo, hi


def pick(rng, lo, hi):
    r = rng.random()
    if r < 0.1:
        return lo
    if r < 0.2:
        return hi
    return rng.randint(lo, hi)


def random_frame(rng, m, k):
    """Frame k of a message: for a multiplexed one the pages take turns."""
    muxes = [s for s in m.signals if s.is_multiplexer]
    for _ in range(200):
        raw, pages = {}, {}
        for mux in muxes:
            lo, hi = raw_bounds(mux)
            ids = sorted({i for s in m.signals if s.multiplexer_signal == mux.name
                          for i in (s.multiplexer_ids or []) if lo <= i <= hi})
            pages[mux.name] = raw[mux.name] = ids[k % len(ids)]
        for s in m.signals:
            if s.name in raw:
                continue
            if s.multiplexer_signal is not None and \
                    pages.get(s.multiplexer_signal) not in (s.multiplexer_ids or []):
                continue
            raw[s.name] = pick(rng, *raw_bounds(s))
        try:
            return m.encode(raw, scaling=False, strict=True)
        except Exception:
            continue  # an end of the range that scaling pushes just outside: pick again
    raise SystemExit(f"cannot encode a random {m.name}")


def decoded(m, data):
    return m.decode(data, decode_choices=False, scaling=True)


mode = sys.argv[1]
if mode == "frames":
    rng = random.Random(int(sys.argv[2]))
    count = int(sys.argv[3])
    rest = sys.argv[4:]
    for path, names in zip(rest[0::2], rest[1::2]):
        db = database(path)
        for name in names.split(","):
            m = db.get_message_by_name(name)
            start = rng.randrange(64)
            for k in range(count):
                data = random_frame(rng, m, start + k)
                print(f"{path}\t{name}\t{m.frame_id:X}\t{data.hex().upper()}\t"
                      f"{json.dumps(decoded(m, data))}")
elif mode == "decode":
    for line in sys.stdin:
        if not line.strip():
            continue
        path, ident, data = line.rstrip("\n").split("\t")
        m = database(path).get_message_by_frame_id(int(ident, 16))
        print(f"{m.name}\t{json.dumps(decoded(m, bytes.fromhex(data)))}")
elif mode == "fd":
    for m in database(sys.argv[2]).messages:
        if m.is_fd:
            print(m.name)
else:
    raise SystemExit(f"unknown mode {mode}")
"#;

/// Runs the cantools peer with `args`, feeding it `input`; returns its stdout lines.
pub fn cantools(dir: &Path, args: &[String], input: &str) -> Vec<String> {
    let script = dir.join("cantools_peer.py");
    std::fs::write(&script, CANTOOLS_PEER).expect("write the cantools script");
    let mut child = Command::new(peers::python())
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed the cantools script");
    let out = child.wait_with_output().expect("wait for python3");
    assert!(
        out.status.success(),
        "the cantools script failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `count` random frames of each of `messages` from cantools, seeded for `test`.
pub fn cantools_frames(
    dir: &Path,
    test: &str,
    count: usize,
    dbc: &Path,
    messages: &[&str],
) -> Vec<PeerFrame> {
    let args = [
        "frames".to_string(),
        seed(test).to_string(),
        count.to_string(),
        dbc.display().to_string(),
        messages.join(","),
    ];
    cantools(dir, &args, "")
        .iter()
        .map(|l| parse_peer_frame(l))
        .collect()
}

/// cantools' decoding of one frame of `dbc`: the message's name and its signal values.
pub fn cantools_decode(
    dir: &Path,
    dbc: &Path,
    id: u32,
    data: &[u8],
) -> (String, serde_json::Value) {
    let input = format!("{}\t{id:X}\t{}\n", dbc.display(), hex_upper(data));
    let out = cantools(dir, &["decode".to_string()], &input);
    let (name, json) = out[0].split_once('\t').expect("message \\t json");
    (name.to_string(), serde_json::from_str(json).expect("json"))
}

/// The random seed of a cross-check: `CAN_TEST_SEED` to repeat a run, the clock otherwise.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("CAN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
                % 1_000_000_007
        });
    eprintln!("{test}: random seed {seed} (CAN_TEST_SEED={seed} repeats this run)");
    seed
}

/// One frame cantools made: which DBC and message, its bytes, and its decoded values.
pub struct PeerFrame {
    pub dbc: PathBuf,
    pub message: String,
    pub id: u32,
    pub data: Vec<u8>,
    pub values: serde_json::Map<String, serde_json::Value>,
}

pub fn parse_peer_frame(line: &str) -> PeerFrame {
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!(f.len(), 5, "cantools printed {line:?}");
    let serde_json::Value::Object(values) = serde_json::from_str(f[4]).expect("json") else {
        panic!("cantools printed {line:?}");
    };
    PeerFrame {
        dbc: PathBuf::from(f[0]),
        message: f[1].to_string(),
        id: u32::from_str_radix(f[2], 16).expect("hex id"),
        data: hex_bytes(f[3]),
        values,
    }
}

pub fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex byte"))
        .collect()
}

pub fn hex_upper(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02X}")).collect()
}

/// The slcan receive line of a standard data frame, as an adapter sends it.
pub fn slcan_line(id: u32, data: &[u8]) -> String {
    format!("t{id:03X}{}{}\r", data.len(), hex_upper(data))
}

/// A transmit line the daemon wrote (`t` + 3 hex id + dlc + data), as id and data.
pub fn parse_slcan(line: &str) -> (u32, Vec<u8>) {
    assert!(
        line.starts_with('t') && line.len() >= 5,
        "not an slcan data frame: {line:?}"
    );
    let id = u32::from_str_radix(&line[1..4], 16).expect("hex id");
    let dlc = usize::from_str_radix(&line[4..5], 16).expect("dlc");
    let data = hex_bytes(&line[5..]);
    assert_eq!(data.len(), dlc, "dlc and data disagree in {line:?}");
    (id, data)
}

pub fn number(v: &rmpv::Value) -> Option<f64> {
    v.as_f64()
}

/// `a` equals `b` up to a relative 1e-6 (what a float round trip may lose).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-6)
}

/// The published `map` equals cantools' decoded values: the same signals, the same values.
pub fn assert_map_equals(m: &Msg, want: &serde_json::Map<String, serde_json::Value>, what: &str) {
    let rmpv::Value::Map(pairs) = &m.value else {
        panic!("{what}: not a map: {m:?}");
    };
    let mut got = BTreeMap::new();
    for (k, v) in pairs {
        let k = k.as_str().expect("string keys");
        if k != "header" {
            let n = number(v).unwrap_or_else(|| panic!("{what}: `{k}` is not a number: {m:?}"));
            got.insert(k.to_string(), n);
        }
    }
    let want: BTreeMap<String, f64> = want
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().expect("cantools numbers")))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: botbus published other signals than cantools decodes\n  botbus:   {got:?}\n  cantools: {want:?}"
    );
    for (k, w) in &want {
        assert!(
            close(got[k], *w),
            "{what}: {k} = {} but cantools decodes {w}\n  botbus:   {got:?}\n  cantools: {want:?}",
            got[k]
        );
    }
}

// ---------------------------------------------------------------------------------------
// A daemon, its broker and an independent client

/// A [`RobotRig`] that numbers the commands it sends.
pub struct Rig {
    pub rig: RobotRig,
    pub next_cmd: u64,
}

deref_rig!(Rig);

impl Rig {
    /// `toml` with `@ID@` replaced by a unique robot id.
    pub async fn start(toml: &str) -> Rig {
        Rig {
            rig: RobotRig::start(&unique("can"), toml).await,
            next_cmd: 0,
        }
    }

    /// Publishes `fields` (a msgpack map) to `cmd/<actuator>` and returns the ack (matched
    /// by the command's `id`) as JSON.
    pub async fn command_value(
        &mut self,
        actuator: &str,
        fields: rmpv::Value,
    ) -> serde_json::Value {
        let rmpv::Value::Map(mut pairs) = fields else {
            panic!("a command is a map");
        };
        // A `can_msgs/Frame` has its own `id` field (the CAN identifier), so its ack is the
        // next one on the topic; other commands get a fresh id to match their ack by.
        let id = if pairs.iter().any(|(k, _)| k.as_str() == Some("id")) {
            None
        } else {
            self.next_cmd += 1;
            pairs.insert(
                0,
                (rmpv::Value::from("id"), rmpv::Value::from(self.next_cmd)),
            );
            Some(self.next_cmd)
        };
        let mut payload = Vec::new();
        rmpv::encode::write_value(&mut payload, &rmpv::Value::Map(pairs)).expect("msgpack");
        self.publish(actuator, payload).await;
        self.ack(actuator, id).await
    }

    pub async fn command(
        &mut self,
        actuator: &str,
        fields: serde_json::Value,
    ) -> serde_json::Value {
        let bytes = rmp_serde::to_vec_named(&fields).expect("msgpack");
        let value = rmpv::decode::read_value(&mut &bytes[..]).expect("msgpack");
        self.command_value(actuator, value).await
    }
}

pub fn field_u64(entry: &rmpv::Value, field: &str) -> u64 {
    lookup(entry, field)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no `{field}` in {entry}"))
}

pub fn assert_ok(ack: &serde_json::Value, what: &str) {
    assert_eq!(ack["ok"], true, "{what} must be accepted: {ack}");
}

pub fn assert_rejected(ack: &serde_json::Value, needle: &str, what: &str) {
    assert_eq!(ack["ok"], false, "{what} must be rejected: {ack}");
    let error = ack["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(needle),
        "{what}: the error should mention {needle:?}: {ack}"
    );
    assert!(ack["applied"].is_null(), "{what}: {ack}");
}

/// The robot of the end-to-end tests; `transport` is the only line SocketCAN changes.
pub fn body_robot(transport: &str, dbc: &Path) -> String {
    format!(
        r#"id = "@ID@"

[[devices]]
name = "can"
protocol = "slcan"
{transport}
bitrate = 500000
dbc = "{}"
  [[devices.streams]]
  sensor = "body/motors"
  can_message = "MOTORS_DATA"
  qos = 1
  [[devices.streams]]
  sensor = "body/power"
  can_message = "BODY_DATA"
  qos = 1
  [[devices.streams]]
  sensor = "can/raw"
  type = "can_msgs/Frame"
  ids = [0x7AB]
  qos = 1
  [[devices.streams]]
  sensor = "can/all"
  qos = 1
  [[devices.commands]]
  actuator = "body/torque"
  type = "map"
  can_message = "TORQUE_CMD"
  signals = {{ TORQUE_L = "left", TORQUE_R = "right" }}
  limits = {{ left = [-500.0, 500.0], right = [-500.0, 500.0] }}
  timeout_ms = 500
  safe = {{ left = 0, right = 0 }}
  [[devices.commands]]
  actuator = "body/max_rpm"
  type = "map"
  can_message = "MAX_MOTOR_RPM_CMD"
  signals = {{ MAX_RPM_L = "left", MAX_RPM_R = "right" }}
  safe = {{ left = 0, right = 0 }}
  [[devices.commands]]
  actuator = "can/raw"
  type = "can_msgs/Frame"
  ids = [0x300]
  safe = {{ id = 0x300, dlc = 0 }}
"#,
        dbc.display()
    )
}

/// MOTORS_DATA (0x201), hand-encoded: SPEED_L 7|16@0- = 0xFF38 = -200, SPEED_R 23|16@0- =
/// 0x012C = 300, ELEC_ANGLE_L byte 4 = 0x12 = 18, ELEC_ANGLE_R byte 5 = 0x34 = 52,
/// COUNTER 51|4@0+ = low nibble of byte 6 = 0xA = 10 (the high nibble 0xF is no signal),
/// CHECKSUM byte 7 = 0x5C = 92.
pub const MOTORS: &[u8] = &[0xFF, 0x38, 0x01, 0x2C, 0x12, 0x34, 0xFA, 0x5C];

pub fn assert_motors(m: &Msg) {
    assert_eq!(m.i64("SPEED_L"), -200, "{m:?}");
    assert_eq!(m.i64("SPEED_R"), 300, "{m:?}");
    assert_eq!(m.i64("ELEC_ANGLE_L"), 18, "{m:?}");
    assert_eq!(m.i64("ELEC_ANGLE_R"), 52, "{m:?}");
    assert_eq!(m.i64("COUNTER"), 10, "{m:?}");
    assert_eq!(m.i64("CHECKSUM"), 92, "{m:?}");
    assert_eq!(m.str("header.frame_id"), "can", "{m:?}");
}

/// The three actuators' safe frames, written when the adapter connects: TORQUE_CMD (6
/// bytes) and MAX_MOTOR_RPM_CMD (5 bytes) with every signal 0, and the raw 0x300 frame
/// with no data.
pub const SAFE_FRAMES: [&str; 3] = ["t2506000000000000", "t25150000000000", "t3000"];

pub fn assert_raw(m: &Msg, id: u64, extended: bool, data: &[u8]) {
    assert_eq!(m.u64("id"), id, "{m:?}");
    assert_eq!(m.bool("is_extended"), extended, "{m:?}");
    assert!(!m.bool("is_rtr"), "{m:?}");
    assert!(!m.bool("is_error"), "{m:?}");
    assert_eq!(m.u64("dlc"), data.len() as u64, "{m:?}");
    match m.get("data") {
        rmpv::Value::Binary(b) => assert_eq!(b.as_slice(), data, "{m:?}"),
        other => panic!("`data` must be MessagePack bin, not {other}: {m:?}"),
    }
}
