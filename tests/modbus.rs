//! Integration tests for issue 5 (Modbus RTU and TCP devices): the real `botbus` binary against a real mosquitto, polling an independent Modbus RTU slave (pymodbus's serial server on one end of a relayed pty pair) and botbus's own simulator (`botbus sim`, RTU on a pty and Modbus TCP), checked by an independent rumqttc subscriber.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The rate test takes this exclusively, every other test shares it, so the rate measured
/// is the daemon's and not the neighbours' CPU load.
static TIMING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

// ---------------------------------------------------------------------------------------
// The independent slave: pymodbus

/// pymodbus 3.x serving Modbus RTU on a serial port, with the register contents of a JSON
/// file. Prints `CONNECTED` once the port is open, every write it receives as
/// `WRITE unit=<u> fc=<fc> address=<a> values=<v,...>`, and obeys `mute <unit>` and
/// `unmute <unit>` lines on stdin. A muted unit, or one the file does not list, never answers.
const PYMODBUS_SLAVE: &str = r#"
import asyncio, json, os, sys, threading

try:
    from pymodbus import FramerType
    from pymodbus.server import ModbusSerialServer
    from pymodbus.simulator import DataType, SimData, SimDevice
except Exception as e:  # an older pymodbus: the test says it was skipped
    print(f"UNSUPPORTED {e!r}", flush=True)
    sys.exit(3)

with open(sys.argv[1]) as f:
    cfg = json.load(f)
muted = set(cfg.get("silent", []))


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_action(unit):
    async def action(fc, start, address, count, registers, values):
        if values is not None:
            vals = ",".join(str(int(v)) for v in values)
            say(f"WRITE unit={unit} fc={fc} address={address} values={vals}")
        return None

    return action


def blocks(entries, bits):
    if not entries:
        entries = [[60000, [0] * 16 if bits else [0]]]
    out = []
    for address, values in entries:
        if bits:
            out.append(SimData(address, values=[bool(v) for v in values], datatype=DataType.BITS))
        else:
            out.append(SimData(address, values=[int(v) for v in values], datatype=DataType.REGISTERS))
    return out


devices = []
for unit, kinds in cfg["units"].items():
    devices.append(
        SimDevice(
            id=int(unit),
            # Separate blocks, addressed as in the requests (address 0 is the first value).
            simdata=(
                blocks(kinds.get("c", []), True),
                blocks(kinds.get("d", []), True),
                blocks(kinds.get("h", []), False),
                blocks(kinds.get("i", []), False),
            ),
            action=make_action(int(unit)),
        )
    )
ids = {d.id for d in devices}


def trace(sending, data):
    # pymodbus itself answers "device failure" for an id it lacks; a real bus is silent.
    if sending and data and (data[0] in muted or data[0] not in ids):
        return b""
    return data


def control():
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("mute", "unmute"):
            unit = int(parts[1])
            if parts[0] == "mute":
                muted.add(unit)
            else:
                muted.discard(unit)
            say(f"{parts[0].upper()}D {unit}")
    os._exit(0)  # stdin closed: the test is gone


async def main():
    server = ModbusSerialServer(
        devices,
        framer=FramerType.RTU,
        port=cfg["port"],
        baudrate=cfg.get("baud", 115200),
        trace_packet=trace,
        trace_connect=lambda up: say("CONNECTED" if up else "DISCONNECTED"),
    )
    await server.serve_forever()


threading.Thread(target=control, daemon=True).start()
asyncio.run(main())
"#;

/// One write the slave received.
#[derive(Debug, Clone, PartialEq)]
struct Write {
    unit: u8,
    fc: u8,
    address: u16,
    values: Vec<u16>,
}

fn parse_write(line: &str) -> Option<Write> {
    let rest = line.strip_prefix("WRITE ")?;
    let mut w = Write {
        unit: 0,
        fc: 0,
        address: 0,
        values: Vec::new(),
    };
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "unit" => w.unit = v.parse().ok()?,
            "fc" => w.fc = v.parse().ok()?,
            "address" => w.address = v.parse().ok()?,
            "values" => {
                w.values = v
                    .split(',')
                    .map(|x| x.parse().ok())
                    .collect::<Option<Vec<u16>>>()?
            }
            _ => return None,
        }
    }
    Some(w)
}

/// Register contents per unit and kind (`h`, `i`, `c`, `d`), as the slave serves them.
#[derive(Default, Clone)]
struct Bank(BTreeMap<u8, BTreeMap<char, BTreeMap<u16, u16>>>);

impl Bank {
    fn set(&mut self, unit: u8, kind: char, address: u16, words: &[u16]) -> &mut Self {
        let k = self.0.entry(unit).or_default().entry(kind).or_default();
        for (i, w) in words.iter().enumerate() {
            k.insert(address + i as u16, *w);
        }
        self
    }

    fn load(&mut self, regs: &[Reg]) -> &mut Self {
        for r in regs {
            self.set(r.unit, r.kind_char(), r.address, &r.words());
        }
        self
    }

    /// `{"1": {"h": [[address, [words...]], ...], ...}, ...}`: contiguous runs; addresses
    /// in no run are illegal for the slave.
    fn json(&self) -> serde_json::Value {
        let mut units = serde_json::Map::new();
        for (unit, kinds) in &self.0 {
            let mut ks = serde_json::Map::new();
            for (kind, words) in kinds {
                let mut runs: Vec<(u16, Vec<u16>)> = Vec::new();
                for (&a, &w) in words {
                    match runs.last_mut() {
                        Some((start, ws)) if *start as usize + ws.len() == a as usize => ws.push(w),
                        _ => runs.push((a, vec![w])),
                    }
                }
                ks.insert(kind.to_string(), serde_json::json!(runs));
            }
            units.insert(unit.to_string(), serde_json::Value::Object(ks));
        }
        serde_json::Value::Object(units)
    }
}

/// pymodbus serving a [`Bank`] on a serial port; killed on drop.
struct PySlave {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines,
    dir: TempDir,
}

