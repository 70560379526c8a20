//! Running under systemd: readiness, the watchdog, a one-line status and stopping, sent
//! through the notify protocol. Without a service manager (`NOTIFY_SOCKET` unset) none
//! of it does anything.

pub mod feeder;
pub mod notify;
pub mod pulse;

pub use feeder::Feeder;
pub use notify::Notifier;
pub use pulse::{Pulse, Pulses};

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

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
    /// current until [`Stopping::send`]. `status` is called on every refresh.
    pub fn start(self, status: impl Fn() -> String + Send + 'static) -> Stopping {
        let notifier = self.notifier.clone();
        let mut task = None;
        if notifier.enabled() {
            let first = status();
            notifier.send(&format!("READY=1\n{}", notify::status(&first)));
            tracing::debug!(status = %first, "told systemd we are ready");
            task = Some(tokio::spawn(supervise(
                self.notifier,
                self.pulses,
                status,
                first,
            )));
        }
        Stopping { notifier, task }
    }
}

/// Tells the manager that the daemon is stopping.
pub struct Stopping {
    notifier: Arc<Notifier>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Stopping {
    /// Ends the watchdog and status updates, then sends `STOPPING=1`. In that order: a
    /// `WATCHDOG=1` after `STOPPING=1` would re-arm systemd's watchdog in the middle of
    /// the shutdown, and a status refresh would hide "stopping".
    pub async fn send(self) {
        if let Some(task) = self.task {
            task.abort();
            let _ = task.await;
        }
        self.notifier
            .send("STOPPING=1\nSTATUS=stopping: actuators to safe state, flushing");
    }
}

/// Feeds the watchdog while every task answers its pings, and keeps the status current.
async fn supervise(
    notifier: Arc<Notifier>,
    pulses: Pulses,
    status: impl Fn() -> String,
    mut last: String,
) {
    let watchdog = notifier.watchdog();
    let mut feeder = watchdog.map(|w| Feeder::new(w / 2, Instant::now()));
    let check = watchdog.map_or(Duration::from_secs(3600), Feeder::check_every);
    let mut checks = tokio::time::interval(check);
    // A late wake-up (a loaded machine) must not fire a burst of checks that find the
    // ping they just sent unanswered.
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval(STATUS_EVERY);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            _ = checks.tick(), if feeder.is_some() => {
                let Some(f) = feeder.as_mut() else { continue };
                let d = f.check(Instant::now(), pulses.stuck().is_empty());
                if d.withheld {
                    tracing::error!(
                        tasks = %pulses.stuck().join(", "),
                        "tasks stopped answering; withholding the watchdog so systemd restarts the daemon"
                    );
                }
                if d.recovered {
                    tracing::info!("every task answers again; watchdog fed");
                }
                if d.ping {
                    pulses.ping();
                }
                if d.feed {
                    notifier.send("WATCHDOG=1");
                }
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
