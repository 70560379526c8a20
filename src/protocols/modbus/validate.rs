//! A Modbus bus's keys → the validated [`Modbus`]: a byte transport, an answer timeout,
//! streams that poll registers and commands that write them.

use super::config::{
    ModbusCommandConfig, ModbusConfig, ModbusStreamConfig, RegisterFormat, RegisterKind, WordOrder,
};
use super::registers::{Register, RegisterWrite};
use crate::messages::FieldKind;
use crate::spec::check::non_can_types;
use crate::spec::{Checker, Command, Stream, TransportSpec};
use crate::{command_keys, stream_keys};
use std::time::Duration;

/// A validated Modbus bus (one RTU port or TCP connection) and the units on it.
#[derive(Debug, Clone)]
pub struct Modbus {
    pub transport: TransportSpec,
    /// How long to wait for a unit's answer.
    pub timeout: Duration,
    pub streams: Vec<Stream<Poll>>,
    /// Each command is written as these register writes, one per command field.
    pub commands: Vec<Command<Vec<RegisterWrite>>>,
}

/// What a Modbus stream reads, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    pub interval: Duration,
    pub registers: Vec<Register>,
    /// `(message field path, register name)`; empty for `map` means every register.
    pub fields: Vec<(String, String)>,
}

/// Validates one `protocol = "modbus"` bus: its own keys in `table`, its `streams` and
/// `commands` items apart. Returns the device's name and what it is.
pub fn device(
    ck: &mut Checker,
    table: toml::Value,
    streams: Vec<toml::Value>,
    commands: Vec<toml::Value>,
    at: &str,
) -> Option<(String, Modbus)> {
    let (d, streams, commands): (
        Option<ModbusConfig>,
        Vec<ModbusStreamConfig>,
        Vec<ModbusCommandConfig>,
    ) = ck.read_device(table, streams, commands, at);
    // Without the device, only their keys can be checked (units and registers need it).
    let d = d?;
    let name_ok = ck.check_name(&format!("{at}.name"), &d.name, false);
    let transport = ck.transport(d.serial, d.tcp, at);
    let device_frame = d.frame_id.unwrap_or_else(|| d.name.clone());
    let timeout = ck.answer_timeout(at, d.timeout_ms, 200);
    let streams = streams
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| stream(ck, s, &format!("{at}.streams[{i}]"), &device_frame))
        .collect();
    let commands = commands
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| command(ck, c, &format!("{at}.commands[{i}]")))
        .collect();
    let (true, Some(transport), Some(timeout)) = (name_ok, transport, timeout) else {
        return None;
    };
    Some((
        d.name,
        Modbus {
            transport,
            timeout,
            streams,
            commands,
        },
    ))
}

fn stream(
    ck: &mut Checker,
    s: ModbusStreamConfig,
    at: &str,
    device_frame: &str,
) -> Option<Stream<Poll>> {
    let t = ck.msg_type(at, &s.msg_type, &non_can_types());
    let (poll_hz, register_configs, fields_table) = (s.poll_hz, s.registers, s.fields);
    let spec = ck.stream(at, stream_keys!(s), t, device_frame);
    let interval = ck.poll_interval(at, poll_hz);
    let mut ok = true;
    if register_configs.is_empty() {
        ck.problem(format!("{at}.registers"), "must list at least one register");
        ok = false;
    }
    let mut registers: Vec<Register> = Vec::new();
    for (i, r) in register_configs.into_iter().enumerate() {
        let rat = format!("{at}.registers[{i}]");
        let mut rok = check_unit(ck, &format!("{rat}.unit"), r.unit);
        if registers.iter().any(|x| x.name == r.name) {
            ck.problem(
                format!("{rat}.name"),
                format!("duplicate register name `{}`", r.name),
            );
            rok = false;
        }
        let bits = matches!(r.kind, RegisterKind::Coil | RegisterKind::Discrete);
        let format = r.format.unwrap_or(if bits {
            RegisterFormat::Bool
        } else {
            RegisterFormat::U16
        });
        if bits && format != RegisterFormat::Bool {
            ck.problem(
                format!("{rat}.format"),
                "coils and discrete inputs hold a bool",
            );
            rok = false;
        }
        let (scale, offset) = (r.scale.unwrap_or(1.0), r.offset.unwrap_or(0.0));
        rok &= check_scale(ck, &rat, scale, offset);
        let words = match format {
            RegisterFormat::U32 | RegisterFormat::I32 | RegisterFormat::F32 => 2,
            _ => 1,
        };
        if r.address as u32 + words > 65536 {
            ck.problem(
                format!("{rat}.address"),
                "the register runs past address 65535",
            );
            rok = false;
        }
        ok &= rok;
        if rok {
            registers.push(Register {
                name: r.name,
                unit: r.unit,
                kind: r.kind,
                address: r.address,
                format,
                word_order: r.word_order.unwrap_or(WordOrder::Big),
                scale,
                offset,
            });
        }
    }
    let unknown = |name: &str| {
        (!registers.iter().any(|r| r.name == name))
            .then(|| format!("no register is named `{name}`"))
    };
    let (fields, fields_ok) = ck.field_map(
        at,
        fields_table,
        t,
        "register",
        unknown,
        "map message field paths to register names, e.g. fields = { data = \"speed\" }",
    );
    let (true, true, Some(spec), Some(interval)) = (ok, fields_ok, spec, interval) else {
        return None;
    };
    Some(Stream {
        spec,
        select: Poll {
            interval,
            registers,
            fields,
        },
    })
}

