//! The simulated bus driven with the core's own builders and read with its own status
//! parser and answer helpers: the simulation and the core must agree on the wire.

use super::super::answer::{ping_answer, read_answer};
use super::super::instruction::{self, BulkRead};
use super::super::joints::JointPoll;
use super::super::packet::{every_split, BROADCAST_ID};
use super::super::status::{ErrorNumber, Status, StatusParser};
use super::super::table::Item;
use super::super::DynamixelError;
use super::*;
use std::f64::consts::PI;

type Event = Result<Status, DynamixelError>;

fn x_bus() -> ServoBus {
    ServoBus::new(Model::XSeries, &[1, 2, 3])
}

/// Everything the bus answers `request` with, parsed.
fn events(bus: &mut ServoBus, request: &[u8]) -> Vec<Event> {
    let mut wire = Vec::new();
    bus.feed(request, &mut wire);
    let mut out = Vec::new();
    StatusParser::new().push(&wire, |e| out.push(e));
    out
}

/// The statuses `request` is answered with, every one well formed.
fn ask(bus: &mut ServoBus, request: Vec<u8>) -> Vec<Status> {
    events(bus, &request)
        .into_iter()
        .map(|e| e.expect("a well-formed status"))
        .collect()
}

fn ids(statuses: &[Status]) -> Vec<u8> {
    statuses.iter().map(|s| s.id).collect()
}

fn item(name: &str) -> Item {
    Model::XSeries.item(name).unwrap()
}

/// Writes `value` to the X-series item `name` of `id` (or of every servo) and returns
/// the answers.
fn write(bus: &mut ServoBus, id: u8, name: &str, value: i64) -> Vec<Status> {
    let i = item(name);
    ask(
        bus,
        instruction::write(id, i.address, &i.encode(value).unwrap()).unwrap(),
    )
}

/// [`write`] to one servo, and its one answer.
fn set(bus: &mut ServoBus, id: u8, name: &str, value: i64) -> Status {
    let mut answers = write(bus, id, name, value);
    assert_eq!(ids(&answers), [id], "{name}");
    answers.remove(0)
}

/// Writes each `(item, value)` to `id`, each accepted.
fn setup(bus: &mut ServoBus, id: u8, writes: &[(&str, i64)]) {
    for &(name, value) in writes {
        assert_eq!(set(bus, id, name, value).error, StatusError::NONE, "{name}");
    }
}

/// An X-series bus of 1, 2 and 3 after `writes` to `id` and `seconds` of motion.
fn driven(id: u8, writes: &[(&str, i64)], seconds: f64) -> ServoBus {
    let mut bus = x_bus();
    setup(&mut bus, id, writes);
    run(&mut bus, seconds);
    bus
}

fn get(bus: &mut ServoBus, id: u8, name: &str) -> i64 {
    let i = item(name);
    let answers = ask(
        bus,
        instruction::read(id, i.address, i.size as u16).unwrap(),
    );
    let data = read_answer(&answers[0], id, i.size as u16).unwrap();
    i.decode(data).unwrap()
}

fn run(bus: &mut ServoBus, seconds: f64) {
    let steps = (seconds / 0.01).round() as usize;
    for _ in 0..steps {
        bus.advance(Duration::from_millis(10));
    }
}

fn sync_write_goals(goals: &[(u8, i32)]) -> Vec<u8> {
    let bytes: Vec<(u8, [u8; 4])> = goals.iter().map(|&(id, g)| (id, g.to_le_bytes())).collect();
    let entries: Vec<(u8, &[u8])> = bytes.iter().map(|(id, b)| (*id, &b[..])).collect();
    instruction::sync_write(116, &entries).unwrap()
}

fn torque_on(bus: &mut ServoBus) {
    let entries: Vec<(u8, &[u8])> = bus.ids().into_iter().map(|id| (id, &[1u8][..])).collect();
    let request = instruction::sync_write(64, &entries).unwrap();
    assert!(ask(bus, request).is_empty());
}

#[test]
fn pings_are_answered_by_one_servo_or_by_all_in_id_order() {
    let mut bus = ServoBus::new(Model::XSeries, &[3, 1, 2, 2, 253]);
    assert_eq!(bus.ids(), [1, 2, 3]);
    let one = ask(&mut bus, instruction::ping(2).unwrap());
    let answer = ping_answer(&one[0]).unwrap();
    assert_eq!((answer.id, answer.model_number), (2, 1020));
    assert_eq!(one.len(), 1);
    let all = ask(&mut bus, instruction::ping(BROADCAST_ID).unwrap());
    assert_eq!(ids(&all), [1, 2, 3]);
    assert!(ask(&mut bus, instruction::ping(9).unwrap()).is_empty());
    assert_eq!(
        bus.take_received(),
        [
            Received::Ping { id: 2 },
            Received::Ping { id: BROADCAST_ID },
            Received::Ping { id: 9 }
        ]
    );
}

