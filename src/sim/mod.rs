//! `botbus sim`: simulated devices for a robot file, on pseudo-terminals (or TCP ports for
//! `tcp` devices), so the daemon, the demo and the tests run without hardware.

pub mod pty;

use crate::config::{Device, DeviceKind, Robot};
use crate::protocols::can::{self, Can, CanLink};
use crate::protocols::dynamixel::request::Request;
use crate::protocols::dynamixel::sim::ServoBus;
use crate::protocols::dynamixel::{Dynamixel, Model};
use crate::protocols::lines::{self, Lines};
use crate::protocols::modbus::{self, Modbus};
use crate::protocols::nmea;
pub use crate::protocols::Received;
use crate::spec::TransportSpec;
use pty::Pty;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Error)]
pub enum SimError {
    #[error("cannot open a pseudo-terminal: {0}")]
    Pty(std::io::Error),
    #[error("device {device}: cannot listen on {addr}: {source}")]
    Listen {
        device: String,
        addr: String,
        source: std::io::Error,
    },
}

/// Where a simulated device can be opened.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub name: String,
    pub protocol: &'static str,
    /// The pty slave path, or `tcp://addr`.
    pub endpoint: String,
    /// The robot file's path, when the simulator linked it to the pty.
    pub linked: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Symlink each serial path of the robot file to its pty, when that path is free (or a
    /// stale link) and outside `/dev`.
    pub link_paths: bool,
    /// How often the lines devices print, per stream.
    pub lines_hz: f64,
    pub nmea_hz: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            link_paths: true,
            lines_hz: 10.0,
            nmea_hz: 5.0,
        }
    }
}

/// A device that prints text: a GPS receiver or a microcontroller.
#[derive(Debug, Clone)]
enum TextSim {
    Nmea,
    Lines(Lines),
}

/// What the simulator runs for one device: each protocol folder's simulator.
#[derive(Debug, Clone)]
enum Sim {
    Text(TextSim),
    Modbus(Modbus),
    Slcan(Can),
    Dynamixel(Dynamixel),
}

/// The simulator of a device and the transport it answers on; `None` for a SocketCAN
/// bus, which the kernel's `vcan` simulates, not botbus.
fn sim_for(device: &Device) -> Option<(Sim, &TransportSpec)> {
    match &device.kind {
        DeviceKind::Nmea(d) => Some((Sim::Text(TextSim::Nmea), &d.transport)),
        DeviceKind::Lines(d) => Some((Sim::Text(TextSim::Lines(d.clone())), &d.transport)),
        DeviceKind::Modbus(d) => Some((Sim::Modbus(d.clone()), &d.transport)),
        DeviceKind::Dynamixel(d) => Some((Sim::Dynamixel(d.clone()), &d.transport)),
        DeviceKind::Can(
            c @ Can {
                link: CanLink::Slcan { transport, .. },
                ..
            },
        ) => Some((Sim::Slcan(c.clone()), transport)),
        DeviceKind::Can(Can {
            link: CanLink::SocketCan { .. },
            ..
        }) => None,
    }
}

/// Whether this build can simulate the device.
pub fn supports(device: &Device) -> bool {
    sim_for(device).is_some()
}

fn link(pty: &Path, wanted: &Path) -> Option<PathBuf> {
    if wanted.starts_with("/dev") {
        return None;
    }
    match std::fs::symlink_metadata(wanted) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(wanted).ok()?;
        }
        Ok(_) => {
            tracing::warn!(path = %wanted.display(), "exists and is not a symlink; not linking it to the simulator");
            return None;
        }
        Err(_) => {}
    }
    if let Some(parent) = wanted.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::os::unix::fs::symlink(pty, wanted).ok()?;
    Some(wanted.to_path_buf())
}