impl PySlave {
    async fn start(port: &Path, bank: &Bank) -> PySlave {
        let dir = tempfile::Builder::new()
            .prefix("botbus-pymodbus-")
            .tempdir()
            .expect("temp dir");
        let script = write_file(dir.path(), "slave.py", PYMODBUS_SLAVE);
        let cfg = serde_json::json!({"port": port, "baud": 115200, "units": bank.json()});
        let cfg = write_file(dir.path(), "slave.json", &cfg.to_string());
        let err = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let mut child = Command::new(peers::python())
            .arg("-u")
            .arg(&script)
            .arg(&cfg)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("run python3");
        let lines = Lines::follow(child.stdout.take().expect("stdout"));
        let stdin = child.stdin.take();
        let slave = PySlave {
            child,
            stdin,
            lines,
            dir,
        };
        slave
            .lines
            .wait(0, "pymodbus to open its serial port", |l| {
                assert!(!l.starts_with("UNSUPPORTED"), "pymodbus: {l}");
                l == "CONNECTED"
            })
            .await;
        slave
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Where "from now on" starts, for [`PySlave::wait_write`].
    fn mark(&self) -> usize {
        self.lines.len()
    }

    /// The first write reported from line `from` on that satisfies `pred`, and its line.
    async fn wait_write(
        &self,
        from: usize,
        what: &str,
        mut pred: impl FnMut(&Write) -> bool,
    ) -> (usize, Instant, Write) {
        let i = self
            .lines
            .wait(from, what, |l| parse_write(l).is_some_and(|w| pred(&w)))
            .await;
        let (at, line) = self.lines.all()[i].clone();
        (i, at, parse_write(&line).expect("a WRITE line"))
    }

    /// Writes reported after line `from`, in order.
    fn writes_since(&self, from: usize) -> Vec<Write> {
        self.lines.all()[from..]
            .iter()
            .filter_map(|(_, l)| parse_write(l))
            .collect()
    }

    async fn control(&mut self, cmd: &str) {
        let from = self.lines.len();
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{cmd}").expect("write to pymodbus");
        stdin.flush().expect("flush");
        let (verb, unit) = cmd.split_once(' ').expect("`verb unit`");
        let ack = format!("{}D {unit}", verb.to_uppercase());
        self.lines
            .wait(from, &format!("pymodbus to say {ack}"), |l| l == ack)
            .await;
    }
}

impl Drop for PySlave {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let out = self.lines.texts();
            eprintln!(
                "----- pymodbus stdout -----\n{}\n----- pymodbus stderr (tail) -----\n{}",
                out.join("\n"),
                tail(&self.stderr(), 60)
            );
        }
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Registers: raw values the slave holds, and the physical values botbus must publish

#[derive(Debug, Clone, Copy)]
enum Raw {
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
}

#[derive(Debug, Clone)]
struct Reg {
    name: &'static str,
    unit: u8,
    kind: &'static str,
    address: u16,
    raw: Raw,
    little: bool,
    scale: f64,
    offset: f64,
}

fn reg(name: &'static str, unit: u8, kind: &'static str, address: u16, raw: Raw) -> Reg {
    Reg {
        name,
        unit,
        kind,
        address,
        raw,
        little: false,
        scale: 1.0,
        offset: 0.0,
    }
}

impl Reg {
    fn little(mut self) -> Reg {
        self.little = true;
        self
    }

    fn scaled(mut self, scale: f64, offset: f64) -> Reg {
        self.scale = scale;
        self.offset = offset;
        self
    }

    fn kind_char(&self) -> char {
        match self.kind {
            "holding" => 'h',
            "input" => 'i',
            "coil" => 'c',
            "discrete" => 'd',
            k => panic!("kind {k}"),
        }
    }

    fn format(&self) -> &'static str {
        match self.raw {
            Raw::U16(_) => "u16",
            Raw::I16(_) => "i16",
            Raw::U32(_) => "u32",
            Raw::I32(_) => "i32",
            Raw::F32(_) => "f32",
            Raw::Bool(_) => "bool",
        }
    }

    /// The words (or bit) the slave holds: Modbus registers are big-endian 16-bit words;
    /// a 32-bit value is high word first ("big") or low word first ("little").
    fn words(&self) -> Vec<u16> {
        let pair = |x: u32| {
            let (hi, lo) = ((x >> 16) as u16, (x & 0xFFFF) as u16);
            if self.little {
                vec![lo, hi]
            } else {
                vec![hi, lo]
            }
        };
        match self.raw {
            Raw::U16(v) => vec![v],
            Raw::I16(v) => vec![u16::from_be_bytes(v.to_be_bytes())],
            Raw::U32(v) => pair(v),
            Raw::I32(v) => pair(u32::from_be_bytes(v.to_be_bytes())),
            Raw::F32(v) => pair(v.to_bits()),
            Raw::Bool(b) => vec![b as u16],
        }
    }

    /// The physical value: raw × scale + offset (a bool stays a bool).
    fn expected(&self) -> Result<f64, bool> {
        let raw = match self.raw {
            Raw::U16(v) => v as f64,
            Raw::I16(v) => v as f64,
            Raw::U32(v) => v as f64,
            Raw::I32(v) => v as f64,
            Raw::F32(v) => v as f64,
            Raw::Bool(b) => return Err(b),
        };
        Ok(raw * self.scale + self.offset)
    }

    fn toml(&self) -> String {
        format!(
            "{{ name = \"{}\", unit = {}, kind = \"{}\", address = {}, format = \"{}\", word_order = \"{}\", scale = {:?}, offset = {:?} }}",
            self.name,
            self.unit,
            self.kind,
            self.address,
            self.format(),
            if self.little { "little" } else { "big" },
            self.scale,
            self.offset
        )
    }
}

/// A `[[devices.streams]]` table of type `map` reading `regs`.
fn map_stream(sensor: &str, poll_hz: f64, regs: &[Reg]) -> String {
    let list: Vec<String> = regs.iter().map(|r| format!("    {},", r.toml())).collect();
    format!(
        "  [[devices.streams]]\n  sensor = \"{sensor}\"\n  type = \"map\"\n  poll_hz = {poll_hz:?}\n  qos = 1\n  registers = [\n{}\n  ]\n",
        list.join("\n")
    )
}

/// Checks that a `map` sample holds exactly `regs` (by name) plus its header, each with
/// its physical value.
fn assert_sample(m: &Msg, regs: &[Reg]) {
    let Some(pairs) = m.value.as_map() else {
        panic!("not a map: {m:?}")
    };
    let mut keys: Vec<&str> = pairs.iter().filter_map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let mut want: Vec<&str> = regs.iter().map(|r| r.name).chain(["header"]).collect();
    want.sort_unstable();
    assert_eq!(keys, want, "the sample's keys: {m:?}");
    for r in regs {
        let got = m.get(r.name);
        match r.expected() {
            Err(b) => assert_eq!(
                got.as_bool(),
                Some(b),
                "{} ({} {} at {} of unit {}) in {m:?}",
                r.name,
                r.kind,
                r.format(),
                r.address,
                r.unit
            ),
            Ok(want) => {
                let got = got.as_f64().unwrap_or_else(|| {
                    panic!("{} is not a number in {m:?}", r.name);
                });
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{} ({} {}{} at {} of unit {}, words {:04X?}, scale {}, offset {}): got {got}, want {want}\n{m:?}",
                    r.name,
                    r.kind,
                    r.format(),
                    if r.little { " little" } else { "" },
                    r.address,
                    r.unit,
                    r.words(),
                    r.scale,
                    r.offset
                );
            }
        }
    }
}