#[test]
fn writes_read_back_and_the_power_up_state_is_plausible() {
    let mut bus = x_bus();
    assert_eq!(get(&mut bus, 1, "present_position"), 2048);
    assert_eq!(get(&mut bus, 1, "goal_position"), 2048);
    assert_eq!(get(&mut bus, 1, "operating_mode"), 3);
    assert_eq!(get(&mut bus, 1, "present_input_voltage"), 120);
    assert_eq!(get(&mut bus, 1, "present_temperature"), 35);
    assert_eq!(bus.torque(1), Some(false));
    let ok = set(&mut bus, 1, "goal_position", 3000);
    assert_eq!((ok.error, ok.params.len()), (StatusError::NONE, 0));
    assert_eq!(get(&mut bus, 1, "goal_position"), 3000);
    assert_eq!(bus.goal_position_raw(1), Some(3000));
    assert_eq!(bus.goal_position_raw(2), Some(2048));
    // Between items (56..63 is reserved) the image reads zeros.
    let gap = ask(&mut bus, instruction::read(1, 56, 7).unwrap());
    assert_eq!(read_answer(&gap[0], 1, 7).unwrap(), [0; 7]);
}

#[test]
fn undefined_addresses_read_only_items_and_bad_values_are_refused() {
    let mut bus = x_bus();
    let past_end = ask(&mut bus, instruction::read(1, 146, 4).unwrap());
    assert_eq!(past_end[0].error.number, Some(ErrorNumber::Access));
    assert!(past_end[0].params.is_empty());
    let refused = |s: Status| s.error.number;
    assert_eq!(
        refused(set(&mut bus, 1, "present_position", 0)),
        Some(ErrorNumber::Access)
    );
    assert_eq!(
        refused(set(&mut bus, 1, "torque_enable", 2)),
        Some(ErrorNumber::DataRange)
    );
    assert_eq!(
        refused(set(&mut bus, 1, "operating_mode", 2)),
        Some(ErrorNumber::DataRange)
    );
    assert_eq!(bus.position_raw(1), Some(2048));
    assert_eq!(bus.operating_mode(1), Some(3));
}

#[test]
fn a_sync_read_of_three_servos_answers_in_the_order_asked() {
    let mut bus = driven(2, &[("goal_position", 3072), ("torque_enable", 1)], 2.0);
    let poll = JointPoll::new(Model::XSeries, &[1, 2, 3]).unwrap();
    let answers = ask(&mut bus, poll.request().to_vec());
    assert_eq!(ids(&answers), [1, 2, 3]);
    let states = poll.decode(&answers);
    assert_eq!(states[0].1.as_ref().unwrap().position_rad, 0.0);
    assert!((states[1].1.as_ref().unwrap().position_rad - PI / 2.0).abs() < 1e-12);
    let backwards = ask(&mut bus, instruction::sync_read(132, 4, &[3, 1]).unwrap());
    assert_eq!(ids(&backwards), [3, 1]);
}

#[test]
fn a_bulk_read_answers_each_servo_its_own_range() {
    let mut bus = x_bus();
    // Input voltage of 1, temperature of 2.
    let reads = [(1, 144, 2), (2, 146, 1)].map(|(id, address, length)| BulkRead {
        id,
        address,
        length,
    });
    let answers = ask(&mut bus, instruction::bulk_read(&reads).unwrap());
    assert_eq!(read_answer(&answers[0], 1, 2).unwrap(), [120, 0]);
    assert_eq!(read_answer(&answers[1], 2, 1).unwrap(), [35]);
}

#[test]
fn a_sync_write_of_goals_moves_each_servo_to_its_goal_and_stops_there() {
    let mut bus = x_bus();
    torque_on(&mut bus);
    bus.take_received();
    let goals = [(1, 3072), (2, 1024), (3, 2148)];
    assert!(ask(&mut bus, sync_write_goals(&goals)).is_empty());
    assert_eq!(
        bus.take_received(),
        [Received::SyncWrite {
            address: 116,
            length: 4,
            data: goals
                .iter()
                .map(|&(id, g)| (id, g.to_le_bytes().to_vec()))
                .collect(),
        }]
    );
    run(&mut bus, 0.1);
    // 60 rpm is 4096 pulses a second: 410 in 0.1 s, and servo 3 is already there.
    assert_eq!(bus.position_raw(1), Some(2048 + 410));
    assert_eq!(bus.position_raw(2), Some(2048 - 410));
    assert_eq!(bus.position_raw(3), Some(2148));
    assert_eq!(get(&mut bus, 1, "present_velocity"), 262);
    assert_eq!(get(&mut bus, 1, "moving"), 1);
    assert!(get(&mut bus, 1, "present_current") > 0);
    assert!(get(&mut bus, 2, "present_current") < 0);
    run(&mut bus, 1.0);
    for (id, goal) in goals {
        assert_eq!(bus.position_raw(id), Some(goal));
        assert_eq!(get(&mut bus, id, "present_velocity"), 0);
        assert_eq!(get(&mut bus, id, "moving"), 0);
        assert_eq!(get(&mut bus, id, "present_current"), 0);
    }
}

