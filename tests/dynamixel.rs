//! Dynamixel Protocol 2.0 end to end (issue 13): the real `botbus` binary drives a bus of
//! simulated servos on a real pseudo-terminal, through a real mosquitto. The servos are
//! botbus's sans-IO `ServoBus` (the e-Manual's packets, tested byte for byte in the
//! library); what the daemon writes is checked here against packets built by hand.

mod common;

use botbus::protocols::dynamixel::request::Request;
use botbus::protocols::dynamixel::sim::ServoBus;
use botbus::protocols::dynamixel::Model;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The arm of these tests: three X-series servos on one port, a joint-state stream at
/// 20 Hz, a temperature map, and a position command with limits and a 500 ms deadman.
fn arm_robot(path: &std::path::Path) -> String {
    format!(
        r#"id = "@ID@"

[[devices]]
name = "arm"
protocol = "dynamixel"
serial = {{ path = "{}", baud = 57600 }}
timeout_ms = 10
  [[devices.streams]]
  sensor = "arm/joints"
  type = "sensor_msgs/JointState"
  ids = [1, 2, 3]
  joints = ["shoulder", "elbow", "wrist"]
  poll_hz = 20
  qos = 1
  [[devices.streams]]
  sensor = "arm/health"
  type = "map"
  ids = [1, 2, 3]
  joints = ["shoulder", "elbow", "wrist"]
  items = ["present_temperature", "present_input_voltage", "hardware_error_status"]
  poll_hz = 2
  [[devices.commands]]
  actuator = "arm/goal"
  type = "sensor_msgs/JointState"
  ids = [1, 2, 3]
  joints = ["shoulder", "elbow", "wrist"]
  limits = {{ shoulder = [-1.5, 1.5], elbow = [-2.0, 2.0], wrist = [-3.0, 3.0] }}
  max_velocity = 2.0
  timeout_ms = 500
"#,
        path.display()
    )
}

/// The servos behind the pty: each chunk the daemon writes is fed to the bus and its
/// answers written back; the bus moves on every 5 ms.
struct Servos {
    bus: Arc<Mutex<ServoBus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Servos {
    fn start(mut pty: PtyDevice) -> Servos {
        let bus = Arc::new(Mutex::new(ServoBus::new(Model::default(), &[1, 2, 3])));
        let b = bus.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tokio::select! {
                    r = pty.read(&mut buf) => {
                        let Ok(n) = r else { return };
                        if n == 0 { return; }
                        let mut out = Vec::new();
                        b.lock().unwrap().feed(&buf[..n], &mut out);
                        if !out.is_empty() && pty.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    _ = tick.tick() => b.lock().unwrap().advance(Duration::from_millis(5)),
                }
            }
        });
        Servos { bus, task }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ServoBus) -> T) -> T {
        f(&mut self.bus.lock().unwrap())
    }
}

