//! The `botbus` command line: parse arguments, load config, call the library. Errors are
//! one line on stderr with exit code 1 (runtime) or 2 (usage or config), never a panic.
//! What each command prints lives in [`botbus::cli`], where it is unit-tested.

use anyhow::{Context, Result};
use botbus::cli::args::{Cli, Command, TopicCommand};
use botbus::cli::{self, signal, tool, CliError};
use botbus::config::{LoadedSettings, Robot, Settings};
use botbus::fleet::echo::EchoOptions;
use clap::Parser;
use std::io::{stderr, stdout};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

fn load_settings(path: Option<&Path>) -> Result<LoadedSettings, CliError> {
    Ok(Settings::load(path)?)
}

fn load_robot(path: &Path) -> Result<Robot, CliError> {
    Ok(Robot::load(path)?)
}

async fn run_command(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { robot, config } => {
            let loaded = load_settings(config.as_deref())?;
            cli::logging::init(&loaded.settings, None);
            let robot = load_robot(&robot)?;
            botbus::daemon::run(robot, loaded.settings, signal::shutdown())
                .await
                .context("daemon")?;
        }
        Command::Check {
            robot,
            config,
            probe,
        } => {
            let loaded = load_settings(config.as_deref())?;
            let robot = load_robot(&robot)?;
            let found = cli::check::tls_findings(&loaded.settings, probe).await?;
            cli::check::report(&loaded, &robot, &found, stdout())?;
        }
        Command::Demo { seconds, port } => {
            cli::logging::init(&Settings::default(), Some("warn,rumqttd=off"));
            let limit = (seconds > 0).then(|| Duration::from_secs(seconds));
            let until = signal::shutdown_or_after(limit);
            botbus::demo::run(until, port, &mut stdout()).await?;
        }
        Command::Sim { robot } => {
            cli::logging::init(&Settings::default(), None);
            let robot = load_robot(&robot)?;
            cli::sim::run(&robot, signal::shutdown(), stdout(), stderr()).await?;
        }
        Command::Cmd {
            robot,
            actuator,
            json,
            conn,
            timeout_ms,
        } => {
            let opts = tool::options(&conn)?;
            let (out, err) = (stdout(), stderr());
            cli::cmd::run(opts, &robot, &actuator, &json, timeout_ms, out, err).await?;
        }
        Command::Robots { conn, wait_s, json } => {
            let opts = tool::options(&conn)?;
            let listing = cli::list::listen(opts, Duration::from_secs_f64(wait_s)).await?;
            cli::list::print_robots(&listing, json, stdout())?;
        }
        Command::Bench { conn, args, json } => {
            let opts = cli::bench::options(&conn, args)?;
            cli::bench::run(opts, json, stdout()).await?;
        }
        Command::Foxglove {
            filter,
            conn,
            listen,
        } => {
            let opts = tool::options(&conn)?;
            cli::view::foxglove(opts, &filter, listen, signal::shutdown(), stdout()).await?;
        }
        Command::Record {
            filter,
            output,
            conn,
            seconds,
            raw,
        } => {
            let opts = tool::options(&conn)?;
            let until = signal::shutdown_or_after(seconds.map(Duration::from_secs_f64));
            cli::view::record(opts, &filter, &output, raw, until, stdout()).await?;
        }
        Command::Play {
            file,
            conn,
            rate,
            looped,
            topics,
        } => {
            let opts = tool::options(&conn)?;
            let po = botbus::recording::PlayOptions {
                rate,
                looped,
                topics,
            };
            cli::view::play(opts, &file, po, signal::shutdown(), stdout()).await?;
        }
        Command::Certs { command } => {
            cli::certs::run(&command, std::time::SystemTime::now(), stdout())?;
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
                let opts = tool::options(&conn)?;
                let eo = EchoOptions {
                    count,
                    raw,
                    pretty,
                    field,
                    idle_timeout: idle_timeout_s.map(Duration::from_secs_f64),
                };
                cli::echo::run(opts, &filter, eo, signal::shutdown(), stdout()).await?;
            }
            TopicCommand::List { conn, wait_s, json } => {
                let opts = tool::options(&conn)?;
                let prefix = opts.topic_prefix.clone();
                let window = Duration::from_secs_f64(wait_s);
                let listing = cli::list::listen(opts, window).await?;
                cli::list::print_topics(&listing, &prefix, window, json, stdout())?;
            }
            TopicCommand::Hz {
                filter,
                conn,
                window,
                seconds,
            } => {
                let opts = tool::options(&conn)?;
                let seconds = seconds.map(Duration::from_secs_f64);
                let stop = signal::shutdown();
                cli::hz::topic_hz(opts, &filter, window, seconds, stop, stdout()).await?;
            }
            TopicCommand::Pub {
                topic,
                json,
                conn,
                qos,
                retain,
            } => {
                let opts = tool::options(&conn)?;
                let value = botbus::fleet::cmd::parse_json(&json).map_err(CliError::usage)?;
                botbus::fleet::cmd::publish_json(opts, &topic, &value, qos, retain)
                    .await
                    .map_err(CliError::from)?;
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
        Err(e) => match e.downcast_ref::<CliError>() {
            Some(c) => {
                for line in c.stderr_lines() {
                    eprintln!("botbus: {line}");
                }
                ExitCode::from(c.exit_code())
            }
            // The daemon's and the demo's errors: a runtime failure, with its causes.
            None => {
                eprintln!("botbus: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