#[test]
fn profile_velocity_sets_the_speed_of_a_move() {
    let bus = driven(
        1,
        &[
            ("profile_velocity", 131),
            ("torque_enable", 1),
            ("goal_position", 4000),
        ],
        0.5,
    );
    // 131 × 0.229 rpm is 0.5 rev/s: 2048 × 0.5 pulses in half a second.
    let moved = bus.position_raw(1).unwrap() - 2048;
    assert!((1020..=1030).contains(&moved), "{moved}");
}

#[test]
fn with_torque_off_nothing_moves() {
    let mut bus = x_bus();
    assert!(ask(&mut bus, sync_write_goals(&[(1, 4000)])).is_empty());
    run(&mut bus, 1.0);
    assert_eq!(bus.position_raw(1), Some(2048));
    assert_eq!(get(&mut bus, 1, "present_velocity"), 0);
    assert_eq!(get(&mut bus, 1, "moving"), 0);
}

#[test]
fn eeprom_writes_are_refused_while_torque_is_on() {
    let mut bus = x_bus();
    set(&mut bus, 1, "torque_enable", 1);
    let refused = set(&mut bus, 1, "operating_mode", 1);
    assert_eq!(refused.error.number, Some(ErrorNumber::Access));
    assert_eq!(bus.operating_mode(1), Some(3));
    set(&mut bus, 1, "torque_enable", 0);
    assert_eq!(
        set(&mut bus, 1, "operating_mode", 1).error,
        StatusError::NONE
    );
    assert_eq!(bus.operating_mode(1), Some(1));
}

#[test]
fn velocity_mode_integrates_goal_velocity() {
    let mut bus = driven(
        1,
        &[
            ("operating_mode", 1),
            ("torque_enable", 1),
            ("goal_velocity", -100),
        ],
        1.0,
    );
    // 100 × 0.229 rpm × 4096 / 60 pulses a second.
    let want = 2048 - (100.0 * 0.229 * 4096.0 / 60.0_f64).round() as i32;
    assert_eq!(bus.position_raw(1), Some(want));
    assert_eq!(get(&mut bus, 1, "present_velocity"), -100);
    assert!(get(&mut bus, 1, "present_current") < 0);
}

#[test]
fn a_silent_servo_answers_nothing_while_the_others_do() {
    let mut bus = x_bus();
    bus.set_silent(2, true);
    let answers = ask(
        &mut bus,
        instruction::sync_read(132, 4, &[1, 2, 3]).unwrap(),
    );
    assert_eq!(ids(&answers), [1, 3]);
    assert!(ask(&mut bus, instruction::ping(2).unwrap()).is_empty());
    bus.set_silent(2, false);
    assert_eq!(ids(&ask(&mut bus, instruction::ping(2).unwrap())), [2]);
}

#[test]
fn corrupt_next_breaks_exactly_one_status() {
    let mut bus = x_bus();
    bus.corrupt_next(1);
    let got = events(&mut bus, &instruction::sync_read(132, 4, &[1, 2]).unwrap());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        matches!(got[0], Err(DynamixelError::Crc { id: 1, .. })),
        "{got:?}"
    );
    assert!(matches!(&got[1], Ok(s) if s.id == 2));
    assert_eq!(ids(&ask(&mut bus, instruction::ping(1).unwrap())), [1]);
}

#[test]
fn a_hardware_error_raises_the_alert_and_keeps_torque_off_until_reboot() {
    let mut bus = x_bus();
    set(&mut bus, 1, "torque_enable", 1);
    bus.set_hardware_error(1, 0x20);
    assert_eq!(bus.torque(1), Some(false));
    let ping = ask(&mut bus, instruction::ping(1).unwrap());
    assert!(ping[0].error.alert);
    assert_eq!(get(&mut bus, 1, "hardware_error_status"), 0x20);
    // The write is carried out, but torque stays off.
    let on = set(&mut bus, 1, "torque_enable", 1);
    assert_eq!((on.error.alert, on.error.number), (true, None));
    assert_eq!(bus.torque(1), Some(false));
    assert!(!ask(&mut bus, instruction::ping(2).unwrap())[0].error.alert);
    // The reboot's answer goes out before the restart.
    let reboot = ask(&mut bus, instruction::reboot(1).unwrap());
    assert!(reboot[0].error.alert);
    assert!(!ask(&mut bus, instruction::ping(1).unwrap())[0].error.alert);
    assert_eq!(get(&mut bus, 1, "hardware_error_status"), 0);
    assert_eq!(
        set(&mut bus, 1, "torque_enable", 1).error,
        StatusError::NONE
    );
    assert_eq!(bus.torque(1), Some(true));
}

