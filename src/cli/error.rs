//! [`CliError`]: every way a command ends other than success, with its exit code (0 ok,
//! 1 runtime, 2 usage or config, `cmd`'s 0/1/3) and the lines it prints on stderr.

use crate::config::{RobotFileError, SettingsError};
use crate::fleet::echo::ToolError;
use crate::fleet::FleetError;
use crate::sim::SimError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    /// The user's input (a flag, a filter, a JSON argument): exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The settings file or environment: exit code 2.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The robot file, one line per problem: exit code 2.
    #[error(transparent)]
    Robot(#[from] RobotFileError),
    /// A fleet tool; [`ToolError::Invalid`] is the user's input (exit code 2).
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Sim(#[from] SimError),
    /// `botbus certs` failed other than by its arguments: files, DIR's CA (exit code 1).
    #[error(transparent)]
    Certs(#[from] crate::cli::certs::CertsRunError),
    /// `botbus bench` could not run (no broker, the daemon failed): exit code 1.
    #[error(transparent)]
    Bench(crate::bench::BenchError),
    /// `botbus foxglove`: the address is taken, or the broker is unreachable.
    #[error(transparent)]
    Foxglove(crate::foxglove::FoxgloveError),
    #[error(transparent)]
    Record(crate::recording::RecordError),
    #[error(transparent)]
    Play(crate::recording::PlayError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The reader of standard output went away (`botbus check ... | head`): the command
    /// ends quietly with exit code 0, as other Unix tools do.
    #[error("standard output was closed")]
    StdoutClosed,
    #[error("cannot write to standard output")]
    Output(#[source] std::io::Error),
    /// A chosen exit code with nothing more to print (`cmd`'s 1 and 3).
    #[error("exit {0}")]
    Exit(u8),
}

impl CliError {
    pub fn usage(message: impl std::fmt::Display) -> CliError {
        CliError::Usage(message.to_string())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::StdoutClosed => 0,
            CliError::Exit(code) => *code,
            CliError::Usage(_)
            | CliError::Settings(_)
            | CliError::Robot(_)
            | CliError::Tool(ToolError::Invalid(_)) => 2,
            _ => 1,
        }
    }

    /// What to print on stderr, each line after `botbus: `. Config errors already name
    /// the file and key path, one problem per line, so each line gets the prefix; other
    /// errors are one line with their causes, `error: cause: cause`.
    pub fn stderr_lines(&self) -> Vec<String> {
        match self {
            CliError::StdoutClosed | CliError::Exit(_) => Vec::new(),
            CliError::Usage(_) | CliError::Settings(_) | CliError::Robot(_) => {
                self.to_string().lines().map(str::to_string).collect()
            }
            _ => {
                let mut line = self.to_string();
                let mut cause = std::error::Error::source(self);
                while let Some(c) = cause {
                    line.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                vec![line]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Robot;
    use std::path::Path;

    #[test]
    fn a_robot_file_with_two_problems_exits_2_with_one_line_for_each() {
        let text = "id = \"r 1\"\nowner = \"nobody\"\n";
        let err = CliError::from(Robot::from_str(text, Path::new("robots/r1.toml")).unwrap_err());
        assert_eq!(err.exit_code(), 2);
        let lines = err.stderr_lines();
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.starts_with("robots/r1.toml: ")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_closed_stdout_and_a_chosen_code_end_without_a_message() {
        assert_eq!(CliError::StdoutClosed.exit_code(), 0);
        assert!(CliError::StdoutClosed.stderr_lines().is_empty());
        assert_eq!(CliError::Exit(3).exit_code(), 3);
        assert!(CliError::Exit(3).stderr_lines().is_empty());
    }

    #[test]
    fn an_invalid_tool_argument_exits_2_and_a_tool_failure_exits_1() {
        let invalid = CliError::from(ToolError::Invalid("`r/1` is not a robot id".into()));
        assert_eq!(invalid.exit_code(), 2);
        assert_eq!(invalid.stderr_lines(), ["`r/1` is not a robot id"]);
        let down = CliError::from(ToolError::from(FleetError::Unreachable(
            "mqtt://127.0.0.1:1".into(),
        )));
        assert_eq!(down.exit_code(), 1);
        assert_eq!(
            down.stderr_lines(),
            ["cannot reach the broker at mqtt://127.0.0.1:1"]
        );
    }

    #[test]
    fn a_failed_write_to_stdout_names_stdout_and_its_cause_on_one_line() {
        let err = CliError::Output(std::io::Error::other("disk on fire"));
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.stderr_lines(),
            ["cannot write to standard output: disk on fire"]
        );
    }

    #[test]
    fn a_multi_line_usage_message_gets_one_prefix_per_line() {
        let err = CliError::usage("a.toml: mqtt.url: bad\na.toml: log.level: bad");
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.stderr_lines(),
            ["a.toml: mqtt.url: bad", "a.toml: log.level: bad"]
        );
    }
}
