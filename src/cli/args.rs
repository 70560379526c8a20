//! The command-line arguments, defined with clap's derive. The doc comments are the
//! `--help` text users read, so they are part of the interface.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use thiserror::Error;

#[derive(Parser)]
#[command(
    name = "botbus",
    version,
    about = "Robot telemetry bridge: serial and CAN devices to MQTT as MessagePack"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon for one robot.
    Run {
        #[arg(long)]
        robot: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the settings and a robot file; list every topic with its type and QoS.
    Check {
        #[arg(long)]
        robot: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Zero-setup demo: embedded broker, simulated robot, daemon and a live decoded view.
    Demo {
        /// Stop after this many seconds; 0 runs until Ctrl-C.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Loopback port for the embedded broker (default: a free one), so other tools
        /// and the examples can connect.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Simulate the devices of a robot file on pseudo-terminals.
    Sim {
        #[arg(long)]
        robot: PathBuf,
    },
    /// Fleet tools: watch and publish topics.
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Send a command to a robot's actuator and wait for its ack.
    /// Exit code: 0 accepted, 1 rejected, 3 no ack in time.
    Cmd {
        robot: String,
        actuator: String,
        /// The command as JSON, e.g. '{"linear": {"x": 0.5}}'.
        json: String,
        #[command(flatten)]
        conn: ConnArgs,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Robots seen, with their online/offline state and boot count.
    Robots {
        #[command(flatten)]
        conn: ConnArgs,
        /// How long to listen, in seconds.
        #[arg(long, default_value_t = 1.0, value_parser = seconds)]
        wait_s: f64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Print messages as JSON lines: {"topic": .., "payload": ..}.
    Echo {
        /// MQTT topic filter, e.g. robot/+/gps/fix or robot/#.
        filter: String,
        #[command(flatten)]
        conn: ConnArgs,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Print payloads as hex instead of decoding them.
        #[arg(long)]
        raw: bool,
        /// YAML-style output, one block per message.
        #[arg(long)]
        pretty: bool,
        /// Print one field of each payload, e.g. header.seq.
        #[arg(long)]
        field: Option<String>,
        /// Exit after this many seconds without a message.
        #[arg(long, value_parser = seconds)]
        idle_timeout_s: Option<f64>,
    },
    /// Robots and topics seen (retained status and catalog, and live traffic).
    List {
        #[command(flatten)]
        conn: ConnArgs,
        /// How long to listen for traffic, in seconds.
        #[arg(long, default_value_t = 2.0, value_parser = seconds)]
        wait_s: f64,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Rate, min/max gap and seq gaps (lost messages) per topic, every second.
    Hz {
        filter: String,
        #[command(flatten)]
        conn: ConnArgs,
        /// Gaps kept per topic for the statistics.
        #[arg(long, default_value_t = 10_000)]
        window: usize,
        /// Stop after this many seconds.
        #[arg(long, value_parser = seconds)]
        seconds: Option<f64>,
    },
    /// Encode JSON as MessagePack and publish it.
    Pub {
        topic: String,
        json: String,
        #[command(flatten)]
        conn: ConnArgs,
        #[arg(long, default_value_t = 1)]
        qos: u8,
        #[arg(long)]
        retain: bool,
    },
}

/// Why a flag's value is not a number of seconds; clap prints it after the flag's name.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SecondsError {
    #[error("`{0}` is not a number of seconds")]
    NotANumber(String),
    #[error("{0} is not between 0 and 86400 seconds")]
    OutOfRange(String),
}

/// A number of seconds for a flag: finite, not negative, at most a day.
pub fn seconds(text: &str) -> Result<f64, SecondsError> {
    let v: f64 = text
        .parse()
        .map_err(|_| SecondsError::NotANumber(text.to_string()))?;
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(v)
    } else {
        Err(SecondsError::OutOfRange(text.to_string()))
    }
}

/// Broker options shared by the fleet tools; defaults come from the config file.
#[derive(Args, Clone)]
pub struct ConnArgs {
    /// Broker URL (default: mqtt.url from the config).
    #[arg(long)]
    pub url: Option<String>,
    /// Settings file (default: config/botbus.toml if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub username: Option<String>,
    /// File whose first line is the password.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_argument_definitions_are_consistent() {
        // clap's own check: no clashing names, defaults that parse, and so on.
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_are_a_finite_number_from_0_to_a_day() {
        assert_eq!(seconds("0"), Ok(0.0));
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(seconds("86400"), Ok(86_400.0));
        assert_eq!(
            seconds("soon").unwrap_err().to_string(),
            "`soon` is not a number of seconds"
        );
        for bad in ["-1", "86401", "NaN", "inf"] {
            assert_eq!(
                seconds(bad).unwrap_err().to_string(),
                format!("{bad} is not between 0 and 86400 seconds")
            );
        }
    }

    #[test]
    fn a_bad_number_of_seconds_is_a_usage_error_naming_the_flag() {
        let err = Cli::try_parse_from(["botbus", "topic", "list", "--wait-s", "90000"])
            .err()
            .map(|e| (e.exit_code(), e.to_string()))
            .unwrap_or_default();
        assert_eq!(err.0, 2, "{}", err.1);
        assert!(err.1.contains("--wait-s"), "{}", err.1);
        assert!(
            err.1.contains("90000 is not between 0 and 86400 seconds"),
            "{}",
            err.1
        );
    }

    #[test]
    fn topic_hz_takes_a_filter_the_connection_flags_and_its_defaults() {
        let cli = Cli::try_parse_from([
            "botbus",
            "topic",
            "hz",
            "robot/+/imu",
            "--url",
            "mqtt://b:1884",
            "--seconds",
            "3",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Topic {
            command:
                TopicCommand::Hz {
                    filter,
                    conn,
                    window,
                    seconds,
                },
        } = cli.command
        else {
            panic!("not topic hz");
        };
        assert_eq!(filter, "robot/+/imu");
        assert_eq!(conn.url.as_deref(), Some("mqtt://b:1884"));
        assert_eq!(window, 10_000);
        assert_eq!(seconds, Some(3.0));
    }
}
