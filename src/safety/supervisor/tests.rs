//! The supervisor's tests: every rule driven by events under paused time.

use super::*;
use crate::config::{CommandRender, CommandSpec, Limit};
use crate::device::DeviceWrite;
use crate::messages::{MessageType, Scalar, Time};
use crate::protocols::lines::Template;
use crate::spec::OutOfRange;
use serde_json::{json, Value};
use tokio::time::advance;

/// The line both actuators' safe values render to.
const SAFE: &[u8] = b"D 0.000 0.000\n";

fn spec(actuator: &str, timeout: Option<Duration>) -> CommandSpec {
    CommandSpec {
        actuator: actuator.into(),
        msg_type: MessageType::Twist,
        render: CommandRender::Template(Template::parse("D {linear.x:.3} {angular.z:.3}").unwrap()),
        limits: vec![Limit {
            path: "linear.x".into(),
            min: -1.0,
            max: 1.0,
        }],
        out_of_range: OutOfRange::Reject,
        timeout,
        safe: vec![("linear.x".into(), Scalar::Float(0.0))],
        min_interval: None,
        max_age: None,
    }
}

/// `drive` (deadman 500 ms) on device 0 and `arm` (no deadman, so 1 s of broker grace)
/// on device 1, with the broker up.
fn supervisor(estop: bool) -> Supervisor {
    let mut s = supervisor_before_the_broker(estop);
    assert!(s.handle(Event::BrokerLink(true), Instant::now()).is_empty());
    s
}

/// As [`supervisor`], just started: the broker not (yet) up.
fn supervisor_before_the_broker(estop: bool) -> Supervisor {
    let routes = [
        Route {
            spec: spec("drive", Some(Duration::from_millis(500))),
            device: 0,
            device_name: "base".into(),
        },
        Route {
            spec: spec("arm", None),
            device: 1,
            device_name: "arm".into(),
        },
    ];
    Supervisor::new(routes, 1024, estop, Instant::now())
}

/// Hands the supervisor a command, as MessagePack of `json`, now.
fn send(s: &mut Supervisor, actuator: &str, json: Value) -> Vec<Action> {
    deliver(s, actuator, json, false)
}

/// As [`send`], for a retained copy the broker delivers.
fn send_retained(s: &mut Supervisor, actuator: &str, json: Value) -> Vec<Action> {
    deliver(s, actuator, json, true)
}

fn deliver(s: &mut Supervisor, actuator: &str, json: Value, retain: bool) -> Vec<Action> {
    let command = Command {
        actuator: actuator.into(),
        payload: Payload::read(&rmp_serde::to_vec_named(&json).unwrap(), 1024),
        retain,
        wall: Time::now(),
    };
    s.handle(Event::Command(command), Instant::now())
}

impl Action {
    fn as_write(&self) -> Option<&Write> {
        if let Action::Write(w) = self {
            Some(w)
        } else {
            None
        }
    }

    fn as_ack(&self) -> Option<&Ack> {
        if let Action::Ack(a) = self {
            Some(a)
        } else {
            None
        }
    }
}

fn writes(actions: &[Action]) -> Vec<&Write> {
    actions.iter().filter_map(Action::as_write).collect()
}

fn acks(actions: &[Action]) -> Vec<&Ack> {
    actions.iter().filter_map(Action::as_ack).collect()
}

/// The one ack among `actions`, as `(actuator, id, ok, error text)`.
fn ack(actions: &[Action]) -> (String, rmpv::Value, bool, String) {
    let acks = acks(actions);
    assert_eq!(acks.len(), 1, "{actions:?}");
    let a = acks[0];
    let error = a.result.as_ref().err().map(|e| e.to_string());
    (
        a.actuator.clone(),
        a.id.clone(),
        a.result.is_ok(),
        error.unwrap_or_default(),
    )
}

/// Does the shell's part for every write in `actions`: each one is queued.
fn queue(s: &mut Supervisor, actions: &[Action]) -> Vec<WriteId> {
    let ids: Vec<WriteId> = writes(actions).iter().map(|w| w.id).collect();
    for id in &ids {
        assert!(s.handle(Event::Queued(*id), Instant::now()).is_empty());
    }
    ids
}

