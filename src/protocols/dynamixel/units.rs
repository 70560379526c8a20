//! Raw control-table values to SI units and back, per [`Model`]: position in rad,
//! velocity in rad/s, current (the joint's effort) in A.
//!
//! X series, as ROBOTIS's ROS packages convert them: 4096 pulses a turn with 2048 at
//! 0 rad, velocity in 0.229 rpm steps, current in 2.69 mA steps (e-Manual XM430-W350).
//! P series: velocity in 0.01 rpm and current in 1 mA steps (e-Manual P control tables),
//! 0 rad at 0, and each model's resolution in pulses a turn from the e-Manual's P-series
//! overview: PH54 1,003,846, PH42 607,500, PM54 502,834, PM42 526,374 (half of each is the
//! bound of its Min/Max Position Limit range, ±π).

use super::error::DynamixelError;
use super::table::Model;
use std::f64::consts::TAU;

/// How one model's raw values map to SI units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    /// Raw position at 0 rad.
    pub position_zero: i32,
    /// Raw position steps in one turn.
    pub pulses_per_turn: f64,
    /// One raw velocity step, in rev/min.
    pub velocity_rpm: f64,
    /// One raw current step, in A.
    pub current_a: f64,
}

impl Units {
    pub const X_SERIES: Units = Units {
        position_zero: 2048,
        pulses_per_turn: 4096.0,
        velocity_rpm: 0.229,
        current_a: 0.00269,
    };

    const fn p_series(pulses_per_turn: f64) -> Units {
        Units {
            position_zero: 0,
            pulses_per_turn,
            velocity_rpm: 0.01,
            current_a: 0.001,
        }
    }

    pub fn of(model: Model) -> Units {
        match model {
            Model::XSeries => Units::X_SERIES,
            Model::Ph54 => Units::p_series(1_003_846.0),
            Model::Ph42 => Units::p_series(607_500.0),
            Model::Pm54 => Units::p_series(502_834.0),
            Model::Pm42 => Units::p_series(526_374.0),
        }
    }

    /// Present (or goal) position in rad.
    pub fn position_rad(&self, raw: i32) -> f64 {
        // i64, because raw − zero overflows i32 near its ends.
        (raw as i64 - self.position_zero as i64) as f64 * TAU / self.pulses_per_turn
    }

    /// Present (or goal) velocity in rad/s.
    pub fn velocity_rad_s(&self, raw: i32) -> f64 {
        raw as f64 * self.velocity_rpm * TAU / 60.0
    }

    /// Present (or goal) current in A.
    pub fn current_a(&self, raw: i16) -> f64 {
        raw as f64 * self.current_a
    }

    /// The Goal Position for `rad`, to the nearest pulse (saturating at the ends of i32).
    pub fn goal_position(&self, rad: f64) -> Result<i32, DynamixelError> {
        let pulses = finite(rad, "a goal position")? * self.pulses_per_turn / TAU;
        Ok(saturate_i32(pulses.round() + self.position_zero as f64))
    }

    /// The Goal Velocity for `rad_s`, to the nearest step (saturating at the ends of i32).
    pub fn goal_velocity(&self, rad_s: f64) -> Result<i32, DynamixelError> {
        let steps = finite(rad_s, "a goal velocity")? * 60.0 / (TAU * self.velocity_rpm);
        Ok(saturate_i32(steps.round()))
    }

    /// The Goal Current for `amps`, to the nearest step (saturating at the ends of i16).
    pub fn goal_current(&self, amps: f64) -> Result<i16, DynamixelError> {
        let steps = (finite(amps, "a goal current")? / self.current_a).round();
        Ok(steps.clamp(i16::MIN as f64, i16::MAX as f64) as i16)
    }
}

/// A NaN would otherwise become raw 0, which for an X-series position is −π: a command
/// that is no number must not move a joint.
fn finite(v: f64, quantity: &'static str) -> Result<f64, DynamixelError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(DynamixelError::NotFinite { quantity })
    }
}

