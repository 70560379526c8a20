//! A validated command (actuator): the keys every protocol shares, checked here, and how
//! the protocol writes it (`R`): a line template, register writes, a CAN frame.

use super::check::{flatten, num};
use super::Checker;
use crate::messages::{FieldKind, MessageType, Scalar};
use serde::Deserialize;
use std::time::Duration;

/// What to do with a command value outside its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRange {
    Reject,
    Clamp,
}

pub fn default_out_of_range() -> OutOfRange {
    OutOfRange::Reject
}

/// `[min, max]` for one numeric field.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub path: String,
    pub min: f64,
    pub max: f64,
}

/// A command of one protocol; `render` says how the protocol writes it.
#[derive(Debug, Clone)]
pub struct Command<R> {
    pub actuator: String,
    pub msg_type: MessageType,
    pub render: R,
    pub limits: Vec<Limit>,
    pub out_of_range: OutOfRange,
    /// The deadman: safe values are written when no command came for this long.
    pub timeout: Option<Duration>,
    /// Field path → value written on deadman, e-stop, disconnect and shutdown.
    pub safe: Vec<(String, Scalar)>,
    pub min_interval: Option<Duration>,
    pub max_age: Option<Duration>,
}

impl<R> Command<R> {
    /// The same command with its render seen another way (e.g. as the router's enum).
    pub fn map_render<T>(&self, f: impl FnOnce(&R) -> T) -> Command<T> {
        Command {
            actuator: self.actuator.clone(),
            msg_type: self.msg_type,
            render: f(&self.render),
            limits: self.limits.clone(),
            out_of_range: self.out_of_range,
            timeout: self.timeout,
            safe: self.safe.clone(),
            min_interval: self.min_interval,
            max_age: self.max_age,
        }
    }
}

/// The keys every command has as written. Each protocol's command config lists them itself
/// (serde's `flatten` cannot deny unknown keys) and hands them over with [`crate::command_keys!`].
#[derive(Debug, Clone)]
pub struct CommandKeys {
    pub actuator: String,
    pub msg_type: String,
    pub limits: toml::Table,
    pub out_of_range: OutOfRange,
    pub timeout_ms: Option<u64>,
    pub safe: toml::Table,
    pub max_rate_hz: Option<f64>,
    pub max_age_ms: Option<u64>,
}

/// Takes the keys every command has out of a protocol's command config.
#[macro_export]
macro_rules! command_keys {
    ($c:expr) => {
        $crate::spec::CommandKeys {
            actuator: $c.actuator,
            msg_type: $c.msg_type,
            limits: $c.limits,
            out_of_range: $c.out_of_range,
            timeout_ms: $c.timeout_ms,
            safe: $c.safe,
            max_rate_hz: $c.max_rate_hz,
            max_age_ms: $c.max_age_ms,
        }
    };
}

impl Checker {
    /// Checks the keys every command shares, then its protocol's way of writing (`render`,
    /// given the message type). Any type in `types` may be used.
    pub fn command<R>(
        &mut self,
        c: CommandKeys,
        at: &str,
        types: &[MessageType],
        render: impl FnOnce(&mut Self, MessageType) -> Option<R>,
    ) -> Option<Command<R>> {
        self.command_with(c, at, types, false, render)
    }

    /// [`Checker::command`] for a protocol whose safe state is its own (a Dynamixel
    /// joint's torque off), not safe values of the message: `safe` stays empty and the
    /// protocol's render gives the safe write (see `safety::render::render_safe`).
    pub fn command_own_safe<R>(
        &mut self,
        c: CommandKeys,
        at: &str,
        types: &[MessageType],
        render: impl FnOnce(&mut Self, MessageType) -> Option<R>,
    ) -> Option<Command<R>> {
        self.command_with(c, at, types, true, render)
    }

