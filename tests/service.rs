//! Integration tests for running under systemd (issue 14): the real daemon talks the
//! notify protocol to a datagram socket the test binds, as systemd's would be. READY
//! comes without a broker, WATCHDOG at half of WATCHDOG_USEC while every task turns and
//! never once one is wedged (the debug-build hook `BOTBUS_TEST_WEDGE`), STATUS follows
//! the broker and devices, and STOPPING precedes a clean exit.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;
use tokio::net::UnixDatagram;
use tokio::time::Instant;

/// systemd's side of the protocol: every datagram, with its arrival time.
struct Manager {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    got: Vec<(Instant, String)>,
}

impl Manager {
    fn bind() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        Manager {
            socket: UnixDatagram::bind(&path).unwrap(),
            path,
            _dir: dir,
            got: Vec::new(),
        }
    }

    /// Waits for a datagram that has `state` as one of its lines; returns that datagram.
    async fn wait_for(&mut self, state: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let Some(d) = self.next_until(end).await else {
                panic!("no `{state}` within {within:?}; got {:?}", self.texts());
            };
            if d.lines().any(|l| l.starts_with(state)) {
                return d;
            }
        }
    }

    async fn next_until(&mut self, end: Instant) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout_at(end, self.socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        let text = String::from_utf8(buf[..n].to_vec()).unwrap();
        self.got.push((Instant::now(), text.clone()));
        Some(text)
    }

    /// Everything that arrives within `window`.
    async fn collect_for(&mut self, window: Duration) -> Vec<(Instant, String)> {
        let end = Instant::now() + window;
        let from = self.got.len();
        while self.next_until(end).await.is_some() {}
        self.got[from..].to_vec()
    }

    fn texts(&self) -> Vec<&str> {
        self.got.iter().map(|(_, t)| t.as_str()).collect()
    }
}

