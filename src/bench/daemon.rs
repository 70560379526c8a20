//! The daemon under test, as a child process (`botbus run`) of the very binary running
//! the bench, so its CPU time and memory are its own. Its robot file has one `lines`
//! device (`kv`) on the bench's pty with one `map` stream and one Twist command.

use super::BenchError;
use crate::config::Settings;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The bench robot's stream and actuator.
pub const SENSOR: &str = "bench";
pub const ACTUATOR: &str = "drive";

/// The robot file: the device on `serial_path`, its stream at `qos`.
pub fn robot_file(id: &str, serial_path: &Path, qos: u8) -> String {
    let path = toml::Value::String(serial_path.display().to_string());
    format!(
        r#"id = "{id}"

[[devices]]
name = "dev"
protocol = "lines"
serial = {{ path = {path}, baud = 115200 }}
format = "kv"
idle_timeout_ms = 0
  [[devices.streams]]
  sensor = "{SENSOR}"
  type = "map"
  qos = {qos}
  [[devices.commands]]
  actuator = "{ACTUATOR}"
  type = "geometry_msgs/Twist"
  template = "D {{linear.x:.3}} {{angular.z:.3}}"
  limits = {{ "linear.x" = [-1.0, 1.0], "angular.z" = [-2.0, 2.0] }}
  timeout_ms = 5000
  safe = {{ "linear.x" = 0.0, "angular.z" = 0.0 }}
"#
    )
}

/// The daemon's settings: the bench's broker and credentials (a password given inline
/// goes through the environment instead), a private state directory, diagnostics twice
/// a second, warnings only.
pub fn settings_file(settings: &Settings, client_id: &str, state_dir: &Path) -> String {
    let m = &settings.mqtt;
    let mut mqtt = toml::Table::new();
    let mut put = |k: &str, v: toml::Value| {
        mqtt.insert(k.into(), v);
    };
    put("url", m.url.clone().into());
    put("client_id", client_id.into());
    put("keep_alive_s", i64::from(m.keep_alive_s).into());
    put("topic_prefix", m.topic_prefix.clone().into());
    put("protocol", i64::from(m.protocol).into());
    for (k, v) in [
        ("username", &m.username),
        ("password_file", &m.password_file),
        ("ca_file", &m.ca_file),
        ("cert_file", &m.cert_file),
        ("key_file", &m.key_file),
    ] {
        if !v.is_empty() {
            put(k, v.clone().into());
        }
    }
    let mut root = toml::Table::new();
    root.insert("mqtt".into(), mqtt.into());
    let table = |k: &str, v: toml::Value| toml::Table::from_iter([(k.to_string(), v)]);
    let state = state_dir.display().to_string();
    root.insert("state".into(), table("dir", state.into()).into());
    root.insert("diagnostics".into(), table("period_s", 0.5.into()).into());
    root.insert("log".into(), table("level", "warn".into()).into());
    root.to_string()
}

/// A running `botbus run`, stopped (SIGTERM, then SIGKILL) by [`DaemonChild::stop`] or
/// killed on drop.
pub struct DaemonChild {
    child: Child,
    pub pid: u32,
    stderr: PathBuf,
}

impl DaemonChild {
    /// Starts `botbus run` with the files in `dir`; its stderr goes to `dir/daemon.log`.
    pub fn spawn(dir: &Path, settings: &Settings) -> Result<DaemonChild, BenchError> {
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::Setup(format!("cannot find the botbus binary: {e}")))?;
        let stderr = dir.join("daemon.log");
        let log = std::fs::File::create(&stderr).map_err(|e| BenchError::Setup(e.to_string()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .arg("--robot")
            .arg(dir.join("robot.toml"))
            .arg("--config")
            .arg(dir.join("botbus.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        // The bench's settings are in the file; environment overrides must not change them.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BOTBUS_") {
                cmd.env_remove(k);
            }
        }
        if settings.mqtt.password_file.is_empty() && !settings.mqtt.password.is_empty() {
            cmd.env("BOTBUS_MQTT__PASSWORD", &settings.mqtt.password);
        }
        let child = cmd
            .spawn()
            .map_err(|e| BenchError::Setup(format!("cannot start the daemon: {e}")))?;
        let pid = child.id().unwrap_or(0);
        Ok(DaemonChild { child, pid, stderr })
    }

    /// An error when the daemon has exited, with the last line it printed.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(BenchError::Daemon(format!(
                "exited with {status}: {}",
                self.last_words()
            ))),
            _ => Ok(()),
        }
    }

    /// The daemon's last line on stderr.
    pub fn last_words(&self) -> String {
        std::fs::read_to_string(&self.stderr)
            .ok()
            .and_then(|t| t.lines().last().map(str::to_string))
            .unwrap_or_else(|| "no output".into())
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(nix::unistd::Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Robot;

    #[test]
    fn the_bench_robot_file_and_settings_are_valid() {
        let dir = std::env::temp_dir();
        let text = robot_file("bench-1", Path::new("/dev/pts/99"), 1);
        let robot = Robot::from_str(&text, &dir.join("robot.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(robot.streams().count(), 1);
        assert_eq!(robot.commands().count(), 1);
        let text = settings_file(&Settings::default(), "bench-1", &dir);
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["diagnostics"]["period_s"].as_float(), Some(0.5));
        assert_eq!(parsed["mqtt"]["client_id"].as_str(), Some("bench-1"));
    }
}
