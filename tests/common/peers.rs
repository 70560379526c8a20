//! Interop peers: the independent implementations some tests check botbus against
//! (pymodbus, cantools, paho-mqtt and the `mcap` reader in Python; the
//! `@foxglove/ws-protocol` client in Node.js; Foxglove Studio in headless chromium). A
//! test that needs one starts with `if !peers::require(Peer::Pymodbus) { return; }`. When
//! the peer is missing, the test FAILS under CI (`CI` set, and not `false` or `0`: DESIGN.md
//! §8, a missing interop peer in CI is a failure, not a silent skip), and elsewhere says
//! loudly that it was skipped.
//! `BOTBUS_TEST_PYTHON` names the interpreter (default `python3`); every peer runs with it.

use super::util::{skip_banner, test_name};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

/// A peer a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// pymodbus 3.x with its simulator API (`SimDevice`), and pyserial.
    Pymodbus,
    /// cantools.
    Cantools,
    /// paho-mqtt 2.x (`CallbackAPIVersion.VERSION2`) and msgpack.
    Paho,
    /// The `mcap` reader from PyPI, with paho-mqtt and msgpack.
    Mcap,
    /// Node.js with `@foxglove/ws-protocol` and `ws` installed in tests/foxglove.
    WsProtocol,
    /// Foxglove Studio as a static site in tests/foxglove/app/dist (tests/foxglove/fetch-app),
    /// `chromium` on PATH (or `$CHROMIUM`) to show it, and Node.js with `ws` in
    /// tests/foxglove to drive chromium (tests/foxglove/screenshot.mjs).
    FoxgloveApp,
}

impl Peer {
    /// What must be importable.
    fn probe(self) -> &'static str {
        match self {
            Peer::Pymodbus => {
                "import serial; from pymodbus import FramerType; \
                 from pymodbus.server import ModbusSerialServer; \
                 from pymodbus.simulator import DataType, SimData, SimDevice"
            }
            Peer::Cantools => "import cantools",
            Peer::Paho => "import msgpack, paho.mqtt.client as m; m.CallbackAPIVersion.VERSION2",
            Peer::Mcap => {
                "import mcap.reader, msgpack, paho.mqtt.client as m; \
                 m.CallbackAPIVersion.VERSION2"
            }
            Peer::WsProtocol => "require('@foxglove/ws-protocol'); require('ws')",
            Peer::FoxgloveApp => {
                "require('ws'); \
                 const no = (why) => { console.error(why); process.exit(1); }; \
                 if (!require('fs').existsSync('app/dist/index.html')) \
                   no('tests/foxglove/app/dist/index.html is missing'); \
                 const c = process.env.CHROMIUM || 'chromium'; \
                 const r = require('child_process').spawnSync(c, ['--version']); \
                 if (r.error || r.status !== 0) \
                   no(`${c} --version failed: ${r.error || r.stderr}`);"
            }
        }
    }

    /// The program and arguments that succeed when the peer is there.
    fn probe_command(self) -> (String, Vec<String>) {
        match self {
            Peer::WsProtocol | Peer::FoxgloveApp => (
                "node".to_string(),
                vec!["-e".to_string(), self.probe().to_string()],
            ),
            _ => (python(), vec!["-c".to_string(), self.probe().to_string()]),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Peer::Pymodbus => "pymodbus >= 3.x (SimDevice API) and pyserial",
            Peer::Cantools => "cantools",
            Peer::Paho => "paho-mqtt 2.x and msgpack",
            Peer::Mcap => "the Python mcap reader, paho-mqtt 2.x and msgpack",
            Peer::WsProtocol => "Node.js with @foxglove/ws-protocol (tests/foxglove)",
            Peer::FoxgloveApp => {
                "Foxglove Studio (tests/foxglove/app/dist), chromium, and Node.js with ws \
                 (tests/foxglove)"
            }
        }
    }

    fn packages(self) -> &'static str {
        match self {
            Peer::Pymodbus => "pymodbus pyserial",
            Peer::Cantools => "cantools",
            Peer::Paho => "paho-mqtt msgpack",
            Peer::Mcap => "mcap paho-mqtt msgpack",
            Peer::WsProtocol | Peer::FoxgloveApp => "",
        }
    }

    /// How to install it.
    fn install(self) -> String {
        match self {
            Peer::WsProtocol => "install Node.js and run `npm ci` in tests/foxglove \
                                 (scripts/test does)"
                .to_string(),
            Peer::FoxgloveApp => "install chromium (Debian: apt-get install chromium), run \
                                  `npm ci` in tests/foxglove, then tests/foxglove/fetch-app \
                                  (scripts/test does)"
                .to_string(),
            _ => format!(
                "install it with: {} -m pip install {} (scripts/test does)",
                python(),
                self.packages()
            ),
        }
    }

    /// Why the peer cannot run here, or `None` when it can. Probed once per process.
    pub fn missing(self) -> Option<String> {
        static CACHE: Mutex<Option<HashMap<Peer, Option<String>>>> = Mutex::new(None);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get_or_insert_with(HashMap::new)
            .entry(self)
            .or_insert_with(|| {
                let (py, args) = self.probe_command();
                let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/foxglove");
                match Command::new(&py).args(&args).current_dir(dir).output() {
                    Err(e) => Some(format!("{py} cannot run: {e}")),
                    Ok(o) if !o.status.success() => Some(format!(
                        "{py} lacks {}: {}",
                        self.describe(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Ok(_) => None,
                }
            })
            .clone()
    }
}

/// The Python interpreter the peers run with: `BOTBUS_TEST_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("BOTBUS_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// Whether this is a CI run: `CI` set to anything but empty, `false` or `0`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// True when `peer` can run. When it cannot: panics under CI, naming the peer and how to
/// install it; elsewhere says loudly on stderr that the calling test was skipped and
/// returns false (the test then returns at once).
#[must_use = "return from the test when the peer is missing"]
pub fn require(peer: Peer) -> bool {
    let Some(why) = peer.missing() else {
        return true;
    };
    let test = test_name();
    let install = peer.install();
    if in_ci() {
        panic!(
            "{test} needs the interop peer {}, which is missing, and CI is set \
             (a missing interop peer fails in CI): {why}; {install}",
            peer.describe()
        );
    }
    skip_banner(
        &test,
        &format!(
            "the interop peer {} is missing: {why}\n{install}\n(under CI=true this test fails)",
            peer.describe()
        ),
    );
    false
}