/// Starts a simulator for every supported device. Devices run until `stop` turns true.
/// Lines written to the devices (commands) are sent to `received`.
pub async fn start(
    robot: &Robot,
    opts: &SimOptions,
    received: mpsc::Sender<Received>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<SimDevice>, SimError> {
    let mut out = Vec::new();
    let t0 = Instant::now();
    for device in &robot.devices {
        let Some((sim, transport)) = sim_for(device) else {
            continue;
        };
        let protocol = device.protocol();
        let name = device.name.clone();
        match transport {
            TransportSpec::Serial(s) => {
                let pty = Pty::open().map_err(SimError::Pty)?;
                let endpoint = pty.path().display().to_string();
                let linked = if opts.link_paths {
                    link(pty.path(), &s.path)
                } else {
                    None
                };
                let (rx, stop) = (received.clone(), stop.clone());
                match sim {
                    Sim::Modbus(bus) => {
                        tokio::spawn(serve_modbus(pty, name.clone(), bus, t0, rx, stop));
                    }
                    Sim::Slcan(can) => {
                        let sim = can::sim::SlcanSim::new(&can);
                        tokio::spawn(serve_slcan(
                            pty,
                            name.clone(),
                            sim,
                            opts.clone(),
                            t0,
                            rx,
                            stop,
                        ));
                    }
                    Sim::Text(text) => {
                        tokio::spawn(serve(pty, name.clone(), text, opts.clone(), t0, rx, stop));
                    }
                    Sim::Dynamixel(bus) => {
                        tokio::spawn(serve_dynamixel(pty, name.clone(), servos(&bus), rx, stop));
                    }
                }
                out.push(SimDevice {
                    name,
                    protocol,
                    endpoint,
                    linked,
                });
            }
            TransportSpec::Tcp(addr) => {
                let listener =
                    tokio::net::TcpListener::bind(addr.as_str())
                        .await
                        .map_err(|source| SimError::Listen {
                            device: name.clone(),
                            addr: addr.clone(),
                            source,
                        })?;
                let (opts_c, rx_c, mut stop_c) = (opts.clone(), received.clone(), stop.clone());
                // One Modbus bus serves every connection; byte devices get one each.
                let modbus = match &sim {
                    Sim::Modbus(bus) => Some(start_modbus_sim(
                        &name,
                        bus,
                        t0,
                        received.clone(),
                        stop.clone(),
                    )),
                    Sim::Slcan(_) | Sim::Text(_) | Sim::Dynamixel(_) => None,
                };
                let name_c = name.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            r = listener.accept() => if let Ok((sock, _)) = r {
                                match (&sim, &modbus) {
                                    (_, Some(bus)) => {
                                        let bus = bus.clone();
                                        tokio::spawn(async move { let _ = bus.serve_tcp(sock).await; });
                                    }
                                    (Sim::Slcan(can), None) => {
                                        let sim = can::sim::SlcanSim::new(can);
                                        tokio::spawn(serve_slcan(sock, name_c.clone(), sim, opts_c.clone(), t0, rx_c.clone(), stop_c.clone()));
                                    }
                                    (Sim::Text(text), None) => {
                                        tokio::spawn(serve(sock, name_c.clone(), text.clone(), opts_c.clone(), t0, rx_c.clone(), stop_c.clone()));
                                    }
                                    (Sim::Dynamixel(bus), None) => {
                                        tokio::spawn(serve_dynamixel(sock, name_c.clone(), servos(bus), rx_c.clone(), stop_c.clone()));
                                    }
                                    (Sim::Modbus(_), None) => {}
                                }
                            },
                            _ = stop_c.changed() => return,
                        }
                    }
                });
                out.push(SimDevice {
                    name,
                    protocol,
                    endpoint: format!("tcp://{addr}"),
                    linked: None,
                });
            }
        }
    }
    Ok(out)
}

/// Rewrites the robot's serial paths to the simulator's ptys (the demo's in-memory wiring).
pub fn rewire(robot: &mut Robot, sims: &[SimDevice]) {
    for d in &mut robot.devices {
        let sim = sims.iter().find(|s| s.name == d.name);
        if let (Some(TransportSpec::Serial(s)), Some(sim)) = (d.transport_mut(), sim) {
            if !sim.endpoint.starts_with("tcp://") {
                s.path = PathBuf::from(&sim.endpoint);
            }
        }
    }
}

/// Creates a Modbus simulation and the task that advances it at 10 Hz.
fn start_modbus_sim(
    name: &str,
    bus: &Modbus,
    t0: Instant,
    received: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) -> std::sync::Arc<modbus::sim::ModbusSim> {
    let sim = modbus::sim::ModbusSim::new(name, bus, received);
    let ticking = sim.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => ticking.tick(t0.elapsed().as_secs_f64()),
                _ = stop.changed() => return,
            }
        }
    });
    sim
}

async fn serve_modbus(
    pty: Pty,
    name: String,
    bus: Modbus,
    t0: Instant,
    received: mpsc::Sender<Received>,
    stop: watch::Receiver<bool>,
) {
    let sim = start_modbus_sim(&name, &bus, t0, received, stop.clone());
    let mut stop = stop;
    tokio::select! {
        r = sim.serve_rtu(pty) => if let Err(e) = r {
            tracing::warn!(device = %name, "Modbus simulator stopped: {e}");
        },
        _ = stop.changed() => {}
    }
}

