//! The `botbus` command line: parse arguments, load config, call the library. Errors are
//! one line on stderr with exit code 1 (runtime) or 2 (usage or config), never a panic.

use anyhow::{Context, Result};
use botbus::config::{LoadedSettings, Robot, Settings};
use botbus::fleet::FleetOptions;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "botbus",
    version,
    about = "Robot telemetry bridge: serial and CAN devices to MQTT as MessagePack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
enum TopicCommand {
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

/// A number of seconds for a flag: finite, not negative, at most a day.
fn seconds(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{text} is not between 0 and 86400 seconds"))
    }
}

/// Broker options shared by the fleet tools; defaults come from the config file.
#[derive(Args, Clone)]
struct ConnArgs {
    /// Broker URL (default: mqtt.url from the config).
    #[arg(long)]
    url: Option<String>,
    /// Settings file (default: config/botbus.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    username: Option<String>,
    /// File whose first line is the password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    #[arg(long)]
    ca_file: Option<PathBuf>,
    #[arg(long)]
    cert_file: Option<PathBuf>,
    #[arg(long)]
    key_file: Option<PathBuf>,
}

/// A failure that is the user's input, not the runtime: exit code 2.
#[derive(Debug)]
struct UsageError(String);
impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// A chosen exit code with nothing more to print (e.g. `cmd`'s 0/1/3).
#[derive(Debug)]
struct Exit(u8);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Exit {}

/// Writes to stdout and flushes. A reader that went away (`botbus check ... | head`) ends
/// the command quietly with exit code 0, as it does for other Unix tools.
fn emit(text: std::fmt::Arguments) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(text).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(Exit(0))),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// `println!` through [`emit`], returning from the command when stdout is gone.
macro_rules! out {
    () => { emit(format_args!("\n"))? };
    ($($arg:tt)*) => { emit(format_args!("{}\n", format_args!($($arg)*)))? };
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(UsageError(e.to_string()))
}

fn load_settings(path: Option<&Path>) -> Result<LoadedSettings> {
    Settings::load(path).map_err(usage)
}

fn load_robot(path: &Path) -> Result<Robot> {
    Robot::load(path).map_err(usage)
}

fn init_logging(settings: &Settings, default_level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let level = default_level.unwrap_or(&settings.log.level);
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.log.format {
        botbus::config::settings::LogFormat::Json => builder.json().try_init(),
        botbus::config::settings::LogFormat::Text => builder.try_init(),
    };
}

fn tool_settings(conn: &ConnArgs) -> Result<Settings> {
    let mut s = load_settings(conn.config.as_deref())?.settings;
    if let Some(u) = &conn.url {
        botbus::bus::BrokerUrl::parse(u).map_err(|e| usage(format!("--url: {e}")))?;
        s.mqtt.url = u.clone();
    }
    if let Some(u) = &conn.username {
        s.mqtt.username = u.clone();
    }
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    if let Some(p) = path(&conn.password_file) {
        s.mqtt.password = String::new();
        s.mqtt.password_file = p;
    }
    if let Some(p) = path(&conn.ca_file) {
        s.mqtt.ca_file = p;
    }
    if let Some(p) = path(&conn.cert_file) {
        s.mqtt.cert_file = p;
    }
    if let Some(p) = path(&conn.key_file) {
        s.mqtt.key_file = p;
    }
    s.validate().map_err(usage)?;
    Ok(s)
}

/// Settings for a fleet tool, with logging kept to errors so stdout stays clean.
fn tool_options(conn: &ConnArgs) -> Result<FleetOptions> {
    let settings = tool_settings(conn)?;
    init_logging(&settings, Some("error"));
    FleetOptions::from_settings(&settings).map_err(usage)
}

