//! `botbus topic echo`: print the messages of a filter until `--count`, `--idle-timeout-s`
//! or a signal ends it.

use super::CliError;
use crate::fleet::client::check_filter;
use crate::fleet::echo::{echo, EchoOptions};
use crate::fleet::FleetOptions;
use std::future::Future;
use std::io::Write;

pub async fn run(
    opts: FleetOptions,
    filter: &str,
    eo: EchoOptions,
    stop: impl Future<Output = ()>,
    mut out: impl Write + Send,
) -> Result<(), CliError> {
    check_filter(filter).map_err(CliError::Usage)?;
    tokio::select! {
        r = echo(opts, filter, eo, &mut out) => { r?; }
        _ = stop => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_refuses_a_filter_with_a_misplaced_wildcard_before_connecting() {
        // Port 1 is never a broker; a connection attempt would fail with another error.
        let opts = FleetOptions::new("mqtt://127.0.0.1:1").unwrap();
        let eo = EchoOptions::default();
        let err = run(opts, "robot/a+", eo, std::future::pending(), Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.stderr_lines(),
            ["`robot/a+` is not a valid MQTT topic filter (`+` and `#` fill a whole level; `#` only last)"]
        );
    }
}
