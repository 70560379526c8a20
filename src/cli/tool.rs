//! Settings for the fleet tools (`topic ...`, `cmd`, `robots`): the daemon's settings with
//! the command line's connection flags on top, validated again after the change.

use super::args::ConnArgs;
use super::CliError;
use crate::bus::BrokerUrl;
use crate::config::Settings;
use crate::fleet::FleetOptions;
use std::path::PathBuf;

/// Loads the settings (`--config`, else `config/botbus.toml` if present, and the
/// environment) and applies `conn`.
pub fn settings(conn: &ConnArgs) -> Result<Settings, CliError> {
    let loaded = Settings::load(conn.config.as_deref())?;
    apply(conn, loaded.settings)
}

/// `settings` with `conn`'s flags in place of the file's values. A flag that is wrong is
/// the user's input: [`CliError::Usage`].
pub fn apply(conn: &ConnArgs, mut s: Settings) -> Result<Settings, CliError> {
    if let Some(u) = &conn.url {
        BrokerUrl::parse(u).map_err(|e| CliError::Usage(format!("--url: {e}")))?;
        s.mqtt.url = u.clone();
    }
    if let Some(u) = &conn.username {
        s.mqtt.username = u.clone();
    }
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    if let Some(p) = path(&conn.password_file) {
        // A password file on the command line replaces a password from the settings,
        // which would otherwise be "give one, not both".
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
    s.validate().map_err(CliError::usage)?;
    Ok(s)
}

/// The broker options for a tool, with logging kept to errors so stdout stays clean.
pub fn options(conn: &ConnArgs) -> Result<FleetOptions, CliError> {
    let settings = settings(conn)?;
    super::logging::init(&settings, Some("error"));
    FleetOptions::from_settings(&settings).map_err(CliError::usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_flags() -> ConnArgs {
        ConnArgs {
            url: None,
            config: None,
            username: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }

    /// A file that exists, for the flags that name one (validation opens them).
    fn some_file() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
    }

    #[test]
    fn without_flags_the_settings_are_unchanged() {
        let s = apply(&no_flags(), Settings::default()).unwrap();
        assert_eq!(s.mqtt.url, Settings::default().mqtt.url);
        assert_eq!(s.mqtt.username, "");
    }

    #[test]
    fn flags_replace_the_broker_credentials_and_tls_files() {
        let conn = ConnArgs {
            url: Some("mqtts://broker:8884".into()),
            username: Some("ops".into()),
            password_file: Some(some_file()),
            ca_file: Some(some_file()),
            cert_file: Some(some_file()),
            key_file: Some(some_file()),
            ..no_flags()
        };
        let mut base = Settings::default();
        base.mqtt.password = "from the settings".into();
        let s = apply(&conn, base).unwrap_or_else(|e| panic!("{e}"));
        let file = some_file().display().to_string();
        assert_eq!(s.mqtt.url, "mqtts://broker:8884");
        assert_eq!(s.mqtt.username, "ops");
        assert_eq!(
            s.mqtt.password, "",
            "the file replaces the settings' password"
        );
        for f in [
            &s.mqtt.password_file,
            &s.mqtt.ca_file,
            &s.mqtt.cert_file,
            &s.mqtt.key_file,
        ] {
            assert_eq!(f, &file);
        }
    }

    #[test]
    fn a_bad_url_flag_is_a_usage_error_that_names_the_flag() {
        let conn = ConnArgs {
            url: Some("http://broker".into()),
            ..no_flags()
        };
        let err = apply(&conn, Settings::default()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().starts_with("--url: `http://broker`"),
            "{err}"
        );
    }

    #[test]
    fn flags_that_do_not_fit_together_are_a_usage_error() {
        let conn = ConnArgs {
            cert_file: Some(some_file()),
            ..no_flags()
        };
        let err = apply(&conn, Settings::default()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "mqtt.cert_file and mqtt.key_file: client authentication needs both"
        );
    }

    #[test]
    fn a_tls_file_that_cannot_be_read_is_a_usage_error_naming_it() {
        let conn = ConnArgs {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..no_flags()
        };
        let err = apply(&conn, Settings::default()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .starts_with("mqtt.ca_file: cannot read `/nonexistent/ca.pem`"),
            "{err}"
        );
    }
}
