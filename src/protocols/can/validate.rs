//! A CAN bus's keys → the validated [`Can`]: how the bus is reached (slcan adapter or
//! SocketCAN interface), streams of DBC messages or raw frames, and commands written as
//! DBC messages or raw frames.

use super::config::{CanCommandConfig, CanConfig, CanStreamConfig};
use super::dbc::{Database, MessageDef};
use super::slcan::bitrate_code;
use crate::messages::{FieldKind, MessageType};
use crate::spec::check::{idle, non_can_types};
use crate::spec::{Checker, Command, Stream, StreamSpec, TransportSpec};
use crate::{command_keys, stream_keys};
use std::sync::Arc;
use std::time::Duration;

/// A validated CAN bus.
#[derive(Debug, Clone)]
pub struct Can {
    pub link: CanLink,
    pub idle_timeout: Option<Duration>,
    pub streams: Vec<Stream<CanSelect>>,
    pub commands: Vec<Command<CanWrite>>,
}

/// How the bus is reached. The transport decides it: an interface is SocketCAN, a serial
/// port (or TCP) is an slcan adapter; the rest of the device is the same either way.
#[derive(Debug, Clone, PartialEq)]
pub enum CanLink {
    Slcan {
        transport: TransportSpec,
        bitrate: u32,
    },
    /// A SocketCAN interface such as `can0`.
    SocketCan { interface: String },
}

/// What a CAN stream publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum CanSelect {
    /// A DBC message, decoded into a `map` of physical signal values.
    Message(Arc<MessageDef>),
    /// Raw frames with these ids (every id when `None`).
    Raw(Option<Vec<u32>>),
}

/// How a CAN command is written.
#[derive(Debug, Clone, PartialEq)]
pub enum CanWrite {
    /// A DBC message, signal name ← command field path.
    Message {
        message: Arc<MessageDef>,
        signals: Vec<(String, String)>,
    },
    /// The command is a `can_msgs/Frame`, written if its id is allowed.
    Raw { ids: Vec<u32> },
}

impl CanLink {
    /// The protocol name a robot file gives this link.
    pub fn protocol(&self) -> &'static str {
        match self {
            CanLink::Slcan { .. } => "slcan",
            CanLink::SocketCan { .. } => "socketcan",
        }
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match self {
            CanLink::Slcan { transport, .. } => transport.describe(),
            CanLink::SocketCan { interface } => format!("socketcan:{interface}"),
        }
    }
}

/// Validates one `protocol = "slcan"` or `"socketcan"` bus: its own keys in `table`, its
/// `streams` and `commands` items apart. Returns the device's name and what it is.
pub fn device(
    ck: &mut Checker,
    table: toml::Value,
    streams: Vec<toml::Value>,
    commands: Vec<toml::Value>,
    at: &str,
) -> Option<(String, Can)> {
    let (d, streams, commands): (
        Option<CanConfig>,
        Vec<CanStreamConfig>,
        Vec<CanCommandConfig>,
    ) = ck.read_device(table, streams, commands, at);
    // Without the device's DBC, only their keys can be checked.
    let d = d?;
    let name_ok = ck.check_name(&format!("{at}.name"), &d.name, false);
    let device_frame = d.frame_id.clone().unwrap_or_else(|| d.name.clone());
    let link = match d.interface {
        Some(iface) => {
            let mut ok = true;
            if d.serial.is_some() || d.tcp.is_some() {
                ck.problem(
                    at,
                    "give `interface` (SocketCAN) or `serial`/`tcp` (slcan adapter), not both",
                );
                ok = false;
            }
            if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
                ck.problem(
                    format!("{at}.interface"),
                    format!("`{iface}` is not a network interface name"),
                );
                ok = false;
            }
            ok.then_some(CanLink::SocketCan { interface: iface })
        }
        None => {
            let transport = ck.transport(d.serial, d.tcp, at);
            let bitrate = match d.bitrate {
                Some(b) if bitrate_code(b).is_some() => Some(b),
                Some(b) => {
                    ck.problem(format!("{at}.bitrate"), format!("{b} is not an slcan bitrate (10000, 20000, 50000, 100000, 125000, 250000, 500000, 800000 or 1000000)"));
                    None
                }
                None => {
                    ck.problem(
                        format!("{at}.bitrate"),
                        "missing: an slcan adapter needs the bus bitrate, e.g. bitrate = 500000",
                    );
                    None
                }
            };
            match (transport, bitrate) {
                (Some(transport), Some(bitrate)) => Some(CanLink::Slcan { transport, bitrate }),
                _ => None,
            }
        }
    };
    let db = match &d.dbc {
        None => None,
        Some(file) => {
            let path = ck.base.join(file);
            match Database::load(&path) {
                Ok(db) => Some(db),
                Err(e) => {
                    ck.problem(format!("{at}.dbc"), e.to_string());
                    None
                }
            }
        }
    };
    let db_ok = d.dbc.is_none() || db.is_some();
    let streams = streams
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| {
            stream(
                ck,
                s,
                &format!("{at}.streams[{i}]"),
                db.as_ref(),
                &device_frame,
            )
        })
        .collect();
    let commands = commands
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| command(ck, c, &format!("{at}.commands[{i}]"), db.as_ref()))
        .collect();
    let idle_timeout = d.idle_timeout_ms.and_then(idle);
    let (true, true, Some(link)) = (name_ok, db_ok, link) else {
        return None;
    };
    Some((
        d.name,
        Can {
            link,
            idle_timeout,
            streams,
            commands,
        },
    ))
}

