//! Liveness probes for the systemd watchdog. The watchdog pings every task, and a task
//! answers from its own select loop, so an answer proves the loop still turns: a task
//! stuck in an await that never ends, or one that died, stops answering.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The watchdog's side: one ping for all, one answer slot per task.
pub struct Pulses {
    ping: watch::Sender<u64>,
    members: Vec<(String, Arc<AtomicU64>)>,
    /// The test hook's choice: which task wedges, and after how long.
    wedge: Option<(String, Duration)>,
    started: Instant,
}

impl Default for Pulses {
    fn default() -> Self {
        Pulses::new(wedge_hook())
    }
}

impl Pulses {
    /// `wedge` names a task that stops turning after a delay (for tests only).
    pub fn new(wedge: Option<(String, Duration)>) -> Pulses {
        Pulses {
            ping: watch::channel(0).0,
            members: Vec::new(),
            wedge,
            started: Instant::now(),
        }
    }

    /// Registers a task by name and returns the handle it answers with.
    pub fn pulse(&mut self, name: &str) -> Pulse {
        let ack = Arc::new(AtomicU64::new(*self.ping.borrow()));
        self.members.push((name.to_string(), ack.clone()));
        let wedge = match &self.wedge {
            Some((who, after)) if who == name => Some(self.started + *after),
            _ => None,
        };
        Pulse {
            ping: Some(self.ping.subscribe()),
            ack,
            wedge,
        }
    }

    /// Tasks that have not answered the last ping, by name.
    pub fn stuck(&self) -> Vec<&str> {
        let epoch = *self.ping.borrow();
        self.members
            .iter()
            .filter(|(_, ack)| ack.load(Ordering::Acquire) != epoch)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Pings every task; each answers when its loop next turns.
    pub fn ping(&self) {
        self.ping.send_modify(|e| *e += 1);
    }
}

/// A task's side of the probe. [`Pulse::none`] is never pinged (no watchdog, or a task
/// outside the daemon).
#[derive(Clone, Debug)]
pub struct Pulse {
    ping: Option<watch::Receiver<u64>>,
    ack: Arc<AtomicU64>,
    wedge: Option<Instant>,
}

impl Default for Pulse {
    fn default() -> Self {
        Pulse::none()
    }
}

impl Pulse {
    pub fn none() -> Pulse {
        Pulse {
            ping: None,
            ack: Arc::default(),
            wedge: None,
        }
    }

    /// Resolves with the ping's number when the watchdog pings; cancel-safe, so a select
    /// loop can wait on it beside its real work. Never resolves without a watchdog.
    pub async fn pinged(&mut self) -> u64 {
        if let Some(rx) = &mut self.ping {
            if rx.changed().await.is_ok() {
                return *rx.borrow_and_update();
            }
            // The watchdog is gone (the daemon is stopping): nothing more to answer.
            self.ping = None;
        }
        std::future::pending().await
    }

    /// Answers ping `epoch`; called from the task's loop body, after [`Pulse::pinged`].
    /// Under the test hook, the task wedges here for good instead.
    pub async fn answer(&self, epoch: u64) {
        if self.wedge.is_some_and(|at| Instant::now() >= at) {
            tracing::warn!("test hook BOTBUS_TEST_WEDGE: this task now hangs");
            std::future::pending::<()>().await;
        }
        self.ack.store(epoch, Ordering::Release);
    }
}

/// `BOTBUS_TEST_WEDGE=<task>[@<ms>]` wedges the named task (`bus`, `commands` or
/// `device:<name>`) `ms` after start, so a test can show the watchdog stopping. Debug
/// builds only: a release binary ignores it.
fn wedge_hook() -> Option<(String, Duration)> {
    if !cfg!(debug_assertions) {
        return None;
    }
    parse_wedge(&std::env::var("BOTBUS_TEST_WEDGE").ok()?)
}

fn parse_wedge(v: &str) -> Option<(String, Duration)> {
    let (name, ms) = match v.split_once('@') {
        Some((name, ms)) => (name, ms.parse().ok()?),
        None => (v, 0),
    };
    (!name.is_empty()).then(|| (name.to_string(), Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_answers_is_not_stuck_and_one_that_does_not_is_named() {
        let mut pulses = Pulses::new(None);
        let mut a = pulses.pulse("bus");
        let _b = pulses.pulse("device:gps");
        assert!(
            pulses.stuck().is_empty(),
            "nothing is stuck before the first ping"
        );
        pulses.ping();
        let epoch = a.pinged().await;
        a.answer(epoch).await;
        assert_eq!(pulses.stuck(), vec!["device:gps"]);
        pulses.ping();
        assert_eq!(pulses.stuck(), vec!["bus", "device:gps"]);
    }

    #[tokio::test]
    async fn a_pulse_without_a_watchdog_never_resolves() {
        let mut none = Pulse::none();
        let waited = tokio::time::timeout(Duration::from_millis(20), none.pinged()).await;
        assert!(waited.is_err());
        let mut pulses = Pulses::new(None);
        let mut orphan = pulses.pulse("bus");
        drop(pulses);
        let waited = tokio::time::timeout(Duration::from_millis(20), orphan.pinged()).await;
        assert!(waited.is_err(), "a dropped watchdog must not spin the task");
    }

    #[tokio::test]
    async fn the_wedge_hook_hangs_only_the_named_task_after_its_delay() {
        let mut pulses = Pulses::new(Some(("device:gps".into(), Duration::ZERO)));
        let bus = pulses.pulse("bus");
        let gps = pulses.pulse("device:gps");
        pulses.ping();
        bus.answer(1).await;
        let hung = tokio::time::timeout(Duration::from_millis(20), gps.answer(1)).await;
        assert!(hung.is_err());
        assert_eq!(pulses.stuck(), vec!["device:gps"]);
    }

    #[test]
    fn wedge_values_parse_with_an_optional_delay() {
        assert_eq!(parse_wedge("bus"), Some(("bus".into(), Duration::ZERO)));
        assert_eq!(
            parse_wedge("device:gps@1500"),
            Some(("device:gps".into(), Duration::from_millis(1500)))
        );
        assert_eq!(parse_wedge("bus@soon"), None);
        assert_eq!(parse_wedge(""), None);
    }
}
