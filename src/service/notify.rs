//! The systemd notify protocol (sd_notify(3)) without libsystemd: newline-separated
//! `KEY=VALUE` states in one datagram to the Unix socket named by `NOTIFY_SOCKET`, and the
//! watchdog period from `WATCHDOG_USEC`/`WATCHDOG_PID`.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET `{0}` is neither an absolute path nor an abstract socket (@name)")]
    Address(String),
    #[error("WATCHDOG_USEC `{0}` is not a positive number of microseconds")]
    WatchdogUsec(String),
}

/// Where the notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Path(PathBuf),
    /// Linux's abstract namespace (`@name` in the variable).
    Abstract(Vec<u8>),
}

impl Address {
    pub fn parse(v: &str) -> Result<Address, NotifyError> {
        if let Some(name) = v.strip_prefix('@') {
            if !name.is_empty() {
                return Ok(Address::Abstract(name.as_bytes().to_vec()));
            }
        } else if v.starts_with('/') {
            return Ok(Address::Path(v.into()));
        }
        Err(NotifyError::Address(v.to_string()))
    }
}

/// The service manager's variables, as read at start.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    pub notify_socket: Option<String>,
    pub watchdog_usec: Option<String>,
    pub watchdog_pid: Option<String>,
}

impl Vars {
    pub fn from_env() -> Vars {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Vars {
            notify_socket: get("NOTIFY_SOCKET"),
            watchdog_usec: get("WATCHDOG_USEC"),
            watchdog_pid: get("WATCHDOG_PID"),
        }
    }
}

/// Sends states to the service manager; does nothing when there is none.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, Address)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier for `vars`, as seen by process `pid`. The watchdog applies only when
    /// `WATCHDOG_PID` is unset or names us (it is not inherited by other processes).
    pub fn new(vars: &Vars, pid: u32) -> Result<Notifier, NotifyError> {
        let Some(v) = &vars.notify_socket else {
            return Ok(Notifier::default());
        };
        let addr = Address::parse(v)?;
        let watchdog = match &vars.watchdog_usec {
            None => None,
            Some(u) => match u.parse::<u64>() {
                Ok(us) if us > 0 => Some(Duration::from_micros(us)),
                _ => return Err(NotifyError::WatchdogUsec(u.clone())),
            },
        };
        let ours = vars
            .watchdog_pid
            .as_ref()
            .is_none_or(|p| p.parse::<u32>() == Ok(pid));
        // Non-blocking: a manager that stopped reading must never hold up the daemon (the
        // safe-state writes come right after STOPPING=1); a datagram it cannot take is
        // dropped, as sd_notify(3) allows.
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok()
            .map(|s| (s, addr));
        Ok(Notifier {
            socket,
            watchdog: watchdog.filter(|_| ours),
        })
    }

    /// Reads the variables of this process; a bad value is logged and disables
    /// notification rather than stopping the daemon.
    pub fn from_env() -> Notifier {
        Notifier::new(&Vars::from_env(), std::process::id()).unwrap_or_else(|e| {
            tracing::warn!("systemd notification disabled: {e}");
            Notifier::default()
        })
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog timeout (`WATCHDOG_USEC`), when systemd asked for one.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one datagram of states, e.g. `"READY=1\nSTATUS=..."`. Best effort: a
    /// manager that went away must not disturb the robot.
    pub fn send(&self, states: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        let r = match addr {
            Address::Path(p) => socket.send_to(states.as_bytes(), p),
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| socket.send_to_addr(states.as_bytes(), &a))
            }
        };
        if let Err(e) = r {
            tracing::debug!("systemd notification not sent: {e}");
        }
    }
}

/// One `STATUS=` line: no newline may end the datagram's field early.
pub fn status(text: &str) -> String {
    format!("STATUS={}", text.replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(socket: Option<&str>, usec: Option<&str>, pid: Option<&str>) -> Vars {
        Vars {
            notify_socket: socket.map(str::to_string),
            watchdog_usec: usec.map(str::to_string),
            watchdog_pid: pid.map(str::to_string),
        }
    }

    #[test]
    fn addresses_are_absolute_paths_or_abstract_names() {
        assert_eq!(
            Address::parse("/run/systemd/notify"),
            Ok(Address::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            Address::parse("@sd-notify"),
            Ok(Address::Abstract(b"sd-notify".to_vec()))
        );
        for bad in ["relative/path", "@", "vsock:2:1234"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_notify_socket_nothing_is_enabled() {
        let n = Notifier::new(&vars(None, Some("1000000"), None), 7).unwrap();
        assert!(!n.enabled());
        assert_eq!(n.watchdog(), None);
    }

    #[test]
    fn the_watchdog_applies_to_its_own_pid_only() {
        let n = Notifier::new(&vars(Some("/x"), Some("4000000"), Some("7")), 7).unwrap();
        assert_eq!(n.watchdog(), Some(Duration::from_secs(4)));
        let n = Notifier::new(&vars(Some("/x"), Some("4000000"), None), 7).unwrap();
        assert_eq!(n.watchdog(), Some(Duration::from_secs(4)));
        let n = Notifier::new(&vars(Some("/x"), Some("4000000"), Some("8")), 7).unwrap();
        assert_eq!(n.watchdog(), None);
        assert!(n.enabled());
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Notifier::new(&vars(Some("/x"), Some("soon"), None), 7).is_err());
        assert!(Notifier::new(&vars(Some("/x"), Some("0"), None), 7).is_err());
        assert!(Notifier::new(&vars(Some("x"), None, None), 7).is_err());
    }

    #[test]
    fn states_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(&vars(Some(path.to_str().unwrap()), None, None), 1).unwrap();
        n.send("READY=1\nSTATUS=up");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("botbus-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(&vars(Some(&format!("@{name}")), None, None), 1).unwrap();
        n.send("WATCHDOG=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn a_status_stays_on_one_line() {
        assert_eq!(status("a\nb\rc"), "STATUS=a b c");
    }
}
