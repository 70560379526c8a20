//! Logging for the command line: `tracing` to stderr, so stdout carries only a command's
//! output, in the settings' format (text or JSON).

use crate::config::settings::LogFormat;
use crate::config::Settings;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; later calls keep the first one. `default_level` replaces
/// `log.level` where a command needs its own (fleet tools log only errors).
pub fn init(settings: &Settings, default_level: Option<&str>) {
    let filter = filter(settings, default_level, std::env::var("RUST_LOG").ok());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
    fn rust_log_wins_when_it_parses_and_is_ignored_when_it_does_not() {
        assert_eq!(shown(Some("error"), Some("botbus=trace")), "botbus=trace");
        assert_eq!(shown(Some("error"), Some("botbus=[")), "error");
    }
}
