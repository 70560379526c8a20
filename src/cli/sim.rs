//! `botbus sim`: start the simulated devices of a robot file, print where each one can be
//! opened, then print every line a device receives (the rendered commands).

use super::{CliError, Output};
use crate::config::Robot;
use crate::sim::{self, Received, SimDevice, SimOptions};
use std::future::Future;
use std::io::Write;
use tokio::sync::{mpsc, watch};

/// Runs the simulators until `stop` resolves or standard output goes away, then removes
/// the links it made from the robot file's serial paths.
pub async fn run(
    robot: &Robot,
    stop: impl Future<Output = ()>,
    out: impl Write,
    mut err: impl Write,
) -> Result<(), CliError> {
    let (tx, mut rx) = mpsc::channel(64);
    // Held until the end: the simulators run while it lives.
    let (_stop_tx, stop_rx) = watch::channel(false);
    let sims = sim::start(robot, &SimOptions::default(), tx, stop_rx).await?;
    for line in unsupported(robot) {
        let _ = writeln!(err, "{line}");
    }
    let mut out = Output(out);
    let listed = list(&sims, &mut out);
    if listed.is_ok() {
        relay(&mut rx, stop, &mut out).await;
    }
    for s in &sims {
        if let Some(l) = &s.linked {
            let _ = std::fs::remove_file(l);
        }
    }
    listed
}

/// One stderr line per device this build does not simulate.
pub fn unsupported(robot: &Robot) -> Vec<String> {
    robot
        .devices
        .iter()
        .filter(|d| !sim::supports(d))
        .map(|d| {
            format!(
                "sim: device {} ({}) is not simulated by this build",
                d.name,
                d.protocol()
            )
        })
        .collect()
}

/// `name (protocol): endpoint`, and `<- path` when the robot file's path links to it.
pub fn describe(sim: &SimDevice) -> String {
    match &sim.linked {
        Some(l) => format!(
            "{} ({}): {} <- {}",
            sim.name,
            sim.protocol,
            sim.endpoint,
            l.display()
        ),
        None => format!("{} ({}): {}", sim.name, sim.protocol, sim.endpoint),
    }
}

fn list<W: Write>(sims: &[SimDevice], out: &mut Output<W>) -> Result<(), CliError> {
    for s in sims {
        writeln!(out, "{}", describe(s))?;
    }
    Ok(())
}

/// Prints `device received: line` for each received line until `stop` resolves, the
/// simulators end, or a write fails (nobody is reading any more).
pub async fn relay<W: Write>(
    rx: &mut mpsc::Receiver<Received>,
    stop: impl Future<Output = ()>,
    out: &mut Output<W>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = rx.recv() => match r {
                Some(r) => if writeln!(out, "{} received: {}", r.device, r.line).is_err() {
                    break;
                },
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::failing::ClosedPipe;
    use std::path::{Path, PathBuf};

    fn received(device: &str, line: &str) -> Received {
        Received {
            device: device.into(),
            line: line.into(),
        }
    }

    #[tokio::test]
    async fn each_received_line_is_printed_with_its_device_until_the_simulators_end() {
        let (tx, mut rx) = mpsc::channel(8);
        tx.send(received("base", "D 0.300 0.100")).await.unwrap();
        tx.send(received("motor", "unit 1 wrote register 10: 1500"))
            .await
            .unwrap();
        drop(tx);
        let mut out = Output(Vec::new());
        relay(&mut rx, std::future::pending(), &mut out).await;
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "base received: D 0.300 0.100\nmotor received: unit 1 wrote register 10: 1500\n"
        );
    }

    #[tokio::test]
    async fn relaying_ends_when_stop_resolves() {
        let (_tx, mut rx) = mpsc::channel::<Received>(8);
        let mut out = Output(Vec::new());
        relay(&mut rx, std::future::ready(()), &mut out).await;
        assert!(out.0.is_empty());
    }

    #[tokio::test]
    async fn relaying_ends_when_nobody_reads_stdout_any_more() {
        let (tx, mut rx) = mpsc::channel(8);
        tx.send(received("base", "D 0.000 0.000")).await.unwrap();
        relay(&mut rx, std::future::pending(), &mut Output(ClosedPipe)).await;
        // Still open: relay returned because the write failed, not because rx closed.
        assert!(!tx.is_closed());
    }

    #[test]
    fn a_device_is_described_by_its_endpoint_and_the_path_linked_to_it() {
        let mut sim = SimDevice {
            name: "base".into(),
            protocol: "lines",
            endpoint: "/dev/pts/7".into(),
            linked: None,
        };
        assert_eq!(describe(&sim), "base (lines): /dev/pts/7");
        sim.linked = Some(PathBuf::from("robots/dev/ttyACM0"));
        assert_eq!(
            describe(&sim),
            "base (lines): /dev/pts/7 <- robots/dev/ttyACM0"
        );
    }

    #[test]
    fn devices_this_build_cannot_simulate_are_named() {
        let text = r#"
id = "r1"
[[devices]]
name = "gps"
protocol = "nmea"
serial = { path = "/dev/ttyUSB0", baud = 9600 }
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/NavSatFix"
  source = "GGA"
[[devices]]
name = "can"
protocol = "socketcan"
interface = "vcan0"
  [[devices.streams]]
  sensor = "can/raw"
  type = "can_msgs/Frame"
"#;
        let robot = Robot::from_str(text, Path::new("r1.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            unsupported(&robot),
            ["sim: device can (socketcan) is not simulated by this build"]
        );
    }
}
