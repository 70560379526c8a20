//! Daemon settings (`config/botbus.toml`): built-in defaults, then the file, then
//! `BOTBUS_<SECTION>__<KEY>` environment overrides, layered with the `config` crate.

use super::broker_url::{BrokerUrl, BrokerUrlError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The built-in defaults, also the documented template of `config/botbus.toml`.
pub const DEFAULTS_TOML: &str = include_str!("../../config/botbus.toml");

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("{path}: no such file")]
    Missing { path: PathBuf },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A setting whose value cannot be used; the text names the key and says what to do.
#[derive(Debug, Error)]
pub enum InvalidSetting {
    #[error("mqtt.url: {0}")]
    Url(#[from] BrokerUrlError),
    #[error("mqtt.protocol: must be 3 or 5, not {0}")]
    Protocol(u8),
    #[error("mqtt.protocol: MQTT 5 is not supported by this build yet; use 3 (MQTT 3.1.1), which every broker speaks")]
    Mqtt5,
    #[error("mqtt.topic_prefix: `{0}` must be one or more non-empty levels joined by `/`, without MQTT wildcards or a leading `$`")]
    TopicPrefix(String),
    #[error("mqtt.max_payload_bytes: must be at least 64")]
    MaxPayload,
    #[error("mqtt.password and mqtt.password_file: give one, not both")]
    TwoPasswords,
    #[error("mqtt.cert_file and mqtt.key_file: client authentication needs both")]
    HalfClientAuth,
    #[error("mqtt.password: a password needs mqtt.username too")]
    PasswordWithoutUser,
    #[error("mqtt.{key}: cannot read `{path}`: {source}")]
    Unreadable {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("spool.backlog_share: must be above 0 and at most 1, not {0}")]
    BacklogShare(f64),
    #[error("diagnostics.period_s: must be between 0.01 and 86400 seconds, not {0}")]
    DiagnosticsPeriod(f64),
    #[error("log.level: `{0}` is not a log filter")]
    LogLevel(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub mqtt: MqttConfig,
    pub state: StateConfig,
    pub spool: SpoolConfig,
    pub diagnostics: DiagnosticsConfig,
    pub log: LogConfig,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub url: String,
    #[serde(default)]
    pub client_id: String,
    pub keep_alive_s: u16,
    pub topic_prefix: String,
    pub max_payload_bytes: usize,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password_file: String,
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    pub protocol: u8,
}

impl std::fmt::Debug for MqttConfig {
    /// Never prints the password, so settings can be logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("keep_alive_s", &self.keep_alive_s)
            .field("topic_prefix", &self.topic_prefix)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("protocol", &self.protocol)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub dir: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    DropOldest,
    DropNew,
}

/// What goes out first after an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replay {
    /// The backlog, then live data: everything arrives in the order it was read.
    OldestFirst,
    /// Live data at once; the backlog drains behind it, within `backlog_share`.
    LiveFirst,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    pub max_bytes: u64,
    pub on_full: OnFull,
    pub replay: Replay,
    /// With `live_first`: the share of the messages in flight the backlog may hold.
    pub backlog_share: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsConfig {
    pub period_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

/// Where the settings came from, for error messages and `check` output.
#[derive(Debug, Clone)]
pub struct LoadedSettings {
    pub settings: Settings,
    pub file: Option<PathBuf>,
}

impl Settings {
    /// Layers defaults, the file and the environment. With `explicit = None`,
    /// `config/botbus.toml` in the working directory is read when it exists.
    pub fn load(explicit: Option<&Path>) -> Result<LoadedSettings, SettingsError> {
        Self::load_with_env(explicit, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given, so tests need not touch the process's.
    pub fn load_with_env(
        explicit: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<LoadedSettings, SettingsError> {
        let file = match explicit {
            Some(p) if !p.is_file() => {
                return Err(SettingsError::Missing {
                    path: p.to_path_buf(),
                })
            }
            Some(p) => Some(p.to_path_buf()),
            None => {
                let p = PathBuf::from("config/botbus.toml");
                p.is_file().then_some(p)
            }
        };
        let settings = Self::build(file.as_deref(), env)?;
        Ok(LoadedSettings { settings, file })
    }

    fn build(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let origin = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in settings".to_string());

        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BOTBUS_") && k.contains("__"))
            .collect();
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULTS_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(p) = file {
            builder = builder.add_source(config::File::from(p).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("BOTBUS")
                .prefix_separator("_")
                .separator("__")
                // Values stay strings until serde asks for a number or a bool, so a
                // password `007123` or a prefix `007` is used exactly as given.
                .try_parsing(false)
                .source(Some(env)),
        );
        let invalid = |e: config::ConfigError| SettingsError::Invalid {
            origin: origin.clone(),
            message: e.to_string(),
        };
        let built = builder.build().map_err(invalid)?;
        let settings: Settings = built.try_deserialize().map_err(invalid)?;
        settings.validate().map_err(|e| SettingsError::Invalid {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        Ok(settings)
    }

    /// Checks the values (and that the files they name can be read), as loading does;
    /// for settings changed after loading, e.g. by a tool's command-line options.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let m = &self.mqtt;
        BrokerUrl::parse(&m.url)?;
        match m.protocol {
            3 => {}
            5 => return Err(InvalidSetting::Mqtt5),
            p => return Err(InvalidSetting::Protocol(p)),
        }
        if m.topic_prefix.split('/').any(|seg| seg.is_empty())
            || m.topic_prefix.contains(['+', '#'])
            || m.topic_prefix.starts_with('$')
        {
            return Err(InvalidSetting::TopicPrefix(m.topic_prefix.clone()));
        }
        if m.max_payload_bytes < 64 {
            return Err(InvalidSetting::MaxPayload);
        }
        if !m.password.is_empty() && !m.password_file.is_empty() {
            return Err(InvalidSetting::TwoPasswords);
        }
        if m.cert_file.is_empty() != m.key_file.is_empty() {
            return Err(InvalidSetting::HalfClientAuth);
        }
        if m.username.is_empty() && (!m.password.is_empty() || !m.password_file.is_empty()) {
            return Err(InvalidSetting::PasswordWithoutUser);
        }
        for (key, path) in [
            ("password_file", &m.password_file),
            ("ca_file", &m.ca_file),
            ("cert_file", &m.cert_file),
            ("key_file", &m.key_file),
        ] {
            if !path.is_empty() {
                std::fs::File::open(path).map_err(|source| InvalidSetting::Unreadable {
                    key,
                    path: path.clone(),
                    source,
                })?;
            }
        }
        let share = self.spool.backlog_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(InvalidSetting::BacklogShare(share));
        }
        let p = self.diagnostics.period_s;
        if !(0.01..=86_400.0).contains(&p) {
            return Err(InvalidSetting::DiagnosticsPeriod(p));
        }
        if self
            .log
            .level
            .parse::<tracing_subscriber::filter::EnvFilter>()
            .is_err()
        {
            return Err(InvalidSetting::LogLevel(self.log.level.clone()));
        }
        Ok(())
    }

    /// The state directory: `[state] dir` if set, else a per-user state directory.
    pub fn state_dir(&self) -> PathBuf {
        if !self.state.dir.is_empty() {
            return PathBuf::from(&self.state.dir);
        }
        dirs::state_dir()
            .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
            .unwrap_or_else(std::env::temp_dir)
            .join("botbus")
    }

    /// The password from `password_file` (first line) or the setting itself.
    pub fn password(&self) -> Result<Option<String>, SettingsError> {
        let m = &self.mqtt;
        if !m.password_file.is_empty() {
            let text =
                std::fs::read_to_string(&m.password_file).map_err(|e| SettingsError::Invalid {
                    origin: m.password_file.clone(),
                    message: format!("mqtt.password_file: cannot read: {e}"),
                })?;
            return Ok(Some(text.lines().next().unwrap_or("").to_string()));
        }
        Ok((!m.password.is_empty()).then(|| m.password.clone()))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::build(None, []).expect("the built-in settings are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_a_file() {
        let s = Settings::load_with_env(None, env(&[])).unwrap().settings;
        assert_eq!(s.mqtt.keep_alive_s, 5);
        assert_eq!(s.mqtt.topic_prefix, "robot");
        assert_eq!(s.mqtt.protocol, 3);
        assert_eq!(s.spool.on_full, OnFull::DropOldest);
        assert_eq!(s.spool.replay, Replay::OldestFirst);
    }

    #[test]
    fn live_first_replay_is_chosen_by_name_with_a_share_in_range() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("BOTBUS_SPOOL__REPLAY", "live_first"),
                ("BOTBUS_SPOOL__BACKLOG_SHARE", "0.25"),
            ]),
        )
        .unwrap()
        .settings;
        assert_eq!(
            (s.spool.replay, s.spool.backlog_share),
            (Replay::LiveFirst, 0.25)
        );
        let e = Settings::load_with_env(None, env(&[("BOTBUS_SPOOL__REPLAY", "newest_first")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("newest_first"), "{e}");
        for bad in ["0", "1.5", "-0.5", "NaN"] {
            let e = Settings::load_with_env(None, env(&[("BOTBUS_SPOOL__BACKLOG_SHARE", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.ends_with(&format!(
                    "spool.backlog_share: must be above 0 and at most 1, not {bad}"
                )),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.toml");
        std::fs::write(
            &f,
            "[mqtt]\nurl = \"mqtt://10.0.0.1:1883\"\nkeep_alive_s = 9\n",
        )
        .unwrap();
        let s = Settings::load_with_env(
            Some(&f),
            env(&[
                ("BOTBUS_MQTT__URL", "mqtt://127.0.0.1:1999"),
                ("HOME", "/x"),
            ]),
        )
        .unwrap()
        .settings;
        assert_eq!(s.mqtt.url, "mqtt://127.0.0.1:1999");
        assert_eq!(s.mqtt.keep_alive_s, 9);
    }

    #[test]
    fn environment_strings_are_kept_as_given_and_numbers_still_parse() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("BOTBUS_MQTT__PASSWORD", "007123"),
                ("BOTBUS_MQTT__TOPIC_PREFIX", "007"),
                ("BOTBUS_MQTT__CLIENT_ID", "True"),
                ("BOTBUS_MQTT__USERNAME", "1e2"),
                ("BOTBUS_MQTT__KEEP_ALIVE_S", "7"),
                ("BOTBUS_DIAGNOSTICS__PERIOD_S", "0.5"),
            ]),
        )
        .unwrap()
        .settings;
        assert_eq!(s.mqtt.password, "007123");
        assert_eq!(s.mqtt.topic_prefix, "007");
        assert_eq!(s.mqtt.client_id, "True");
        assert_eq!(s.mqtt.username, "1e2");
        assert_eq!(s.mqtt.keep_alive_s, 7);
        assert_eq!(s.diagnostics.period_s, 0.5);
        let e = Settings::load_with_env(None, env(&[("BOTBUS_MQTT__KEEP_ALIVE_S", "soon")]))
            .unwrap_err();
        assert!(e.to_string().contains("keep_alive_s"), "{e}");
    }

    #[test]
    fn files_that_cannot_be_read_and_a_password_without_a_user_are_refused() {
        for key in ["PASSWORD_FILE", "CA_FILE"] {
            let var = format!("BOTBUS_MQTT__{key}");
            let e = Settings::load_with_env(
                None,
                env(&[(&var, "/nonexistent/x.pem"), ("BOTBUS_MQTT__USERNAME", "u")]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("mqtt.{}", key.to_lowercase()))
                    && e.contains("/nonexistent/x.pem"),
                "{e}"
            );
        }
        let e = Settings::load_with_env(None, env(&[("BOTBUS_MQTT__PASSWORD", "hunter2")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mqtt.username"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn topic_prefixes_with_empty_levels_wildcards_or_a_dollar_are_refused() {
        for bad in ["", "robot/", "/robot", "a//b", "robot/+", "#", "$SYS"] {
            let e = Settings::load_with_env(None, env(&[("BOTBUS_MQTT__TOPIC_PREFIX", bad)]))
                .unwrap_err();
            assert!(e.to_string().contains("mqtt.topic_prefix"), "{bad:?}: {e}");
        }
        for good in ["robot", "fleet/eu-1"] {
            let s = Settings::load_with_env(None, env(&[("BOTBUS_MQTT__TOPIC_PREFIX", good)]));
            assert!(s.is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let e =
            Settings::load_with_env(Some(Path::new("/nonexistent/b.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/b.toml: no such file"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.toml");
        std::fs::write(&f, "[mqtt]\nurll = \"x\"\n").unwrap();
        let e = Settings::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("urll"), "{e}");
        std::fs::write(&f, "[mqtt]\nurl = \"http://x\"\n").unwrap();
        let e = Settings::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mqtt.url"), "{e}");
    }

    #[test]
    fn diagnostics_periods_outside_the_sane_range_are_refused() {
        for bad in ["inf", "1e-10", "0", "-1", "NaN"] {
            let e = Settings::load_with_env(None, env(&[("BOTBUS_DIAGNOSTICS__PERIOD_S", bad)]))
                .unwrap_err();
            assert!(e.to_string().contains("diagnostics.period_s"), "{bad}: {e}");
        }
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let mut s = Settings::default();
        s.mqtt.password = "hunter2".into();
        assert!(!format!("{:?}", s).contains("hunter2"));
    }
}