/// A command that passes every check, queued; its write's id.
fn drive(s: &mut Supervisor, x: f64) -> WriteId {
    let a = send(s, "drive", json!({"linear": {"x": x}}));
    let w = writes(&a);
    assert_eq!(w.len(), 1, "{a:?}");
    assert_eq!(w[0].purpose, Purpose::Command);
    assert!(acks(&a).is_empty(), "the ack waits for the device");
    queue(s, &a)[0]
}

/// Lets `d` pass, then ticks as the shell does when [`Supervisor::next_wake`] comes.
async fn tick_after(s: &mut Supervisor, d: Duration) -> Vec<Action> {
    advance(d).await;
    s.handle(Event::Tick, Instant::now())
}

fn done(s: &mut Supervisor, id: WriteId, outcome: Outcome) -> Vec<Action> {
    s.handle(Event::Done { id, outcome }, Instant::now())
}

fn safe_writes(actions: &[Action], reason: SafeReason) -> Vec<usize> {
    writes(actions)
        .iter()
        .map(|w| {
            assert_eq!(w.purpose, Purpose::Safe(reason), "{w:?}");
            assert_eq!(w.write, DeviceWrite::Line(SAFE.to_vec()));
            w.actuator
        })
        .collect()
}

#[test]
fn an_estop_engage_persists_writes_every_safe_value_and_refuses_commands_until_released() {
    let mut s = supervisor(false);
    let engage = json!({"id": 1, "engage": true});
    let a = send(&mut s, "estop", engage);
    assert_eq!(
        a[0],
        Action::PersistEstop(true),
        "persisted before anything else"
    );
    assert_eq!(safe_writes(&a, SafeReason::Estop), vec![0, 1]);
    let (actuator, id, ok, _) = ack(&a);
    assert_eq!(
        (actuator.as_str(), id, ok),
        ("estop", rmpv::Value::from(1), true)
    );
    assert!(matches!(a.last(), Some(Action::Ack(_))), "acked last");
    queue(&mut s, &a);
    assert!(s.estop_engaged());

    let a = send(&mut s, "drive", json!({"id": 2, "linear": {"x": 0.1}}));
    assert!(writes(&a).is_empty());
    assert_eq!(
        ack(&a),
        ("drive".into(), rmpv::Value::from(2), false, "estop".into())
    );

    let release = json!({"id": 3, "engage": false});
    let a = send(&mut s, "estop", release);
    assert_eq!(a[0], Action::PersistEstop(false));
    assert!(writes(&a).is_empty(), "releasing writes nothing");
    assert!(ack(&a).2);
    assert!(!s.estop_engaged());
    drive(&mut s, 0.1);
}

#[test]
fn an_estop_latched_by_a_previous_run_refuses_commands_from_the_start() {
    let mut s = supervisor(true);
    let a = send(&mut s, "drive", json!({"linear": {"x": 0.1}}));
    assert!(writes(&a).is_empty());
    assert_eq!(ack(&a).3, "estop");
}

#[test]
fn a_malformed_estop_is_refused_with_its_id_and_changes_nothing() {
    let mut s = supervisor(false);
    let a = send(&mut s, "estop", json!({"id": 9, "engage": "yes"}));
    assert_eq!(
        ack(&a),
        (
            "estop".into(),
            rmpv::Value::from(9),
            false,
            r#"an e-stop command is {"engage": true} or {"engage": false}"#.into()
        )
    );
    assert_eq!(a.len(), 1, "no write, nothing persisted: {a:?}");
    assert!(!s.estop_engaged());
}

#[test]
fn a_retained_command_is_refused_but_a_retained_estop_engage_is_honoured() {
    let mut s = supervisor(false);
    let a = send_retained(&mut s, "drive", json!({"id": 4, "linear": {"x": 0.1}}));
    assert!(writes(&a).is_empty());
    let (_, id, ok, error) = ack(&a);
    assert_eq!((id, ok), (rmpv::Value::from(4), false));
    assert_eq!(
        error,
        "retained commands are refused: they would replay on every reconnect"
    );

    let a = send_retained(&mut s, "estop", json!({"id": 5, "engage": true}));
    assert_eq!(a[0], Action::PersistEstop(true));
    assert_eq!(safe_writes(&a, SafeReason::Estop), vec![0, 1]);
    assert!(ack(&a).2);

    // Releasing is not safe to replay: a retained release leaves the e-stop engaged.
    let a = send_retained(&mut s, "estop", json!({"id": 6, "engage": false}));
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(ack(&a).3.starts_with("retained commands are refused"));
    assert!(s.estop_engaged());
}

