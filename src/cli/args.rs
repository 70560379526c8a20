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
    /// Validate the settings and a robot file; list every topic with its type and QoS, and
    /// check the TLS files (key matches certificate, dates, issuer).
    Check {
        #[arg(long)]
        robot: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also connect to the broker: TLS version, the server's chain and names against
        /// the URL's host, and whether it accepts our certificate and login.
        #[arg(long)]
        probe: bool,
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
    /// End-to-end benchmark: a simulated device on a pseudo-terminal, the daemon (as a
    /// child process), the broker and a subscriber; then commands back to the device.
    /// Without --url it starts a mosquitto (or, when none is installed, the embedded
    /// broker) on a free loopback port.
    Bench {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        args: BenchArgs,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve live topics to Foxglove or Lichtblick: a Foxglove WebSocket server (both
    /// subprotocol names, foxglove.websocket.v1 and foxglove.sdk.v1), one channel per
    /// topic (`/` + the MQTT topic), JSON with a JSON Schema per message type. Read-only.
    Foxglove {
        /// MQTT topic filter of what to serve.
        #[arg(default_value = "robot/#")]
        filter: String,
        #[command(flatten)]
        conn: ConnArgs,
        /// Address to listen on; use 0.0.0.0:8765 to serve other computers.
        #[arg(long, default_value = crate::foxglove::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
    },
    /// Record topics into an MCAP file (zstd chunks, JSON with JSON Schemas) that
    /// Foxglove and Lichtblick open, until Ctrl-C or --seconds.
    Record {
        /// MQTT topic filter of what to record, e.g. robot/r1/#.
        filter: String,
        /// The MCAP file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        #[command(flatten)]
        conn: ConnArgs,
        /// Stop after this many seconds.
        #[arg(long, value_parser = bench_seconds)]
        seconds: Option<f64>,
        /// Keep the MessagePack payloads as they came (`msgpack` message encoding).
        #[arg(long)]
        raw: bool,
    },
    /// Publish a recording back onto MQTT as MessagePack at its recorded pace, with each
    /// topic's QoS and retain flag. Command topics only when --topics names `cmd`.
    Play {
        /// The MCAP file (from `botbus record`).
        file: PathBuf,
        #[command(flatten)]
        conn: ConnArgs,
        /// Speed factor: 2 plays twice as fast.
        #[arg(long, default_value_t = 1.0, value_parser = rate)]
        rate: f64,
        /// Start again at the end, until Ctrl-C.
        #[arg(long = "loop")]
        looped: bool,
        /// Only topics matching this MQTT filter, e.g. 'robot/r1/#'.
        #[arg(long)]
        topics: Option<String>,
    },
    /// Make the certificates for mutual TLS: a CA, the broker's, and one per robot and
    /// fleet identity (see the README's security section).
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
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

/// `botbus certs`: each writes `<name>.crt` and `<name>.key` (mode 0600) into DIR.
#[derive(Subcommand, Debug, Clone)]
pub enum CertsCommand {
    /// A new CA: DIR/ca.crt (for the broker and every client) and DIR/ca.key (keep it off
    /// the broker and the robots: whoever has it can make identities).
    Ca {
        /// The folder to write to, created (mode 0700) when missing.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "botbus CA")]
        name: String,
        #[command(flatten)]
        opts: CertsArgs,
    },
    /// The broker's server certificate, signed by DIR's CA: DIR/broker.crt, DIR/broker.key.
    Broker {
        /// The folder of the CA that `botbus certs ca` made.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// A name or IP address clients connect to; repeat it for each. The first is also
        /// the common name.
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
        #[command(flatten)]
        opts: CertsArgs,
    },
    /// A robot's client certificate, CN = its robot id (the broker's username for the
    /// ACL), signed by DIR's CA: DIR/ID.crt, DIR/ID.key.
    Robot {
        /// The folder of the CA that `botbus certs ca` made.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The robot's `id`, as in its robot file.
        id: String,
        #[command(flatten)]
        opts: CertsArgs,
    },
    /// A fleet identity's client certificate (fleet tools, controllers), CN = NAME,
    /// signed by DIR's CA: DIR/NAME.crt, DIR/NAME.key.
    Fleet {
        /// The folder of the CA that `botbus certs ca` made.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The identity's name; the broker's ACL lists it with `user NAME`.
        name: String,
        #[command(flatten)]
        opts: CertsArgs,
    },
}

/// The flags every `botbus certs` command takes.
#[derive(Args, Debug, Clone)]
pub struct CertsArgs {
    /// Days the certificate is valid (default: 3650 for a CA, 825 for the others).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: Option<u32>,
    /// Replace files that exist.
    #[arg(long)]
    pub force: bool,
}

/// Why a flag's value is not a number of seconds; clap prints it after the flag's name.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SecondsError {
    #[error("`{0}` is not a number of seconds")]
    NotANumber(String),
    #[error("{0} is not between 0 and 86400 seconds")]
    OutOfRange(String),
    #[error("{0} is not above 0 seconds")]
    NotPositive(String),
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

/// A replay speed factor: from 0.001 (a second becomes 17 minutes) to 1000.
pub fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.001..=1000.0).contains(&v) => Ok(v),
        _ => Err(format!("`{text}` is not a speed factor from 0.001 to 1000")),
    }
}

