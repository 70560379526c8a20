//! A small fleet controller built on [`botbus::fleet::FleetClient`]: it prints robots going
//! online and offline, each robot's GPS fix and battery as they arrive, and with
//! `--drive ROBOT` sends one `geometry_msgs/Twist` to that robot's `drive` actuator and
//! prints the ack.
//!
//! Try it against the demo robot, in two terminals:
//!
//! ```text
//! botbus demo --seconds 0 --port 1883     # or: cargo run -- demo --seconds 0 --port 1883
//! cargo run --example fleet_monitor -- --url mqtt://127.0.0.1:1883 --seconds 10 --drive demo
//! ```
//!
//! Options: `--url URL` (default `mqtt://127.0.0.1:1883`), `--seconds N` (default: run
//! until Ctrl-C), `--drive ROBOT` (send one drive command once ROBOT is online).

use botbus::fleet::{FleetClient, FleetOptions, RobotEvent};
use botbus::messages::{BatteryState, Header, NavSatFix, Time, Twist, Vector3};
use std::time::Duration;

const USAGE: &str =
    "usage: fleet_monitor [--url mqtt://127.0.0.1:1883] [--seconds N] [--drive ROBOT]";

struct Args {
    url: String,
    seconds: Option<f64>,
    drive: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "mqtt://127.0.0.1:1883".into(),
        seconds: None,
        drive: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--seconds" => {
                let s = value()?;
                args.seconds = Some(s.parse().map_err(|_| format!("--seconds: `{s}`"))?);
            }
            "--drive" => args.drive = Some(value()?),
            _ => return Err(USAGE.into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    // A bad --url is the user's input, like the other flags: exit code 2.
    let opts = FleetOptions::new(&args.url).unwrap_or_else(|e| {
        eprintln!("--url: {e}");
        std::process::exit(2)
    });
    let fleet = FleetClient::connect(opts).await?;
    let mut robots = fleet.robot_events().await?;
    let mut fixes = fleet.subscribe::<NavSatFix>("robot/+/gps/fix").await?;
    let mut batteries = fleet.subscribe::<BatteryState>("robot/+/battery").await?;
    println!("connected to {}", args.url);

    let stop = async {
        match args.seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let mut to_drive = args.drive.clone();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(event) = robots.next() => match event {
                RobotEvent::Online { robot, boot, version } => {
                    println!("online {robot} (boot {boot}, botbus {version})");
                    if to_drive.as_deref() == Some(robot.as_str()) {
                        to_drive = None;
                        tokio::spawn(drive_once(fleet.clone(), robot));
                    }
                }
                RobotEvent::Offline { robot, boot } => println!("offline {robot} (boot {boot})"),
            },
            Some((robot, fix)) = fixes.next() => println!(
                "fix {robot}: lat {:.6} lon {:.6} alt {:.1} m (status {})",
                fix.latitude, fix.longitude, fix.altitude, fix.status.status
            ),
            Some((robot, b)) = batteries.next() => println!(
                "battery {robot}: {:.2} V {:.2} A {:.0} %",
                b.voltage, b.current, b.percentage * 100.0
            ),
        }
    }
    fleet.close().await;
    Ok(())
}

/// Sends one Twist to `robot`'s `drive` actuator and prints the ack.
async fn drive_once(fleet: FleetClient, robot: String) {
    let twist = Twist {
        // Stamped, so a robot with `max_age_ms` can tell a fresh command from a stale one.
        header: Header {
            stamp: Time::now(),
            ..Default::default()
        },
        linear: Vector3 {
            x: 0.2,
            ..Default::default()
        },
        angular: Vector3 {
            z: 0.1,
            ..Default::default()
        },
    };
    match fleet
        .command(&robot, "drive", &twist, Duration::from_secs(3))
        .await
    {
        Ok(ack) if ack.ok => println!("ack {robot}/drive: ok, applied {}", ack.applied),
        Ok(ack) => println!(
            "ack {robot}/drive: rejected: {}",
            ack.error.unwrap_or_default()
        ),
        Err(e) => println!("drive {robot}: {e}"),
    }
}
