//! `--robots N`: N simulated robots in this process, each with its own broker connection
//! through botbus's bus (its retained `status` and `catalog` as birth messages, its
//! `offline` Will), each publishing a few `map` streams with a send time, and one fleet
//! subscriber on `robot/#` measuring what arrives.

use super::probe::Probe;
use super::report::FleetFigures;
use super::{cost, run_id, telemetry, BenchError, BenchOptions, Workload};
use super::{device::Written, TAIL_CAP, TAIL_IDLE};
use crate::bus::{self, qos_from_u8, BusConfig, BusHandle, BusStats, Outgoing, QoS};
use crate::config::Robot;
use crate::messages::{Header, MapMessage, Scalar, Time};
use crate::meta::{self, Topics};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const STREAMS: u64 = 3;
pub const RATE_HZ: f64 = 10.0;

/// A simulated robot's file: one `lines` device (never opened) with [`STREAMS`] streams,
/// so its catalog is built by the daemon's own code.
pub fn robot_file(id: &str, qos: u8) -> String {
    let mut text = format!(
        "id = \"{id}\"\n[[devices]]\nname = \"sim\"\nprotocol = \"lines\"\n\
         serial = {{ path = \"/dev/null\" }}\nformat = \"kv\"\n"
    );
    for i in 0..STREAMS {
        text.push_str(&format!(
            "  [[devices.streams]]\n  sensor = \"s{i}\"\n  type = \"map\"\n  qos = {qos}\n"
        ));
    }
    text
}

/// Lets this process open one socket per robot: the soft open-file limit up to the hard.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

struct SimRobot {
    bus: BusHandle,
    topics: Topics,
    sensors: Vec<Arc<str>>,
    id: String,
    /// Kept so the bus task has somewhere to put what it receives.
    _incoming: tokio::sync::mpsc::Receiver<bus::Incoming>,
}

fn start_robot(opts: &BenchOptions, id: String) -> Result<SimRobot, BenchError> {
    let settings = &opts.settings;
    let topics = Topics::new(&settings.mqtt.topic_prefix, &id);
    let robot = Robot::from_str(&robot_file(&id, opts.qos), Path::new("bench.toml"))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut cfg = BusConfig::from_settings(settings, id.clone())
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    cfg.will = Some(meta::status_message(&topics, false, 1));
    cfg.birth = vec![
        meta::status_message(&topics, true, 1),
        meta::catalog_message(&topics, &meta::catalog(&robot, &topics, 1)),
    ];
    let (bus, incoming) = bus::start(cfg);
    let sensors = (0..STREAMS)
        .map(|i| topics.sensor(&format!("s{i}")).into())
        .collect();
    Ok(SimRobot {
        bus,
        topics,
        sensors,
        id,
        _incoming: incoming,
    })
}

/// Publishes every stream `rounds` times at [`RATE_HZ`], starting after `phase`.
async fn publish_rounds(
    r: (BusHandle, Vec<Arc<str>>, String),
    qos: QoS,
    phase: Duration,
    rounds: u64,
    epoch: Instant,
    sent: Arc<AtomicU64>,
) {
    let (bus, sensors, id) = r;
    tokio::time::sleep(phase).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE_HZ));
    for seq in 0..rounds {
        tick.tick().await;
        for topic in &sensors {
            let t = epoch.elapsed().as_micros() as i64;
            let m = MapMessage {
                header: Header {
                    seq,
                    stamp: Time::now(),
                    frame_id: id.clone(),
                },
                values: vec![
                    ("s".into(), Scalar::Int(seq as i64)),
                    ("t".into(), Scalar::Int(t)),
                ],
            };
            if let Ok(payload) = rmp_serde::to_vec_named(&m) {
                sent.fetch_add(1, Ordering::Relaxed);
                let _ = bus.publish(Outgoing::new(topic.clone(), payload, qos, false));
            }
        }
    }
}

/// Runs `n` robots for the workload's duration.
pub async fn run(opts: &BenchOptions, n: u64) -> Result<FleetFigures, BenchError> {
    raise_fd_limit();
    let duration = match opts.workload {
        Workload::Rate { duration, .. } => duration,
        Workload::Burst { .. } => {
            return Err(BenchError::Setup(
                "--robots runs at a rate, not a burst".into(),
            ))
        }
    };
    let run = run_id();
    let qos = qos_from_u8(opts.qos);
    let epoch = Instant::now();
    let filter = format!("{}/#", opts.settings.mqtt.topic_prefix);
    let probe = Probe::start(&opts.settings, format!("{run}-fleet"), &filter, qos, epoch).await?;

    let connecting = Instant::now();
    let robots = (0..n)
        .map(|i| start_robot(opts, format!("{run}-r{i:03}")))
        .collect::<Result<Vec<_>, _>>()?;
    let deadline = Duration::from_secs(30) + Duration::from_millis(20 * n);
    let mut connected = 0;
    for r in &robots {
        let left = deadline.saturating_sub(connecting.elapsed());
        if r.bus.wait_connected(left).await {
            connected += 1;
        }
    }
    let connect_s = connecting.elapsed().as_secs_f64();
    if connected < n {
        shutdown(&robots).await;
        probe.close().await;
        return Err(BenchError::Broker(format!(
            "only {connected} of {n} robots connected within {} s (the broker's connection limit?)",
            deadline.as_secs()
        )));
    }

    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let rounds = ((duration.as_secs_f64() * RATE_HZ).round() as u64).max(1);
    let cpu0 = super::proc::cpu_time(std::process::id());
    let messages0 = probe.summary().2;
    let period = 1.0 / RATE_HZ;
    let tasks: Vec<_> = robots
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let phase = Duration::from_secs_f64(period * i as f64 / n as f64);
            let parts = (r.bus.clone(), r.sensors.clone(), r.id.clone());
            tokio::spawn(publish_rounds(
                parts,
                qos,
                phase,
                rounds,
                epoch,
                sent.clone(),
            ))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let messages1 = probe.summary().2;
    let window = start.elapsed().as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    let last = probe.wait_tail(sent, TAIL_IDLE, TAIL_CAP).await;
    let process = cost(std::process::id(), cpu0, sent);
    let written = Written {
        sent,
        first: start,
        last: start,
    };
    let dropped = robots
        .iter()
        .map(|r| {
            let s = r.bus.stats();
            BusStats::get(&s.dropped) + BusStats::get(&s.dropped_qos0)
        })
        .sum();
    let figures = FleetFigures {
        robots: n,
        streams_per_robot: STREAMS,
        rate_hz_per_stream: RATE_HZ,
        connect_s,
        telemetry: telemetry(&probe, &written, last),
        received_msg_s: (messages1 - messages0) as f64 / window,
        dropped,
        process,
    };
    shutdown(&robots).await;
    probe.close().await;
    Ok(figures)
}

/// Every robot publishes `offline` and disconnects, all at once.
async fn shutdown(robots: &[SimRobot]) {
    let mut set = tokio::task::JoinSet::new();
    for r in robots {
        let (bus, offline) = (r.bus.clone(), meta::status_message(&r.topics, false, 1));
        set.spawn(async move { bus.shutdown(vec![offline], Duration::from_secs(2)).await });
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_robot_file_is_valid_with_its_streams() {
        let robot = Robot::from_str(&robot_file("bench-1-r007", 1), Path::new("bench.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(robot.streams().count(), STREAMS as usize);
    }
}
