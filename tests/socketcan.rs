//! SocketCAN end to end (issue 13): the real `botbus` binary on a kernel CAN interface,
//! `vcan0`, against a real mosquitto, with Python cantools as the independent DBC
//! implementation and the test's own CAN sockets as the other nodes on the bus.
//!
//! These tests need a kernel with SocketCAN and `vcan0` up (MTU 72, for CAN FD). Where the
//! machine's kernel has none, `scripts/test` runs this binary inside a throw-away VM with
//! `scripts/vm-test`; run alone here, they fail and say so. They take the bus one at a
//! time, since they share it and one of them takes it away.

mod common;

/// Every test is under `vcan::`, so `scripts/test` can leave them out of the host's run
/// (`--skip vcan::`) and run them in the VM.
mod vcan {
    use super::common::can::*;
    use super::common::*;
    use socketcan::{
        CanAnyFrame, CanDataFrame, CanErrorFrame, CanFdFrame, CanFdSocket, EmbeddedFrame, Frame,
        Id, Socket, StandardId,
    };
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::Command;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::time::Instant;

    const IFACE: &str = "vcan0";

    /// One test at a time on the bus.
    static BUS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// The bus, or a failure that says how to get one.
    async fn take_bus() -> tokio::sync::MutexGuard<'static, ()> {
        let guard = BUS.lock().await;
        assert!(
        Path::new(&format!("/sys/class/net/{IFACE}")).exists(),
        "no {IFACE}: this kernel has no SocketCAN vcan interface. scripts/test runs these tests \
         in a VM (scripts/vm-test target/debug/deps/socketcan-*) where the machine lacks one; \
         on a kernel with the vcan module, `sudo scripts/setup-vcan` brings {IFACE} up."
    );
        guard
    }

    fn ip(args: &[&str]) {
        let st = Command::new("ip").args(args).status().expect("run ip");
        assert!(st.success(), "ip {args:?} failed: {st}");
    }

    /// `vcan0` as `scripts/setup-vcan` makes it: MTU 72 (CAN FD), up.
    fn add_iface() {
        ip(&["link", "add", "dev", IFACE, "type", "vcan"]);
        ip(&["link", "set", IFACE, "mtu", "72"]);
        ip(&["link", "set", "up", IFACE]);
    }

    fn std_id(id: u16) -> Id {
        Id::Standard(StandardId::new(id).expect("standard id"))
    }

    /// A frame as the other nodes put it on the bus: FD when `fd`, classic otherwise.
    fn frame(id: u16, data: &[u8], fd: bool) -> CanAnyFrame {
        if fd {
            CanAnyFrame::Fd(CanFdFrame::new(std_id(id), data).expect("FD frame"))
        } else {
            CanAnyFrame::Normal(CanDataFrame::new(std_id(id), data).expect("classic frame"))
        }
    }

    /// Writes frames to the bus from a socket of the test's own.
    fn send(frames: &[CanAnyFrame]) {
        let sock = CanFdSocket::open(IFACE).expect("open vcan0");
        for f in frames {
            sock.write_frame(f).expect("write to vcan0");
        }
    }

    /// A frame seen on the bus.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        id: u32,
        fd: bool,
        data: Vec<u8>,
        at: std::time::Instant,
    }

    /// Another node on the bus: records every data frame until dropped (vcan delivers what
    /// one socket sends to every other).
    struct Listener {
        seen: Arc<Mutex<Vec<Seen>>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Listener {
        fn start() -> Listener {
            let sock = CanFdSocket::open(IFACE).expect("open vcan0");
            let seen = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (s, st) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !st.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(f) = sock.read_frame_timeout(Duration::from_millis(100)) else {
                        continue;
                    };
                    let (id, fd, data) = match &f {
                        CanAnyFrame::Normal(d) => (d.raw_id(), false, d.data().to_vec()),
                        CanAnyFrame::Fd(d) => (d.raw_id(), true, d.data().to_vec()),
                        _ => continue,
                    };
                    let at = std::time::Instant::now();
                    s.lock().unwrap().push(Seen { id, fd, data, at });
                }
            });
            Listener { seen, stop }
        }

        /// Frames with `id` seen so far.
        fn with_id(&self, id: u32) -> Vec<Seen> {
            let seen = self.seen.lock().unwrap();
            seen.iter().filter(|f| f.id == id).cloned().collect()
        }

        /// The first frame with `id` after the `skip` already seen, waiting for it.
        async fn nth(&self, id: u32, skip: usize, what: &str) -> Seen {
            let end = Instant::now() + DEADLINE;
            loop {
                if let Some(f) = self.with_id(id).get(skip) {
                    return f.clone();
                }
                assert!(
                    Instant::now() < end,
                    "no {what} (0x{id:X}) on vcan0 within {DEADLINE:?}; saw {:?}",
                    self.seen.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The diagnostics entry of the device `can`, once `pred` holds for it.
    async fn can_diag(
        rig: &mut Rig,
        what: &str,
        pred: impl Fn(&rmpv::Value) -> bool,
    ) -> rmpv::Value {
        let m = rig.diag_entry("can", what, pred).await;
        m.diag_device("can").expect("the can device").clone()
    }

    fn counter(entry: &rmpv::Value, name: &str) -> u64 {
        lookup(entry, &format!("counters.{name}"))
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    }

    fn connected(entry: &rmpv::Value) -> bool {
        lookup(entry, "connected").and_then(|v| v.as_bool()) == Some(true)
    }

    /// The comma body robot of tests/can.rs, with `interface = "vcan0"` for its serial line,
    /// running and connected, its safe frames seen on the bus.
    async fn body_on_vcan0(dir: &tempfile::TempDir, listener: &Listener) -> Rig {
        let dbc = copy_dbc(dir.path(), "comma_body.dbc");
        let mut rig = Rig::start(&body_robot("interface = \"vcan0\"", &dbc)).await;
        rig.wait_online().await;
        can_diag(&mut rig, "the vcan0 device connected", connected).await;
        // On connect every actuator's safe frame is written, as over slcan.
        let torque = listener.nth(0x250, 0, "TORQUE_CMD's safe frame").await;
        assert_eq!(torque.data, [0; 6]);
        assert_eq!(
            listener.nth(0x251, 0, "MAX_RPM's safe frame").await.data,
            [0; 5]
        );
        assert!(listener
            .nth(0x300, 0, "the raw safe frame")
            .await
            .data
            .is_empty());
        rig
    }

    // ---------------------------------------------------------------------------------------
    // 1. The slcan robot file on vcan0: telemetry, raw frames, commands, the deadman

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_slcan_robot_file_on_vcan0_decodes_as_cantools_does_and_writes_checked_commands() {
        let _bus = take_bus().await;
        assert!(require(Peer::Cantools), "cantools is needed");
        let dir = temp_dir("botbus-socketcan-");
        let listener = Listener::start();
        let mut rig = body_on_vcan0(&dir, &listener).await;
        let dbc = dir.path().join("comma_body.dbc");

        // Telemetry: random frames that cantools encodes publish what cantools decodes.
        let test = "the_slcan_robot_file_on_vcan0";
        let frames = cantools_frames(dir.path(), test, 6, &dbc, &["MOTORS_DATA", "BODY_DATA"]);
        assert_eq!(frames.len(), 12);
        for (n, f) in frames.iter().enumerate() {
            send(&[frame(f.id as u16, &f.data, false)]);
            let sensor = match f.message.as_str() {
                "MOTORS_DATA" => "body/motors",
                _ => "body/power",
            };
            let m = rig
                .sample(sensor, &format!("frame {n} on {sensor}"), |_| true)
                .await;
            let what = format!("frame {n}: {} [{}]", f.message, hex_upper(&f.data));
            assert_map_equals(&m, &f.values, &what);
            assert_eq!(m.str("header.frame_id"), "can", "{m:?}");
        }

        // Raw frames: `can/raw` lists 0x7AB only; `can/all` takes every frame.
        send(&[
            frame(0x7AC, &[1, 2], false),
            frame(0x7AB, &[0xDE, 0xAD, 0xBE], false),
        ]);
        let all = rig
            .sample("can/all", "0x7AC on can/all", |m| m.u64("id") == 0x7AC)
            .await;
        assert_raw(&all, 0x7AC, false, &[1, 2]);
        let raw = rig.sample("can/raw", "0x7AB on can/raw", |_| true).await;
        assert_raw(&raw, 0x7AB, false, &[0xDE, 0xAD, 0xBE]);
        assert!(!raw.bool("is_fd"), "{raw:?}");
        let topic = rig.topic("can/raw");
        assert!(
            rig.sub.seen_on(&topic).iter().all(|m| m.u64("id") == 0x7AB),
            "can/raw published a frame outside its ids"
        );

        // A command: its frame on the bus decodes (by cantools) to what was commanded, and
        // the deadman writes the safe frame timeout_ms (500) after it.
        let sent_at = std::time::Instant::now();
        let ack = rig
            .command(
                "body/torque",
                serde_json::json!({"left": 100, "right": -200}),
            )
            .await;
        assert_ok(&ack, "torque 100/-200 on vcan0");
        let written = listener.nth(0x250, 1, "the torque frame").await;
        assert!(!written.fd, "TORQUE_CMD is a classic frame");
        let (name, back) = cantools_decode(dir.path(), &dbc, 0x250, &written.data);
        assert_eq!(name, "TORQUE_CMD");
        assert_eq!(back["TORQUE_L"].as_f64(), Some(100.0), "{back}");
        assert_eq!(back["TORQUE_R"].as_f64(), Some(-200.0), "{back}");
        let safe = listener.nth(0x250, 2, "the deadman's safe frame").await;
        assert_eq!(safe.data, [0; 6]);
        let after = safe.at - sent_at;
        assert!(
            after >= Duration::from_millis(490),
            "the deadman fired {after:?} after the command; timeout_ms is 500"
        );

        // Refused commands write nothing: out of the robot file's limits, an id not allowed.
        let ack = rig
            .command("body/torque", serde_json::json!({"left": 600, "right": 0}))
            .await;
        assert_rejected(&ack, "limits", "torque 600 (limit 500)");
        let ack = rig
            .command_value("can/raw", raw_frame(0x301, rmpv::Value::Binary(vec![1]), 1))
            .await;
        assert_eq!(ack["ok"], false, "0x301 is not in ids: {ack}");
        // An allowed raw frame is written as given.
        let ack = rig
            .command_value(
                "can/raw",
                raw_frame(0x300, rmpv::Value::Binary(vec![0xAB, 0xCD]), 2),
            )
            .await;
        assert_ok(&ack, "raw 0x300");
        assert_eq!(
            listener.nth(0x300, 1, "the raw 0x300 frame").await.data,
            [0xAB, 0xCD]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            listener.with_id(0x250).len(),
            3,
            "a refused torque was written"
        );
        assert!(listener.with_id(0x301).is_empty(), "0x301 was written");
        assert!(rig.daemon.is_running());
    }

    /// A `can_msgs/Frame` command map.
    fn raw_frame(id: u64, data: rmpv::Value, dlc: u64) -> rmpv::Value {
        rmpv::Value::Map(vec![
            ("id".into(), id.into()),
            ("dlc".into(), dlc.into()),
            ("data".into(), data),
        ])
    }

    // ---------------------------------------------------------------------------------------
    // 2. Error frames and bus-off

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn error_frames_and_a_bus_off_are_counted_in_diagnostics_and_the_bus_goes_on() {
        let _bus = take_bus().await;
        let dir = temp_dir("botbus-socketcan-err-");
        let listener = Listener::start();
        let mut rig = body_on_vcan0(&dir, &listener).await;

        // What a controller reports (linux/can/error.h): RX error-passive (CAN_ERR_CRTL,
        // data[1] = CAN_ERR_CRTL_RX_PASSIVE), then bus-off (CAN_ERR_BUSOFF).
        let passive =
            CanErrorFrame::new_error(0x04, &[0, 0x10, 0, 0, 0, 0, 0, 0]).expect("error frame");
        let bus_off = CanErrorFrame::new_error(0x40, &[0; 8]).expect("error frame");
        send(&[CanAnyFrame::Error(passive), CanAnyFrame::Error(bus_off)]);
        let entry = can_diag(&mut rig, "two error frames, one a bus-off", |d| {
            counter(d, "error_frames") == 2
        })
        .await;
        assert_eq!(counter(&entry, "bus_off"), 1, "{entry}");
        assert!(connected(&entry), "{entry}");
        let last = lookup(&entry, "last_error")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        assert!(last.contains("CAN error frame"), "{entry}");

        // The bus goes on: a frame after them is decoded.
        send(&[frame(0x201, MOTORS, false)]);
        let m = rig
            .sample("body/motors", "MOTORS_DATA after the errors", |_| true)
            .await;
        assert_motors(&m);
        assert!(rig.daemon.is_running());
    }

    // ---------------------------------------------------------------------------------------
    // 3. The interface vanishing and coming back

    /// Brings vcan0 back if a test that removed it fails before it does.
    struct Restore;

    impl Drop for Restore {
        fn drop(&mut self) {
            if !Path::new(&format!("/sys/class/net/{IFACE}")).exists() {
                add_iface();
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_interface_removed_and_added_again_is_reconnected_within_two_seconds() {
        let _bus = take_bus().await;
        let _restore = Restore;
        let dir = temp_dir("botbus-socketcan-gone-");
        let listener = Listener::start();
        let mut rig = body_on_vcan0(&dir, &listener).await;
        drop(listener);

        ip(&["link", "del", IFACE]);
        let entry = can_diag(&mut rig, "the can device disconnected", |d| !connected(d)).await;
        let last = lookup(&entry, "last_error")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        assert!(
            last.contains("disconnected") || last.contains("unavailable"),
            "{entry}"
        );
        // Away for a while, so the retries have backed off as far as they go.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(rig.daemon.is_running());

        add_iface();
        let back = std::time::Instant::now();
        // A node on the bus sends MOTORS_DATA every 20 ms; the first one published marks the
        // daemon's socket open again.
        let topic = rig.topic("body/motors");
        let first = loop {
            send(&[frame(0x201, MOTORS, false)]);
            if let Some(m) = rig
                .sub
                .try_wait_for(Duration::from_millis(20), |m| m.topic == topic)
                .await
            {
                break m;
            }
            assert!(
                back.elapsed() < Duration::from_secs(10),
                "no MOTORS_DATA from vcan0 within 10 s of it coming back"
            );
        };
        let took = back.elapsed();
        assert_motors(&first);
        println!("vcan0 re-added: the first frame was published after {took:?}");
        assert!(
            took < Duration::from_secs(2),
            "reconnected {took:?} after vcan0 came back; the bar is 2 s"
        );
        let entry = can_diag(&mut rig, "the can device connected again", connected).await;
        assert!(connected(&entry));
    }

    // ---------------------------------------------------------------------------------------
    // 4. CAN FD where the DBC says so

    /// A robot on vcan0 with a CAN FD DBC (tests/data/arm_fd.dbc, written by hand: no real FD
    /// DBC file with a known licence was at hand).
    fn arm_robot(dbc: &Path) -> String {
        format!(
            r#"id = "@ID@"

[[devices]]
name = "can"
protocol = "socketcan"
interface = "vcan0"
dbc = "{}"
  [[devices.streams]]
  sensor = "arm/state"
  can_message = "ARM_STATE"
  qos = 1
  [[devices.streams]]
  sensor = "arm/heartbeat"
  can_message = "ARM_HEARTBEAT"
  qos = 1
  [[devices.streams]]
  sensor = "arm/raw"
  type = "can_msgs/Frame"
  ids = [0x500]
  qos = 1
  [[devices.commands]]
  actuator = "arm/goal"
  type = "map"
  can_message = "ARM_GOAL"
  signals = {{ GOAL_1 = "j1", GOAL_2 = "j2" }}
  limits = {{ j1 = [-3.0, 3.0], j2 = [-3.0, 3.0] }}
  safe = {{ j1 = 0, j2 = 0 }}
"#,
            dbc.display()
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn can_fd_messages_are_read_and_written_as_fd_frames_as_the_dbc_says() {
        let _bus = take_bus().await;
        assert!(require(Peer::Cantools), "cantools is needed");
        let dir = temp_dir("botbus-socketcan-fd-");
        let dbc = dir.path().join("arm_fd.dbc");
        std::fs::copy(repo_path("tests/data/arm_fd.dbc"), &dbc).expect("copy arm_fd.dbc");
        let listener = Listener::start();
        let mut rig = Rig::start(&arm_robot(&dbc)).await;
        rig.wait_online().await;
        can_diag(&mut rig, "the vcan0 device connected", connected).await;

        // cantools and botbus agree on which messages are FD; the safe frame on connect is
        // already one.
        let fd_names = cantools(dir.path(), &["fd".into(), dbc.display().to_string()], "");
        assert_eq!(fd_names, ["ARM_STATE", "ARM_GOAL"], "cantools' FD messages");
        let safe = listener.nth(0x501, 0, "ARM_GOAL's safe frame").await;
        assert!(safe.fd, "ARM_GOAL is FD by VFrameFormat: {safe:?}");
        assert_eq!(safe.data, [0; 8]);

        // 64-byte FD telemetry, encoded by cantools, published as cantools decodes it; the
        // raw stream says the frame was FD.
        let test = "can_fd_messages";
        let frames = cantools_frames(dir.path(), test, 5, &dbc, &["ARM_STATE", "ARM_HEARTBEAT"]);
        assert_eq!(frames.len(), 10);
        for (n, f) in frames.iter().enumerate() {
            let fd = f.message == "ARM_STATE";
            assert_eq!(f.data.len(), if fd { 64 } else { 2 }, "{}", f.message);
            send(&[frame(f.id as u16, &f.data, fd)]);
            let sensor = if fd { "arm/state" } else { "arm/heartbeat" };
            let m = rig
                .sample(sensor, &format!("frame {n} on {sensor}"), |_| true)
                .await;
            assert_map_equals(&m, &f.values, &format!("frame {n}: {}", f.message));
            if fd {
                let raw = rig
                    .sample("arm/raw", &format!("raw frame {n}"), |_| true)
                    .await;
                assert!(raw.bool("is_fd"), "{raw:?}");
                assert_eq!(raw.u64("dlc"), 64, "{raw:?}");
            }
        }

        // A goal goes out as an 8-byte FD frame that cantools decodes to the goal.
        let ack = rig
            .command("arm/goal", serde_json::json!({"j1": 1.234, "j2": -0.5}))
            .await;
        assert_ok(&ack, "goal 1.234/-0.5");
        let goal = listener.nth(0x501, 1, "the goal frame").await;
        assert!(goal.fd, "ARM_GOAL must go out as FD: {goal:?}");
        let (name, back) = cantools_decode(dir.path(), &dbc, 0x501, &goal.data);
        assert_eq!(name, "ARM_GOAL");
        assert!(close(back["GOAL_1"].as_f64().unwrap(), 1.234), "{back}");
        assert!(close(back["GOAL_2"].as_f64().unwrap(), -0.5), "{back}");
        assert!(rig.daemon.is_running());
    }

    // ---------------------------------------------------------------------------------------
    // 5. A raw stream under load

    const RATE_HZ: u64 = 8000;
    const SECONDS: u64 = 5;

    /// `mosquitto_sub` on `topic` at QoS 1, printing each payload as hex: a subscriber in C
    /// that keeps up with the stream where an emulated CPU slows a Rust test client down.
    /// Returns once the broker acknowledged the subscription, with a reader collecting the
    /// counter each frame carries.
    fn counting_subscriber(
        broker: &Broker,
        topic: &str,
    ) -> (std::process::Child, Arc<Mutex<Counted>>) {
        use std::io::BufRead;
        // Line-buffered (stdbuf), so its SUBACK line shows when it happens, not at exit.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(mosquitto_program("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-t", topic, "-q", "1", "-F", "%x", "-d"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run mosquitto_sub");
        let lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (ready, subscribed) = std::sync::mpsc::channel();
        let counted = Arc::new(Mutex::new(Counted::default()));
        let c = counted.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                // With -d it reports its protocol steps on stdout too; payloads are the
                // all-hex lines.
                if line.contains("SUBACK") {
                    let _ = ready.send(());
                }
                if line.is_empty() || !line.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let bytes = hex_bytes(&line);
                let v = rmpv::decode::read_value(&mut &bytes[..]).expect("a msgpack payload");
                if let Some(rmpv::Value::Binary(b)) = lookup(&v, "data") {
                    let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
                    let mut c = c.lock().unwrap();
                    c.messages += 1;
                    c.numbers.insert(n);
                }
            }
        });
        subscribed
            .recv_timeout(DEADLINE)
            .expect("mosquitto_sub did not report its SUBACK");
        (child, counted)
    }

    /// What the counting subscriber got: messages, and the distinct numbers among them
    /// (QoS 1 is at least once: a message resent after a reconnect arrives twice).
    #[derive(Default)]
    struct Counted {
        messages: u64,
        numbers: BTreeSet<u32>,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_can_msgs_frame_stream_at_8000_frames_a_second_for_5_seconds_loses_none() {
        let _bus = take_bus().await;
        // A broker that queues without limit, as in tests/load.rs: what is measured is botbus.
        let broker = Broker::options().for_faults().persistence(false).start();
        let state = state_dir();
        let id = unique("socketcan-load");
        let (topic, diag) = (
            format!("robot/{id}/can/load"),
            format!("robot/{id}/diagnostics"),
        );
        let total = RATE_HZ * SECONDS;
        let (mut sub, counted) = counting_subscriber(&broker, &topic);
        let col = Collector::connect(&broker, &[&diag], SessionKind::Clean).await;
        let robot = format!(
            "id = \"{id}\"\n\n[[devices]]\nname = \"can\"\nprotocol = \"socketcan\"\n\
         interface = \"vcan0\"\n  [[devices.streams]]\n  sensor = \"can/load\"\n  \
         type = \"can_msgs/Frame\"\n  ids = [0x123]\n  qos = 1\n"
        );
        let _daemon = Daemon::start(DaemonOptions::new(robot, &broker, state.path()));
        col.wait_msg(&diag, DEADLINE, "the can device connected", |m| {
            m.diag_device("can").is_some_and(connected)
        })
        .await;

        // 8,000 frames a second, paced against the clock, each carrying its number.
        let sender = std::thread::spawn(move || {
            let sock = CanFdSocket::open(IFACE).expect("open vcan0");
            let start = std::time::Instant::now();
            let mut sent = 0u64;
            while sent < total {
                let due = (start.elapsed().as_secs_f64() * RATE_HZ as f64) as u64;
                while sent < due.min(total) {
                    let f = frame(0x123, &(sent as u32).to_le_bytes(), false);
                    sock.write_frame(&f).expect("write to vcan0");
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            (start, start.elapsed())
        });
        let (start, took) = tokio::task::spawn_blocking(move || sender.join().expect("sender"))
            .await
            .expect("join");
        println!(
            "sent {total} frames in {took:?} ({:.0} frames/s)",
            total as f64 / took.as_secs_f64()
        );

        // The daemon read every frame: its diagnostics count them all, and no error.
        let report = col
            .wait_msg(
                &diag,
                Duration::from_secs(120),
                "diagnostics counting every frame",
                |m| {
                    m.diag_device("can").is_some_and(|d| {
                        lookup(d, "frames").and_then(|v| v.as_u64()) == Some(total)
                    })
                },
            )
            .await;
        println!("the daemon had read them all after {:?}", start.elapsed());
        let entry = report.diag_device("can").expect("can").clone();
        assert_eq!(
            lookup(&entry, "errors").and_then(|v| v.as_u64()),
            Some(0),
            "{entry}"
        );
        // And every one arrives, however long the tail takes through an emulated broker.
        let end = Instant::now() + Duration::from_secs(240);
        while (counted.lock().unwrap().numbers.len() as u64) < total && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = sub.kill();
        let _ = sub.wait();
        let (got, messages) = {
            let c = counted.lock().unwrap();
            (c.numbers.clone(), c.messages)
        };
        println!(
            "{} of {total} frames arrived at mosquitto_sub after {:?} ({messages} messages: \
             {} sent twice)",
            got.len(),
            start.elapsed(),
            messages - got.len() as u64
        );
        let missing: Vec<u32> = (0..total as u32)
            .filter(|n| !got.contains(n))
            .take(20)
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {total} frames arrived; missing (first 20): {missing:?}",
            got.len()
        );
        let report = col
            .wait_msg(&diag, DEADLINE, "diagnostics after delivery", |_| true)
            .await;
        println!("mqtt.reconnects {}", report.u64("mqtt.reconnects"));
        assert_eq!(report.u64("mqtt.dropped"), 0, "{report:?}");
        assert_eq!(report.u64("mqtt.dropped_qos0"), 0, "{report:?}");
    }
}