fn i16_word(v: i16) -> u16 {
    u16::from_be_bytes(v.to_be_bytes())
}

// ---------------------------------------------------------------------------------------
// A daemon polling pymodbus

/// pymodbus serving a bank on one end of a relay, and a daemon polling the other end.
struct Rig {
    rig: RobotRig,
    slave: PySlave,
    _relay: Relay,
}

deref_rig!(Rig);

impl Rig {
    /// pymodbus serving `bank` on one end of a relay, and the daemon polling the other end
    /// with the `[[devices.streams]]` / `[[devices.commands]]` tables in `body`.
    async fn start(bank: &Bank, body: &str) -> Rig {
        let relay = Relay::open();
        let slave = PySlave::start(&relay.a, bank).await;
        let toml = format!(
            "id = \"@ID@\"\n\n[[devices]]\nname = \"drive\"\nprotocol = \"modbus\"\n\
             serial = {{ path = \"{}\", baud = 115200, parity = \"none\", stop_bits = 1 }}\n\
             timeout_ms = 200\n{body}",
            relay.b.display()
        );
        let rig = RobotRig::start_with(&unique("modbus"), &toml, |o| {
            o.env("BOTBUS_DIAGNOSTICS__PERIOD_S", "0.5")
        })
        .await;
        Rig {
            rig,
            slave,
            _relay: relay,
        }
    }
}

/// A diagnostics entry's field, e.g. `entry(m, "drive/unit1", "errors")`.
fn entry<'a>(m: &'a Msg, device: &str, field: &str) -> Option<&'a rmpv::Value> {
    m.diag_device(device).and_then(|d| lookup(d, field))
}

fn entry_u64(m: &Msg, device: &str, field: &str) -> u64 {
    entry(m, device, field)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no {device}.{field} in {m:?}"))
}

fn entry_connected(m: &Msg, device: &str) -> Option<bool> {
    entry(m, device, "connected").and_then(|v| v.as_bool())
}