fn check_ids(ck: &mut Checker, at: &str, ids: &[u32]) -> bool {
    match ids.iter().find(|id| **id > 0x1FFF_FFFF) {
        Some(id) => {
            ck.problem(
                at,
                format!("0x{id:X} is not a CAN identifier (at most 29 bits)"),
            );
            false
        }
        None => true,
    }
}

/// The DBC message `name`, reported at `{at}.can_message` when there is none.
fn dbc_message(
    ck: &mut Checker,
    at: &str,
    db: Option<&Database>,
    name: &str,
) -> Option<Arc<MessageDef>> {
    let Some(db) = db else {
        ck.problem(
            format!("{at}.can_message"),
            "needs the device's `dbc = \"file.dbc\"`",
        );
        return None;
    };
    match db.message(name) {
        Some(m) => Some(Arc::new(m.clone())),
        None => {
            ck.problem(
                format!("{at}.can_message"),
                format!("the DBC has no message `{name}`"),
            );
            None
        }
    }
}

fn stream(
    ck: &mut Checker,
    s: CanStreamConfig,
    at: &str,
    db: Option<&Database>,
    device_frame: &str,
) -> Option<Stream<CanSelect>> {
    // The shared keys first, then what the stream reads; its type is set below.
    let spec = ck.stream(at, stream_keys!(s), Some(MessageType::Map), device_frame);
    let (select, t) = match (s.can_message, s.ids) {
        (Some(_), Some(_)) => {
            ck.problem(
                at,
                "give `can_message` (decoded signals) or `ids` (raw frames), not both",
            );
            return None;
        }
        (Some(name), None) => {
            let t = ck.msg_type(
                at,
                s.msg_type.as_deref().unwrap_or("map"),
                &[MessageType::Map],
            );
            (dbc_message(ck, at, db, &name).map(CanSelect::Message), t)
        }
        (None, ids) => {
            let t = ck.msg_type(
                at,
                s.msg_type.as_deref().unwrap_or("can_msgs/Frame"),
                &[MessageType::Frame],
            );
            let ok = ids
                .as_ref()
                .is_none_or(|ids| check_ids(ck, &format!("{at}.ids"), ids));
            (ok.then_some(CanSelect::Raw(ids)), t)
        }
    };
    let (Some(select), Some(msg_type), Some(spec)) = (select, t, spec) else {
        return None;
    };
    Some(Stream {
        spec: StreamSpec { msg_type, ..spec },
        select,
    })
}

fn command(
    ck: &mut Checker,
    c: CanCommandConfig,
    at: &str,
    db: Option<&Database>,
) -> Option<Command<CanWrite>> {
    let (message, signals, ids) = (c.can_message, c.signals, c.ids);
    let types: Vec<MessageType> = if message.is_some() {
        non_can_types()
    } else {
        vec![MessageType::Frame]
    };
    ck.command(command_keys!(c), at, &types, |ck, t| {
        let Some(name) = message else {
            let Some(ids) = ids.filter(|i| !i.is_empty()) else {
                ck.problem(format!("{at}.ids"), "a can_msgs/Frame command needs `ids = [...]`, the identifiers it may write");
                return None;
            };
            return check_ids(ck, &format!("{at}.ids"), &ids).then_some(CanWrite::Raw { ids });
        };
        let def = dbc_message(ck, at, db, &name)?;
        let mut ok = true;
        let mut pairs = Vec::new();
        if signals.is_empty() {
            ck.problem(format!("{at}.signals"), "missing: map DBC signals to command fields, e.g. signals = { TORQUE_L = \"left\" }");
            ok = false;
        }
        for (sig, path) in signals {
            let sat = format!("{at}.signals.{sig}");
            let Some(path) = path.as_str() else {
                ck.problem(sat, "must be a command field path (a string)");
                ok = false;
                continue;
            };
            if !def.signals.iter().any(|s| s.name == sig) {
                ck.problem(sat, format!("message `{name}` has no signal `{sig}`"));
                ok = false;
                continue;
            }
            match t.kind_of(path) {
                Some(k) if k.is_numeric() || k == FieldKind::Bool || k == FieldKind::Any => {
                    pairs.push((sig, path.to_string()))
                }
                _ => {
                    ck.problem(sat, format!("`{path}` is not a numeric field of {t}"));
                    ok = false;
                }
            }
        }
        ok.then_some(CanWrite::Message {
            message: def,
            signals: pairs,
        })
    })
}
