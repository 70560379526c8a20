//! The one mosquitto launcher: a real broker on free loopback ports, configured by
//! [`BrokerOptions`] (persistence, fault-test queues and logging, a TLS listener, a
//! password listener, a [`Proxy`] in front), killed on drop, and able to stop, restart
//! (hard or graceful) and start again on the same ports.

use super::proxy::Proxy;
use super::util::{euid_is_root, free_port, write_file};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A mosquitto program (`mosquitto`, `mosquitto_passwd`): on PATH, else in the sbin and
/// bin folders Debian installs it to.
pub fn mosquitto_program(name: &str) -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed (looked on PATH and in /usr/sbin); scripts/test installs it");
}

/// The files of a TLS listener that requires a client certificate signed by `ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to configure a [`Broker`]; from [`Broker::options`], finished by [`start`].
///
/// [`start`]: BrokerOptions::start
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    persistence: bool,
    for_faults: bool,
    tls: Option<TlsFiles>,
    password: Option<(String, String)>,
    proxy: bool,
    shipped: bool,
    /// A configuration file with textual substitutions ([`BrokerOptions::config_file`]).
    file: Option<(PathBuf, Vec<(String, String)>)>,
}

impl BrokerOptions {
    /// `persistence true` with a database in the broker's temp dir, saved every second and
    /// on a graceful stop, so sessions and queued messages survive a restart.
    pub fn persistence(mut self, on: bool) -> Self {
        self.persistence = on;
        self
    }

    /// For fault tests: never drop queued QoS 1 messages for a slow subscriber
    /// (`max_queued_messages 0`: a replayed spool is a burst of thousands), and log no
    /// per-packet lines (soak runs are long).
    pub fn for_faults(mut self) -> Self {
        self.for_faults = true;
        self
    }

    /// Runs the example configuration shipped in `config/mosquitto.conf`, on a free
    /// loopback port with its database in the broker's temp dir.
    pub fn shipped_example(mut self) -> Self {
        self.shipped = true;
        self
    }

    /// Runs the configuration file at `path` (e.g. one of `config/mosquitto/`) with each
    /// `(from, to)` of `substitutions` replaced textually, `{port}` in a `to` standing for
    /// [`Broker::port`] (a free loopback port); its database and log go to the broker's
    /// temp dir. A `from` the file lacks is an error, so a renamed setting cannot go unseen.
    pub fn config_file(mut self, path: impl Into<PathBuf>, substitutions: &[(&str, &str)]) -> Self {
        let subs = substitutions
            .iter()
            .map(|(from, to)| (from.to_string(), to.to_string()))
            .collect();
        self.file = Some((path.into(), subs));
        self
    }

    /// Adds a mutual-TLS listener ([`Broker::tls_port`]) requiring a client certificate.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Adds a listener ([`Broker::login_port`]) that admits only `user` with `password`.
    pub fn password(mut self, user: &str, password: &str) -> Self {
        self.password = Some((user.into(), password.into()));
        self
    }

    /// Puts a [`Proxy`] in front of the plain listener ([`Broker::proxy`]); a daemon
    /// started with [`DaemonOptions::new`](super::DaemonOptions::new) connects through it.
    pub fn proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    /// Starts the broker (inside a tokio runtime when it has a proxy).
    pub fn start(self) -> Broker {
        let mut dir = super::util::temp_dir("botbus-mosquitto-");
        for _ in 0..8 {
            let mut b = Broker {
                port: free_port(),
                tls_port: self.tls.as_ref().map(|_| free_port()),
                login_port: self.password.as_ref().map(|_| free_port()),
                dir,
                child: None,
                runs: 0,
                opts: self.clone(),
                proxy: None,
            };
            match b.launch() {
                Ok(()) => {
                    if self.proxy {
                        b.proxy = Some(Proxy::start(b.port));
                    }
                    return b;
                }
                // Another test may have taken a port between probe and bind: try others.
                Err(e) => {
                    eprintln!("mosquitto did not start on port {}: {e}; retrying", b.port);
                    dir = std::mem::replace(&mut b.dir, TempDir::new().expect("temp dir"));
                }
            }
        }
        panic!("mosquitto could not start on any port");
    }
}

/// A real mosquitto broker on a free loopback port, killed on drop (its log printed when
/// the test failed). `stop`, `start_again` and the restarts keep the same ports.
pub struct Broker {
    port: u16,
    tls_port: Option<u16>,
    login_port: Option<u16>,
    dir: TempDir,
    child: Option<Child>,
    /// How many times it has been started, to name each run's log.
    runs: u32,
    opts: BrokerOptions,
    proxy: Option<Proxy>,
}

impl Broker {
    /// A plain broker: anonymous, no persistence, every packet logged.
    pub fn start() -> Broker {
        Broker::options().start()
    }

