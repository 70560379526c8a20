//! Running under systemd: readiness, the watchdog, a one-line status and stopping, sent
//! through the notify protocol. Without a service manager (`NOTIFY_SOCKET` unset) none
//! of it does anything.

pub mod notify;
pub mod pulse;

pub use notify::Notifier;
pub use pulse::{Pulse, Pulses};

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the status line is refreshed when it changed.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The service manager's connection and the probes of the daemon's tasks.
#[derive(Default)]
pub struct Service {
    notifier: Arc<Notifier>,
    pulses: Pulses,
}

impl Service {
    /// The manager named by this process's environment, if any.
    pub fn from_env() -> Service {
        Service::new(Notifier::from_env(), Pulses::default())
    }

    pub fn new(notifier: Notifier, pulses: Pulses) -> Service {
        Service {
            notifier: Arc::new(notifier),
            pulses,
        }
    }

    /// A probe for the named task. Without a watchdog it is never pinged.
    pub fn pulse(&mut self, name: &str) -> Pulse {
        if self.notifier.watchdog().is_some() {
            self.pulses.pulse(name)
        } else {
            Pulse::none()
        }
    }

    /// Sends `READY=1` and the first status, then keeps the watchdog fed and the status
    /// current until `stop`. `status` is called on every refresh.
    pub fn start(
        self,
        status: impl Fn() -> String + Send + 'static,
        stop: watch::Receiver<bool>,
    ) -> Stopping {
        let notifier = self.notifier.clone();
        if notifier.enabled() {
            let first = status();
            notifier.send(&format!("READY=1\n{}", notify::status(&first)));
            tracing::debug!(status = %first, "told systemd we are ready");
            tokio::spawn(supervise(self.notifier, self.pulses, status, first, stop));
        }
        Stopping(notifier)
    }
}

/// Tells the manager that the daemon is stopping.
pub struct Stopping(Arc<Notifier>);

impl Stopping {
    pub fn send(&self) {
        self.0
            .send("STOPPING=1\nSTATUS=stopping: actuators to safe state, flushing");
    }
}

/// Every half watchdog period: `WATCHDOG=1` if every task answered the last ping, then a
/// new ping. A task that did not answer withholds the notification, so systemd restarts
/// a daemon with a wedged part instead of trusting a half-dead one.
async fn supervise(
    notifier: Arc<Notifier>,
    pulses: Pulses,
    status: impl Fn() -> String,
    mut last: String,
    mut stop: watch::Receiver<bool>,
) {
    let half = notifier.watchdog().map(|w| w / 2);
    let mut feed = tokio::time::interval(half.unwrap_or(Duration::from_secs(3600)));
    let mut refresh = tokio::time::interval(STATUS_EVERY);
    refresh.tick().await;
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = feed.tick(), if half.is_some() => {
                let stuck = pulses.stuck();
                if stuck.is_empty() {
                    notifier.send("WATCHDOG=1");
                    if std::mem::take(&mut withheld) {
                        tracing::info!("every task answers again; watchdog fed");
                    }
                } else if !withheld {
                    withheld = true;
                    tracing::error!(
                        tasks = %stuck.join(", "),
                        "tasks stopped answering; withholding the watchdog so systemd restarts the daemon"
                    );
                }
                pulses.ping();
            }
            _ = refresh.tick() => {
                let now = status();
                if now != last {
                    notifier.send(&notify::status(&now));
                    last = now;
                }
            }
        }
    }
}
