//! `botbus check`: after both files validate, the report of what the robot will publish
//! and accept: every topic with its type, QoS and device, then the TLS doctor's findings
//! (and, with `--probe`, the broker's), then `ok`, or the number of problems and exit 2.

use super::{CliError, Output};
use crate::bus::BusConfig;
use crate::config::{LoadedSettings, Robot, Settings};
use crate::meta::Topics;
use crate::tls::doctor::{self, Finding, Level};
use std::io::Write;
use std::time::Duration;

/// The TLS doctor on the settings' files, and with `probe` a real connection to the broker.
pub async fn tls_findings(settings: &Settings, probe: bool) -> Result<Vec<Finding>, CliError> {
    // Not the robot's client id: a probe must not take over a running daemon's session.
    let cfg = BusConfig::from_settings(settings, format!("botbus-check-{}", std::process::id()))
        .map_err(CliError::usage)?;
    let mut found = doctor::examine(&cfg.tls, cfg.url.tls, crate::tls::inspect::now_s());
    if probe {
        found.extend(crate::tls::probe::probe(&cfg, Duration::from_secs(10)).await);
    }
    Ok(found)
}

/// Writes the report for a validated robot and its settings.
pub fn report(
    loaded: &LoadedSettings,
    robot: &Robot,
    findings: &[Finding],
    out: impl Write,
) -> Result<(), CliError> {
    let mut out = Output(out);
    let s = &loaded.settings;
    let topics = Topics::new(&s.mqtt.topic_prefix, &robot.id);
    let origin = loaded
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    writeln!(out, "settings: {origin}; broker {}", s.mqtt.url)?;
    writeln!(
        out,
        "robot {} ({}): {} devices",
        robot.id,
        robot.file.display(),
        robot.devices.len()
    )?;
    for (d, st) in robot.streams() {
        let rate = st
            .min_interval
            .map(|i| format!("  max {:.3} Hz", 1.0 / i.as_secs_f64()))
            .unwrap_or_default();
        writeln!(
            out,
            "  stream  {:<40} {:<26} qos {}{}  device {}{}",
            topics.sensor(&st.sensor),
            st.msg_type.name(),
            st.qos,
            if st.retain { " retained" } else { "" },
            d.name,
            rate
        )?;
    }
    for (d, c) in robot.commands() {
        writeln!(
            out,
            "  command {:<40} {:<26} qos 1  device {}  ack {}",
            topics.command(&c.actuator),
            c.msg_type.name(),
            d.name,
            topics.ack(&c.actuator)
        )?;
    }
    // The e-stop is not in the robot file: every robot has it.
    writeln!(
        out,
        "  command {:<40} {:<26} qos 1  all actuators  ack {}",
        topics.command("estop"),
        "{\"engage\": bool}",
        topics.ack("estop")
    )?;
    for t in [topics.status(), topics.catalog()] {
        writeln!(out, "  meta    {t:<40} qos 1 retained")?;
    }
    writeln!(
        out,
        "  meta    {:<40} qos 0 every {} s",
        topics.diagnostics(),
        s.diagnostics.period_s
    )?;
    for f in findings {
        writeln!(out, "{f}")?;
    }
    match findings.iter().filter(|f| f.level == Level::Error).count() {
        0 => writeln!(out, "ok"),
        n => {
            writeln!(
                out,
                "{n} TLS problem{} above: the daemon cannot connect until fixed",
                if n == 1 { "" } else { "s" }
            )?;
            Err(CliError::Exit(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::failing::ClosedPipe;
    use crate::config::Settings;
    use std::path::{Path, PathBuf};

    const ROBOT: &str = r#"
id = "r1"

[[devices]]
name = "gps"
protocol = "nmea"
serial = { path = "/dev/ttyUSB0", baud = 9600 }
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/NavSatFix"
  source = "GGA"
  max_rate_hz = 5

[[devices]]
name = "base"
protocol = "lines"
serial = { path = "/dev/ttyACM0", baud = 115200 }
format = "kv"
  [[devices.streams]]
  sensor = "battery"
  type = "sensor_msgs/BatteryState"
  when = { tag = "BAT" }
  fields = { voltage = "v", current = "i" }
  qos = 1
  retain = true
  [[devices.commands]]
  actuator = "drive"
  type = "geometry_msgs/Twist"
  template = "D {linear.x:.3} {angular.z:.3}"
  limits = { "linear.x" = [-1.0, 1.0], "angular.z" = [-2.0, 2.0] }
  timeout_ms = 500
  safe = { "linear.x" = 0.0, "angular.z" = 0.0 }
"#;

    fn robot() -> Robot {
        Robot::from_str(ROBOT, Path::new("robots/r1.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn defaults() -> LoadedSettings {
        LoadedSettings {
            settings: Settings::default(),
            file: None,
        }
    }

    fn rendered(loaded: &LoadedSettings) -> Vec<String> {
        let mut out = Vec::new();
        report(loaded, &robot(), &[], &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn check_lists_every_stream_with_its_type_qos_device_and_rate_limit() {
        let lines = rendered(&defaults());
        assert_eq!(
            lines[..4],
            [
                "settings: built-in defaults; broker mqtt://127.0.0.1:1883",
                "robot r1 (robots/r1.toml): 2 devices",
                "  stream  robot/r1/gps/fix                         sensor_msgs/NavSatFix      qos 0  device gps  max 5.000 Hz",
                "  stream  robot/r1/battery                         sensor_msgs/BatteryState   qos 1 retained  device base",
            ]
        );
    }

    #[test]
    fn check_lists_each_command_with_its_ack_and_the_estop_every_robot_has() {
        let lines = rendered(&defaults());
        assert_eq!(
            lines[4..6],
            [
                "  command robot/r1/cmd/drive                       geometry_msgs/Twist        qos 1  device base  ack robot/r1/ack/drive",
                "  command robot/r1/cmd/estop                       {\"engage\": bool}           qos 1  all actuators  ack robot/r1/ack/estop",
            ]
        );
    }

    #[test]
    fn check_ends_with_the_meta_topics_and_ok() {
        let lines = rendered(&defaults());
        assert_eq!(
            lines[6..],
            [
                "  meta    robot/r1/status                          qos 1 retained",
                "  meta    robot/r1/catalog                         qos 1 retained",
                "  meta    robot/r1/diagnostics                     qos 0 every 5 s",
                "ok",
            ]
        );
    }

    #[test]
    fn check_names_the_settings_file_and_uses_its_prefix_and_period() {
        let mut loaded = defaults();
        loaded.file = Some(PathBuf::from("config/botbus.toml"));
        loaded.settings.mqtt.url = "mqtts://broker:8883".into();
        loaded.settings.mqtt.topic_prefix = "fleet/a".into();
        loaded.settings.diagnostics.period_s = 0.5;
        let lines = rendered(&loaded);
        assert_eq!(
            lines[0],
            "settings: config/botbus.toml; broker mqtts://broker:8883"
        );
        assert!(
            lines[2].starts_with("  stream  fleet/a/r1/gps/fix "),
            "{}",
            lines[2]
        );
        assert_eq!(
            lines[lines.len() - 2],
            "  meta    fleet/a/r1/diagnostics                   qos 0 every 0.5 s"
        );
    }

    #[test]
    fn tls_findings_come_before_the_verdict_and_an_error_fails_the_check() {
        let found = [
            Finding::fine("ca_file ca.crt: CN=fleet CA"),
            Finding::warning("cert_file r1.crt (CN=r1) expires soon"),
        ];
        let mut out = Vec::new();
        report(&defaults(), &robot(), &found, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("  tls     ca_file ca.crt: CN=fleet CA\n  warning cert_file r1.crt (CN=r1) expires soon\nok\n"),
            "{text}"
        );
        let found = [
            Finding::error("key_file r1.key is not the key"),
            Finding::error("x"),
        ];
        let mut out = Vec::new();
        let err = report(&defaults(), &robot(), &found, &mut out).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "  error   x\n2 TLS problems above: the daemon cannot connect until fixed\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn check_stops_quietly_when_its_reader_goes_away() {
        let err = report(&defaults(), &robot(), &[], ClosedPipe).unwrap_err();
        assert!(matches!(err, CliError::StdoutClosed), "{err:?}");
    }
}