#[test]
fn reboot_resets_ram_keeps_eeprom_and_holds_the_position() {
    let mut bus = driven(
        1,
        &[
            ("operating_mode", 4),
            ("torque_enable", 1),
            ("goal_position", 2548),
        ],
        1.0,
    );
    ask(&mut bus, instruction::reboot(1).unwrap());
    assert_eq!(bus.torque(1), Some(false));
    assert_eq!(bus.operating_mode(1), Some(4));
    assert_eq!(bus.position_raw(1), Some(2548));
    assert_eq!(bus.goal_position_raw(1), Some(2548));
}

#[test]
fn broadcast_writes_are_carried_out_and_never_answered() {
    let mut bus = x_bus();
    assert!(write(&mut bus, BROADCAST_ID, "led", 1).is_empty());
    for id in [1, 2, 3] {
        assert_eq!(get(&mut bus, id, "led"), 1);
    }
    assert!(ask(&mut bus, instruction::reboot(BROADCAST_ID).unwrap()).is_empty());
    assert_eq!(get(&mut bus, 2, "led"), 0);
}

#[test]
fn status_return_level_one_answers_reads_and_pings_only() {
    let mut bus = x_bus();
    // The level is applied before the answer, so this write already goes unanswered.
    assert!(write(&mut bus, 1, "status_return_level", 1).is_empty());
    assert!(write(&mut bus, 1, "led", 1).is_empty());
    assert_eq!(get(&mut bus, 1, "led"), 1);
    assert_eq!(ids(&ask(&mut bus, instruction::ping(1).unwrap())), [1]);
}

#[test]
fn garbage_and_corrupt_requests_are_ignored() {
    let mut bus = x_bus();
    let mut bad = instruction::ping(1).unwrap();
    bad[9] ^= 0x01;
    let mut wire = vec![0x00, 0xFF, 0xFF, 0xFD, 0x13, 0x55];
    wire.extend_from_slice(&bad);
    wire.extend_from_slice(&[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0xFF, 0xFF]);
    wire.extend_from_slice(&instruction::ping(3).unwrap());
    let got = events(&mut bus, &wire);
    assert!(matches!(&got[..], [Ok(s)] if s.id == 3), "{got:?}");
    assert_eq!(bus.take_received(), [Received::Ping { id: 3 }]);
}

#[test]
fn requests_split_at_every_byte_still_parse() {
    // Goal 0x00FDFFFF stuffs; the sync read and ping follow in the same stream.
    let mut wire = instruction::write(1, 116, &0x00FD_FFFFi32.to_le_bytes()).unwrap();
    wire.extend_from_slice(&instruction::sync_read(132, 4, &[1, 2, 3]).unwrap());
    wire.extend_from_slice(&instruction::ping(BROADCAST_ID).unwrap());
    let whole = |chunks: &[&[u8]]| {
        let mut bus = x_bus();
        let mut out = Vec::new();
        for c in chunks {
            bus.feed(c, &mut out);
        }
        (out, bus.take_received())
    };
    let want = whole(&[&wire]);
    assert_eq!(want.1.len(), 3);
    for chunks in every_split(&wire) {
        assert_eq!(whole(&chunks), want, "{chunks:?}");
    }
}

#[test]
fn p_series_servos_answer_in_their_own_table_and_units() {
    for model in [Model::Ph54, Model::Ph42, Model::Pm54, Model::Pm42] {
        let mut bus = ServoBus::new(model, &[1]);
        let ping = ask(&mut bus, instruction::ping(1).unwrap());
        assert!(
            ping_answer(&ping[0]).unwrap().model_number >= 2000,
            "{model}"
        );
        let torque = model.item("torque_enable").unwrap();
        let goal = model.item("goal_position").unwrap();
        let quarter = model.units().goal_position(PI / 2.0).unwrap();
        ask(
            &mut bus,
            instruction::write(1, torque.address, &[1]).unwrap(),
        );
        ask(
            &mut bus,
            instruction::write(1, goal.address, &quarter.to_le_bytes()).unwrap(),
        );
        run(&mut bus, 1.0);
        let poll = JointPoll::new(model, &[1]).unwrap();
        let answers = ask(&mut bus, poll.request().to_vec());
        let state = poll.decode_status(&answers[0]).unwrap();
        assert!(
            (state.position_rad - PI / 2.0).abs() < 1e-4,
            "{model} {state:?}"
        );
    }
}