#[test]
fn a_command_is_acked_with_its_applied_values_once_the_device_wrote_it() {
    let mut s = supervisor(false);
    let a = send(&mut s, "drive", json!({"id": 7, "linear": {"x": 0.5}}));
    assert_eq!(
        writes(&a)[0].write,
        DeviceWrite::Line(b"D 0.500 0.000\n".to_vec())
    );
    assert_eq!(writes(&a)[0].device, 0);
    let id = queue(&mut s, &a)[0];
    let a = done(&mut s, id, Outcome::Written);
    let acks = acks(&a);
    assert_eq!(acks[0].id, rmpv::Value::from(7));
    let applied = crate::fleet::json::to_json(acks[0].result.as_ref().unwrap());
    assert_eq!(
        applied,
        json!({"linear": {"x": 0.5}, "angular": {"z": 0.0}})
    );
    assert!(done(&mut s, id, Outcome::Written).is_empty(), "acked once");
}

#[test]
fn a_command_the_device_did_not_write_is_acked_with_the_reason() {
    let mut s = supervisor(false);
    let id = drive(&mut s, 0.1);
    let a = done(&mut s, id, Outcome::Failed(WriteError::Superseded));
    assert_eq!(ack(&a).3, "superseded by the safe state");
    let id = drive(&mut s, 0.1);
    let a = done(&mut s, id, Outcome::TimedOut);
    assert_eq!(ack(&a).3, "device did not confirm the write");
}

#[test]
fn a_full_command_queue_is_refused_as_busy_and_arms_no_deadman() {
    let mut s = supervisor(false);
    let a = send(&mut s, "drive", json!({"id": 8, "linear": {"x": 0.1}}));
    let a = s.handle(Event::NotQueued(writes(&a)[0].id), Instant::now());
    assert_eq!(
        ack(&a),
        (
            "drive".into(),
            rmpv::Value::from(8),
            false,
            "device busy: its write queue is full".into()
        )
    );
    assert_eq!(s.next_wake(), None);
}

#[test]
fn payloads_refused_before_decoding_completes_are_acked_with_their_salvaged_id() {
    let mut s = supervisor(false);
    let a = send(
        &mut s,
        "drive",
        json!({"id": "a1", "linear": {"x": "fast"}}),
    );
    let (_, id, ok, error) = ack(&a);
    assert_eq!((id, ok), (rmpv::Value::from("a1"), false));
    assert!(
        error.starts_with("does not decode as the command type"),
        "{error}"
    );

    let a = send(&mut s, "wings", json!({"id": "a2"}));
    assert_eq!(
        ack(&a),
        (
            "wings".into(),
            rmpv::Value::from("a2"),
            false,
            "unknown actuator `wings`".into()
        )
    );

    let oversized = Event::Oversized {
        actuator: "drive".into(),
        size: 5000,
    };
    let a = s.handle(oversized, Instant::now());
    assert_eq!(
        ack(&a).3,
        "message of 5000 bytes exceeds the limit of 1024 bytes"
    );
    assert!(writes(&a).is_empty());
}

#[test]
fn the_checks_refuse_out_of_range_values_with_the_decoded_id() {
    let mut s = supervisor(false);
    let a = send(&mut s, "drive", json!({"id": 10, "linear": {"x": 2.0}}));
    assert_eq!(
        ack(&a),
        (
            "drive".into(),
            rmpv::Value::from(10),
            false,
            "linear.x = 2 is outside the limits [-1, 1]".into()
        )
    );
}

#[tokio::test(start_paused = true)]
async fn deadman_writes_the_safe_values_once_after_the_timeout_and_rearms_on_the_next_command() {
    let mut s = supervisor(false);
    assert_eq!(s.next_wake(), None, "not armed before any command");
    let t0 = Instant::now();
    drive(&mut s, 0.1);
    assert_eq!(s.next_wake(), Some(t0 + Duration::from_millis(500)));
    advance(Duration::from_millis(499)).await;
    assert!(s.handle(Event::Tick, Instant::now()).is_empty());
    let a = tick_after(&mut s, Duration::from_millis(1)).await;
    assert_eq!(safe_writes(&a, SafeReason::Deadman), vec![0]);
    queue(&mut s, &a);
    advance(Duration::from_secs(5)).await;
    assert!(
        s.handle(Event::Tick, Instant::now()).is_empty(),
        "written once"
    );
    assert_eq!(s.next_wake(), None);

    let t1 = Instant::now();
    drive(&mut s, 0.2);
    assert_eq!(s.next_wake(), Some(t1 + Duration::from_millis(500)));
    let a = tick_after(&mut s, Duration::from_millis(500)).await;
    assert_eq!(safe_writes(&a, SafeReason::Deadman), vec![0]);
}