/// A write the servos received, by control-table item: `sync write goal_position: 1=2440
/// 2=1787`. Reads and pings (the polls) are not shown.
fn describe_write(model: Model, r: &Request) -> Option<String> {
    let item = |address: u16| {
        model
            .items()
            .find(|i| i.address == address)
            .map_or_else(|| format!("address {address}"), |i| i.name.to_string())
    };
    // Little-endian, as the e-Manual packs values; 4-byte goals are signed (a velocity
    // may be negative).
    let value = |d: &[u8]| match *d {
        [a] => i64::from(a),
        [a, b] => i64::from(u16::from_le_bytes([a, b])),
        [a, b, c, e] => i64::from(i32::from_le_bytes([a, b, c, e])),
        _ => -1,
    };
    Some(match r {
        Request::SyncWrite { address, data, .. } => {
            let values: Vec<String> = data
                .iter()
                .map(|(id, d)| format!("{id}={}", value(d)))
                .collect();
            format!("sync write {}: {}", item(*address), values.join(" "))
        }
        Request::Write { id, address, data } => {
            format!("write {}: {id}={}", item(*address), value(data))
        }
        Request::Reboot { id } => format!("reboot {id}"),
        Request::BulkWrite { writes } => {
            let values: Vec<String> = writes
                .iter()
                .map(|w| format!("{} {}={}", item(w.address), w.id, value(&w.data)))
                .collect();
            format!("bulk write: {}", values.join(" "))
        }
        Request::Ping { .. }
        | Request::Read { .. }
        | Request::SyncRead { .. }
        | Request::BulkRead { .. } => return None,
    })
}

/// A servo for every id the robot file names on the bus.
fn servos(bus: &Dynamixel) -> ServoBus {
    // ServoBus drops repeated ids.
    let ids: Vec<u8> = bus.joints().map(|j| j.id).collect();
    ServoBus::new(bus.model, &ids)
}

/// Serves a simulated Dynamixel bus: answers what the daemon writes, moves the servos on
/// every 10 ms, and reports the writes (goals, torque, mode), not the polls.
async fn serve_dynamixel<S: AsyncRead + AsyncWrite + Send + 'static>(
    io: S,
    name: String,
    mut bus: ServoBus,
    received: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let step = Duration::from_millis(10);
    let mut tick = tokio::time::interval(step);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = [0u8; 1024];
    loop {
        let mut out = Vec::new();
        tokio::select! {
            _ = stop.changed() => return,
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => bus.feed(&buf[..n], &mut out),
            },
            _ = tick.tick() => bus.advance(step),
        }
        for r in bus.take_received() {
            if let Some(line) = describe_write(bus.model(), &r) {
                let _ = received
                    .send(Received {
                        device: name.clone(),
                        line,
                    })
                    .await;
            }
        }
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn serve_slcan<S: AsyncRead + AsyncWrite + Send + 'static>(
    io: S,
    name: String,
    mut sim: can::sim::SlcanSim,
    opts: SimOptions,
    t0: Instant,
    received: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.lines_hz.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = [0u8; 1024];
    loop {
        let out = tokio::select! {
            _ = stop.changed() => return,
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let (replies, seen) = sim.receive(&buf[..n]);
                    for line in seen {
                        let _ = received.send(Received { device: name.clone(), line }).await;
                    }
                    replies
                }
            },
            _ = tick.tick() => sim.frames(t0.elapsed().as_secs_f64()),
        };
        if out.is_empty() {
            continue;
        }
        match tokio::time::timeout(Duration::from_millis(200), wr.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => continue,
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(
    io: S,
    name: String,
    text: TextSim,
    opts: SimOptions,
    t0: Instant,
    received: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let (rd, mut wr) = tokio::io::split(io);
    let mut reader = tokio::spawn(async move {
        let mut lines = BufReader::new(rd).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim_end().to_string();
            if !line.is_empty() {
                let _ = received
                    .send(Received {
                        device: name.clone(),
                        line,
                    })
                    .await;
            }
        }
    });
    let hz = match text {
        TextSim::Nmea => opts.nmea_hz,
        TextSim::Lines(_) => opts.lines_hz,
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / hz.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
            _ = &mut reader => break,
        }
        let t = t0.elapsed().as_secs_f64();
        let out = match &text {
            TextSim::Nmea => nmea::sim::epoch(t, SystemTime::now()),
            TextSim::Lines(device) => lines::sim::lines(device, t),
        };
        // A real device does not wait for a reader: if nobody drains the port, data is lost.
        match tokio::time::timeout(Duration::from_millis(200), wr.write_all(out.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => continue,
        }
    }
    reader.abort();
}
