//! The broker a benchmark runs against: the one at `--url`, else a mosquitto started for
//! the run (free loopback port, temp dir) when one is installed, else the embedded rumqttd.

use super::BenchError;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A broker for the run; a mosquitto started here is stopped on drop.
pub struct BenchBroker {
    pub url: String,
    /// What it is, for the report.
    pub describe: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

/// An installed program: on PATH, else in the folders Debian installs mosquitto to.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The first line of `mosquitto -h`, e.g. `mosquitto version 2.0.11`.
pub fn mosquitto_version(program: &Path) -> String {
    Command::new(program)
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "mosquitto".into())
}

impl BenchBroker {
    /// The broker at `url`, used as is.
    pub fn external(url: &str) -> BenchBroker {
        BenchBroker {
            url: url.to_string(),
            describe: format!("{url} (given)"),
            child: None,
            dir: None,
        }
    }

    /// A mosquitto of our own when installed, else the embedded broker; both admit
    /// `max_connections` clients.
    pub fn start(max_connections: usize) -> Result<BenchBroker, BenchError> {
        match find_program("mosquitto") {
            Some(program) => BenchBroker::mosquitto(&program),
            None => {
                let port = crate::demo::start_broker_for(0, max_connections)
                    .map_err(|e| BenchError::Broker(e.to_string()))?;
                Ok(BenchBroker {
                    url: format!("mqtt://127.0.0.1:{port}"),
                    describe: format!(
                        "embedded rumqttd on 127.0.0.1:{port} (mosquitto is not installed)"
                    ),
                    child: None,
                    dir: None,
                })
            }
        }
    }

    fn mosquitto(program: &Path) -> Result<BenchBroker, BenchError> {
        let dir = std::env::temp_dir().join(format!(
            "botbus-bench-broker-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| BenchError::Broker(e.to_string()))?;
        let version = mosquitto_version(program);
        let mut last = String::new();
        // Another program may take the port between our probe and mosquitto's bind.
        for _ in 0..3 {
            let port = free_port().map_err(|e| BenchError::Broker(e.to_string()))?;
            // The defaults, except that queued QoS 1/2 messages for a subscriber that is
            // behind are never dropped (a burst queues tens of thousands) and no log file.
            let conf = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nlog_dest none\n"
            );
            let conf_path = dir.join("mosquitto.conf");
            std::fs::write(&conf_path, conf).map_err(|e| BenchError::Broker(e.to_string()))?;
            let mut child = Command::new(program)
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| BenchError::Broker(format!("cannot run mosquitto: {e}")))?;
            match wait_listening(&mut child, port) {
                Ok(()) => {
                    return Ok(BenchBroker {
                        url: format!("mqtt://127.0.0.1:{port}"),
                        describe: format!("{version} on 127.0.0.1:{port} (started for the run)"),
                        child: Some(child),
                        dir: Some(dir),
                    })
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = e;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(BenchError::Broker(format!(
            "mosquitto did not start: {last}"
        )))
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("not listening on port {port} after 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for BenchBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
