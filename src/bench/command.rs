//! The command path: Twist commands published by the fleet side at 50 Hz, timed until
//! the daemon writes their rendered line (`D <linear.x> <angular.z>`) on the device, and
//! until their ack comes back to the fleet side.

use super::stats::Latency;
use crate::bus::{BusHandle, Incoming, Outgoing, QoS};
use crate::fleet::Ack;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Commands a second.
pub const RATE_HZ: u32 = 50;
/// How long to wait for the last writes and acks.
const TAIL: Duration = Duration::from_secs(3);

/// What the command path measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CommandFigures {
    pub sent: u64,
    /// Commands whose line appeared on the device.
    pub written: u64,
    pub acked: u64,
    pub acked_ok: u64,
    /// Fleet publish → bytes on the device.
    pub to_device: Latency,
    /// Fleet publish → ack at the fleet.
    pub to_ack: Latency,
}

/// The command number `i` as Twist values, `linear.x` in (0, 1] and `angular.z` in
/// [0, 2], both multiples of 0.004 so they survive the template's 3 decimals; the safe
/// values (all 0) are never a command.
pub fn encode(i: u64) -> (f64, f64) {
    ((i % 250 + 1) as f64 * 0.004, (i / 250) as f64 * 0.004)
}

/// The command number of a line the daemon wrote, `D <x> <z>`.
pub fn decode(line: &str) -> Option<u64> {
    let mut parts = line.split_whitespace();
    (parts.next()? == "D").then_some(())?;
    let x: f64 = parts.next()?.parse().ok()?;
    let z: f64 = parts.next()?.parse().ok()?;
    let (xk, zk) = ((x * 250.0).round() as u64, (z * 250.0).round() as u64);
    (xk >= 1).then(|| zk * 250 + xk - 1)
}

/// The largest number of commands [`encode`] keeps apart within the Twist limits.
pub const MAX_COMMANDS: u64 = 250 * 501;

/// Sends `count` commands to `topic`; `device` yields the lines written on the device
/// with their arrival time, `others` the fleet side's other messages (acks among them).
pub async fn measure(
    bus: &BusHandle,
    topic: &str,
    ack_topic: &str,
    count: u64,
    device: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    others: &mut mpsc::UnboundedReceiver<Incoming>,
) -> CommandFigures {
    // Lines written before the commands (e.g. safe values at start) are not ours.
    while device.try_recv().is_ok() {}
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut written: HashMap<u64, Instant> = HashMap::new();
    let mut acks: HashMap<u64, (Instant, bool)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE_HZ);
    let mut next = 0;
    let mut deadline = None;
    loop {
        let done = next >= count && written.len() as u64 >= count && acks.len() as u64 >= count;
        if done || deadline.is_some_and(|d: Instant| Instant::now() >= d) {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if next < count => {
                let (x, z) = encode(next);
                let cmd = serde_json::json!({"id": next, "linear": {"x": x}, "angular": {"z": z}});
                if let Ok(payload) = rmp_serde::to_vec_named(&cmd) {
                    sent_at.insert(next, Instant::now());
                    let _ = bus.publish(Outgoing::new(topic, payload, QoS::AtLeastOnce, false));
                }
                next += 1;
                if next == count {
                    deadline = Some(Instant::now() + TAIL);
                }
            }
            Some((line, at)) = device.recv() => {
                if let Some(i) = decode(&line) {
                    written.entry(i).or_insert(at);
                }
            }
            Some(m) = others.recv() => {
                if m.topic == ack_topic {
                    if let Ok(ack) = rmp_serde::from_slice::<Ack>(&m.payload) {
                        if let Some(i) = ack.id.as_u64() {
                            acks.entry(i).or_insert((Instant::now(), ack.ok));
                        }
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let since = |i: &u64, at: &Instant| {
        sent_at
            .get(i)
            .map(|s| at.duration_since(*s).as_secs_f64() * 1e6)
    };
    CommandFigures {
        sent: sent_at.len() as u64,
        written: written.len() as u64,
        acked: acks.len() as u64,
        acked_ok: acks.values().filter(|(_, ok)| *ok).count() as u64,
        to_device: Latency::from_micros(
            written.iter().filter_map(|(i, at)| since(i, at)).collect(),
        ),
        to_ack: Latency::from_micros(
            acks.iter()
                .filter_map(|(i, (at, _))| since(i, at))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_number_survives_the_template_and_stays_within_limits() {
        for i in (0..MAX_COMMANDS)
            .step_by(97)
            .chain([0, 249, 250, MAX_COMMANDS - 1])
        {
            let (x, z) = encode(i);
            assert!(
                x > 0.0 && x <= 1.0 && (0.0..=2.0).contains(&z),
                "{i}: {x} {z}"
            );
            assert_eq!(decode(&format!("D {x:.3} {z:.3}")), Some(i));
        }
    }

    #[test]
    fn safe_values_and_other_lines_are_not_commands() {
        assert_eq!(decode("D 0.000 0.000"), None);
        assert_eq!(decode("X 0.004 0.000"), None);
        assert_eq!(decode("s=1 t=2"), None);
    }
}