    fn command_with<R>(
        &mut self,
        c: CommandKeys,
        at: &str,
        types: &[MessageType],
        own_safe: bool,
        render: impl FnOnce(&mut Self, MessageType) -> Option<R>,
    ) -> Option<Command<R>> {
        let mut ok = self.check_name(&format!("{at}.actuator"), &c.actuator, true);
        if c.actuator == "estop" {
            self.problem(
                format!("{at}.actuator"),
                "`estop` is reserved for the emergency stop topic",
            );
            ok = false;
        }
        let t = self.msg_type(at, &c.msg_type, types);
        let rate = self.rate(at, "max_rate_hz", c.max_rate_hz);
        let t = t?;
        let render = render(self, t);
        let limits = self.limits(at, c.limits, t);
        let (safe, safe_ok) = if own_safe {
            (Vec::new(), true)
        } else {
            self.safe_values(at, c.safe, t, &limits)
        };
        ok &= safe_ok;
        if c.timeout_ms == Some(0) {
            self.problem(
                format!("{at}.timeout_ms"),
                "must be greater than 0 (omit it for no deadman)",
            );
            ok = false;
        }
        let (true, Some(render), Some(min_interval)) = (ok, render, rate) else {
            return None;
        };
        Some(Command {
            actuator: c.actuator,
            msg_type: t,
            render,
            limits,
            out_of_range: c.out_of_range,
            timeout: c.timeout_ms.map(Duration::from_millis),
            safe,
            min_interval,
            max_age: c.max_age_ms.map(Duration::from_millis),
        })
    }

    /// `limits = { "linear.x" = [-1.0, 1.0] }`: numeric fields of `t` only.
    fn limits(&mut self, at: &str, table: toml::Table, t: MessageType) -> Vec<Limit> {
        let mut limits = Vec::new();
        let mut flat = Vec::new();
        flatten(&toml::Value::Table(table), "", &mut flat);
        for (path, v) in flat {
            let pat = format!("{at}.limits.{path}");
            let pair = v.as_array().and_then(|a| {
                (a.len() == 2)
                    .then(|| Some((num(&a[0])?, num(&a[1])?)))
                    .flatten()
            });
            match (pair, t.kind_of(&path)) {
                (_, None) => self.problem(pat, format!("`{path}` is not a field of {t}")),
                (_, Some(k)) if !k.is_numeric() && k != FieldKind::Any => self.problem(
                    pat,
                    format!("`{path}` is not numeric; limits apply to numbers"),
                ),
                (Some((min, max)), Some(_)) if min.is_finite() && max.is_finite() && min <= max => {
                    limits.push(Limit { path, min, max })
                }
                _ => self.problem(pat, "must be [min, max] with finite min <= max"),
            }
        }
        limits
    }

    /// `safe = { ... }`: required, each a value of its field's kind and within its limits,
    /// because these are what an actuator is left at when anything goes wrong.
    fn safe_values(
        &mut self,
        at: &str,
        table: toml::Table,
        t: MessageType,
        limits: &[Limit],
    ) -> (Vec<(String, Scalar)>, bool) {
        let mut ok = true;
        let mut safe = Vec::new();
        let mut flat = Vec::new();
        flatten(&toml::Value::Table(table), "", &mut flat);
        if flat.is_empty() {
            self.problem(
                format!("{at}.safe"),
                "missing: every actuator needs its safe values, e.g. safe = { \"linear.x\" = 0.0 }",
            );
            ok = false;
        }
        for (path, v) in flat {
            let pat = format!("{at}.safe.{path}");
            let Some(kind) = t.kind_of(&path) else {
                self.problem(pat, format!("`{path}` is not a field of {t}"));
                ok = false;
                continue;
            };
            let value = match (&v, kind) {
                (toml::Value::Float(f), _) if f.is_finite() => Scalar::Float(*f),
                (toml::Value::Integer(i), _) => Scalar::Int(*i),
                (toml::Value::Boolean(b), _) => Scalar::Bool(*b),
                (toml::Value::String(s), FieldKind::Str | FieldKind::Any) => Scalar::Str(s.clone()),
                _ => {
                    self.problem(
                        pat,
                        "must be a finite number, bool or string matching the field",
                    );
                    ok = false;
                    continue;
                }
            };
            let limit = limits.iter().find(|l| l.path == path);
            if let (Some(l), Scalar::Str(_) | Scalar::Bool(_)) = (limit, &value) {
                // A command's value for a field with limits must be a number (the safety
                // layer refuses anything else), and so must the value it is left at.
                self.problem(
                    pat,
                    format!(
                        "`{path}` has limits [{}, {}], so its safe value must be a number",
                        l.min, l.max
                    ),
                );
                ok = false;
                continue;
            }
            if let (Some(l), Some(x)) = (limit, value.as_f64()) {
                if x < l.min || x > l.max {
                    self.problem(
                        pat,
                        format!("{x} is outside the limits [{}, {}]", l.min, l.max),
                    );
                    ok = false;
                }
            }
            safe.push((path, value));
        }
        (safe, ok)
    }
}
