//! `botbus run`: wires a validated robot to the bus. Devices, diagnostics and the meta
//! topics each run in their own task; shutdown publishes `offline` and disconnects cleanly.

use crate::bus::outbox::Outbox;
use crate::bus::{self, BusConfig, BusError, BusHandle, DataSender, Outgoing, QoS};
use crate::commands::{CommandRouter, DeviceLink};
use crate::config::settings::{OnFull, Replay};
use crate::config::{DeviceKind, Robot, Settings};
use crate::device::bytes::BytesDriver;
use crate::device::dynamixel::DynamixelDriver;
use crate::device::modbus::ModbusDriver;
use crate::device::runner::{Driver, Runner};
use crate::device::socketcan::SocketCanDriver;
use crate::device::Writes;
use crate::diagnostics::{self, DeviceDiag};
use crate::meta::{self, Topics};
use crate::protocols::can::{Can, CanCore, CanLink, SlcanProtocol};
use crate::protocols::lines::LinesDecoder;
use crate::protocols::nmea::NmeaDecoder;
use crate::service::{Pulse, Service};
use crate::spool::Spool;
use crate::state::{self, StateError};
use crate::stream::StreamPublisher;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}

/// How long a clean stop may take to flush what is in flight.
/// With the safe writes (at most 1 s) this keeps a clean stop under 5 s.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(2500);

/// A running daemon's parts that other layers (commands, tests, the demo) use.
pub struct Running {
    pub bus: BusHandle,
    pub topics: Topics,
    pub boot: u64,
    pub devices: Vec<DeviceLink>,
    pub diags: Vec<Arc<DeviceDiag>>,
    router: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

/// Runs the daemon until `shutdown` resolves, then stops cleanly.
pub async fn run(
    robot: Robot,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut service = Service::from_env();
    let running = start_with(&robot, &settings, stop_rx, &mut service).await?;
    // Ready once the settings and robot file are valid and every task has started; the
    // broker may be away, and the daemon works (and keeps actuators safe) without it.
    let status = status_reporter(&running, &robot, &settings.mqtt.url);
    let stopping = service.start(status);
    shutdown.await;
    stopping.send().await;
    tracing::info!(robot = %robot.id, "stopping");
    stop(running, stop_tx).await;
    Ok(())
}

/// The one-line state systemd shows: the broker link and which devices are up.
fn status_reporter(
    running: &Running,
    robot: &Robot,
    url: &str,
) -> impl Fn() -> String + Send + 'static {
    let stats = running.bus.stats().clone();
    // The devices themselves, not the Modbus units or Dynamixel joints behind them.
    let devices: Vec<Arc<DeviceDiag>> = running
        .diags
        .iter()
        .filter(|d| robot.devices.iter().any(|dev| dev.name == d.name))
        .cloned()
        .collect();
    let url = url.to_string();
    move || {
        let connected = stats.connected.load(std::sync::atomic::Ordering::Relaxed);
        status_line(connected, &url, &devices)
    }
}

fn status_line(connected: bool, url: &str, devices: &[Arc<DeviceDiag>]) -> String {
    let down: Vec<&str> = devices
        .iter()
        .filter(|d| !d.is_connected())
        .map(|d| d.name.as_str())
        .collect();
    let link = if connected {
        "connected to"
    } else {
        "no broker at"
    };
    let up = devices.len() - down.len();
    let mut line = format!("{link} {url}; devices {up}/{} up", devices.len());
    if !down.is_empty() {
        line.push_str(&format!(" (down: {})", down.join(", ")));
    }
    line
}

/// Starts every task of the daemon, outside a service manager.
pub async fn start(
    robot: &Robot,
    settings: &Settings,
    stop: watch::Receiver<bool>,
) -> Result<Running, DaemonError> {
    start_with(robot, settings, stop, &mut Service::default()).await
}