fn watchdogs(got: &[(Instant, String)]) -> Vec<Instant> {
    got.iter()
        .filter(|(_, t)| t == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect()
}

/// A robot whose base device has a command, so bus, commands and device tasks all run.
fn robot(id: &str, base: &std::path::Path) -> String {
    format!(
        "id = \"{id}\"\n{}{}",
        base_device(base, None),
        drive_command("reject", 5000, None)
    )
}

fn daemon(manager: &Manager, robot: String, url: &str, state: &std::path::Path) -> DaemonOptions {
    DaemonOptions::for_url(robot, url, state)
        .env("NOTIFY_SOCKET", manager.path.to_str().unwrap())
        // 400 ms: WATCHDOG=1 every 200 ms.
        .env("WATCHDOG_USEC", "400000")
}

#[tokio::test]
async fn ready_without_a_broker_then_watchdog_status_and_stopping() {
    // Through a proxy, so the shutdown can be made to wait for the broker (below).
    let mut broker = Broker::options().proxy().start();
    let url = broker.daemon_url();
    broker.stop();
    let mut manager = Manager::bind();
    let state = state_dir();
    let id = unique("notify");
    let base = PtyDevice::open();
    let mut daemon = Daemon::start(daemon(
        &manager,
        robot(&id, base.path()),
        &url,
        state.path(),
    ));

    // READY with the broker away: devices opened and settings valid is enough.
    let ready = manager.wait_for("READY=1", DEADLINE).await;
    assert!(
        ready.contains(&format!("STATUS=no broker at {url}; devices")),
        "{ready}"
    );

    // The watchdog is fed at half of WATCHDOG_USEC while the broker is still away.
    let got = manager.collect_for(Duration::from_secs(2)).await;
    let fed = watchdogs(&got);
    assert!(
        fed.len() >= 5,
        "WATCHDOG=1 {} times in 2 s: {got:?}",
        fed.len()
    );

    // The status line follows the broker and the device.
    broker.start_again();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    sub.wait_state(&id, "online").await;
    manager
        .wait_for(
            &format!("STATUS=connected to {url}; devices 1/1 up"),
            DEADLINE,
        )
        .await;
    // And telemetry flows, the watchdog notwithstanding.
    let mut base = base;
    base.send("tag=BAT v=12.5 i=0.5\r\n").await;
    let m = sub.wait_topic(&format!("robot/{id}/battery")).await;
    assert_eq!(m.get("voltage"), &rmpv::Value::F32(12.5));

    // A stalled link holds the shutdown for its grace period (the offline status waits
    // for its acknowledgement), so a late WATCHDOG=1 would show.
    broker.proxy().stall(true);
    daemon.signal(Signal::SIGTERM);
    let stopping = manager.wait_for("STOPPING=1", DEADLINE).await;
    assert!(stopping.contains("STATUS=stopping"), "{stopping}");
    // Nothing after STOPPING: a WATCHDOG=1 would re-arm systemd's watchdog during the
    // shutdown, and a status would hide "stopping".
    let after = manager.collect_for(Duration::from_millis(1500)).await;
    assert!(after.is_empty(), "sent after STOPPING=1: {after:?}");
    let status = daemon.wait_exit(DEADLINE).await.expect("the daemon exits");
    assert!(status.success(), "{status:?}");
}

/// Runs the daemon with `task` wedged 2 s after start, and checks that WATCHDOG=1 came
/// before and stops after, while the log names the task.
async fn wedged(task: &str) {
    let broker = Broker::start();
    let mut manager = Manager::bind();
    let state = state_dir();
    let id = unique("wedge");
    let base = PtyDevice::open();
    let opts = daemon(
        &manager,
        robot(&id, base.path()),
        &broker.daemon_url(),
        state.path(),
    )
    .env("BOTBUS_TEST_WEDGE", &format!("{task}@2000"));
    let daemon = Daemon::start(opts);
    manager.wait_for("READY=1", DEADLINE).await;
    let started = Instant::now();

    let got = manager.collect_for(Duration::from_secs(4)).await;
    let fed = watchdogs(&got);
    let before = fed
        .iter()
        .filter(|at| **at < started + Duration::from_millis(1400))
        .count();
    assert!(
        before >= 4,
        "WATCHDOG=1 before the wedge: {before}; {got:?}"
    );
    // The wedge happens at the first ping after 1.5 s; the ping after that finds it
    // unanswered. So nothing may come after about 2 s, and certainly not in the last 1.5 s.
    let after: Vec<_> = fed
        .iter()
        .filter(|at| **at > started + Duration::from_millis(2500))
        .collect();
    assert!(
        after.is_empty(),
        "WATCHDOG=1 went on after {task} wedged: {} more",
        after.len()
    );
    let log = daemon.log();
    assert!(
        log.contains("stopped answering") && log.contains(&format!("tasks={task}")),
        "the log names the wedged task: {log}"
    );
}

#[tokio::test]
async fn a_wedged_device_task_stops_the_watchdog() {
    wedged("device:base").await;
}

#[tokio::test]
async fn a_wedged_bus_task_stops_the_watchdog() {
    wedged("bus").await;
}

#[tokio::test]
async fn a_wedged_command_path_stops_the_watchdog() {
    wedged("commands").await;
}

#[tokio::test]
async fn without_notify_socket_nothing_is_sent_and_the_daemon_runs_as_before() {
    // WATCHDOG_USEC alone (no NOTIFY_SOCKET) must change nothing, the wedge hook included:
    // without a watchdog no task is probed, so none can hang on it.
    let broker = Broker::start();
    let state = state_dir();
    let id = unique("plain");
    let mut base = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    let mut daemon = Daemon::start(
        DaemonOptions::new(robot(&id, base.path()), &broker, state.path())
            .env("WATCHDOG_USEC", "400000")
            .env("BOTBUS_TEST_WEDGE", "device:base"),
    );
    sub.wait_device(&id, "base", true).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    base.send("tag=BAT v=11.5 i=0.5\r\n").await;
    let m = sub.wait_topic(&format!("robot/{id}/battery")).await;
    assert_eq!(m.get("voltage"), &rmpv::Value::F32(11.5));
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(DEADLINE).await.expect("the daemon exits");
    assert!(status.success(), "{status:?}");
}
