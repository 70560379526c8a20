//! `botbus bench`: the command line's flags into [`BenchOptions`], and the report printed
//! as a table or one JSON object.

use super::args::{BenchArgs, ConnArgs};
use super::{tool, CliError};
use crate::bench::device::Workload;
use crate::bench::{self, report, BenchError, BenchOptions};
use std::io::Write;
use std::time::Duration;

/// The options for a run: the settings with `conn`'s flags; without `--url` a broker is
/// started for the run.
pub fn options(conn: &ConnArgs, args: BenchArgs) -> Result<BenchOptions, CliError> {
    let settings = tool::settings(conn)?;
    super::logging::init(&settings, Some("error,rumqttd=off"));
    let workload = match args.burst {
        Some(count) => Workload::Burst { count },
        None => Workload::Rate {
            hz: args.rate,
            duration: Duration::from_secs_f64(args.seconds),
        },
    };
    Ok(BenchOptions {
        settings,
        start_broker: conn.url.is_none(),
        qos: args.qos,
        workload,
        commands: args.commands,
        baseline: args.baseline,
        robots: args.robots,
    })
}

impl From<BenchError> for CliError {
    fn from(e: BenchError) -> CliError {
        CliError::Bench(e)
    }
}

/// Runs the benchmark and prints its report.
pub async fn run(opts: BenchOptions, json: bool, mut out: impl Write) -> Result<(), CliError> {
    let report = bench::run(opts).await?;
    let written = if json {
        report::write_json(&report, &mut out)
    } else {
        report::write_table(&report, &mut out)
    };
    written.map_err(CliError::Output)
}