/// Starts every task of the daemon, each with its probe for `service`'s watchdog.
pub async fn start_with(
    robot: &Robot,
    settings: &Settings,
    stop: watch::Receiver<bool>,
    service: &mut Service,
) -> Result<Running, DaemonError> {
    let boot = state::next_boot(&settings.state_dir(), &robot.id)?;
    let topics = Topics::new(&settings.mqtt.topic_prefix, &robot.id);
    let client_id = if settings.mqtt.client_id.is_empty() {
        format!("botbus-{}", robot.id)
    } else {
        settings.mqtt.client_id.clone()
    };
    let mut cfg = BusConfig::from_settings(settings, client_id)?;
    cfg.will = Some(meta::status_message(&topics, false, boot));
    cfg.pulse = service.pulse("bus");
    let catalog = meta::catalog(robot, &topics, boot);
    cfg.birth = vec![
        meta::status_message(&topics, true, boot),
        meta::catalog_message(&topics, &catalog),
    ];
    if robot.commands().next().is_some() {
        cfg.subscriptions
            .push((topics.commands_filter(), QoS::AtLeastOnce));
    }
    tracing::info!(
        robot = %robot.id, boot, broker = %cfg.url,
        streams = catalog.streams.len(), commands = catalog.commands.len(),
        "starting"
    );
    // The TLS doctor's warnings (an expiry within 30 days, an issuer not in ca_file) at
    // start, where the journal shows them; its errors appear as the connection's failure.
    for f in crate::tls::doctor::examine(&cfg.tls, cfg.url.tls, crate::tls::inspect::now_s()) {
        if f.level == crate::tls::doctor::Level::Warning {
            tracing::warn!("{}", f.text);
        }
    }
    let robot_state = state::robot_dir(&settings.state_dir(), &robot.id)?;
    let (mut spool, recovery) = Spool::open(
        &robot_state.join("spool"),
        settings.spool.max_bytes,
        settings.spool.on_full == OnFull::DropOldest,
    )?;
    if settings.spool.replay == Replay::LiveFirst {
        let budget = (settings.spool.backlog_share * cfg.max_inflight as f64).ceil();
        spool.live_first(budget as u64);
    }
    if recovery.pending > 0 {
        tracing::info!(
            messages = recovery.pending,
            "spool holds messages from a previous run; they are sent again ({})",
            match settings.spool.replay {
                Replay::OldestFirst => "before live data",
                Replay::LiveFirst => "behind live data",
            }
        );
    }
    let (bus, incoming) = bus::start_with(cfg, Outbox::Disk(Box::new(spool)));

    let mut diags = Vec::new();
    let mut devices = Vec::new();
    for device in &robot.devices {
        let (wtx, wrx) = crate::device::write_channel(device.commands().len());
        let (link_tx, link_rx) = watch::channel(false);
        let streams: Vec<StreamPublisher> = device
            .streams()
            .into_iter()
            .map(|s| StreamPublisher::new(s, topics.sensor(&s.sensor)))
            .collect();
        // Each device runs in the one runner, with its protocol's driver.
        let parts = Parts {
            name: device.name.clone(),
            streams,
            data: bus.data_sender(),
            writes: wrx,
            link: link_tx,
            stop: stop.clone(),
            pulse: service.pulse(&format!("device:{}", device.name)),
        };
        match &device.kind {
            DeviceKind::Modbus(modbus) => {
                // Modbus: the port has a diagnostics entry, and so has each unit on it.
                let diag = DeviceDiag::polled(device.name.clone());
                diags.push(diag.clone());
                let mut units = Vec::new();
                let driver = ModbusDriver::new(&device.name, modbus, diag.clone(), |unit| {
                    let d = DeviceDiag::new(format!("{}/unit{unit}", device.name));
                    units.push(d.clone());
                    d
                });
                diags.extend(units);
                parts.spawn(driver, &diag);
            }
            DeviceKind::Dynamixel(bus) => {
                // Dynamixel: the port has a diagnostics entry, and so has each joint.
                let diag = DeviceDiag::polled(device.name.clone());
                diags.push(diag.clone());
                let mut joints = Vec::new();
                let driver = DynamixelDriver::new(&device.name, bus, diag.clone(), |joint| {
                    let d = DeviceDiag::new(format!("{}/{joint}", device.name));
                    joints.push(d.clone());
                    d
                });
                diags.extend(joints);
                parts.spawn(driver, &diag);
            }
            DeviceKind::Can(Can {
                link: CanLink::SocketCan { interface },
                streams,
                ..
            }) => {
                let driver = SocketCanDriver::new(interface.clone(), CanCore::new(streams));
                diags.push(parts.spawn_counted(driver));
            }
            DeviceKind::Can(Can {
                link: CanLink::Slcan { transport, bitrate },
                streams,
                idle_timeout,
                ..
            }) => {
                let core = SlcanProtocol::new(*bitrate, streams);
                let driver = BytesDriver::over(transport, Box::new(core), *idle_timeout);
                diags.push(parts.spawn_counted(driver));
            }
            DeviceKind::Nmea(nmea) => {
                let core = NmeaDecoder::new(&nmea.streams);
                let driver = BytesDriver::over(&nmea.transport, Box::new(core), nmea.idle_timeout);
                diags.push(parts.spawn_counted(driver));
            }
            DeviceKind::Lines(lines) => {
                let core = LinesDecoder::new(&lines.format, &lines.streams);
                let driver =
                    BytesDriver::over(&lines.transport, Box::new(core), lines.idle_timeout);
                diags.push(parts.spawn_counted(driver));
            }
        }
        devices.push(DeviceLink {
            name: device.name.clone(),
            writer: wtx,
            link: link_rx,
        });
    }

    let router = if robot.commands().next().is_some() {
        let (rstop_tx, rstop_rx) = watch::channel(false);
        let r = CommandRouter::new(
            robot,
            &devices,
            bus.clone(),
            topics.clone(),
            settings.mqtt.max_payload_bytes,
            robot_state.clone(),
        );
        let links = devices.iter().map(|d| d.link.clone()).collect();
        let pulse = service.pulse("commands");
        Some((
            rstop_tx,
            tokio::spawn(r.run(incoming, links, pulse, rstop_rx)),
        ))
    } else {
        None
    };

    let period = Duration::from_secs_f64(settings.diagnostics.period_s);
    tokio::spawn(publish_diagnostics(
        bus.clone(),
        topics.clone(),
        robot.id.clone(),
        diags.clone(),
        period,
        stop.clone(),
    ));

    Ok(Running {
        bus,
        topics,
        boot,
        devices,
        diags,
        router,
    })
}