/// Listens on `<prefix>/#` for `window`: retained status and catalogs, and live traffic.
async fn listen(opts: FleetOptions, window: Duration) -> Result<botbus::fleet::list::Listing> {
    let prefix = opts.topic_prefix.clone();
    let fleet = botbus::fleet::FleetClient::connect(opts).await?;
    let mut rx = fleet.subscribe_raw(&format!("{prefix}/#")).await?;
    let mut listing = botbus::fleet::list::Listing::default();
    let end = tokio::time::Instant::now() + window;
    while let Ok(Some(m)) = tokio::time::timeout_at(end, rx.recv()).await {
        listing.observe(&prefix, &m.topic, &m.payload, m.retain);
    }
    fleet.close().await;
    Ok(listing)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run_command(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { robot, config } => {
            let loaded = load_settings(config.as_deref())?;
            init_logging(&loaded.settings, None);
            let robot = load_robot(&robot)?;
            botbus::daemon::run(robot, loaded.settings, shutdown_signal())
                .await
                .context("daemon")?;
        }
        Command::Check { robot, config } => {
            let loaded = load_settings(config.as_deref())?;
            let robot = load_robot(&robot)?;
            let s = &loaded.settings;
            let topics = botbus::meta::Topics::new(&s.mqtt.topic_prefix, &robot.id);
            let origin = loaded
                .file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into());
            out!("settings: {origin}; broker {}", s.mqtt.url);
            out!(
                "robot {} ({}): {} devices",
                robot.id,
                robot.file.display(),
                robot.devices.len()
            );
            for (d, st) in robot.streams() {
                let rate = st
                    .min_interval
                    .map(|i| format!("  max {:.3} Hz", 1.0 / i.as_secs_f64()))
                    .unwrap_or_default();
                out!(
                    "  stream  {:<40} {:<26} qos {}{}  device {}{}",
                    topics.sensor(&st.sensor),
                    st.msg_type.name(),
                    st.qos,
                    if st.retain { " retained" } else { "" },
                    d.name,
                    rate
                );
            }
            for (d, c) in robot.commands() {
                out!(
                    "  command {:<40} {:<26} qos 1  device {}  ack {}",
                    topics.command(&c.actuator),
                    c.msg_type.name(),
                    d.name,
                    topics.ack(&c.actuator)
                );
            }
            out!(
                "  command {:<40} {:<26} qos 1  all actuators  ack {}",
                topics.command("estop"),
                "{\"engage\": bool}",
                topics.ack("estop")
            );
            for t in [topics.status(), topics.catalog()] {
                out!("  meta    {t:<40} qos 1 retained");
            }
            out!(
                "  meta    {:<40} qos 0 every {} s",
                topics.diagnostics(),
                s.diagnostics.period_s
            );
            out!("ok");
        }
        Command::Demo { seconds, port } => {
            let settings = Settings::default();
            init_logging(&settings, Some("warn,rumqttd=off"));
            let until = async move {
                if seconds == 0 {
                    shutdown_signal().await
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
                        _ = shutdown_signal() => {}
                    }
                }
            };
            let mut out = std::io::stdout();
            botbus::demo::run(until, port, &mut out).await?;
        }
        Command::Sim { robot } => {
            init_logging(&Settings::default(), None);
            let robot = load_robot(&robot)?;
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let sims = botbus::sim::start(&robot, &botbus::sim::SimOptions::default(), tx, stop_rx)
                .await?;
            for d in robot.devices.iter().filter(|d| !botbus::sim::supports(d)) {
                eprintln!(
                    "sim: device {} ({}) is not simulated by this build",
                    d.name,
                    d.protocol.name()
                );
            }
            for s in &sims {
                match &s.linked {
                    Some(l) => out!(
                        "{} ({}): {} <- {}",
                        s.name,
                        s.protocol,
                        s.endpoint,
                        l.display()
                    ),
                    None => out!("{} ({}): {}", s.name, s.protocol, s.endpoint),
                }
            }
            let sig = shutdown_signal();
            tokio::pin!(sig);
            loop {
                tokio::select! {
                    _ = &mut sig => break,
                    r = rx.recv() => match r {
                        Some(r) => if emit(format_args!("{} received: {}\n", r.device, r.line)).is_err() {
                            break;
                        },
                        None => break,
                    }
                }
            }
            for s in &sims {
                if let Some(l) = &s.linked {
                    let _ = std::fs::remove_file(l);
                }
            }
        }
        Command::Cmd {
            robot,
            actuator,
            json,
            conn,
            timeout_ms,
        } => {
            let opts = tool_options(&conn)?;
            let value = botbus::fleet::cmd::parse_json(&json).map_err(usage)?;
            let outcome = botbus::fleet::cmd::send_command(
                opts,
                &robot,
                &actuator,
                value,
                Duration::from_millis(timeout_ms),
            )
            .await?;
            use botbus::fleet::cmd::CmdOutcome;
            match &outcome {
                CmdOutcome::Accepted(a) => out!("{a}"),
                CmdOutcome::Rejected(a) => {
                    out!("{a}");
                    let reason = a
                        .get("error")
                        .and_then(|e| e.as_str())
                        .unwrap_or("rejected");
                    eprintln!("botbus: command rejected: {reason}");
                }
                CmdOutcome::NoAck => {
                    eprintln!("botbus: no ack from {robot}/{actuator} within {timeout_ms} ms")
                }
            }
            return Err(anyhow::Error::new(Exit(outcome.exit_code())));
        }
        Command::Robots { conn, wait_s, json } => {
            let opts = tool_options(&conn)?;
            let listing = listen(opts, Duration::from_secs_f64(wait_s)).await?;
            let robots = listing.robots();
            if json {
                out!("{}", serde_json::to_string_pretty(&robots)?);
            } else {
                emit(format_args!(
                    "{}",
                    botbus::fleet::list::render_robots(&robots)
                ))?;
            }
        }
        Command::Topic { command } => match command {
            TopicCommand::Echo {
                filter,
                conn,
                count,
                raw,
                pretty,
                field,
                idle_timeout_s,
            } => {
                let opts = tool_options(&conn)?;
                if !botbus::fleet::client::valid_filter(&filter) {
                    return Err(usage(format!(
                        "`{filter}` is not a valid MQTT topic filter (`+` and `#` fill a whole level; `#` only last)"
                    )));
                }
                let eo = botbus::fleet::echo::EchoOptions {
                    count,
                    raw,
                    pretty,
                    field,
                    idle_timeout: idle_timeout_s.map(Duration::from_secs_f64),
                };
                let mut out = std::io::stdout();
                let run = botbus::fleet::echo::echo(opts, &filter, eo, &mut out);
                tokio::select! {
                    r = run => { r?; }
                    _ = shutdown_signal() => {}
                }
            }
            TopicCommand::List { conn, wait_s, json } => {
                let opts = tool_options(&conn)?;
                let prefix = opts.topic_prefix.clone();
                let window = Duration::from_secs_f64(wait_s);
                let listing = listen(opts, window).await?;
                let robots = listing.robots();
                let topics = listing.topics(&prefix, window);
                if json {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"robots": robots, "topics": topics})
                        )?
                    );
                } else {
                    emit(format_args!(
                        "{}",
                        botbus::fleet::list::render_robots(&robots)
                    ))?;
                    out!();
                    emit(format_args!(
                        "{}",
                        botbus::fleet::list::render_topics(&topics)
                    ))?;
                }
            }
            TopicCommand::Hz {
                filter,
                conn,
                window,
                seconds,
            } => {
                let opts = tool_options(&conn)?;
                if !botbus::fleet::client::valid_filter(&filter) {
                    return Err(usage(format!(
                        "`{filter}` is not a valid MQTT topic filter"
                    )));
                }
                let fleet = botbus::fleet::FleetClient::connect(opts).await?;
                let mut rx = fleet.subscribe_raw(&filter).await?;
                let mut hz = botbus::fleet::hz::Hz::new(window);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                let end = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
                let sig = shutdown_signal();
                tokio::pin!(sig);
                loop {
                    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(m) => hz.record(&m.topic, &m.payload, std::time::Instant::now()),
                            None => break,
                        },
                        _ = tick.tick() => {
                            let lines = hz.report();
                            if lines.is_empty() {
                                out!("(no messages yet on {filter})");
                            }
                            for l in lines {
                                out!("{l}");
                            }
                        }
                        _ = tokio::time::sleep_until(end.unwrap_or(far)), if end.is_some() => break,
                        _ = &mut sig => break,
                    }
                }
                fleet.close().await;
            }
            TopicCommand::Pub {
                topic,
                json,
                conn,
                qos,
                retain,
            } => {
                let opts = tool_options(&conn)?;
                let value = botbus::fleet::cmd::parse_json(&json).map_err(usage)?;
                botbus::fleet::cmd::publish_json(opts, &topic, &value, qos, retain).await?;
            }
        },
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("botbus: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run_command(cli));
    // Device reads may sit in blocking calls; do not wait for them on exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Exit>().is_some() => {
            ExitCode::from(e.downcast_ref::<Exit>().map_or(1, |x| x.0))
        }
        Err(e) => {
            let invalid_input = matches!(
                e.downcast_ref::<botbus::fleet::echo::ToolError>(),
                Some(botbus::fleet::echo::ToolError::Invalid(_))
            );
            let code = if invalid_input || e.downcast_ref::<UsageError>().is_some() {
                2
            } else {
                1
            };
            if let Some(u) = e.downcast_ref::<UsageError>() {
                // Config errors already name the file and key path, one problem per line.
                for line in u.0.lines() {
                    eprintln!("botbus: {line}");
                }
            } else {
                eprintln!("botbus: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}
