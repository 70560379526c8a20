//! Health counters: each device's and the bus's, counted where they happen and published
//! as `robot/<id>/diagnostics`.

use crate::bus::BusStats;
use crate::messages::{Header, Time};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A device's counters, shared between its driver task and the diagnostics publisher.
#[derive(Debug)]
pub struct DeviceDiag {
    pub name: String,
    connected: AtomicBool,
    frames: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Polls that missed their deadline, for polled devices (Modbus).
    missed: Option<AtomicU64>,
    /// Protocol-specific counts (a CAN bus's error frames and bus-offs), by name.
    counters: Mutex<BTreeMap<&'static str, u64>>,
    /// Errors since the last log line, so a noisy device logs a summary, not a flood.
    log_gate: Mutex<(Instant, u64)>,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl DeviceDiag {
    pub fn new(name: impl Into<String>) -> Arc<DeviceDiag> {
        Arc::new(Self::build(name.into(), None))
    }

    /// A device polled on a schedule, which also reports `missed_polls`.
    pub fn polled(name: impl Into<String>) -> Arc<DeviceDiag> {
        Arc::new(Self::build(name.into(), Some(AtomicU64::new(0))))
    }

    fn build(name: String, missed: Option<AtomicU64>) -> DeviceDiag {
        DeviceDiag {
            name,
            connected: AtomicBool::new(false),
            frames: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            missed,
            counters: Mutex::new(BTreeMap::new()),
            log_gate: Mutex::new((Instant::now() - LOG_EVERY, 0)),
        }
    }

    /// A poll that missed its deadline (and was skipped, not queued).
    pub fn missed(&self) {
        if let Some(m) = &self.missed {
            m.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn missed_polls(&self) -> Option<u64> {
        self.missed.as_ref().map(|m| m.load(Ordering::Relaxed))
    }

    /// Counts a protocol's error: under `errors`, and under each protocol-specific counter
    /// it names (a CAN bus-off, a Dynamixel CRC error).
    pub fn protocol_error(&self, e: &crate::protocols::ProtocolError) {
        for counter in e.counters() {
            self.count(counter);
        }
        self.error(e.to_string());
    }

    /// Adds one to a protocol-specific counter, reported under `counters`.
    pub fn count(&self, counter: &'static str) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(counter)
            .or_default() += 1;
    }

    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the link state; true when it changed, so callers log transitions only.
    pub fn set_connected(&self, up: bool) -> bool {
        self.connected.swap(up, Ordering::Relaxed) != up
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a bad frame or link problem and logs at most one line per few seconds.
    pub fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut gate = self.log_gate.lock().unwrap_or_else(|e| e.into_inner());
        gate.1 += 1;
        if gate.0.elapsed() >= LOG_EVERY {
            if gate.1 > 1 {
                tracing::warn!(device = %self.name, errors = gate.1, "{message} (and {} more errors since the last report)", gate.1 - 1);
            } else {
                tracing::warn!(device = %self.name, "{message}");
            }
            *gate = (Instant::now(), 0);
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DeviceReport {
    pub name: String,
    pub connected: bool,
    pub frames: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Extension, for polled devices: polls that missed their deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed_polls: Option<u64>,
    /// Extension: protocol-specific counts (`error_frames` and `bus_off` on a CAN bus),
    /// left out while all are zero.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MqttReport {
    pub connected: bool,
    pub reconnects: u64,
    pub spooled: u64,
    pub dropped: u64,
    /// Extension: QoS 0 messages not sent (no broker, or a full queue).
    pub dropped_qos0: u64,
}

/// The `robot/<id>/diagnostics` payload.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DiagnosticsReport {
    pub header: Header,
    pub devices: Vec<DeviceReport>,
    pub mqtt: MqttReport,
}

pub fn report(
    seq: u64,
    robot_id: &str,
    devices: &[Arc<DeviceDiag>],
    bus: &BusStats,
) -> DiagnosticsReport {
    DiagnosticsReport {
        header: Header {
            seq,
            stamp: Time::now(),
            frame_id: robot_id.to_string(),
        },
        devices: devices
            .iter()
            .map(|d| DeviceReport {
                name: d.name.clone(),
                connected: d.is_connected(),
                frames: d.frames(),
                errors: d.errors(),
                last_error: d.last_error(),
                missed_polls: d.missed_polls(),
                counters: d.counters(),
            })
            .collect(),
        mqtt: MqttReport {
            connected: bus.connected.load(Ordering::Relaxed),
            reconnects: BusStats::get(&bus.reconnects),
            spooled: BusStats::get(&bus.spooled),
            dropped: BusStats::get(&bus.dropped),
            dropped_qos0: BusStats::get(&bus.dropped_qos0),
        },
    }
}