#[tokio::test(start_paused = true)]
async fn broker_loss_writes_the_safe_values_after_the_grace_once_per_outage() {
    let mut s = supervisor(false);
    let t0 = Instant::now();
    assert!(s.handle(Event::BrokerLink(false), t0).is_empty());
    // `drive`'s grace is its timeout_ms; `arm` has none, so one second.
    assert_eq!(s.next_wake(), Some(t0 + Duration::from_millis(500)));
    let a = tick_after(&mut s, Duration::from_millis(500)).await;
    assert_eq!(safe_writes(&a, SafeReason::BrokerLost), vec![0]);
    queue(&mut s, &a);
    assert_eq!(s.next_wake(), Some(t0 + Duration::from_secs(1)));
    let a = tick_after(&mut s, Duration::from_millis(500)).await;
    assert_eq!(safe_writes(&a, SafeReason::BrokerLost), vec![1]);
    queue(&mut s, &a);
    assert_eq!(s.next_wake(), None, "once per outage");

    assert!(s.handle(Event::BrokerLink(true), Instant::now()).is_empty());
    assert_eq!(s.next_wake(), None);
    let t1 = Instant::now();
    s.handle(Event::BrokerLink(false), t1);
    assert_eq!(s.next_wake(), Some(t1 + Duration::from_millis(500)));
}