fn saturate_i32(v: f64) -> i32 {
    v.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::f64::consts::PI;

    const X: Units = Units::X_SERIES;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + b.abs())
    }

    #[test]
    fn x_series_reference_points() {
        assert_eq!(X.position_rad(2048), 0.0);
        assert!(close(X.position_rad(0), -PI));
        let top = X.position_rad(4095);
        assert!(top < PI && close(top, PI - TAU / 4096.0), "{top}");
        assert!(close(X.position_rad(3072), PI / 2.0));
        assert_eq!(X.goal_position(0.0), Ok(2048));
        assert_eq!(X.goal_position(-PI), Ok(0));
        assert_eq!(X.goal_position(PI), Ok(4096));
        // 1 step = 0.229 rpm = 0.229 · 2π / 60 rad/s.
        assert!(close(X.velocity_rad_s(1), 0.229 * TAU / 60.0));
        assert_eq!(X.goal_velocity(0.229 * TAU / 60.0 * 42.0), Ok(42));
        assert!(close(X.current_a(-100), -0.269));
        assert!(close(X.current_a(1193), 3.20917));
        assert_eq!(X.goal_current(0.269), Ok(100));
    }

    #[test]
    fn p_series_reference_points() {
        let ph54 = Model::Ph54.units();
        assert!(close(ph54.position_rad(501_923), PI));
        assert!(close(ph54.position_rad(-501_923), -PI));
        // π/4 is 125,480.75 pulses.
        assert_eq!(ph54.goal_position(PI / 4.0), Ok(125_481));
        assert!(close(Model::Ph42.units().position_rad(303_750), PI));
        assert!(close(Model::Pm54.units().position_rad(251_417), PI));
        assert!(close(Model::Pm42.units().position_rad(263_187), PI));
        assert!(close(ph54.velocity_rad_s(100), TAU / 60.0));
        assert!(close(ph54.current_a(1500), 1.5));
    }

    #[test]
    fn commands_that_are_no_number_are_refused_and_huge_ones_saturate() {
        assert_eq!(
            X.goal_position(f64::NAN),
            Err(DynamixelError::NotFinite {
                quantity: "a goal position"
            })
        );
        assert!(X.goal_velocity(f64::INFINITY).is_err());
        assert!(X.goal_current(f64::NEG_INFINITY).is_err());
        assert_eq!(X.goal_position(1e300), Ok(i32::MAX));
        assert_eq!(X.goal_position(-1e300), Ok(i32::MIN));
        assert_eq!(X.goal_velocity(-1e300), Ok(i32::MIN));
        assert_eq!(X.goal_current(1e9), Ok(i16::MAX));
        assert!(close(
            X.position_rad(i32::MIN),
            (i32::MIN as f64 - 2048.0) * TAU / 4096.0
        ));
    }

    fn model() -> impl Strategy<Value = Model> {
        prop::sample::select(vec![
            Model::XSeries,
            Model::Ph54,
            Model::Ph42,
            Model::Pm54,
            Model::Pm42,
        ])
    }

    proptest! {
        #[test]
        fn raw_positions_round_trip(m in model(), raw in -2_000_000_000i32..2_000_000_000) {
            let u = m.units();
            prop_assert_eq!(u.goal_position(u.position_rad(raw)), Ok(raw));
        }

        #[test]
        fn raw_velocities_and_currents_round_trip(m in model(), v in -10_000_000i32..10_000_000, c in any::<i16>()) {
            let u = m.units();
            prop_assert_eq!(u.goal_velocity(u.velocity_rad_s(v)), Ok(v));
            prop_assert_eq!(u.goal_current(u.current_a(c)), Ok(c));
        }

        #[test]
        fn radians_round_trip_within_half_a_pulse(m in model(), rad in -100.0..100.0f64) {
            let u = m.units();
            let back = u.position_rad(u.goal_position(rad).unwrap());
            prop_assert!((back - rad).abs() <= TAU / u.pulses_per_turn / 2.0 + 1e-12);
        }
    }
}
