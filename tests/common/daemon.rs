//! The daemon launcher: the real `botbus run` process with a generated settings file, its
//! output in a log that is printed when the test fails, killed on drop.

use super::broker::Broker;
use super::process::botbus_command;
use super::util::unique;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How to run `botbus run`.
pub struct DaemonOptions {
    pub robot_toml: String,
    pub broker_url: String,
    /// The state directory (boot counter); share it between runs to see the counter rise.
    pub state_dir: PathBuf,
    pub client_id: String,
    pub keep_alive_s: u16,
    pub diagnostics_period_s: f64,
    /// Extra environment, e.g. `BOTBUS_MQTT__KEEP_ALIVE_S`.
    pub env: Vec<(String, String)>,
}

impl DaemonOptions {
    /// Against `broker` (through its proxy when it has one).
    pub fn new(robot_toml: impl Into<String>, broker: &Broker, state_dir: &Path) -> Self {
        DaemonOptions::for_url(robot_toml, &broker.daemon_url(), state_dir)
    }

    /// Against any URL (`mqtts://...`, a broker's plain URL past its proxy).
    pub fn for_url(robot_toml: impl Into<String>, url: &str, state_dir: &Path) -> Self {
        DaemonOptions {
            robot_toml: robot_toml.into(),
            broker_url: url.to_string(),
            state_dir: state_dir.to_path_buf(),
            client_id: unique("botbus-daemon"),
            keep_alive_s: 2,
            diagnostics_period_s: 0.5,
            env: Vec::new(),
        }
    }

    /// `mqtt.keep_alive_s` in the settings file (2 s unless set).
    pub fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive_s = seconds;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// The real `botbus run` process, with its stderr in a file; killed on drop, and its log
/// printed when the test failed.
pub struct Daemon {
    child: Child,
    status: Option<ExitStatus>,
    dir: TempDir,
    log: PathBuf,
}

impl Daemon {
    pub fn start(opts: DaemonOptions) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("botbus-daemon-")
            .tempdir()
            .expect("temp dir");
        let robot = dir.path().join("robot.toml");
        std::fs::write(&robot, &opts.robot_toml).expect("write robot file");
        let settings = dir.path().join("botbus.toml");
        std::fs::write(
            &settings,
            format!(
                "[mqtt]\nurl = \"{}\"\nclient_id = \"{}\"\nkeep_alive_s = {}\n\n[state]\ndir = \"{}\"\n\n[diagnostics]\nperiod_s = {}\n\n[log]\nlevel = \"info\"\n",
                opts.broker_url,
                opts.client_id,
                opts.keep_alive_s,
                opts.state_dir.display(),
                opts.diagnostics_period_s
            ),
        )
        .expect("write settings file");
        let log = dir.path().join("daemon.log");
        let log_file = std::fs::File::create(&log).expect("daemon log");
        let mut cmd = botbus_command();
        cmd.arg("run")
            .arg("--robot")
            .arg(&robot)
            .arg("--config")
            .arg(&settings)
            .current_dir(dir.path())
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file);
        let child = cmd.spawn().expect("run the botbus binary");
        Daemon {
            child,
            status: None,
            dir,
            log,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            kill(self.pid(), sig).expect("signal the daemon");
        }
    }

    /// Whether it is still running (it must never exit on its own).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(s)) => {
                self.status = Some(s);
                false
            }
            _ => true,
        }
    }

    /// Waits for the process to exit, or `None` after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        loop {
            if !self.is_running() {
                return self.status;
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- botbus daemon log ({}) -----\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
