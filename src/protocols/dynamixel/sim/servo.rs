//! One simulated servo: a byte image of its control table, the rules a write obeys (the
//! e-Manual's Access and Data Range errors, the EEPROM lock while torque is on), reboot,
//! hardware errors, and the physics that moves it. Everything is read from and written to
//! the image, so what the host reads is exactly what the simulation did.

use super::super::packet::MAX_DEVICE_ID;
use super::super::status::ErrorNumber;
use super::super::table::{Item, Model};
use super::super::units::Units;
use std::ops::Range;
use std::time::Duration;

/// The speed a position move takes when Profile Velocity is 0 (the servo's "as fast as
/// it can"): 60 rpm, about what an XM430 makes at 12 V.
const DEFAULT_RPM: f64 = 60.0;
/// Present current per rad/s of motion: a small load, so a moving joint shows an effort
/// with the sign of its velocity (0.19 A at 60 rpm).
const AMPS_PER_RAD_S: f64 = 0.03;
const TEMPERATURE_C: i64 = 35;
/// A plausible version; nothing depends on it.
const FIRMWARE: i64 = 46;
/// Items the e-Manual marks read-only (R): writing them is an Access Error.
const READ_ONLY: &[&str] = &[
    "model_number",
    "model_information",
    "firmware_version",
    "registered_instruction",
    "hardware_error_status",
    "realtime_tick",
    "moving",
    "moving_status",
    "present_pwm",
    "present_current",
    "present_velocity",
    "present_position",
    "velocity_trajectory",
    "position_trajectory",
    "present_input_voltage",
    "present_temperature",
];

/// Which Status Return Level a status needs to be sent (e-Manual, Status Return
/// Level(68)): a ping is always answered, reads from level 1, everything else at 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Ping = 0,
    Read = 1,
    All = 2,
}

/// The items the simulation drives, resolved once for a model.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    model: Model,
    units: Units,
    model_number: Item,
    firmware_version: Item,
    id: Item,
    operating_mode: Item,
    max_position_limit: Item,
    min_position_limit: Item,
    torque_enable: Item,
    status_return_level: Item,
    hardware_error_status: Item,
    goal_velocity: Item,
    profile_velocity: Item,
    goal_position: Item,
    moving: Item,
    present_current: Item,
    present_velocity: Item,
    present_position: Item,
    present_input_voltage: Item,
    present_temperature: Item,
    /// Bytes in the image: to the end of the model's last item.
    size: usize,
}

impl Layout {
    pub fn of(model: Model) -> Self {
        // The names are this file's and every model's table has them (a test builds every
        // model), so a miss is a bug here, not something the wire can cause.
        let item = |name| {
            model
                .item(name)
                .expect("every model's table has the items the simulator drives")
        };
        Layout {
            model,
            units: model.units(),
            model_number: item("model_number"),
            firmware_version: item("firmware_version"),
            id: item("id"),
            operating_mode: item("operating_mode"),
            max_position_limit: item("max_position_limit"),
            min_position_limit: item("min_position_limit"),
            torque_enable: item("torque_enable"),
            status_return_level: item("status_return_level"),
            hardware_error_status: item("hardware_error_status"),
            goal_velocity: item("goal_velocity"),
            profile_velocity: item("profile_velocity"),
            goal_position: item("goal_position"),
            moving: item("moving"),
            present_current: item("present_current"),
            present_velocity: item("present_velocity"),
            present_position: item("present_position"),
            present_input_voltage: item("present_input_voltage"),
            present_temperature: item("present_temperature"),
            size: model.items().map(|i| span(i).end).max().unwrap_or(0),
        }
    }

    /// The EEPROM area ends where RAM starts, at Torque Enable, on both series.
    fn eeprom_end(&self) -> usize {
        self.torque_enable.address as usize
    }
}

/// One servo on the bus.
#[derive(Debug, Clone)]
pub(super) struct Servo {
    table: Vec<u8>,
    /// Present position with the fraction a raw step drops, so slow motion in short steps
    /// still adds up.
    position: f64,
    /// Answers nothing and carries out nothing, as if its data line were cut.
    pub silent: bool,
    /// Its next status goes out with a broken CRC.
    pub corrupt_next: bool,
}