/// A benchmark's length: a number of seconds above 0.
pub fn bench_seconds(text: &str) -> Result<f64, SecondsError> {
    match seconds(text)? {
        v if v > 0.0 => Ok(v),
        _ => Err(SecondsError::NotPositive(text.to_string())),
    }
}

/// `botbus bench`'s workload flags.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// QoS of the telemetry stream and of the subscriber: 0, 1 or 2.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Samples a second the device writes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// How long to write at --rate (or, with --robots, to publish).
    #[arg(long, default_value_t = 5.0, value_parser = bench_seconds)]
    pub seconds: f64,
    /// Write this many samples as fast as the daemon reads them, instead of a rate.
    #[arg(long, conflicts_with = "robots", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub burst: Option<u64>,
    /// Simulate this many robots in-process, each with its own connection, publishing
    /// 3 streams at 10 Hz, and measure what a fleet subscriber on robot/# receives.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub robots: Option<u64>,
    /// Twist commands sent at 50 Hz after the telemetry, timed to the device and to
    /// their ack (0: none).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=125_250))]
    pub commands: u64,
    /// Also run the same workload through `mosquitto_pub -l` and compare CPU costs.
    #[arg(long, conflicts_with = "robots")]
    pub baseline: bool,
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
    fn a_replay_rate_is_a_finite_factor_from_a_thousandth_to_a_thousand() {
        assert_eq!(rate("2"), Ok(2.0));
        assert_eq!(rate("0.001"), Ok(0.001));
        for bad in ["0", "1e-300", "-1", "1001", "NaN", "inf", "fast"] {
            assert_eq!(
                rate(bad),
                Err(format!("`{bad}` is not a speed factor from 0.001 to 1000"))
            );
        }
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
    fn bench_flags_out_of_range_are_usage_errors_naming_the_flag() {
        for (flag, value, why) in [
            ("--qos", "3", "3 is not in 0..=2"),
            ("--rate", "0", "0 is not in 1..=1000000"),
            ("--robots", "0", "0 is not in 1..=10000"),
            ("--seconds", "0", "0 is not above 0 seconds"),
        ] {
            let err = Cli::try_parse_from(["botbus", "bench", flag, value])
                .err()
                .map(|e| (e.exit_code(), e.to_string()))
                .unwrap_or_default();
            assert_eq!(err.0, 2, "{flag}: {}", err.1);
            assert!(err.1.contains(flag) && err.1.contains(why), "{}", err.1);
        }
        let both = Cli::try_parse_from(["botbus", "bench", "--burst", "10", "--robots", "2"]);
        assert!(both.is_err(), "--burst and --robots do not go together");
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