#[tokio::test(start_paused = true)]
async fn the_broker_counts_as_lost_from_the_start_until_it_first_comes_up() {
    let mut s = supervisor_before_the_broker(false);
    assert!(tick_after(&mut s, Duration::from_millis(499))
        .await
        .is_empty());
    let a = tick_after(&mut s, Duration::from_millis(1)).await;
    assert_eq!(safe_writes(&a, SafeReason::BrokerLost), vec![0]);
    let a = tick_after(&mut s, Duration::from_millis(500)).await;
    assert_eq!(safe_writes(&a, SafeReason::BrokerLost), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_safe_write_is_retried_with_backoff_until_the_device_confirms_it() {
    let mut s = supervisor(false);
    let a = s.handle(Event::DeviceConnected(0), Instant::now());
    assert_eq!(safe_writes(&a, SafeReason::DeviceConnected), vec![0]);
    let id = queue(&mut s, &a)[0];
    let t = Instant::now();
    let failed = || Outcome::Failed(WriteError::LinkFailed("port gone".into()));
    assert!(done(&mut s, id, failed()).is_empty());
    // The first retry comes after 100 to 200 ms, the next after 200 to 400 ms.
    let wake = s.next_wake().expect("a retry is due");
    assert!(wake >= t + Duration::from_millis(100) && wake <= t + Duration::from_millis(200));
    let a = tick_after(&mut s, wake - t).await;
    assert_eq!(safe_writes(&a, SafeReason::Retry), vec![0]);
    let id = queue(&mut s, &a)[0];
    let t = Instant::now();
    assert!(done(&mut s, id, failed()).is_empty());
    let wake = s.next_wake().expect("another retry is due");
    assert!(wake >= t + Duration::from_millis(200) && wake <= t + Duration::from_millis(400));
    let a = tick_after(&mut s, wake - t).await;
    let id = queue(&mut s, &a)[0];
    assert!(done(&mut s, id, Outcome::Written).is_empty());
    assert_eq!(s.next_wake(), None, "confirmed: nothing left to retry");
}

#[tokio::test(start_paused = true)]
async fn a_safe_write_refused_by_a_full_queue_is_retried() {
    let mut s = supervisor(false);
    let a = s.handle(Event::DeviceConnected(1), Instant::now());
    let w = writes(&a);
    assert_eq!((w.len(), w[0].device, w[0].actuator), (1, 1, 1));
    assert!(s
        .handle(Event::NotQueued(w[0].id), Instant::now())
        .is_empty());
    assert!(s
        .next_wake()
        .is_some_and(|t| t <= Instant::now() + SAFE_RETRY_MIN));
}

#[tokio::test(start_paused = true)]
async fn a_safe_write_superseded_by_a_command_or_newer_safe_values_is_not_retried() {
    let mut s = supervisor(false);
    let a = s.handle(Event::DeviceConnected(0), Instant::now());
    let safe = queue(&mut s, &a)[0];
    let t = Instant::now();
    drive(&mut s, 0.1);
    assert!(done(&mut s, safe, Outcome::TimedOut).is_empty());
    assert_eq!(
        s.next_wake(),
        Some(t + Duration::from_millis(500)),
        "only the command's deadman is due, no retry"
    );

    let a = s.handle(Event::DeviceConnected(1), Instant::now());
    let first = queue(&mut s, &a);
    let a = s.handle(Event::DeviceConnected(1), Instant::now());
    let second = queue(&mut s, &a);
    let refused = Outcome::Failed(WriteError::DeviceRefused("exception 4".into()));
    assert!(done(&mut s, first[0], refused).is_empty());
    assert_eq!(s.next_wake(), Some(t + Duration::from_millis(500)));
    assert!(done(&mut s, second[0], Outcome::Written).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_safe_write_to_a_disconnected_device_waits_for_its_reconnection_not_a_retry() {
    let mut s = supervisor(false);
    let a = s.handle(Event::DeviceConnected(1), Instant::now());
    let id = queue(&mut s, &a)[0];
    let away = Outcome::Failed(WriteError::Disconnected);
    assert!(done(&mut s, id, away).is_empty());
    assert_eq!(s.next_wake(), None);
}

#[tokio::test(start_paused = true)]
async fn shutdown_writes_every_actuators_safe_values_and_gives_a_refusal_one_more_try() {
    let mut s = supervisor(false);
    let t0 = Instant::now();
    let a = s.handle(Event::Shutdown, t0);
    assert_eq!(safe_writes(&a, SafeReason::Shutdown), vec![0, 1]);
    assert!(writes(&a)
        .iter()
        .all(|w| w.confirm_by == t0 + SAFE_WRITE_TIMEOUT));
    let ids = queue(&mut s, &a);
    assert!(!s.is_shut_down(), "waiting for the devices");
    assert_eq!(s.next_wake(), None, "no timers after shutdown");

    assert!(done(&mut s, ids[0], Outcome::Written).is_empty());
    advance(Duration::from_millis(100)).await;
    let refused = || Outcome::Failed(WriteError::DeviceRefused("exception 6".into()));
    let a = done(&mut s, ids[1], refused());
    assert_eq!(safe_writes(&a, SafeReason::ShutdownAgain), vec![1]);
    assert_eq!(
        writes(&a)[0].confirm_by,
        t0 + SAFE_WRITE_TIMEOUT,
        "same deadline"
    );
    let again = queue(&mut s, &a)[0];
    assert!(!s.is_shut_down());
    assert!(
        done(&mut s, again, refused()).is_empty(),
        "one more try only"
    );
    assert!(s.is_shut_down());

    let late = send(&mut s, "drive", json!({"linear": {"x": 0.1}}));
    assert!(
        late.is_empty(),
        "nothing is written after shutdown: {late:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_a_device_that_is_away_or_out_of_time_gets_no_second_try() {
    let mut s = supervisor(false);
    let a = s.handle(Event::Shutdown, Instant::now());
    let ids = queue(&mut s, &a);
    let away = Outcome::Failed(WriteError::Disconnected);
    assert!(done(&mut s, ids[0], away).is_empty());
    advance(SAFE_WRITE_TIMEOUT).await;
    assert!(done(&mut s, ids[1], Outcome::TimedOut).is_empty());
    assert!(s.is_shut_down());
}

#[test]
fn shutdown_still_acks_the_commands_its_safe_values_superseded() {
    let mut s = supervisor(false);
    let cmd = drive(&mut s, 0.1);
    let a = s.handle(Event::Shutdown, Instant::now());
    let ids = queue(&mut s, &a);
    let a = done(&mut s, cmd, Outcome::Failed(WriteError::Superseded));
    assert_eq!(ack(&a).3, "superseded by the safe state");
    for id in ids {
        done(&mut s, id, Outcome::Written);
    }
    assert!(s.is_shut_down());
}