/// What a device's runner needs besides its driver.
struct Parts {
    name: String,
    streams: Vec<StreamPublisher>,
    data: DataSender,
    writes: Writes,
    link: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
    pulse: Pulse,
}

impl Parts {
    /// Spawns the runner with a diagnostics entry of its own, and returns that entry.
    fn spawn_counted<D: Driver + 'static>(self, driver: D) -> Arc<DeviceDiag> {
        let diag = DeviceDiag::new(self.name.clone());
        self.spawn(driver, &diag);
        diag
    }

    fn spawn<D: Driver + 'static>(self, driver: D, diag: &Arc<DeviceDiag>) {
        let runner = Runner {
            name: self.name,
            driver,
            streams: self.streams,
            diag: diag.clone(),
            data: self.data,
            writes: self.writes,
            link: self.link,
            pulse: self.pulse,
        };
        tokio::spawn(runner.run(self.stop));
    }
}

/// Puts every actuator in its safe state, publishes `offline`, flushes in-flight messages
/// and stops the devices, in that order: the safe values need the devices still open.
pub async fn stop(running: Running, stop_tx: watch::Sender<bool>) {
    if let Some((rstop, handle)) = running.router {
        let _ = rstop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), handle).await;
    }
    // Devices stop reading before the bus stops, so every sample they read is either sent
    // or spooled; the bus queue is FIFO, so their last publishes precede the shutdown.
    let _ = stop_tx.send(true);
    tokio::task::yield_now().await;
    let offline = meta::status_message(&running.topics, false, running.boot);
    running.bus.shutdown(vec![offline], SHUTDOWN_GRACE).await;
}

async fn publish_diagnostics(
    bus: BusHandle,
    topics: Topics,
    robot_id: String,
    diags: Vec<Arc<DeviceDiag>>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let topic: Arc<str> = topics.diagnostics().into();
    let mut seq = 0;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let report = diagnostics::report(seq, &robot_id, &diags, bus.stats());
        seq += 1;
        match rmp_serde::to_vec_named(&report) {
            Ok(payload) => {
                let _ = bus.publish(Outgoing::new(
                    topic.clone(),
                    payload,
                    QoS::AtMostOnce,
                    false,
                ));
            }
            Err(e) => tracing::error!("cannot encode diagnostics: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_the_broker_link_and_the_devices_that_are_down() {
        let (gps, base) = (DeviceDiag::new("gps"), DeviceDiag::new("base"));
        base.set_connected(true);
        let devices = [gps.clone(), base];
        assert_eq!(
            status_line(false, "mqtt://b:1883", &devices),
            "no broker at mqtt://b:1883; devices 1/2 up (down: gps)"
        );
        gps.set_connected(true);
        assert_eq!(
            status_line(true, "mqtt://b:1883", &devices),
            "connected to mqtt://b:1883; devices 2/2 up"
        );
    }
}