    pub fn options() -> BrokerOptions {
        BrokerOptions::default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("mosquitto-{}.log", self.runs))
    }

    /// [`BrokerOptions::config_file`]'s file with its substitutions made.
    fn file_config(&self, path: &Path, subs: &[(String, String)]) -> Result<String, String> {
        let mut text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for (from, to) in subs {
            if !text.contains(from.as_str()) {
                return Err(format!("{} has no `{from}`", path.display()));
            }
            text = text.replace(from.as_str(), &to.replace("{port}", &self.port.to_string()));
        }
        text.push_str(&format!(
            "\npersistence_location {}/\nlog_dest stderr\nlog_type all\n",
            self.dir.path().display()
        ));
        if euid_is_root() {
            text.push_str("user root\n");
        }
        Ok(text)
    }

    fn config(&self) -> Result<String, String> {
        let o = &self.opts;
        if let Some((path, subs)) = &o.file {
            return self.file_config(path, subs);
        }
        if o.shipped {
            let path = super::util::repo_path("config/mosquitto.conf");
            let shipped = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            if !shipped.contains("\nlistener 1883\n") {
                return Err(format!("{} has no `listener 1883` line", path.display()));
            }
            let mut text = shipped.replace(
                "\nlistener 1883\n",
                &format!("\nlistener {} 127.0.0.1\n", self.port),
            );
            text.push_str(&format!(
                "persistence_location {}/\nlog_dest stderr\nlog_type all\n",
                self.dir.path().display()
            ));
            if euid_is_root() {
                text.push_str("user root\n");
            }
            return Ok(text);
        }
        let mut text = String::new();
        let per_listener = o.tls.is_some() || o.password.is_some();
        if per_listener {
            text.push_str("per_listener_settings true\n");
        }
        text.push_str(&format!(
            "listener {} 127.0.0.1\nallow_anonymous true\n",
            self.port
        ));
        if let (Some(port), Some(tls)) = (self.tls_port, &o.tls) {
            text.push_str(&format!(
                "\nlistener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\n\
                 keyfile {}\nrequire_certificate true\n",
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display()
            ));
        }
        if let (Some(port), Some((user, password))) = (self.login_port, &o.password) {
            let passwd = self.dir.path().join("passwd");
            let st = Command::new(mosquitto_program("mosquitto_passwd"))
                .args(["-b", "-c"])
                .arg(&passwd)
                .args([user, password])
                .status()
                .map_err(|e| format!("cannot run mosquitto_passwd: {e}"))?;
            if !st.success() {
                return Err(format!("mosquitto_passwd failed: {st}"));
            }
            text.push_str(&format!(
                "\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
                passwd.display()
            ));
        }
        if per_listener {
            text.push('\n');
        }
        if o.for_faults {
            text.push_str(
                "max_queued_messages 0\nlog_dest stderr\nlog_type error\nlog_type warning\n\
                 log_type notice\nlog_type information\n",
            );
        } else {
            text.push_str("log_dest stderr\nlog_type all\n");
        }
        if o.persistence {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                self.dir.path().display()
            ));
        } else {
            text.push_str("persistence false\n");
        }
        if euid_is_root() {
            // As root, mosquitto switches to the `mosquitto` user, which can read neither
            // the key files nor write the database in this private temp dir.
            text.push_str("user root\n");
        }
        Ok(text)
    }

    fn launch(&mut self) -> Result<(), String> {
        self.runs += 1;
        let conf = write_file(self.dir.path(), "mosquitto.conf", &self.config()?);
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let child = Command::new(mosquitto_program("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run mosquitto: {e}"))?;
        self.child = Some(child);
        let ports: Vec<u16> = [Some(self.port), self.tls_port, self.login_port]
            .into_iter()
            .flatten()
            .collect();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log()));
            }
            // "running" is logged after the listeners are bound, so the ports are ours, not
            // a neighbour's that happened to pick the same numbers.
            let log = self.log();
            if log.contains(" running")
                && ports
                    .iter()
                    .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                return Ok(());
            }
            if Instant::now() >= end {
                self.stop();
                return Err(format!("not accepting after 10 s; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The plain, anonymous listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The plain listener's URL (never through the proxy).
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The mutual-TLS listener's port (with [`BrokerOptions::tls`]).
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("a broker started with .tls(...)")
    }

    /// The password listener's port (with [`BrokerOptions::password`]).
    pub fn login_port(&self) -> u16 {
        self.login_port
            .expect("a broker started with .password(...)")
    }

    /// The proxy in front of the plain listener (with [`BrokerOptions::proxy`]).
    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("a broker started with .proxy()")
    }

    /// The URL a daemon should use: the proxy's when there is one, else the broker's.
    pub fn daemon_url(&self) -> String {
        self.proxy.as_ref().map_or_else(|| self.url(), Proxy::url)
    }

    /// The current run's log.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Kills the broker with SIGKILL: clients see the connection drop, and nothing is
    /// saved beyond the last autosave.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker with SIGTERM, as a service manager does; mosquitto saves its
    /// database on the way out. SIGKILL after 10 s.
    pub fn stop_graceful(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                if Instant::now() >= end {
                    eprintln!("mosquitto ignored SIGTERM for 10 s; killing it");
                    let _ = c.kill();
                    let _ = c.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the broker again on the same ports (with its database, when persistent).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return,
                // The old socket may linger briefly; mosquitto binds with SO_REUSEADDR, but
                // be patient anyway.
                Err(e) if Instant::now() < end => {
                    eprintln!("mosquitto restart on port {}: {e}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("mosquitto did not restart on port {}: {e}", self.port),
            }
        }
    }

    /// A hard restart: SIGKILL, then start again.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// A graceful restart: SIGTERM, then start again.
    pub fn restart_graceful(&mut self) {
        self.stop_graceful();
        self.start_again();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- mosquitto log (port {}, run {}) -----\n{}",
                self.port,
                self.runs,
                self.log()
            );
        }
        self.stop();
    }
}