impl Drop for Servos {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn rig() -> (RobotRig, Servos) {
    rig_with(|t| t).await
}

/// [`rig`] with the robot file changed by `edit`.
async fn rig_with(edit: impl FnOnce(String) -> String) -> (RobotRig, Servos) {
    let pty = PtyDevice::open();
    let toml = edit(arm_robot(pty.path()));
    let servos = Servos::start(pty);
    let mut rig = RobotRig::start(&unique("dxl"), &toml).await;
    rig.wait_online().await;
    (rig, servos)
}

fn joint_names(m: &Msg) -> Vec<String> {
    m.array("name")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

fn floats(m: &Msg, field: &str) -> Vec<f64> {
    m.array(field).iter().map(|v| v.as_f64().unwrap()).collect()
}

/// A value of a `map` sample by its exact key (the keys hold a `.`).
fn map_value(m: &Msg, key: &str) -> f64 {
    let rmpv::Value::Map(pairs) = &m.value else {
        panic!("not a map: {m:?}");
    };
    pairs
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .and_then(|(_, v)| v.as_f64())
        .unwrap_or_else(|| panic!("no number `{key}` in {m:?}"))
}

/// The Sync Writes the servos received since the last look: (address, [(id, value)]),
/// the values little-endian as the e-Manual packs them.
fn sync_writes(servos: &Servos) -> Vec<(u16, Vec<(u8, i64)>)> {
    servos.with(|b| {
        b.take_received()
            .into_iter()
            .filter_map(|r| match r {
                Request::SyncWrite { address, data, .. } => Some((
                    address,
                    data.into_iter()
                        .map(|(id, d)| {
                            let mut b = [0u8; 8];
                            b[..d.len()].copy_from_slice(&d);
                            let v = i64::from_le_bytes(b);
                            // Sign-extend 4-byte goals (velocity may be negative).
                            let v = if d.len() == 4 { v as i32 as i64 } else { v };
                            (id, v)
                        })
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    })
}

/// X-series Control Table addresses (ROBOTIS e-Manual, XM430-W350).
const OPERATING_MODE: u16 = 11;
const TORQUE_ENABLE: u16 = 64;
const GOAL_VELOCITY: u16 = 104;
const GOAL_POSITION: u16 = 116;

/// Publishes a JointState command with `id` and returns its ack.
async fn command(rig: &mut RobotRig, id: u64, fields: serde_json::Value) -> serde_json::Value {
    let mut fields = fields;
    fields["id"] = id.into();
    rig.publish("arm/goal", msgpack(&fields)).await;
    rig.ack("arm/goal", Some(id)).await
}

/// Waits until `cond` holds for the bus, or fails naming `what`.
async fn until(servos: &Servos, what: &str, cond: impl Fn(&mut ServoBus) -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !servos.with(&cond) {
        assert!(
            tokio::time::Instant::now() < end,
            "no {what} within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_states_stream_at_poll_hz_in_si_units_and_items_by_name() {
    let (mut rig, _servos) = rig().await;
    let m = rig.sample("arm/joints", "a joint state", |_| true).await;
    assert_eq!(joint_names(&m), ["shoulder", "elbow", "wrist"]);
    // Every servo starts at raw 2048: 0 rad, at rest, drawing no current.
    assert_eq!(floats(&m, "position"), [0.0, 0.0, 0.0]);
    assert_eq!(floats(&m, "velocity"), [0.0, 0.0, 0.0]);
    assert_eq!(floats(&m, "effort"), [0.0, 0.0, 0.0]);
    // poll_hz = 20, read off the samples' stamps (nothing is timed by the test itself).
    let stamp = |m: &Msg| m.f64("header.stamp.sec") + m.f64("header.stamp.nanosec") * 1e-9;
    let first = rig.sample("arm/joints", "a joint state", |_| true).await;
    let mut last = first.clone();
    for _ in 0..20 {
        last = rig.sample("arm/joints", "a joint state", |_| true).await;
    }
    let hz = 20.0 / (stamp(&last) - stamp(&first));
    assert!(
        (16.0..=24.0).contains(&hz),
        "{hz:.1} joint states a second; poll_hz is 20"
    );
    // The map stream: control-table items by name, per joint, as the servo holds them.
    let h = rig.sample("arm/health", "a health map", |_| true).await;
    assert!(map_value(&h, "shoulder.present_temperature") > 0.0, "{h:?}");
    assert_eq!(map_value(&h, "wrist.present_input_voltage"), 120.0, "{h:?}");
    assert_eq!(map_value(&h, "elbow.hardware_error_status"), 0.0, "{h:?}");
    assert!(rig.daemon.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_is_one_sync_write_before_torque_on_and_the_deadman_turns_torque_off() {
    let (mut rig, servos) = rig().await;
    // On connect the actuator is made safe: torque off for its three joints.
    until(&servos, "torque off on connect", |b| {
        b.take_received().iter().any(|r| {
            matches!(r, Request::SyncWrite { address: TORQUE_ENABLE, data, .. }
                if data.len() == 3 && data.iter().all(|(_, d)| d == &[0]))
        })
    })
    .await;
    rig.sample("arm/joints", "a joint state", |_| true).await;
    sync_writes(&servos);

    let ack = command(
        &mut rig,
        1,
        serde_json::json!({"name": ["shoulder", "elbow"], "position": [0.5, -1.0]}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // The servos' mode was read (position, 3: nothing to switch), then one Sync Write of
    // both goals, (rad * 4096 / 2π) + 2048 rounded, and torque on last, so no servo
    // starts toward an old goal.
    let writes = sync_writes(&servos);
    assert_eq!(
        writes,
        [
            (GOAL_POSITION, vec![(1, 2374), (2, 1396)]),
            (TORQUE_ENABLE, vec![(1, 1), (2, 1)]),
        ],
        "what the servos received for the goal"
    );
    assert_eq!(servos.with(|b| b.torque(1)), Some(true));
    assert_eq!(
        servos.with(|b| b.torque(3)),
        Some(false),
        "wrist was not commanded"
    );
    // The joints move there, and the joint state shows it.
    let m = rig
        .sample(
            "arm/joints",
            "the shoulder at 0.5 rad, the elbow at -1",
            |m| {
                let p = floats(m, "position");
                (p[0] - 0.5).abs() < 0.01 && (p[1] + 1.0).abs() < 0.01
            },
        )
        .await;
    assert_eq!(floats(&m, "position")[2], 0.0, "the wrist stays: {m:?}");

    // Silence past timeout_ms (500): torque off for every joint of the actuator.
    until(&servos, "torque off after the deadman", |b| {
        b.torque(1) == Some(false) && b.torque(2) == Some(false)
    })
    .await;
    let writes = sync_writes(&servos);
    assert!(
        writes.contains(&(TORQUE_ENABLE, vec![(1, 0), (2, 0), (3, 0)])),
        "{writes:?}"
    );
    // The next goal needs torque again, and only torque: the mode is still position.
    let ack = command(
        &mut rig,
        2,
        serde_json::json!({"name": ["wrist"], "position": [-0.25]}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        sync_writes(&servos),
        [
            (GOAL_POSITION, vec![(3, 1885)]),
            (TORQUE_ENABLE, vec![(3, 1)]),
        ]
    );
    // A velocity goal switches the joint to velocity mode, which is EEPROM: torque off,
    // the mode, the goal (1 rad/s = 41.7 steps of 0.229 rpm), torque on.
    let ack = command(
        &mut rig,
        3,
        serde_json::json!({"name": ["wrist"], "velocity": [1.0]}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        sync_writes(&servos),
        [
            (TORQUE_ENABLE, vec![(3, 0)]),
            (OPERATING_MODE, vec![(3, 1)]),
            (GOAL_VELOCITY, vec![(3, 42)]),
            (TORQUE_ENABLE, vec![(3, 1)]),
        ]
    );
    assert_eq!(servos.with(|b| b.operating_mode(3)), Some(1));
    assert!(rig.daemon.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_goal_is_rejected_whole_and_writes_nothing() {
    let (mut rig, servos) = rig().await;
    rig.sample("arm/joints", "a joint state", |_| true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    sync_writes(&servos);
    let cases = [
        (
            serde_json::json!({"name": ["shoulder", "knee"], "position": [0.1, 0.2]}),
            "knee",
        ),
        (
            serde_json::json!({"name": ["shoulder", "elbow"], "position": [0.1]}),
            "one per name",
        ),
        (
            serde_json::json!({"name": ["shoulder"], "position": [1.6]}),
            "limits",
        ),
        (
            serde_json::json!({"name": ["elbow"], "velocity": [3.0]}),
            "max_velocity",
        ),
        (
            serde_json::json!({"name": ["elbow", "elbow"], "position": [0.1, 0.2]}),
            "twice",
        ),
    ];
    for (n, (fields, needle)) in cases.into_iter().enumerate() {
        let ack = command(&mut rig, 10 + n as u64, fields.clone()).await;
        assert_eq!(ack["ok"], false, "{fields} must be rejected: {ack}");
        let error = ack["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(needle),
            "{fields}: {error:?} should say {needle:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sync_writes(&servos), [], "a rejected goal wrote something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_status_is_counted_and_a_silent_servo_is_marked_while_the_others_stream() {
    let (mut rig, servos) = rig().await;
    rig.sample("arm/joints", "a joint state", |_| true).await;

    // One status with a broken CRC: counted, and the bus reads on.
    servos.with(|b| b.corrupt_next(2));
    let d = rig
        .diag("a CRC error counted", |m| {
            m.diag_device("arm")
                .and_then(|d| lookup(d, "counters.crc_errors"))
                .and_then(|v| v.as_u64())
                .is_some_and(|n| n >= 1)
        })
        .await;
    assert!(d.diag_device("arm").is_some());
    rig.sub.forget_backlog();
    let m = rig
        .sample("arm/joints", "all three joints again", |m| {
            joint_names(m).len() == 3
        })
        .await;
    assert_eq!(joint_names(&m), ["shoulder", "elbow", "wrist"]);

    // The wrist stops answering: it is marked disconnected, the others keep streaming.
    servos.with(|b| b.set_silent(3, true));
    rig.diag_entry("arm/wrist", "the wrist disconnected", |d| {
        lookup(d, "connected").and_then(|v| v.as_bool()) == Some(false)
    })
    .await;
    let d = rig
        .diag_entry("arm/shoulder", "the shoulder still connected", |d| {
            lookup(d, "connected").and_then(|v| v.as_bool()) == Some(true)
        })
        .await;
    assert_eq!(
        d.diag_device("arm")
            .and_then(|a| lookup(a, "connected"))
            .and_then(|v| v.as_bool()),
        Some(true),
        "the port stays connected"
    );
    rig.sub.forget_backlog();
    for _ in 0..5 {
        let m = rig
            .sample("arm/joints", "a joint state without the wrist", |_| true)
            .await;
        assert_eq!(joint_names(&m), ["shoulder", "elbow"]);
    }
    // Back: it is polled again after its backoff.
    servos.with(|b| b.set_silent(3, false));
    rig.sample("arm/joints", "the wrist back", |m| {
        joint_names(m).len() == 3
    })
    .await;
    assert!(rig.daemon.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_with_a_hardware_error_refuses_goals_until_it_is_cleared() {
    let (mut rig, servos) = rig().await;
    rig.sample("arm/joints", "a joint state", |_| true).await;
    // Overheating (bit 2 of Hardware Error Status): the alert bit in every status.
    servos.with(|b| b.set_hardware_error(2, 0x04));
    rig.diag("the hardware error counted", |m| {
        m.diag_device("arm")
            .and_then(|d| lookup(d, "counters.hardware_errors"))
            .and_then(|v| v.as_u64())
            == Some(1)
    })
    .await;
    let h = rig
        .sample("arm/health", "the elbow's error status", |h| {
            map_value(h, "elbow.hardware_error_status") == 4.0
        })
        .await;
    assert_eq!(map_value(&h, "shoulder.hardware_error_status"), 0.0);
    sync_writes(&servos);
    let ack = command(
        &mut rig,
        1,
        serde_json::json!({"name": ["shoulder", "elbow"], "position": [0.1, 0.1]}),
    )
    .await;
    assert_eq!(ack["ok"], false, "{ack}");
    let error = ack["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("elbow") && error.contains("hardware error"),
        "{error:?}"
    );
    assert!(
        !sync_writes(&servos)
            .iter()
            .any(|(a, _)| *a == GOAL_POSITION),
        "a goal was written to a faulted arm"
    );
    // Cleared (as a reboot does): goals are taken again.
    servos.with(|b| b.set_hardware_error(2, 0));
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut n = 2;
    loop {
        let ack = command(
            &mut rig,
            n,
            serde_json::json!({"name": ["shoulder", "elbow"], "position": [0.1, 0.1]}),
        )
        .await;
        if ack["ok"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "still refused: {ack}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botbus_sim_plays_the_demo_arm_and_a_fleet_command_moves_a_joint_until_the_deadman() {
    // robots/demo.toml's arm as shipped, its path moved into a temp folder.
    let dir = temp_dir("botbus-dxl-sim-");
    let arm = demo_device("arm");
    assert!(arm.contains("protocol = \"dynamixel\""), "{arm}");
    let toml = format!(
        "id = \"@ID@\"\n\n{}",
        arm.replace("/tmp/botbus-demo", &dir.path().display().to_string())
    );
    let robot = write_file(dir.path(), "robot.toml", &toml.replace("@ID@", "dxl-sim"));
    let sim = Sim::start(&robot);
    let link = dir.path().join("arm").display().to_string();
    sim.lines
        .wait(0, "the simulated bus linked to its path", |l| {
            l.starts_with("arm (dynamixel): ") && l.ends_with(&format!(" <- {link}"))
        })
        .await;
    let mut rig = RobotRig::start(&unique("dxl-demo"), &toml).await;
    rig.wait_online().await;
    let m = rig
        .sample("arm/joints", "joint states from the simulator", |_| true)
        .await;
    assert_eq!(joint_names(&m), ["shoulder", "elbow", "gripper"]);

    // A fleet command, as an operator sends it with `botbus cmd`.
    let from = sim.lines.all().len();
    let url = rig.broker.url();
    let run = botbus(&[
        "cmd",
        &rig.id,
        "arm/goal",
        r#"{"name":["elbow"],"position":[-0.8]}"#,
        "--url",
        &url,
    ])
    .await;
    assert_eq!(run.code, Some(0), "{run}");
    // -0.8 rad = -521.5 steps of 2π/4096 → 2048 - 522.
    let i = sim
        .lines
        .wait(from, "the goal at the simulated servos", |l| {
            l == "arm received: sync write goal_position: 2=1526"
        })
        .await;
    rig.sample("arm/joints", "the elbow at -0.8 rad", |m| {
        (floats(m, "position")[1] + 0.8).abs() < 0.01
    })
    .await;
    // The demo's timeout_ms (1000) passes without another command: torque off.
    sim.lines
        .wait(i + 1, "torque off after the deadman", |l| {
            l == "arm received: sync write torque_enable: 1=0 2=0 3=0"
        })
        .await;
    assert!(rig.daemon.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_safe_hold_the_deadman_holds_the_joints_where_they_are() {
    let (mut rig, servos) = rig_with(|t| {
        t.replace(
            "  timeout_ms = 500\n",
            "  timeout_ms = 500\n  safe = \"hold\"\n",
        )
    })
    .await;
    rig.sample("arm/joints", "a joint state", |_| true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sync_writes(&servos);
    let ack = command(
        &mut rig,
        1,
        serde_json::json!({"name": ["shoulder", "elbow"], "position": [1.0, -1.0]}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let goal = sync_writes(&servos);
    assert!(
        goal.contains(&(GOAL_POSITION, vec![(1, 2700), (2, 1396)])),
        "{goal:?}"
    );
    // 1 rad at about 1 rev/s takes about 160 ms, so when the deadman fires (500 ms)
    // the joints have arrived, and are held there.
    until(&servos, "the hold after the deadman", |b| {
        b.take_received().iter().any(|r| {
            matches!(r, Request::SyncWrite { address: GOAL_POSITION, data, .. } if data.len() == 2)
        })
    })
    .await;
    // Held under torque at their present positions; the wrist, never under torque, is
    // left off.
    assert_eq!(servos.with(|b| b.torque(1)), Some(true));
    assert_eq!(servos.with(|b| b.torque(2)), Some(true));
    assert_eq!(servos.with(|b| b.torque(3)), Some(false));
    let (p1, g1) = servos.with(|b| (b.position_raw(1), b.goal_position_raw(1)));
    assert_eq!(p1, g1, "the shoulder's goal is where it is");
    assert_eq!(g1, Some(2700), "1 rad = 2048 + 652");
    assert!(rig.daemon.is_running());
}
