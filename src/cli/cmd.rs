//! `botbus cmd`: send a command, print its ack, and end with 0 when the robot accepted it,
//! 1 when it refused it (the reason on stderr), 3 when no ack came in time.

use super::{CliError, Output};
use crate::fleet::cmd::{parse_json, send_command, CmdOutcome};
use crate::fleet::FleetOptions;
use std::io::Write;
use std::time::Duration;

/// Sends `json` to `robot`'s `actuator` and reports the outcome; an outcome other than
/// accepted is [`CliError::Exit`] with its code.
pub async fn run(
    opts: FleetOptions,
    robot: &str,
    actuator: &str,
    json: &str,
    timeout_ms: u64,
    out: impl Write,
    err: impl Write,
) -> Result<(), CliError> {
    let value = parse_json(json).map_err(CliError::usage)?;
    let timeout = Duration::from_millis(timeout_ms);
    let outcome = send_command(opts, robot, actuator, value, timeout).await?;
    match report(&outcome, robot, actuator, timeout_ms, out, err)? {
        0 => Ok(()),
        code => Err(CliError::Exit(code)),
    }
}

/// Prints the ack (if any) on `out` and why it failed on `err`; returns the exit code.
pub fn report(
    outcome: &CmdOutcome,
    robot: &str,
    actuator: &str,
    timeout_ms: u64,
    out: impl Write,
    mut err: impl Write,
) -> Result<u8, CliError> {
    let mut out = Output(out);
    // stderr is where errors go; if it is gone too, there is nowhere left to say so.
    match outcome {
        CmdOutcome::Accepted(a) => writeln!(out, "{a}")?,
        CmdOutcome::Rejected(a) => {
            writeln!(out, "{a}")?;
            let reason = a
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("rejected");
            let _ = writeln!(err, "botbus: command rejected: {reason}");
        }
        CmdOutcome::NoAck => {
            let _ = writeln!(
                err,
                "botbus: no ack from {robot}/{actuator} within {timeout_ms} ms"
            );
        }
    }
    Ok(outcome.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(outcome: CmdOutcome) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = report(&outcome, "r1", "drive", 3000, &mut out, &mut err).unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (code, text(out), text(err))
    }

    #[test]
    fn an_accepted_command_prints_its_ack_and_exits_0() {
        let ack = serde_json::json!({"id": 1, "ok": true, "error": null, "applied": {"linear": {"x": 0.5}}});
        let (code, out, err) = reported(CmdOutcome::Accepted(ack));
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "{\"id\":1,\"ok\":true,\"error\":null,\"applied\":{\"linear\":{\"x\":0.5}}}\n"
        );
        assert_eq!(err, "");
    }

    #[test]
    fn a_rejected_command_prints_its_ack_and_the_reason_and_exits_1() {
        let ack = serde_json::json!({"id": 2, "ok": false, "error": "linear.x: 5 is outside the limits [-1, 1]", "applied": null});
        let (code, out, err) = reported(CmdOutcome::Rejected(ack));
        assert_eq!(code, 1);
        assert!(out.starts_with("{\"id\":2,\"ok\":false,"), "{out}");
        assert_eq!(
            err,
            "botbus: command rejected: linear.x: 5 is outside the limits [-1, 1]\n"
        );
    }

    #[test]
    fn no_ack_in_time_says_so_on_stderr_and_exits_3() {
        let (code, out, err) = reported(CmdOutcome::NoAck);
        assert_eq!(code, 3);
        assert_eq!(out, "");
        assert_eq!(err, "botbus: no ack from r1/drive within 3000 ms\n");
    }

    #[tokio::test]
    async fn a_command_that_is_not_json_is_a_usage_error_before_connecting() {
        // Port 1 is never a broker; a connection attempt would fail with another error.
        let opts = FleetOptions::new("mqtt://127.0.0.1:1").unwrap();
        let err = run(
            opts,
            "r1",
            "drive",
            "{not json",
            100,
            Vec::new(),
            Vec::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let lines = err.stderr_lines();
        assert!(lines[0].starts_with("not valid JSON: "), "{lines:?}");
    }
}