fn entry_error(m: &Msg, device: &str) -> String {
    entry(m, device, "last_error")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// pymodbus: reading

/// Ten-odd registers of each unit, covering every format, both word orders, scale and
/// offset. Both units use the same addresses with different contents, so a request sent
/// to the wrong unit shows.
fn unit1_registers() -> Vec<Reg> {
    use Raw::*;
    vec![
        reg("u16", 1, "holding", 0, U16(54321)),
        reg("i16_negative", 1, "holding", 1, I16(-1234)),
        reg("u32_big", 1, "holding", 2, U32(3_000_000_000)),
        reg("i32_negative_big", 1, "holding", 4, I32(-123_456_789)),
        reg("f32_big", 1, "holding", 6, F32(3.25)),
        reg("i32_negative_little", 1, "holding", 8, I32(-2_000_000)).little(),
        reg("f32_little", 1, "holding", 10, F32(-1234.5)).little(),
        reg("u32_little_scaled", 1, "holding", 12, U32(70_000))
            .little()
            .scaled(0.001, 0.0),
        reg("current", 1, "input", 0, U16(4567)).scaled(0.01, 0.0),
        reg("temp", 1, "input", 1, I16(-12)).scaled(0.1, -40.0),
        reg("fault", 1, "coil", 5, Bool(true)),
        reg("enabled", 1, "coil", 6, Bool(false)),
        reg("door", 1, "discrete", 3, Bool(true)),
    ]
}

fn unit2_registers() -> Vec<Reg> {
    use Raw::*;
    vec![
        reg("u16", 2, "holding", 0, U16(7)),
        reg("i16_min", 2, "holding", 1, I16(-32768)),
        reg("u32_big", 2, "holding", 2, U32(65_538)),
        reg("i32_minus_one", 2, "holding", 4, I32(-1)),
        reg("f32_big_scaled", 2, "holding", 6, F32(-0.75)).scaled(2.0, 1.0),
        reg("i32_little_scaled", 2, "holding", 8, I32(-70_000))
            .little()
            .scaled(0.5, 0.0),
        reg("f32_little", 2, "holding", 10, F32(1.0e6)).little(),
        reg("offset_only", 2, "input", 0, U16(1000)).scaled(1.0, -500.0),
        reg("i16_scaled", 2, "input", 1, I16(-250)).scaled(0.04, 0.0),
        reg("coil0", 2, "coil", 0, Bool(false)),
        reg("input0", 2, "discrete", 0, Bool(true)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_units_on_one_port_publish_every_format_and_word_order_as_the_pymodbus_slave_holds_them(
) {
    if !require(Peer::Pymodbus) {
        return;
    }
    let _t = TIMING.read().await;
    let (u1, u2) = (unit1_registers(), unit2_registers());
    let temp: Vec<Reg> = u1.iter().filter(|r| r.name == "temp").cloned().collect();
    let mut bank = Bank::default();
    bank.load(&u1).load(&u2);
    let body = format!(
        "{}{}  [[devices.streams]]\n  sensor = \"drive1/temperature\"\n  type = \"std_msgs/Float64\"\n  poll_hz = 10.0\n  fields = {{ data = \"temp\" }}\n  registers = [{}]\n",
        map_stream("drive1/state", 10.0, &u1),
        map_stream("drive2/state", 10.0, &u2),
        temp[0].toml()
    );
    let mut rig = Rig::start(&bank, &body).await;

    let m = rig.wait_topic("drive1/state").await;
    assert_sample(&m, &u1);
    let m = rig.wait_topic("drive2/state").await;
    assert_sample(&m, &u2);
    assert!(
        m.opt("header.stamp").is_some(),
        "a map sample carries a header with a stamp: {m:?}"
    );
    // A typed message through `fields`.
    let m = rig.wait_topic("drive1/temperature").await;
    let want = -12.0 * 0.1 - 40.0;
    assert!(
        (m.f64("data") - want).abs() < 1e-9,
        "std_msgs/Float64 data: got {}, want {want}",
        m.f64("data")
    );
    // Polling goes on, with the same values.
    rig.sub.forget_backlog();
    let m = rig.wait_topic("drive1/state").await;
    assert_sample(&m, &u1);

    // Both units are in diagnostics, answering, without a single error.
    let d = rig
        .diag("both units answering", |m| {
            entry_connected(m, "drive/unit1") == Some(true)
                && entry_connected(m, "drive/unit2") == Some(true)
                && entry(m, "drive/unit1", "frames").and_then(|v| v.as_u64()) > Some(0)
                && entry(m, "drive/unit2", "frames").and_then(|v| v.as_u64()) > Some(0)
        })
        .await;
    for unit in ["drive/unit1", "drive/unit2"] {
        assert_eq!(entry_u64(&d, unit, "errors"), 0, "{unit}: {d:?}");
    }
    assert_eq!(entry_connected(&d, "drive"), Some(true), "the port: {d:?}");
    assert!(rig.daemon.is_running());
}

// ---------------------------------------------------------------------------------------
// pymodbus: writing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_clamped_scaled_and_the_pymodbus_slave_receives_the_checked_raw_value() {
    if !require(Peer::Pymodbus) {
        return;
    }
    let _t = TIMING.read().await;
    let mut bank = Bank::default();
    bank.set(1, 'h', 0, &[0; 16]).set(2, 'h', 20, &[0, 0]);
    let readback = [
        reg("speed_setpoint", 1, "holding", 10, Raw::I16(0)).scaled(0.1, 0.0),
        reg("gain", 2, "holding", 20, Raw::F32(0.0)).little(),
    ];
    let body = format!(
        "{}{}",
        map_stream("drive/setpoints", 10.0, &readback),
        r#"  [[devices.commands]]
  actuator = "drive/speed"
  type = "std_msgs/Float64"
  writes = [{ field = "data", unit = 1, address = 10, format = "i16", scale = 0.1 }]
  limits = { data = [-300.0, 300.0] }
  out_of_range = "clamp"
  timeout_ms = 60000
  safe = { data = 0.0 }
  [[devices.commands]]
  actuator = "drive/torque"
  type = "std_msgs/Float64"
  writes = [{ field = "data", unit = 1, address = 11, format = "i16", scale = 0.01 }]
  limits = { data = [-1000.0, 1000.0] }
  out_of_range = "clamp"
  timeout_ms = 60000
  safe = { data = 0.0 }
  [[devices.commands]]
  actuator = "drive/gain"
  type = "std_msgs/Float64"
  writes = [{ field = "data", unit = 2, address = 20, format = "f32", word_order = "little" }]
  limits = { data = [0.0, 10.0] }
  out_of_range = "reject"
  timeout_ms = 60000
  safe = { data = 1.0 }
"#
    );
    let mut rig = Rig::start(&bank, &body).await;
    let f32_little = |v: f32| vec![(v.to_bits() & 0xFFFF) as u16, (v.to_bits() >> 16) as u16];

    // The device connected: every actuator got its safe value.
    rig.slave
        .wait_write(0, "the speed's safe value", |w| {
            *w == Write {
                unit: 1,
                fc: 6,
                address: 10,
                values: vec![0],
            }
        })
        .await;
    rig.slave
        .wait_write(0, "the torque's safe value", |w| {
            *w == Write {
                unit: 1,
                fc: 6,
                address: 11,
                values: vec![0],
            }
        })
        .await;
    rig.slave
        .wait_write(
            0,
            "the gain's safe value (1.0 as a little-endian f32)",
            |w| {
                *w == Write {
                    unit: 2,
                    fc: 16,
                    address: 20,
                    values: f32_little(1.0),
                }
            },
        )
        .await;
    rig.wait_online().await;

    // 500 is clamped to 300, scaled by 1/0.1: raw 3000 at address 10 of unit 1.
    let mark = rig.slave.mark();
    let ack = rig
        .command("drive/speed", 1, serde_json::json!(500.0))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        ack["applied"]["data"], 300.0,
        "the ack shows the clamped value: {ack}"
    );
    let (_, _, w) = rig
        .slave
        .wait_write(mark, "the clamped speed", |w| w.address == 10)
        .await;
    assert_eq!(
        w,
        Write {
            unit: 1,
            fc: 6,
            address: 10,
            values: vec![3000]
        }
    );

    // Negative: -1000 is clamped to -300, raw -3000 as a two's-complement word.
    let mark = rig.slave.mark();
    let ack = rig
        .command("drive/speed", 2, serde_json::json!(-1000.0))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["applied"]["data"], -300.0, "{ack}");
    let (_, _, w) = rig
        .slave
        .wait_write(mark, "the negative clamped speed", |w| w.address == 10)
        .await;
    assert_eq!(
        w,
        Write {
            unit: 1,
            fc: 6,
            address: 10,
            values: vec![i16_word(-3000)]
        }
    );

    // The slave holds what was written, and botbus reads it back scaled.
    rig.sub.forget_backlog();
    let topic = rig.topic("drive/setpoints");
    rig.sub
        .wait_for("the speed setpoint read back as -300", |m| {
            m.topic == topic && m.opt("speed_setpoint").and_then(|v| v.as_f64()) == Some(-300.0)
        })
        .await;

    // 500 is within the torque's limits but 50000 does not fit an i16: refused, not written.
    let mark = rig.slave.mark();
    let ack = rig
        .command("drive/torque", 3, serde_json::json!(500.0))
        .await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["applied"], serde_json::Value::Null, "{ack}");
    let error = ack["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("range"),
        "the error names the register range: {ack}"
    );
    // A value that fits goes through (so the refusal was about the range, not the actuator).
    let ack = rig
        .command("drive/torque", 4, serde_json::json!(-12.34))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (_, _, w) = rig
        .slave
        .wait_write(mark, "the torque write", |w| w.address == 11)
        .await;
    assert_eq!(
        w,
        Write {
            unit: 1,
            fc: 6,
            address: 11,
            values: vec![i16_word(-1234)]
        },
        "the refused torque must never reach the slave"
    );

    // A 32-bit float, low word first, to unit 2: one multi-register write.
    let mark = rig.slave.mark();
    let ack = rig.command("drive/gain", 5, serde_json::json!(2.7)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (_, _, w) = rig
        .slave
        .wait_write(mark, "the gain write", |w| w.unit == 2)
        .await;
    assert_eq!(
        w,
        Write {
            unit: 2,
            fc: 16,
            address: 20,
            values: f32_little(2.7)
        }
    );
    rig.sub
        .wait_for("the gain read back as 2.7", |m| {
            m.topic == topic && m.opt("gain").and_then(|v| v.as_f64()) == Some(2.7)
        })
        .await;
    // Nothing else was written meanwhile (no stray safe value, no duplicate).
    assert_eq!(
        rig.slave.writes_since(mark).len(),
        1,
        "{:?}",
        rig.slave.writes_since(mark)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safe_value_reaches_the_pymodbus_slave_on_deadman_and_on_sigterm() {
    if !require(Peer::Pymodbus) {
        return;
    }
    let _t = TIMING.read().await;
    let mut bank = Bank::default();
    bank.set(1, 'h', 0, &[0; 16]).set(1, 'c', 0, &[0; 16]);
    let body = r#"  [[devices.commands]]
  actuator = "drive/speed"
  type = "std_msgs/Float64"
  writes = [{ field = "data", unit = 1, address = 10, format = "i16", scale = 0.1 }]
  limits = { data = [-300.0, 300.0] }
  out_of_range = "clamp"
  timeout_ms = 500
  safe = { data = 0.0 }
  [[devices.commands]]
  actuator = "drive/brake"
  type = "std_msgs/Bool"
  writes = [{ field = "data", unit = 1, kind = "coil", address = 3 }]
  timeout_ms = 60000
  safe = { data = true }
"#;
    let mut rig = Rig::start(&bank, body).await;
    let speed = |v: i16| Write {
        unit: 1,
        fc: 6,
        address: 10,
        values: vec![i16_word(v)],
    };
    let brake = |on: bool| Write {
        unit: 1,
        fc: 5,
        address: 3,
        values: vec![on as u16],
    };
    rig.slave
        .wait_write(0, "the speed's connect-time safe value", |w| *w == speed(0))
        .await;
    rig.slave
        .wait_write(0, "the brake's connect-time safe value", |w| {
            *w == brake(true)
        })
        .await;
    rig.wait_online().await;

    // A speed, then silence: after timeout_ms the slave gets the safe raw value again.
    let mark = rig.slave.mark();
    let ack = rig
        .command("drive/speed", 1, serde_json::json!(100.0))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (i, written, _) = rig
        .slave
        .wait_write(mark, "the speed 100 (raw 1000)", |w| *w == speed(1000))
        .await;
    let (_, safed, w) = rig
        .slave
        .wait_write(i + 1, "the deadman's safe value", |w| w.address == 10)
        .await;
    assert_eq!(w, speed(0), "the deadman writes the safe raw value");
    let after = safed - written;
    assert!(
        after >= Duration::from_millis(350) && after <= Duration::from_secs(3),
        "the deadman wrote {after:?} after the command's write; timeout_ms is 500"
    );
    // Once: the deadman does not keep rewriting the safe value.
    let mark = rig.slave.mark();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        rig.slave.writes_since(mark),
        vec![],
        "writes after the deadman"
    );

    // The coil actuator: release the brake, then SIGTERM engages it again.
    let ack = rig
        .command("drive/brake", 2, serde_json::json!(false))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.slave
        .wait_write(mark, "the brake released (coil off)", |w| {
            *w == brake(false)
        })
        .await;
    let mark = rig.slave.mark();
    rig.daemon.signal(Signal::SIGTERM);
    let status = rig.daemon.wait_exit(DEADLINE).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the daemon did not exit 0 on SIGTERM: {status:?}"
    );
    rig.slave
        .wait_write(mark, "the brake's safe value on SIGTERM", |w| {
            *w == brake(true)
        })
        .await;
    rig.slave
        .wait_write(mark, "the speed's safe value on SIGTERM", |w| {
            *w == speed(0)
        })
        .await;
}

// ---------------------------------------------------------------------------------------
// pymodbus: errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_response_is_counted_for_its_unit_which_stays_connected() {
    if !require(Peer::Pymodbus) {
        return;
    }
    let _t = TIMING.read().await;
    let good = [reg("speed", 1, "holding", 0, Raw::I16(-42))];
    let mut bank = Bank::default();
    bank.load(&good);
    // Holding register 500 does not exist on the slave: pymodbus answers IllegalDataAddress.
    let bad = [reg("missing", 1, "holding", 500, Raw::U16(0))];
    let body = format!(
        "{}{}",
        map_stream("drive/good", 10.0, &good),
        map_stream("drive/bad", 10.0, &bad)
    );
    let mut rig = Rig::start(&bank, &body).await;

    let first = rig
        .diag("an exception counted for unit 1", |m| {
            entry(m, "drive/unit1", "errors").and_then(|v| v.as_u64()) >= Some(1)
                && entry_error(m, "drive/unit1").starts_with("exception:")
        })
        .await;
    let e1 = entry_u64(&first, "drive/unit1", "errors");
    let f1 = entry_u64(&first, "drive/unit1", "frames");
    let later = rig
        .diag("more exceptions counted", |m| {
            entry(m, "drive/unit1", "errors").and_then(|v| v.as_u64()) >= Some(e1 + 3)
        })
        .await;
    let error = entry_error(&later, "drive/unit1");
    assert!(
        error.starts_with("exception: the unit refused:")
            && error.to_lowercase().contains("illegal data address"),
        "last_error: {error:?}"
    );
    assert_eq!(
        entry_connected(&later, "drive/unit1"),
        Some(true),
        "a unit that answers with an exception is alive: {later:?}"
    );
    assert!(
        entry_u64(&later, "drive/unit1", "frames") > f1,
        "the good stream's answers keep being counted: {later:?}"
    );
    // The good stream keeps publishing; the refused one publishes nothing.
    rig.sub.forget_backlog();
    let m = rig.wait_topic("drive/good").await;
    assert_sample(&m, &good);
    let bad_topic = rig.topic("drive/bad");
    assert!(
        rig.sub.seen_on(&bad_topic).is_empty(),
        "a stream whose read was refused must not publish: {:?}",
        rig.sub.seen_on(&bad_topic)
    );
}