impl Servo {
    /// A servo as it powers up: at 0 rad, holding no goal but where it is, torque off,
    /// position control, no hardware error.
    pub fn new(l: &Layout, id: u8) -> Self {
        let zero = l.units.position_zero as i64;
        let mut s = Servo {
            table: vec![0; l.size],
            position: zero as f64,
            silent: false,
            corrupt_next: false,
        };
        let half_turn = l.units.pulses_per_turn as i64 / 2;
        let (min, max) = match l.model {
            // 0..=4095, one turn from 2048.
            Model::XSeries => (zero - half_turn, zero + half_turn - 1),
            Model::Ph54 | Model::Ph42 | Model::Pm54 | Model::Pm42 => (-half_turn, half_turn),
        };
        let (model_number, volts_x10) = match l.model {
            Model::XSeries => (1020, 120), // XM430-W350 at 12 V
            Model::Ph54 => (2020, 240),    // PH54-200-S500-R at 24 V
            Model::Ph42 => (2000, 240),    // PH42-020-S300-R
            Model::Pm54 => (2120, 240),    // PM54-060-S250-R
            Model::Pm42 => (2100, 240),    // PM42-010-S260-R
        };
        for (item, value) in [
            (l.model_number, model_number),
            (l.firmware_version, FIRMWARE),
            (l.id, id as i64),
            (l.operating_mode, 3),
            (l.max_position_limit, max),
            (l.min_position_limit, min),
            (l.status_return_level, 2),
            (l.present_input_voltage, volts_x10),
            (l.present_temperature, TEMPERATURE_C),
        ] {
            s.set(item, value);
        }
        s.hold(l);
        s
    }

    pub fn id(&self, l: &Layout) -> u8 {
        self.get(l.id) as u8
    }

    pub fn get(&self, item: Item) -> i64 {
        self.table
            .get(span(item))
            .and_then(|b| item.decode(b))
            .unwrap_or(0)
    }

    /// Stores `value`'s low bytes; callers pass values that fit.
    fn set(&mut self, item: Item, value: i64) {
        let bytes = value.to_le_bytes();
        if let Some(dst) = self.table.get_mut(span(item)) {
            dst.copy_from_slice(&bytes[..dst.len()]);
        }
    }

    pub fn torque(&self, l: &Layout) -> bool {
        self.get(l.torque_enable) != 0
    }

    pub fn goal_position(&self, l: &Layout) -> i64 {
        self.get(l.goal_position)
    }

    pub fn present_position(&self, l: &Layout) -> i64 {
        self.get(l.present_position)
    }

    pub fn operating_mode(&self, l: &Layout) -> i64 {
        self.get(l.operating_mode)
    }

    /// The alert bit of its statuses: a hardware error is latched.
    pub fn alert(&self, l: &Layout) -> bool {
        self.get(l.hardware_error_status) != 0
    }

    pub fn answers(&self, l: &Layout, level: Level) -> bool {
        self.get(l.status_return_level) >= level as i64
    }

    /// A ping's parameters: model number (LSB, MSB) and firmware version.
    pub fn ping(&self, l: &Layout) -> Vec<u8> {
        let [lo, hi] = (self.get(l.model_number) as u16).to_le_bytes();
        vec![lo, hi, self.get(l.firmware_version) as u8]
    }

    /// `length` bytes of the image from `address`. Past the image is an address the
    /// e-Manual calls undefined: Access Error.
    pub fn read(&self, address: u16, length: u16) -> Result<Vec<u8>, ErrorNumber> {
        let start = address as usize;
        self.table
            .get(start..start + length as usize)
            .map(<[u8]>::to_vec)
            .ok_or(ErrorNumber::Access)
    }

    /// Writes `data` at `address`, or changes nothing and says why: Access Error for
    /// an undefined address, a read-only item, or EEPROM while torque is on; Data Range
    /// Error for a value an item does not take.
    pub fn write(&mut self, l: &Layout, address: u16, data: &[u8]) -> Result<(), ErrorNumber> {
        let start = address as usize;
        let range = start..start + data.len();
        let mut next = self.table.clone();
        next.get_mut(range.clone())
            .ok_or(ErrorNumber::Access)?
            .copy_from_slice(data);
        let touched: Vec<Item> = l
            .model
            .items()
            .filter(|i| overlaps(&span(*i), &range))
            .collect();
        if touched.iter().any(|i| READ_ONLY.contains(&i.name)) {
            return Err(ErrorNumber::Access);
        }
        if self.torque(l) && start < l.eeprom_end() {
            return Err(ErrorNumber::Access);
        }
        let value = |i: &Item| next.get(span(*i)).and_then(|b| i.decode(b));
        if !touched
            .iter()
            .all(|i| value(i).is_some_and(|v| takes(i.name, v)))
        {
            return Err(ErrorNumber::DataRange);
        }
        self.table = next;
        self.latch(l);
        Ok(())
    }

