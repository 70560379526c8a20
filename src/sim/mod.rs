//! `botbus sim`: simulated devices for a robot file, on pseudo-terminals (or TCP ports for
//! `tcp` devices), so the daemon, the demo and the tests run without hardware.

pub mod lines_sim;
pub mod modbus_sim;
pub mod nmea_sim;
pub mod pty;
pub mod slcan_sim;

use crate::config::{Device, ProtocolSpec, Robot, TransportSpec};
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

/// A line a simulated device received (a rendered command).
#[derive(Debug, Clone)]
pub struct Received {
    pub device: String,
    pub line: String,
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

/// Whether this build can simulate the device.
pub fn supports(device: &Device) -> bool {
    matches!(
        device.protocol,
        ProtocolSpec::Nmea
            | ProtocolSpec::Lines { .. }
            | ProtocolSpec::Modbus { .. }
            | ProtocolSpec::Slcan { .. }
    )
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
    for device in robot.devices.iter().filter(|d| supports(d)) {
        let protocol = device.protocol.name();
        match &device.transport {
            TransportSpec::SocketCan(_) => {}
            TransportSpec::Serial(s) => {
                let pty = Pty::open().map_err(SimError::Pty)?;
                let endpoint = pty.path().display().to_string();
                let linked = if opts.link_paths {
                    link(pty.path(), &s.path)
                } else {
                    None
                };
                if let ProtocolSpec::Modbus { .. } = device.protocol {
                    tokio::spawn(serve_modbus(
                        pty,
                        device.clone(),
                        t0,
                        received.clone(),
                        stop.clone(),
                    ));
                } else if let ProtocolSpec::Slcan { .. } = device.protocol {
                    tokio::spawn(serve_slcan(
                        pty,
                        device.clone(),
                        opts.clone(),
                        t0,
                        received.clone(),
                        stop.clone(),
                    ));
                } else {
                    tokio::spawn(serve(
                        pty,
                        device.clone(),
                        opts.clone(),
                        t0,
                        received.clone(),
                        stop.clone(),
                    ));
                }
                out.push(SimDevice {
                    name: device.name.clone(),
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
                            device: device.name.clone(),
                            addr: addr.clone(),
                            source,
                        })?;
                let (device_c, opts_c, rx_c, mut stop_c) =
                    (device.clone(), opts.clone(), received.clone(), stop.clone());
                let modbus = matches!(device.protocol, ProtocolSpec::Modbus { .. })
                    .then(|| start_modbus_sim(device, t0, received.clone(), stop.clone()));
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            r = listener.accept() => if let Ok((sock, _)) = r {
                                match &modbus {
                                    Some(sim) => {
                                        let sim = sim.clone();
                                        tokio::spawn(async move { let _ = sim.serve_tcp(sock).await; });
                                    }
                                    None if matches!(device_c.protocol, ProtocolSpec::Slcan { .. }) => {
                                        tokio::spawn(serve_slcan(sock, device_c.clone(), opts_c.clone(), t0, rx_c.clone(), stop_c.clone()));
                                    }
                                    None => {
                                        tokio::spawn(serve(sock, device_c.clone(), opts_c.clone(), t0, rx_c.clone(), stop_c.clone()));
                                    }
                                }
                            },
                            _ = stop_c.changed() => return,
                        }
                    }
                });
                out.push(SimDevice {
                    name: device.name.clone(),
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
        if let (TransportSpec::Serial(s), Some(sim)) =
            (&mut d.transport, sims.iter().find(|s| s.name == d.name))
        {
            if !sim.endpoint.starts_with("tcp://") {
                s.path = PathBuf::from(&sim.endpoint);
            }
        }
    }
}

/// Creates a Modbus simulation and the task that advances it at 10 Hz.
fn start_modbus_sim(
    device: &Device,
    t0: Instant,
    received: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) -> std::sync::Arc<modbus_sim::ModbusSim> {
    let sim = modbus_sim::ModbusSim::new(device, received);
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
    device: Device,
    t0: Instant,
    received: mpsc::Sender<Received>,
    stop: watch::Receiver<bool>,
) {
    let sim = start_modbus_sim(&device, t0, received, stop.clone());
    let mut stop = stop;
    tokio::select! {
        r = sim.serve_rtu(pty) => if let Err(e) = r {
            tracing::warn!(device = %device.name, "Modbus simulator stopped: {e}");
        },
        _ = stop.changed() => {}
    }
}

async fn serve_slcan<S: AsyncRead + AsyncWrite + Send + 'static>(
    io: S,
    device: Device,
    opts: SimOptions,
    t0: Instant,
    received: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut sim = slcan_sim::SlcanSim::new(&device);
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
                        let _ = received.send(Received { device: device.name.clone(), line }).await;
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
    device: Device,
    opts: SimOptions,
    t0: Instant,
    received: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let (rd, mut wr) = tokio::io::split(io);
    let name = device.name.clone();
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
    let hz = match device.protocol {
        ProtocolSpec::Nmea => opts.nmea_hz,
        _ => opts.lines_hz,
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
        let text = match device.protocol {
            ProtocolSpec::Nmea => nmea_sim::epoch(t, SystemTime::now()),
            _ => lines_sim::lines(&device, t),
        };
        // A real device does not wait for a reader: if nobody drains the port, data is lost.
        match tokio::time::timeout(Duration::from_millis(200), wr.write_all(text.as_bytes())).await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => continue,
        }
    }
    reader.abort();
}
