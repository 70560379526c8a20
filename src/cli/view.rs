//! `botbus foxglove`, `botbus record` and `botbus play`: their checks of the arguments and
//! what they print.

use super::CliError;
use crate::fleet::FleetOptions;
use crate::recording::{Encoding, PlayOptions};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

fn check_filter(filter: &str) -> Result<(), CliError> {
    crate::fleet::client::check_filter(filter).map_err(CliError::Usage)
}

pub async fn foxglove(
    opts: FleetOptions,
    filter: &str,
    listen: SocketAddr,
    stop: impl Future<Output = ()>,
    mut out: impl Write + Send,
) -> Result<(), CliError> {
    check_filter(filter)?;
    crate::foxglove::run(opts, filter, listen, stop, &mut out)
        .await
        .map_err(CliError::Foxglove)
}

pub async fn record(
    opts: FleetOptions,
    filter: &str,
    file: &Path,
    raw: bool,
    stop: impl Future<Output = ()>,
    mut out: impl Write + Send,
) -> Result<(), CliError> {
    check_filter(filter)?;
    let url = opts.bus.url.to_string();
    let encoding = if raw {
        Encoding::Msgpack
    } else {
        Encoding::Json
    };
    let start = Instant::now();
    let mut said = Ok(());
    let totals = crate::recording::record(opts, filter, file, encoding, stop, || {
        said = writeln!(out, "recording {filter} from {url} to {}", file.display())
            .and_then(|_| out.flush());
    })
    .await
    .map_err(CliError::Record)?;
    said.map_err(CliError::Output)?;
    let skipped = match totals.skipped {
        0 => String::new(),
        n => format!(" ({n} payloads that are not MessagePack left out)"),
    };
    writeln!(
        out,
        "recorded {} messages on {} channels in {:.1} s to {}{skipped}",
        totals.messages,
        totals.channels,
        start.elapsed().as_secs_f64(),
        file.display()
    )
    .map_err(CliError::Output)
}

pub async fn play(
    opts: FleetOptions,
    file: &Path,
    po: PlayOptions,
    stop: impl Future<Output = ()>,
    mut out: impl Write + Send,
) -> Result<(), CliError> {
    if let Some(f) = &po.topics {
        check_filter(f)?;
    }
    let start = Instant::now();
    let played = crate::recording::play(opts, file, po, stop)
        .await
        .map_err(CliError::Play)?;
    let mut line = format!(
        "played {} messages from {} in {:.1} s",
        played.messages,
        file.display(),
        start.elapsed().as_secs_f64()
    );
    if !played.commands_held.is_empty() {
        let held: Vec<&str> = played.commands_held.iter().map(String::as_str).collect();
        line.push_str(&format!(
            "; command topics not replayed (name them with --topics): {}",
            held.join(", ")
        ));
    }
    if played.unreadable > 0 {
        line.push_str(&format!(
            "; {} messages could not be converted",
            played.unreadable
        ));
    }
    if !played.confirmed {
        line.push_str("; the broker did not acknowledge every QoS 1/2 message before the end");
    }
    if let Some(why) = &played.cut_off {
        line.push_str(&format!("; the recording ends early (cut off?): {why}"));
    }
    writeln!(out, "{line}").map_err(CliError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_filters_are_usage_errors_before_connecting() {
        // Port 1 is never a broker; a connection attempt would fail with another error.
        let opts = || FleetOptions::new("mqtt://127.0.0.1:1").unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let e = foxglove(
            opts(),
            "robot/#/x",
            listen,
            std::future::pending(),
            Vec::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.mcap");
        let e = record(
            opts(),
            "a+",
            &file,
            false,
            std::future::pending(),
            Vec::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!file.exists(), "nothing is created for a bad filter");
        let po = PlayOptions {
            rate: 1.0,
            looped: false,
            topics: Some("robot/#/cmd".into()),
        };
        let e = play(opts(), &file, po, std::future::pending(), Vec::new())
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[tokio::test]
    async fn a_file_that_is_not_an_mcap_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.mcap");
        std::fs::write(&file, "shopping list").unwrap();
        let po = PlayOptions {
            rate: 1.0,
            looped: false,
            topics: None,
        };
        let opts = FleetOptions::new("mqtt://127.0.0.1:1").unwrap();
        let e = play(opts, &file, po.clone(), std::future::pending(), Vec::new())
            .await
            .unwrap_err();
        let lines = e.stderr_lines();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with(&format!("{} is not an MCAP file: ", file.display())),
            "{lines:?}"
        );
        let opts = FleetOptions::new("mqtt://127.0.0.1:1").unwrap();
        let missing = dir.path().join("none.mcap");
        let e = play(opts, &missing, po, std::future::pending(), Vec::new())
            .await
            .unwrap_err();
        assert_eq!(
            e.stderr_lines(),
            [format!(
                "cannot read {}: No such file or directory (os error 2)",
                missing.display()
            )]
        );
    }
}