fn command(
    ck: &mut Checker,
    c: ModbusCommandConfig,
    at: &str,
) -> Option<Command<Vec<RegisterWrite>>> {
    let writes = c.writes;
    ck.command(command_keys!(c), at, &non_can_types(), |ck, t| {
        if writes.is_empty() {
            ck.problem(
                format!("{at}.writes"),
                "must list at least one register write",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut all_ok = true;
        for (i, w) in writes.into_iter().enumerate() {
            let wat = format!("{at}.writes[{i}]");
            let kind = w.kind.unwrap_or(RegisterKind::Holding);
            let format = w.format.unwrap_or(match kind {
                RegisterKind::Coil => RegisterFormat::Bool,
                _ => RegisterFormat::U16,
            });
            let mut ok = check_unit(ck, &format!("{wat}.unit"), w.unit);
            match kind {
                RegisterKind::Holding => {}
                RegisterKind::Coil if format == RegisterFormat::Bool => {}
                RegisterKind::Coil => {
                    ck.problem(format!("{wat}.format"), "a coil holds a bool");
                    ok = false;
                }
                _ => {
                    ck.problem(
                        format!("{wat}.kind"),
                        "only holding registers and coils can be written",
                    );
                    ok = false;
                }
            }
            match t.kind_of(&w.field) {
                Some(k) if k.is_numeric() || k == FieldKind::Bool || k == FieldKind::Any => {}
                _ => {
                    ck.problem(
                        format!("{wat}.field"),
                        format!("`{}` is not a numeric or bool field of {t}", w.field),
                    );
                    ok = false;
                }
            }
            let (scale, offset) = (w.scale.unwrap_or(1.0), w.offset.unwrap_or(0.0));
            ok &= check_scale(ck, &wat, scale, offset);
            all_ok &= ok;
            if ok {
                out.push(RegisterWrite {
                    field: w.field,
                    unit: w.unit,
                    kind,
                    address: w.address,
                    format,
                    word_order: w.word_order.unwrap_or(WordOrder::Big),
                    scale,
                    offset,
                });
            }
        }
        all_ok.then_some(out)
    })
}

fn check_unit(ck: &mut Checker, at: &str, unit: u8) -> bool {
    if !(1..=247).contains(&unit) {
        ck.problem(
            at,
            format!("must be a Modbus unit id from 1 to 247, not {unit}"),
        );
        return false;
    }
    true
}

fn check_scale(ck: &mut Checker, at: &str, scale: f64, offset: f64) -> bool {
    let mut ok = true;
    if !scale.is_finite() || scale == 0.0 {
        ck.problem(format!("{at}.scale"), "must be a finite, non-zero number");
        ok = false;
    }
    if !offset.is_finite() {
        ck.problem(format!("{at}.offset"), "must be a finite number");
        ok = false;
    }
    ok
}