    /// Sets (or, with 0, clears) Hardware Error Status.
    pub fn set_hardware_error(&mut self, l: &Layout, bits: u8) {
        self.set(l.hardware_error_status, bits as i64);
        self.latch(l);
    }

    /// A latched hardware error keeps torque off until reboot, whatever is written.
    fn latch(&mut self, l: &Layout) {
        if self.alert(l) {
            self.set(l.torque_enable, 0);
        }
    }

    /// RAM back to its power-up values (torque off, no hardware error), EEPROM kept, and
    /// the servo where it is.
    pub fn reboot(&mut self, l: &Layout) {
        let fresh = Servo::new(l, self.id(l));
        let ram = l.eeprom_end().min(self.table.len());
        self.table[ram..].copy_from_slice(&fresh.table[ram..]);
        self.hold(l);
    }

    /// Present and goal position where the servo is, as after power-up.
    fn hold(&mut self, l: &Layout) {
        let here = self.position.round() as i64;
        self.set(l.present_position, here);
        self.set(l.goal_position, here);
    }

    /// Moves the servo through `dt`, and sets what the host reads of the motion.
    pub fn advance(&mut self, l: &Layout, dt: Duration) {
        let secs = dt.as_secs_f64();
        let moved = if self.torque(l) && secs > 0.0 {
            self.motion(l, secs)
        } else {
            0.0
        };
        self.position = (self.position + moved).clamp(i32::MIN as f64, i32::MAX as f64);
        let u = &l.units;
        let velocity = if secs > 0.0 {
            (moved / secs * 60.0 / (u.pulses_per_turn * u.velocity_rpm)).round()
        } else {
            0.0
        };
        let amps = AMPS_PER_RAD_S * u.velocity_rad_s(velocity as i32);
        let current = (amps / u.current_a).round() as i16;
        self.set(l.present_position, self.position.round() as i64);
        self.set(l.present_velocity, velocity as i64);
        self.set(l.present_current, current as i64);
        self.set(l.moving, (moved != 0.0) as i64);
    }

    /// Pulses moved in `secs` with torque on, by operating mode.
    fn motion(&self, l: &Layout, secs: f64) -> f64 {
        let u = &l.units;
        match self.get(l.operating_mode) {
            1 => pulses_per_s(u, self.get(l.goal_velocity) as f64) * secs,
            mode @ 3..=5 => {
                let mut goal = self.get(l.goal_position) as f64;
                if mode == 3 {
                    // Position mode stays within its limits; max/min rather than clamp,
                    // which panics if the host wrote min > max.
                    let min = self.get(l.min_position_limit) as f64;
                    goal = goal.min(self.get(l.max_position_limit) as f64).max(min);
                }
                let profile = self.get(l.profile_velocity);
                let speed = if profile > 0 {
                    profile as f64
                } else {
                    DEFAULT_RPM / u.velocity_rpm
                };
                let step = pulses_per_s(u, speed) * secs;
                (goal - self.position).min(step).max(-step)
            }
            // Current and PWM control: no load model, so the joint stays put.
            _ => 0.0,
        }
    }
}

/// Position pulses a second at `velocity` raw velocity steps.
fn pulses_per_s(u: &Units, velocity: f64) -> f64 {
    velocity * u.velocity_rpm / 60.0 * u.pulses_per_turn
}

/// Whether an item takes `value`: the few the simulation acts on are checked.
fn takes(name: &str, value: i64) -> bool {
    match name {
        "torque_enable" => (0..=1).contains(&value),
        "operating_mode" => [0, 1, 3, 4, 5, 16].contains(&value),
        "id" => value <= MAX_DEVICE_ID as i64,
        "status_return_level" => (0..=2).contains(&value),
        _ => true,
    }
}

fn span(item: Item) -> Range<usize> {
    let start = item.address as usize;
    start..start + item.size as usize
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}
