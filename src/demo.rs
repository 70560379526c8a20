//! `botbus demo`: an embedded broker (rumqttd), the simulated robot of `robots/demo.toml`,
//! the daemon and a live decoded view, all in one process with nothing to install.

use crate::bus::QoS;
use crate::config::{Robot, Settings};
use crate::daemon;
use crate::fleet::echo;
use crate::fleet::{FleetClient, FleetError, FleetOptions};
use crate::sim::{self, SimOptions};
use std::future::Future;
use std::io::Write;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

pub const DEMO_ROBOT: &str = include_str!("../robots/demo.toml");
/// The DBC file the demo robot's CAN bus uses, embedded so the demo runs from anywhere.
pub const DEMO_DBC: &str = include_str!("../robots/comma_body.dbc");

#[derive(Debug, Error)]
pub enum DemoError {
    #[error("embedded broker: {0}")]
    Broker(String),
    #[error("demo robot: {0}")]
    Robot(#[from] crate::config::RobotFileError),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("state directory: {0}")]
    State(std::io::Error),
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

/// Starts rumqttd on loopback in its own thread, on `port` or (0) a free one; returns
/// the port.
pub fn start_broker(port: u16) -> Result<u16, DemoError> {
    start_broker_for(port, 64)
}

/// [`start_broker`] admitting up to `max_connections` clients (`botbus bench --robots`).
pub fn start_broker_for(port: u16, max_connections: usize) -> Result<u16, DemoError> {
    let port = match port {
        0 => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| DemoError::Broker(e.to_string()))?
            .port(),
        p => {
            std::net::TcpListener::bind(("127.0.0.1", p))
                .map_err(|e| DemoError::Broker(format!("port {p}: {e}")))?;
            p
        }
    };
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = {max_connections}
max_outgoing_packet_count = 200
max_segment_size = 10485760
max_segment_count = 10

[v4.1]
name = "demo"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
  [v4.1.connections]
  connection_timeout_ms = 5000
  max_payload_size = 1048576
  max_inflight_count = 200
  dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&text).map_err(|e| DemoError::Broker(e.to_string()))?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(|e| DemoError::Broker(e.to_string()))?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(DemoError::Broker(format!(
        "did not start listening on port {port}"
    )))
}

/// Runs the demo until `until` resolves, printing JSON lines to `out`.
pub async fn run(
    until: impl Future<Output = ()>,
    port: u16,
    out: &mut (dyn Write + Send),
) -> Result<(), DemoError> {
    let port = start_broker(port)?;
    let url = format!("mqtt://127.0.0.1:{port}");
    writeln!(out, "{}", serde_json::json!({"demo": "broker", "url": url}))?;
    let state = std::env::temp_dir().join(format!("botbus-demo-{}", std::process::id()));
    std::fs::create_dir_all(&state).map_err(DemoError::State)?;

    std::fs::write(state.join("comma_body.dbc"), DEMO_DBC).map_err(DemoError::State)?;
    let mut robot = Robot::from_str(DEMO_ROBOT, &state.join("demo.toml"))?;
    let mut settings = Settings::default();
    settings.mqtt.url = url.clone();
    settings.state.dir = state.display().to_string();
    settings.diagnostics.period_s = 2.0;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (rx_tx, mut received) = mpsc::channel(64);
    let opts = SimOptions {
        link_paths: false,
        ..SimOptions::default()
    };
    let sims = sim::start(&robot, &opts, rx_tx, stop_rx.clone()).await?;
    for s in &sims {
        writeln!(
            out,
            "{}",
            serde_json::json!({"sim": s.name, "protocol": s.protocol, "path": s.endpoint})
        )?;
    }
    sim::rewire(&mut robot, &sims);
    let running = daemon::start(&robot, &settings, stop_rx.clone()).await?;

    let view = FleetClient::connect(FleetOptions::from_settings(&settings)?).await?;
    let mut incoming = view.subscribe_raw("robot/demo/#").await?;

    tokio::pin!(until);
    let command_at = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(command_at);
    let mut command_sent = false;
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = &mut command_at, if !command_sent => {
                command_sent = true;
                let cmd = serde_json::json!({"id": 1, "linear": {"x": 0.3}, "angular": {"z": 0.1}});
                writeln!(out, "{}", serde_json::json!({"demo": "sending command", "topic": running.topics.command("drive"), "command": cmd}))?;
                let _ = view.publish(&running.topics.command("drive"), &cmd, QoS::AtLeastOnce, false);
                let torque = serde_json::json!({"id": 3, "left": 120, "right": -120});
                writeln!(out, "{}", serde_json::json!({"demo": "sending command", "topic": running.topics.command("body/torque"), "command": torque}))?;
                let _ = view.publish(&running.topics.command("body/torque"), &torque, QoS::AtLeastOnce, false);
                let speed = serde_json::json!({"id": 2, "data": 1500.0});
                writeln!(out, "{}", serde_json::json!({"demo": "sending command", "topic": running.topics.command("motor/speed"), "command": speed}))?;
                let _ = view.publish(&running.topics.command("motor/speed"), &speed, QoS::AtLeastOnce, false);
                let goal = serde_json::json!({"id": 4, "name": ["shoulder", "elbow"], "position": [0.6, -0.4]});
                writeln!(out, "{}", serde_json::json!({"demo": "sending command", "topic": running.topics.command("arm/goal"), "command": goal}))?;
                let _ = view.publish(&running.topics.command("arm/goal"), &goal, QoS::AtLeastOnce, false);
            }
            m = incoming.recv() => match m {
                Some(m) => writeln!(out, "{}", echo::render(&m, false))?,
                None => break,
            },
            r = received.recv() => if let Some(r) = r {
                writeln!(out, "{}", serde_json::json!({"device": r.device, "received": r.line}))?;
            },
        }
        out.flush()?;
    }
    view.close().await;
    daemon::stop(running, stop_tx).await;
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
