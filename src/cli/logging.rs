//! Logging for the command line: `tracing` to stderr, so stdout carries only a command's
//! output, in the settings' format (text or JSON). Colour only on a terminal (and never
//! with `NO_COLOR`); no timestamps when stderr is journald's, which stamps every line.

use crate::config::settings::LogFormat;
use crate::config::Settings;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; later calls keep the first one. `default_level` replaces
/// `log.level` where a command needs its own (fleet tools log only errors).
pub fn init(settings: &Settings, default_level: Option<&str>) {
    let filter = filter(settings, default_level, std::env::var("RUST_LOG").ok());
    let look = Look::of_stderr();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(look.colour);
    let _ = match (settings.log.format, look.timestamps) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.try_init(),
        (LogFormat::Text, false) => builder.without_time().try_init(),
    };
}

/// How the text log looks on this stderr.
#[derive(Debug, PartialEq, Eq)]
pub struct Look {
    pub colour: bool,
    pub timestamps: bool,
}

impl Look {
    fn of_stderr() -> Look {
        use std::io::IsTerminal;
        let stderr = std::io::stderr();
        Look::decide(
            stderr.is_terminal(),
            std::env::var_os("NO_COLOR"),
            journal_is(&stderr, std::env::var("JOURNAL_STREAM").ok()),
        )
    }

    /// Colour on a terminal unless `NO_COLOR` is set to anything non-empty (no-color.org);
    /// timestamps unless journald, which adds its own, reads the stream.
    pub fn decide(terminal: bool, no_color: Option<std::ffi::OsString>, journal: bool) -> Look {
        Look {
            colour: terminal && no_color.is_none_or(|v| v.is_empty()),
            timestamps: !journal,
        }
    }
}

/// Whether `JOURNAL_STREAM` (`<device>:<inode>`, set by systemd) names this very stream:
/// a child whose stderr was redirected keeps the variable but not the journal.
fn journal_is(stream: &impl std::os::fd::AsFd, journal_stream: Option<String>) -> bool {
    let Some(v) = journal_stream else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(stream.as_fd()) else {
        return false;
    };
    v == format!("{}:{}", st.st_dev, st.st_ino)
}

/// `RUST_LOG` when it parses, else `default_level`, else the settings' `log.level`.
pub fn filter(
    settings: &Settings,
    default_level: Option<&str>,
    rust_log: Option<String>,
) -> EnvFilter {
    let level = default_level.unwrap_or(&settings.log.level);
    rust_log
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(level))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(default_level: Option<&str>, rust_log: Option<&str>) -> String {
        let mut settings = Settings::default();
        settings.log.level = "debug".into();
        filter(&settings, default_level, rust_log.map(str::to_string)).to_string()
    }

    #[test]
    fn the_settings_level_applies_unless_the_command_sets_its_own() {
        assert_eq!(shown(None, None), "debug");
        assert_eq!(shown(Some("error"), None), "error");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let with = |t, nc: Option<&str>| Look::decide(t, nc.map(Into::into), false).colour;
        assert!(with(true, None));
        assert!(!with(false, None), "a pipe or a file gets no escapes");
        assert!(!with(true, Some("1")));
        assert!(with(true, Some("")), "an empty NO_COLOR does not count");
    }

    #[test]
    fn no_timestamps_for_journald() {
        assert!(!Look::decide(false, None, true).timestamps);
        assert!(Look::decide(false, None, false).timestamps);
    }

    #[test]
    fn journal_stream_must_name_this_very_stream() {
        let file = tempfile::tempfile().unwrap();
        let st = nix::sys::stat::fstat(&file).unwrap();
        let ours = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(journal_is(&file, Some(ours)));
        assert!(!journal_is(&file, Some("1:2".into())));
        assert!(!journal_is(&file, None));
    }

    #[test]
    fn rust_log_wins_when_it_parses_and_is_ignored_when_it_does_not() {
        assert_eq!(shown(Some("error"), Some("botbus=trace")), "botbus=trace");
        assert_eq!(shown(Some("error"), Some("botbus=[")), "error");
    }
}
