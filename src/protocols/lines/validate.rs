//! A text-line device's keys → the validated [`Lines`]: a byte transport, a line format
//! (csv with its columns), streams that select lines and map keys onto fields, and
//! commands written through line templates.

use super::config::{LineFormatConfig, LinesCommandConfig, LinesConfig, LinesStreamConfig};
use super::template::Template;
use crate::messages::FieldKind;
use crate::spec::check::{idle, non_can_types, scalar_text};
use crate::spec::{Checker, Command, Stream, TransportSpec};
use crate::{command_keys, stream_keys};
use std::time::Duration;

/// A validated text-line device.
#[derive(Debug, Clone)]
pub struct Lines {
    pub transport: TransportSpec,
    pub idle_timeout: Option<Duration>,
    pub format: LineFormat,
    pub streams: Vec<Stream<LineSelect>>,
    pub commands: Vec<Command<Template>>,
}

/// How a line is split into keys and values.
#[derive(Debug, Clone, PartialEq)]
pub enum LineFormat {
    /// `tag=BAT v=12.4`
    Kv,
    /// Named columns split at `delimiter`.
    Csv {
        columns: Vec<String>,
        delimiter: char,
    },
    /// One JSON object per line.
    Json,
}

/// Which lines a stream takes, and where their values go.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSelect {
    /// Every `(key, value)` must match for a line to be taken.
    pub when: Vec<(String, String)>,
    /// `(message field path, line key)`; empty for `map` means every key.
    pub fields: Vec<(String, String)>,
}

/// Validates one `protocol = "lines"` device: its own keys in `table`, its `streams` and
/// `commands` items apart. Returns the device's name and what it is.
pub fn device(
    ck: &mut Checker,
    table: toml::Value,
    streams: Vec<toml::Value>,
    commands: Vec<toml::Value>,
    at: &str,
) -> Option<(String, Lines)> {
    let d: Option<LinesConfig> = ck.read(table, at);
    let streams: Vec<LinesStreamConfig> = ck.read_items(streams, &format!("{at}.streams"));
    let Some(d) = d else {
        // Still check the streams and commands, as far as they stand alone.
        for (i, s) in streams.into_iter().enumerate() {
            stream(ck, s, &format!("{at}.streams[{i}]"), None, "");
        }
        let commands: Vec<LinesCommandConfig> = ck.read_items(commands, &format!("{at}.commands"));
        for (i, c) in commands.into_iter().enumerate() {
            command(ck, c, &format!("{at}.commands[{i}]"));
        }
        return None;
    };
    let commands: Vec<LinesCommandConfig> = ck.read_items(commands, &format!("{at}.commands"));
    let name_ok = ck.check_name(&format!("{at}.name"), &d.name, false);
    let transport = ck.transport(d.serial, d.tcp, at);
    let device_frame = d.frame_id.unwrap_or_else(|| d.name.clone());
    let format = match (d.format, d.columns) {
        (LineFormatConfig::Csv, None) => {
            ck.problem(
                format!("{at}.columns"),
                "format \"csv\" needs `columns = [...]`, the name of each column",
            );
            LineFormat::Csv {
                columns: Vec::new(),
                delimiter: ',',
            }
        }
        (LineFormatConfig::Kv | LineFormatConfig::Json, Some(_)) => {
            ck.problem(format!("{at}.columns"), "only format \"csv\" takes columns");
            LineFormat::Kv
        }
        (LineFormatConfig::Csv, Some(columns)) => LineFormat::Csv {
            columns,
            delimiter: ',',
        },
        (LineFormatConfig::Kv, None) => LineFormat::Kv,
        (LineFormatConfig::Json, None) => LineFormat::Json,
    };
    let format = match (d.delimiter, format) {
        (None, format) => format,
        (Some(s), LineFormat::Csv { columns, .. }) => {
            let mut chars = s.chars();
            let delimiter = match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => {
                    ck.problem(format!("{at}.delimiter"), "must be a single character");
                    ','
                }
            };
            LineFormat::Csv { columns, delimiter }
        }
        (Some(_), format) => {
            ck.problem(
                format!("{at}.delimiter"),
                "only format \"csv\" takes a delimiter",
            );
            format
        }
    };
    let columns = match &format {
        LineFormat::Csv { columns, .. } => Some(columns.as_slice()),
        _ => None,
    };
    let streams = streams
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| stream(ck, s, &format!("{at}.streams[{i}]"), columns, &device_frame))
        .collect();
    let commands = commands
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| command(ck, c, &format!("{at}.commands[{i}]")))
        .collect();
    let idle_timeout = d.idle_timeout_ms.and_then(idle);
    let (true, Some(transport)) = (name_ok, transport) else {
        return None;
    };
    Some((
        d.name,
        Lines {
            transport,
            idle_timeout,
            format,
            streams,
            commands,
        },
    ))
}

fn stream(
    ck: &mut Checker,
    s: LinesStreamConfig,
    at: &str,
    csv_columns: Option<&[String]>,
    device_frame: &str,
) -> Option<Stream<LineSelect>> {
    let t = ck.msg_type(at, &s.msg_type, &non_can_types());
    let (when_table, fields_table) = (s.when, s.fields);
    let spec = ck.stream(at, stream_keys!(s), t, device_frame);
    let mut when = Vec::new();
    for (k, v) in when_table {
        match scalar_text(&v) {
            Some(text) => when.push((k, text)),
            None => ck.problem(format!("{at}.when.{k}"), "must be a string, number or bool"),
        }
    }
    let unknown = |key: &str| match csv_columns {
        Some(cols) if !cols.iter().any(|c| c == key) => {
            Some(format!("line key `{key}` is not one of the columns"))
        }
        _ => None,
    };
    let (fields, fields_ok) = ck.field_map(
        at,
        fields_table,
        t,
        "line key",
        unknown,
        "map message field paths to line keys, e.g. fields = { voltage = \"v\" }",
    );
    let (Some(spec), true) = (spec, fields_ok) else {
        return None;
    };
    Some(Stream {
        spec,
        select: LineSelect { when, fields },
    })
}

fn command(ck: &mut Checker, c: LinesCommandConfig, at: &str) -> Option<Command<Template>> {
    let template_text = c.template;
    ck.command(command_keys!(c), at, &non_can_types(), |ck, t| {
        let tpl = match Template::parse(&template_text) {
            Ok(tpl) => tpl,
            Err(e) => {
                ck.problem(format!("{at}.template"), e.to_string());
                return None;
            }
        };
        let mut ok = true;
        for p in tpl.paths() {
            match t.kind_of(p) {
                Some(k)
                    if k.is_numeric()
                        || k == FieldKind::Bool
                        || k == FieldKind::Str
                        || k == FieldKind::Any => {}
                _ => {
                    ck.problem(
                        format!("{at}.template"),
                        format!("`{{{p}}}` is not a field of {t}"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(tpl)
    })
}