/// Two units, one stream each; unit 1 also drives an actuator.
fn two_unit_rig_body(poll_hz: f64, with_actuator: bool) -> (Bank, Vec<Reg>, Vec<Reg>, String) {
    let u1 = vec![
        reg("speed", 1, "holding", 0, Raw::I16(-5)),
        reg("current", 1, "input", 0, Raw::U16(250)).scaled(0.01, 0.0),
    ];
    let u2 = vec![
        reg("voltage", 2, "input", 0, Raw::U16(481)).scaled(0.1, 0.0),
        reg("soc", 2, "holding", 0, Raw::U16(77)),
    ];
    let mut bank = Bank::default();
    bank.load(&u1).load(&u2).set(1, 'h', 10, &[0]);
    let mut body = format!(
        "{}{}",
        map_stream("drive1/state", poll_hz, &u1),
        map_stream("drive2/state", poll_hz, &u2)
    );
    if with_actuator {
        body.push_str(
            r#"  [[devices.commands]]
  actuator = "drive/speed"
  type = "std_msgs/Float64"
  writes = [{ field = "data", unit = 1, address = 10, format = "i16", scale = 0.1 }]
  limits = { data = [-300.0, 300.0] }
  out_of_range = "clamp"
  timeout_ms = 60000
  safe = { data = 0.0 }
"#,
        );
    }
    (bank, u1, u2, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_stops_answering_is_marked_disconnected_while_the_other_keeps_streaming() {
    if !require(Peer::Pymodbus) {
        return;
    }
    let _t = TIMING.read().await;
    let (bank, u1, u2, body) = two_unit_rig_body(10.0, false);
    let mut rig = Rig::start(&bank, &body).await;
    let (t1, t2) = (rig.topic("drive1/state"), rig.topic("drive2/state"));
    assert_sample(&rig.sub.wait_topic(&t1).await, &u1);
    assert_sample(&rig.sub.wait_topic(&t2).await, &u2);

    rig.slave.control("mute 2").await;
    rig.sub.forget_backlog();
    let down = rig
        .diag("unit 2 disconnected", |m| {
            entry_connected(m, "drive/unit2") == Some(false)
        })
        .await;
    assert_eq!(
        entry_error(&down, "drive/unit2"),
        "timeout: no answer",
        "{down:?}"
    );
    assert!(entry_u64(&down, "drive/unit2", "errors") >= 3, "{down:?}");
    assert_eq!(
        entry_connected(&down, "drive/unit1"),
        Some(true),
        "{down:?}"
    );

    // Unit 1 keeps streaming while unit 2 is retried (and keeps timing out).
    rig.sub.forget_backlog();
    let window = Duration::from_secs(3);
    let got = rig.sub.drain_for(window).await;
    let n1 = got.iter().filter(|m| m.topic == t1).count();
    let n2 = got.iter().filter(|m| m.topic == t2).count();
    let rate = n1 as f64 / window.as_secs_f64();
    eprintln!(
        "unit 1 with unit 2 silent: {n1} samples in {window:?} = {rate:.1} Hz (polled at 10 Hz)"
    );
    assert!(
        rate >= 5.0,
        "unit 1 must keep streaming: {rate:.1} Hz at poll_hz 10"
    );
    assert_eq!(n2, 0, "a silent unit publishes nothing");
    for m in got.iter().filter(|m| m.topic.ends_with("/diagnostics")) {
        assert_eq!(entry_connected(m, "drive/unit1"), Some(true), "{m:?}");
        assert_eq!(entry_connected(m, "drive/unit2"), Some(false), "{m:?}");
    }
    if let Some(m) = got.iter().rfind(|m| m.topic == t1) {
        assert_sample(m, &u1);
    }

    // It answers again: the backoff retry finds it, and its stream resumes.
    rig.slave.control("unmute 2").await;
    rig.sub.forget_backlog();
    rig.diag("unit 2 connected again", |m| {
        entry_connected(m, "drive/unit2") == Some(true)
    })
    .await;
    assert_sample(&rig.sub.wait_topic(&t2).await, &u2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_unit_does_not_put_the_other_units_actuator_in_its_safe_state() {
    if !require(Peer::Pymodbus) {
        return;
    }
    let _t = TIMING.read().await;
    let (bank, u1, _u2, body) = two_unit_rig_body(10.0, true);
    let mut rig = Rig::start(&bank, &body).await;
    let setpoint = |v: i16| Write {
        unit: 1,
        fc: 6,
        address: 10,
        values: vec![i16_word(v)],
    };
    rig.slave
        .wait_write(0, "the connect-time safe value", |w| *w == setpoint(0))
        .await;
    rig.wait_online().await;
    let t1 = rig.topic("drive1/state");
    assert_sample(&rig.sub.wait_topic(&t1).await, &u1);

    let mark = rig.slave.mark();
    let ack = rig
        .command("drive/speed", 1, serde_json::json!(150.0))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.slave
        .wait_write(mark, "the speed 150 (raw 1500)", |w| *w == setpoint(1500))
        .await;
    let mark = rig.slave.mark();

    // Unit 2 (a sensor) goes silent; unit 1's drive is fine and its deadman is 60 s away.
    rig.slave.control("mute 2").await;
    rig.sub.forget_backlog();
    rig.diag("unit 2 disconnected", |m| {
        entry_connected(m, "drive/unit2") == Some(false)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rig.slave.writes_since(mark),
        vec![],
        "unit 1's setpoint must stand while an unrelated unit on the bus times out; \
         the slave received these writes instead"
    );
}

/// The index of the first line from `from` on that reads `text` (already printed).
fn line_at(slave: &PySlave, from: usize, text: &str) -> usize {
    slave.lines.all()[from..]
        .iter()
        .position(|(_, l)| l == text)
        .map(|p| from + p)
        .unwrap_or_else(|| panic!("pymodbus did not print {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_value_the_unit_missed_is_written_once_it_answers_again() {
    if !require(Peer::Pymodbus) {
        return;
    }
    let _t = TIMING.read().await;
    let mut bank = Bank::default();
    bank.set(1, 'h', 0, &[0; 16]);
    // No stream: nothing but the actuator's writes talks to the unit.
    let body = r#"  [[devices.commands]]
  actuator = "drive/speed"
  type = "std_msgs/Float64"
  writes = [{ field = "data", unit = 1, address = 10, format = "i16", scale = 0.1 }]
  limits = { data = [-300.0, 300.0] }
  timeout_ms = 1000
  safe = { data = 0.0 }
"#;
    let mut rig = Rig::start(&bank, body).await;
    let speed = |v: i16| Write {
        unit: 1,
        fc: 6,
        address: 10,
        values: vec![i16_word(v)],
    };
    rig.slave
        .wait_write(0, "the connect-time safe value", |w| *w == speed(0))
        .await;
    rig.wait_online().await;

    let mark = rig.slave.mark();
    let ack = rig
        .command("drive/speed", 1, serde_json::json!(100.0))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.slave
        .wait_write(mark, "the speed 100 (raw 1000)", |w| *w == speed(1000))
        .await;

    // The unit stops answering before the deadman is due (timeout_ms 1000). Muting a unit
    // leaves the port open, so the daemon never sees the device reconnect: its
    // "device connected" safe write cannot be what brings the safe value back here.
    let mark = rig.slave.mark();
    rig.slave.control("mute 1").await;
    let muted_line = line_at(&rig.slave, mark, "MUTED 1");
    // The deadman's safe write reaches the slave, whose answer is never sent: for the
    // daemon the write timed out.
    let (i, missed_at, _) = rig
        .slave
        .wait_write(mark, "the deadman's safe value, unanswered", |w| {
            *w == speed(0)
        })
        .await;
    assert!(
        i > muted_line,
        "the deadman fired before the unit was muted, so its write was answered: the test \
         needs the unit silent by then"
    );

    // Silent for a while longer. Then it answers again, unmuted in a lull between two of
    // the daemon's attempts (just after the slave heard one, whose answer was already
    // dropped), so no write in flight can be answered and go unseen.
    tokio::time::sleep_until((missed_at + Duration::from_millis(1200)).into()).await;
    let lull = rig.slave.mark();
    eventually(Duration::from_millis(2500), || {
        rig.slave.writes_since(lull).contains(&speed(0))
    })
    .await;
    let unanswered = rig.slave.writes_since(i + 1);
    let mark = rig.slave.mark();
    rig.slave.control("unmute 1").await;
    let back = Instant::now();
    let unmuted_line = line_at(&rig.slave, mark, "UNMUTED 1");

    // No further command: the daemon writes the safe value again by itself.
    let confirmed = eventually(Duration::from_secs(5), || {
        rig.slave.writes_since(unmuted_line + 1).contains(&speed(0))
    })
    .await;
    println!(
        "safe write missed by a silent unit: {} more attempt(s) while it was silent; {}",
        unanswered.len(),
        if confirmed {
            format!(
                "rewritten {} ms after it answered again",
                back.elapsed().as_millis()
            )
        } else {
            "not rewritten within 5 s of it answering again".to_string()
        }
    );
    assert!(
        confirmed,
        "the safe value the unit missed (a deadman write that timed out) was not written \
         within 5 s of the unit answering again; writes since: {:?}",
        rig.slave.writes_since(unmuted_line + 1)
    );
    // Confirmed, so the retries stop (they back off to at most 2 s).
    let (done, _, _) = rig
        .slave
        .wait_write(unmuted_line + 1, "the rewritten safe value", |w| {
            *w == speed(0)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rig.slave.writes_since(done + 1),
        vec![],
        "writes after the unit confirmed the safe value"
    );
}

// ---------------------------------------------------------------------------------------
// pymodbus: rate

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_units_of_ten_registers_polled_at_20_hz_miss_no_polls() {
    if !require(Peer::Pymodbus) {
        return;
    }
    let _t = TIMING.write().await;
    let ten = |unit: u8| -> Vec<Reg> {
        use Raw::*;
        let k = unit as i32;
        vec![
            reg("a_u16", unit, "holding", 0, U16(100 * k as u16)),
            reg("b_i16", unit, "holding", 1, I16(-7 * k as i16)),
            reg("c_u32", unit, "holding", 2, U32(100_000 * k as u32)),
            reg("d_i32", unit, "holding", 4, I32(-100_000 * k)).little(),
            reg("e_f32", unit, "holding", 6, F32(1.5 * k as f32)),
            reg("f_current", unit, "input", 0, U16(1234)).scaled(0.01, 0.0),
            reg("g_temp", unit, "input", 1, I16(250 + k as i16)).scaled(0.1, 0.0),
            reg("h_volts", unit, "input", 2, U16(480)).scaled(0.1, 0.0),
            reg("i_fault", unit, "coil", 0, Bool(unit == 1)),
            reg("j_ready", unit, "discrete", 0, Bool(true)),
        ]
    };
    let (u1, u2) = (ten(1), ten(2));
    let mut bank = Bank::default();
    bank.load(&u1).load(&u2);
    let body = format!(
        "{}{}",
        map_stream("unit1/state", 20.0, &u1),
        map_stream("unit2/state", 20.0, &u2)
    );
    let mut rig = Rig::start(&bank, &body).await;
    let (t1, t2) = (rig.topic("unit1/state"), rig.topic("unit2/state"));
    assert_sample(&rig.sub.wait_topic(&t1).await, &u1);
    assert_sample(&rig.sub.wait_topic(&t2).await, &u2);

    // A 5 s window, judged by the diagnostics reports inside it. Other processes on a
    // 2-core machine can stall the daemon past a 50 ms slot, so a window with missed polls
    // is measured once more; a daemon that misses polls on its own misses them in both.
    let diag_topic = rig.topic("diagnostics");
    let mut windows = Vec::new();
    for _ in 0..2 {
        rig.sub.forget_backlog();
        let start = Instant::now();
        let got = rig.sub.drain_for(Duration::from_secs(5)).await;
        let secs = start.elapsed().as_secs_f64();
        let r1 = got.iter().filter(|m| m.topic == t1).count() as f64 / secs;
        let r2 = got.iter().filter(|m| m.topic == t2).count() as f64 / secs;
        let diags: Vec<&Msg> = got.iter().filter(|m| m.topic == diag_topic).collect();
        assert!(
            diags.len() >= 5,
            "diagnostics every 0.5 s: {} in {secs:.1} s",
            diags.len()
        );
        let missed = |m: &Msg| {
            entry(m, "drive", "missed_polls")
                .and_then(|v| v.as_u64())
                .unwrap_or_else(|| panic!("the port's entry has no missed_polls: {m:?}"))
        };
        let (first, last) = (diags[0], diags[diags.len() - 1]);
        let missed_in_window = missed(last) - missed(first);
        for unit in ["drive/unit1", "drive/unit2"] {
            assert_eq!(entry_u64(last, unit, "errors"), 0, "{unit}: {last:?}");
        }
        if let Some(m) = got.iter().rfind(|m| m.topic == t2) {
            assert_sample(m, &u2);
        }
        // How long polling unit 1 takes: each sample is stamped when its poll starts, and
        // unit 2 is polled right after unit 1.
        let stamp = |m: &Msg| m.f64("header.stamp.sec") + m.f64("header.stamp.nanosec") * 1e-9;
        let mut gaps: Vec<f64> = Vec::new();
        let mut last1 = None;
        for m in &got {
            if m.topic == t1 {
                last1 = Some(stamp(m));
            } else if m.topic == t2 {
                if let Some(s1) = last1.take() {
                    gaps.push((stamp(m) - s1) * 1000.0);
                }
            }
        }
        gaps.sort_by(f64::total_cmp);
        let pct = |p: usize| gaps.get(gaps.len() * p / 100).copied().unwrap_or(f64::NAN);
        let summary = format!(
            "unit 1 {r1:.1} Hz, unit 2 {r2:.1} Hz over {secs:.1} s; missed polls {missed_in_window} \
             in the window ({} since start); polling unit 1 (4 requests) took median {:.1} ms, \
             p95 {:.1} ms, max {:.1} ms",
            missed(last),
            pct(50),
            pct(95),
            gaps.last().copied().unwrap_or(f64::NAN)
        );
        eprintln!("2 units x 10 registers at poll_hz 20: {summary}");
        assert!(r1 <= 22.0 && r2 <= 22.0, "faster than polled: {summary}");
        let good = missed_in_window == 0 && r1 >= 15.0 && r2 >= 15.0;
        windows.push(summary);
        if good {
            return;
        }
    }
    panic!(
        "at 20 Hz, no poll may miss its deadline and telemetry must come at >= 15 Hz; \
         two windows:\n  {}",
        windows.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// botbus sim

/// A daemon against `botbus sim` for the same robot file.
struct SimRig {
    rig: RobotRig,
    sim: Sim,
    _dir: TempDir,
}

deref_rig!(SimRig);

impl SimRig {
    /// `toml` gets `@ID@` and `@DIR@` replaced; `ready` is the sim's line to wait for.
    async fn start(toml: &str, ready: &str) -> SimRig {
        let dir = temp_dir("botbus-modbus-sim-");
        let id = unique("modbus-sim");
        let toml = toml
            .replace("@ID@", &id)
            .replace("@DIR@", &dir.path().display().to_string());
        let robot = write_file(dir.path(), "robot.toml", &toml);
        let sim = Sim::start(&robot);
        let ready = ready.replace("@DIR@", &dir.path().display().to_string());
        sim.lines
            .wait(0, &format!("botbus sim to print `{ready}`"), |l| {
                l.contains(&ready)
            })
            .await;
        SimRig {
            rig: RobotRig::start(&id, &toml).await,
            sim,
            _dir: dir,
        }
    }

    /// Waits for a sample on `sensor` whose `field` satisfies `pred`.
    async fn wait_value(
        &mut self,
        sensor: &str,
        field: &str,
        what: &str,
        pred: impl Fn(f64) -> bool,
    ) -> Msg {
        self.sample(sensor, what, |m| {
            m.opt(field).and_then(|v| v.as_f64()).is_some_and(&pred)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_robots_simulated_motor_streams_and_its_speed_follows_a_command() {
    let _t = TIMING.read().await;
    // robots/demo.toml as shipped, with its fixed paths and id made unique to this test.
    let demo = demo_robot();
    assert!(
        demo.contains("protocol = \"modbus\""),
        "robots/demo.toml has a Modbus device"
    );
    let mut toml = demo
        .replace("/tmp/botbus-demo", "@DIR@")
        .replace("id = \"demo\"", "id = \"@ID@\"");
    // Files it names by relative path (a DBC file, say) stay where they are.
    let robots = repo_path("robots");
    for f in std::fs::read_dir(&robots).expect("list robots/").flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".toml") {
            let absolute = robots.join(&name).display().to_string();
            toml = toml.replace(&format!("\"{name}\""), &format!("\"{absolute}\""));
        }
    }
    let mut rig = SimRig::start(&toml, "motor (modbus): ").await;
    rig.sim
        .lines
        .wait(0, "the motor linked to its robot-file path", |l| {
            l.starts_with("motor (modbus): ") && l.contains(" <- ") && l.ends_with("/motor")
        })
        .await;

    let m = rig
        .wait_value(
            "motor/state",
            "speed_rpm",
            "the motor standing still",
            |v| v == 0.0,
        )
        .await;
    let current = m.f64("current_a");
    let temp = m.f64("temperature_c");
    assert!(
        (current - 0.4).abs() < 0.011,
        "current_a at standstill: {m:?}"
    );
    assert!((33.9..=36.1).contains(&temp), "temperature_c: {m:?}");
    rig.wait_online().await;

    let ack = rig
        .command("motor/speed", 1, serde_json::json!(1500.0))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["applied"]["data"], 1500.0, "{ack}");
    rig.sim
        .lines
        .wait(0, "the simulator to receive the setpoint", |l| {
            l == "motor received: unit 1 wrote register 10: 1500"
        })
        .await;
    let m = rig
        .wait_value(
            "motor/state",
            "speed_rpm",
            "the speed moving toward 1500",
            |v| (1000.0..=1500.0).contains(&v),
        )
        .await;
    assert!(m.f64("current_a") > 2.0, "current follows the speed: {m:?}");
    // The demo's deadman (2 s) brings the setpoint, and then the speed, back to 0.
    rig.wait_value(
        "motor/state",
        "speed_rpm",
        "the deadman stopping the motor",
        |v| v.abs() < 50.0,
    )
    .await;
    let d = rig
        .sub
        .wait_for("diagnostics with the motor's unit", |m| {
            m.topic.ends_with("/diagnostics") && m.diag_device("motor/unit1").is_some()
        })
        .await;
    assert_eq!(entry_connected(&d, "motor/unit1"), Some(true), "{d:?}");
    assert!(rig.daemon.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botbus_sim_serves_modbus_tcp_and_the_daemon_reads_and_writes_it() {
    let _t = TIMING.read().await;
    let port = free_port();
    let toml = format!(
        r#"id = "@ID@"

[[devices]]
name = "pump"
protocol = "modbus"
tcp = "127.0.0.1:{port}"
timeout_ms = 500
  [[devices.streams]]
  sensor = "pump/state"
  type = "map"
  poll_hz = 10
  registers = [
    {{ name = "speed", unit = 3, kind = "holding", address = 0, format = "i16", scale = 0.1 }},
    {{ name = "current", unit = 3, kind = "input", address = 0, format = "u16", scale = 0.01 }},
    {{ name = "temperature", unit = 3, kind = "input", address = 1, format = "i32", word_order = "little", scale = 0.001 }},
  ]
  [[devices.commands]]
  actuator = "pump/speed"
  type = "std_msgs/Float64"
  writes = [{{ field = "data", unit = 3, address = 10, format = "i16", scale = 0.1 }}]
  limits = {{ data = [-500.0, 500.0] }}
  out_of_range = "clamp"
  timeout_ms = 60000
  safe = {{ data = 0.0 }}
"#
    );
    let mut rig = SimRig::start(&toml, &format!("pump (modbus): tcp://127.0.0.1:{port}")).await;
    let m = rig
        .wait_value("pump/state", "speed", "the pump standing still", |v| {
            v == 0.0
        })
        .await;
    assert!((m.f64("current") - 0.4).abs() < 0.011, "{m:?}");
    assert!((33.9..=36.1).contains(&m.f64("temperature")), "{m:?}");
    rig.wait_online().await;

    let ack = rig.command("pump/speed", 1, serde_json::json!(120.5)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    rig.sim
        .lines
        .wait(0, "the simulator to receive raw 1205", |l| {
            l == "pump received: unit 3 wrote register 10: 1205"
        })
        .await;
    rig.wait_value("pump/state", "speed", "the speed reaching 120.5", |v| {
        (v - 120.5).abs() < 0.5
    })
    .await;
    let d = rig
        .sub
        .wait_for("diagnostics with the pump's unit", |m| {
            m.topic.ends_with("/diagnostics") && m.diag_device("pump/unit3").is_some()
        })
        .await;
    assert_eq!(entry_connected(&d, "pump/unit3"), Some(true), "{d:?}");
    assert_eq!(entry_u64(&d, "pump/unit3", "errors"), 0, "{d:?}");
    assert!(rig.daemon.is_running());
}
