//! JointState commands → goals, sans-IO: every name must be one of the actuator's joints,
//! positions (or velocities) one per name, each within its joint's limits, converted to
//! the servos' raw units. Whatever is wrong rejects the whole command: a partial goal
//! would move some joints of an arm and not others.

use super::config::SafeConfig;
use super::validate::DxlCommand;
use crate::messages::JointState;
use crate::spec::OutOfRange;
use thiserror::Error;

/// Position or velocity goals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoalMode {
    Position,
    Velocity,
}

/// What a Dynamixel bus is asked to write: goals, or an actuator's safe state.
#[derive(Debug, Clone, PartialEq)]
pub enum DxlWrite {
    /// Raw goals per servo id, written as one Sync Write (after Operating Mode and
    /// Torque Enable where they are not yet set).
    Goals {
        mode: GoalMode,
        goals: Vec<(u8, i32)>,
    },
    /// Torque off, or hold the present position, for these ids.
    Safe { mode: SafeConfig, ids: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum GoalError {
    #[error("`{0}` is not a joint of this actuator")]
    UnknownJoint(String),
    #[error("joint `{0}` is named twice")]
    Twice(String),
    #[error("no joints named: give `name` and `position` (or `velocity`)")]
    Empty,
    #[error("{names} names but {values} {what} values: give one per name")]
    Lengths {
        names: usize,
        values: usize,
        what: &'static str,
    },
    #[error("give `position` or `velocity`, not both")]
    Both,
    #[error("joint `{joint}`: {value} is not a finite number")]
    NotFinite { joint: String, value: f64 },
    #[error("joint `{joint}`: {value} rad is outside its limits [{min}, {max}]")]
    OutOfLimits {
        joint: String,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("velocity goals need `max_velocity` (rad/s) on this actuator")]
    NoVelocityLimit,
    #[error("joint `{joint}`: {value} rad/s is beyond max_velocity {max}")]
    TooFast { joint: String, value: f64, max: f64 },
    #[error("joint `{joint}`: {reason}")]
    Raw { joint: String, reason: String },
}

/// The safe state of the actuator: its safe mode for every one of its joints.
pub fn safe(cmd: &DxlCommand) -> DxlWrite {
    DxlWrite::Safe {
        mode: cmd.safe,
        ids: cmd.joints.iter().map(|g| g.joint.id).collect(),
    }
}

/// The goals a JointState command asks for, checked and in raw units.
pub fn goals(cmd: &DxlCommand, m: &JointState) -> Result<DxlWrite, GoalError> {
    if m.name.is_empty() {
        return Err(GoalError::Empty);
    }
    let (mode, values, what) = match (m.position.is_empty(), m.velocity.is_empty()) {
        (false, false) => return Err(GoalError::Both),
        (true, false) => (GoalMode::Velocity, &m.velocity, "velocity"),
        _ => (GoalMode::Position, &m.position, "position"),
    };
    if values.len() != m.name.len() {
        return Err(GoalError::Lengths {
            names: m.name.len(),
            values: values.len(),
            what,
        });
    }
    let units = cmd.model.units();
    let mut goals = Vec::with_capacity(values.len());
    for (i, (name, &value)) in m.name.iter().zip(values).enumerate() {
        let goal = cmd
            .joints
            .iter()
            .find(|g| &g.joint.name == name)
            .ok_or_else(|| GoalError::UnknownJoint(name.clone()))?;
        if m.name[..i].contains(name) {
            return Err(GoalError::Twice(name.clone()));
        }
        if !value.is_finite() {
            return Err(GoalError::NotFinite {
                joint: name.clone(),
                value,
            });
        }
        let bounds = match mode {
            GoalMode::Position => Some(goal.limits),
            GoalMode::Velocity => {
                let max = cmd.max_velocity.ok_or(GoalError::NoVelocityLimit)?;
                Some((-max, max))
            }
        };
        let value = match bounds {
            Some((min, max)) if value < min || value > max => match cmd.out_of_range {
                OutOfRange::Clamp => value.clamp(min, max),
                OutOfRange::Reject if mode == GoalMode::Velocity => {
                    return Err(GoalError::TooFast {
                        joint: name.clone(),
                        value,
                        max,
                    })
                }
                OutOfRange::Reject => {
                    return Err(GoalError::OutOfLimits {
                        joint: name.clone(),
                        value,
                        min,
                        max,
                    })
                }
            },
            _ => value,
        };
        let raw = match mode {
            GoalMode::Position => units.goal_position(value),
            GoalMode::Velocity => units.goal_velocity(value),
        }
        .map_err(|e| GoalError::Raw {
            joint: name.clone(),
            reason: e.to_string(),
        })?;
        goals.push((goal.joint.id, raw));
    }
    Ok(DxlWrite::Goals { mode, goals })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::dynamixel::{Joint, JointGoal, Model};

    fn arm(out_of_range: OutOfRange, max_velocity: Option<f64>) -> DxlCommand {
        let goal = |name: &str, id, limits| JointGoal {
            joint: Joint {
                name: name.into(),
                id,
            },
            limits,
        };
        DxlCommand {
            model: Model::XSeries,
            joints: vec![
                goal("shoulder", 1, (-1.5, 1.5)),
                goal("elbow", 2, (-2.0, 2.0)),
            ],
            max_velocity,
            out_of_range,
            safe: SafeConfig::TorqueOff,
        }
    }

    fn state(names: &[&str], position: &[f64], velocity: &[f64]) -> JointState {
        JointState {
            name: names.iter().map(|n| n.to_string()).collect(),
            position: position.to_vec(),
            velocity: velocity.to_vec(),
            ..JointState::default()
        }
    }

    #[test]
    fn positions_become_raw_goals_in_the_order_named() {
        let w = goals(
            &arm(OutOfRange::Reject, None),
            &state(&["elbow", "shoulder"], &[-1.0, 0.5], &[]),
        )
        .unwrap();
        // ROBOTIS's X-series conversion: raw = rad * 4096 / 2π + 2048, rounded.
        assert_eq!(
            w,
            DxlWrite::Goals {
                mode: GoalMode::Position,
                goals: vec![(2, 1396), (1, 2374)]
            }
        );
    }

    #[test]
    fn out_of_limits_is_rejected_or_clamped_as_the_actuator_says() {
        let m = state(&["shoulder"], &[2.0], &[]);
        let e = goals(&arm(OutOfRange::Reject, None), &m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "joint `shoulder`: 2 rad is outside its limits [-1.5, 1.5]"
        );
        let w = goals(&arm(OutOfRange::Clamp, None), &m).unwrap();
        // 1.5 rad: 977.8 → 978 + 2048.
        assert_eq!(
            w,
            DxlWrite::Goals {
                mode: GoalMode::Position,
                goals: vec![(1, 3026)]
            }
        );
    }

    #[test]
    fn velocities_need_max_velocity_and_stay_under_it() {
        let m = state(&["elbow"], &[], &[1.0]);
        assert_eq!(
            goals(&arm(OutOfRange::Reject, None), &m).unwrap_err(),
            GoalError::NoVelocityLimit
        );
        // 1 rad/s = 9.549 rpm = 41.7 units of 0.229 rpm → 42.
        let w = goals(&arm(OutOfRange::Reject, Some(2.0)), &m).unwrap();
        assert_eq!(
            w,
            DxlWrite::Goals {
                mode: GoalMode::Velocity,
                goals: vec![(2, 42)]
            }
        );
        let fast = state(&["elbow"], &[], &[-3.0]);
        assert!(matches!(
            goals(&arm(OutOfRange::Reject, Some(2.0)), &fast),
            Err(GoalError::TooFast { .. })
        ));
    }

    #[test]
    fn a_command_that_is_wrong_anywhere_is_rejected_whole() {
        let cmd = arm(OutOfRange::Clamp, Some(1.0));
        let cases: [(JointState, GoalError); 6] = [
            (
                state(&["shoulder", "knee"], &[0.1, 0.1], &[]),
                GoalError::UnknownJoint("knee".into()),
            ),
            (
                state(&["shoulder", "elbow"], &[0.1], &[]),
                GoalError::Lengths {
                    names: 2,
                    values: 1,
                    what: "position",
                },
            ),
            (state(&["shoulder"], &[0.1], &[0.1]), GoalError::Both),
            (state(&[], &[], &[]), GoalError::Empty),
            (
                state(&["elbow", "elbow"], &[0.1, 0.2], &[]),
                GoalError::Twice("elbow".into()),
            ),
            (
                state(&["elbow"], &[f64::NAN], &[]),
                GoalError::NotFinite {
                    joint: "elbow".into(),
                    value: f64::NAN,
                },
            ),
        ];
        for (m, want) in cases {
            let got = goals(&cmd, &m).unwrap_err();
            // NaN is never equal to itself, so compare the messages.
            assert_eq!(got.to_string(), want.to_string(), "{m:?}");
        }
    }

    #[test]
    fn the_safe_state_covers_every_joint_of_the_actuator() {
        assert_eq!(
            safe(&arm(OutOfRange::Reject, None)),
            DxlWrite::Safe {
                mode: SafeConfig::TorqueOff,
                ids: vec![1, 2]
            }
        );
    }
}
