//! What a benchmark measured, as one JSON object (`--json`) or a table of one line per
//! figure.

use super::command::CommandFigures;
use super::stats::Latency;
use serde::Serialize;
use std::io::{self, Write};

/// Delivery of the telemetry samples, sender to subscriber.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Telemetry {
    pub sent: u64,
    /// Distinct samples received.
    pub delivered: u64,
    /// Samples received more than once (QoS 1 redelivery).
    pub duplicates: u64,
    pub lost: u64,
    /// Delivered samples per second, from the first write to the last arrival.
    pub throughput_msg_s: f64,
    /// Device write (or publish) → subscriber receive.
    pub latency: Latency,
    /// Messages the bench's own subscriber dropped because it fell behind.
    pub subscriber_dropped: u64,
}

/// The daemon's own loss counters, from its `diagnostics` after the run (`None` when no
/// diagnostics arrived).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Drops {
    pub dropped: Option<u64>,
    pub dropped_qos0: Option<u64>,
    pub device_frames: Option<u64>,
    pub device_errors: Option<u64>,
}

/// CPU and memory of one process over the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    pub cpu_ms: Option<f64>,
    pub cpu_us_per_msg: Option<f64>,
    /// CPU milliseconds per second while idle (measured for 1 s before the run), the
    /// fixed cost within `cpu_ms`.
    pub idle_cpu_ms_per_s: Option<f64>,
    pub peak_rss_kib: Option<u64>,
}

/// The same workload through `mosquitto_pub -l`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Baseline {
    pub tool: String,
    /// Why there are no figures (e.g. `mosquitto_pub` is not installed).
    pub note: Option<String>,
    pub telemetry: Option<Telemetry>,
    pub cost: Option<Cost>,
    /// The daemon's CPU per message divided by `mosquitto_pub`'s.
    pub cpu_ratio: Option<f64>,
}

/// `--robots N`: N simulated robots, each with its own connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetFigures {
    pub robots: u64,
    pub streams_per_robot: u64,
    pub rate_hz_per_stream: f64,
    /// Time until every robot was connected.
    pub connect_s: f64,
    pub telemetry: Telemetry,
    /// Every message the fleet subscriber received (samples, status, catalog) per second.
    pub received_msg_s: f64,
    /// Messages the robots' buses dropped (their `dropped` + `dropped_qos0` counters).
    pub dropped: u64,
    /// The bench process (all robots and the subscriber), over the measured window.
    pub process: Cost,
}

/// The keys of a [`Report`] in JSON, every one present in every report (`null` when a
/// section does not apply), so scripts can rely on them.
pub const FIELDS: [&str; 12] = [
    "broker",
    "mode",
    "qos",
    "rate_hz",
    "seconds",
    "burst",
    "telemetry",
    "drops",
    "daemon",
    "commands",
    "baseline",
    "fleet",
];

/// Everything one run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub broker: String,
    /// `rate`, `burst` or `robots`.
    pub mode: String,
    pub qos: u8,
    pub rate_hz: Option<u32>,
    pub seconds: Option<f64>,
    pub burst: Option<u64>,
    pub telemetry: Option<Telemetry>,
    pub drops: Option<Drops>,
    pub daemon: Option<Cost>,
    pub commands: Option<CommandFigures>,
    pub baseline: Option<Baseline>,
    pub fleet: Option<FleetFigures>,
}

fn num<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3} ms"))
}

fn latency(l: &Latency) -> String {
    format!(
        "p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        ms(l.p50_ms),
        ms(l.p99_ms),
        ms(l.p999_ms),
        ms(l.max_ms),
        l.samples
    )
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.2}%", part as f64 * 100.0 / whole as f64)
}

fn cost(c: &Cost) -> (String, String) {
    let mut cpu = match (c.cpu_us_per_msg, c.cpu_ms) {
        (Some(per), Some(total)) => format!("{per:.2} µs/message ({total:.1} ms in all)"),
        _ => "-".into(),
    };
    if let Some(idle) = c.idle_cpu_ms_per_s {
        cpu.push_str(&format!("; idle {idle:.2} ms/s"));
    }
    let rss = c
        .peak_rss_kib
        .map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    (cpu, rss)
}

fn telemetry_lines(t: &Telemetry, rows: &mut Vec<(String, String)>, who: &str) {
    rows.push((
        format!("{who}delivered / sent"),
        format!(
            "{} / {} ({}), {} lost, {} duplicates",
            t.delivered,
            t.sent,
            percent(t.delivered, t.sent),
            t.lost,
            t.duplicates
        ),
    ));
    rows.push((
        format!("{who}throughput"),
        format!("{:.0} msg/s", t.throughput_msg_s),
    ));
    rows.push((format!("{who}latency"), latency(&t.latency)));
    if t.subscriber_dropped > 0 {
        rows.push((
            format!("{who}subscriber dropped"),
            t.subscriber_dropped.to_string(),
        ));
    }
}

/// The rows of the table: (figure, value).
pub fn rows(r: &Report) -> Vec<(String, String)> {
    let mut rows = vec![("broker".to_string(), r.broker.clone())];
    let workload = match (r.mode.as_str(), r.burst, r.rate_hz, r.seconds) {
        ("burst", Some(n), ..) => format!("burst of {n} samples, QoS {}", r.qos),
        ("robots", ..) => format!(
            "{} robots for {} s, QoS {}",
            r.fleet.as_ref().map_or(0, |f| f.robots),
            num(r.seconds),
            r.qos
        ),
        (_, _, rate, secs) => format!("{} Hz for {} s, QoS {}", num(rate), num(secs), r.qos),
    };
    rows.push(("workload".into(), workload));
    if let Some(t) = &r.telemetry {
        telemetry_lines(t, &mut rows, "");
    }
    if let Some(d) = &r.drops {
        rows.push((
            "daemon drops".into(),
            format!(
                "{} QoS 1/2, {} QoS 0, {} device errors, {} device frames",
                num(d.dropped),
                num(d.dropped_qos0),
                num(d.device_errors),
                num(d.device_frames)
            ),
        ));
    }
    if let Some(c) = &r.daemon {
        let (cpu, rss) = cost(c);
        rows.push(("daemon CPU".into(), cpu));
        rows.push(("daemon peak RSS".into(), rss));
    }
    if let Some(c) = &r.commands {
        rows.push((
            "command → device".into(),
            format!(
                "p50 {}  p99 {}  ({} of {} written)",
                ms(c.to_device.p50_ms),
                ms(c.to_device.p99_ms),
                c.written,
                c.sent
            ),
        ));
        rows.push((
            "command → ack".into(),
            format!(
                "p50 {}  p99 {}  ({} acks, {} ok)",
                ms(c.to_ack.p50_ms),
                ms(c.to_ack.p99_ms),
                c.acked,
                c.acked_ok
            ),
        ));
    }
    if let Some(b) = &r.baseline {
        if let Some(note) = &b.note {
            rows.push(("baseline".into(), note.clone()));
        }
        if let Some(t) = &b.telemetry {
            telemetry_lines(t, &mut rows, "baseline ");
        }
        if let Some(c) = &b.cost {
            let (cpu, _) = cost(c);
            rows.push((format!("{} CPU", b.tool), cpu));
        }
        if let Some(ratio) = b.cpu_ratio {
            rows.push((
                "CPU ratio".into(),
                format!("daemon / {} = {ratio:.2}", b.tool),
            ));
        }
    }
    if let Some(f) = &r.fleet {
        rows.push((
            "robots".into(),
            format!(
                "{} robots × {} streams at {} Hz, all connected in {:.2} s",
                f.robots, f.streams_per_robot, f.rate_hz_per_stream, f.connect_s
            ),
        ));
        telemetry_lines(&f.telemetry, &mut rows, "");
        rows.push((
            "fleet receive rate".into(),
            format!("{:.0} msg/s (all messages on robot/#)", f.received_msg_s),
        ));
        rows.push(("robot-side drops".into(), f.dropped.to_string()));
        let (cpu, rss) = cost(&f.process);
        rows.push(("bench process CPU".into(), cpu));
        rows.push(("bench process peak RSS".into(), rss));
    }
    rows
}

/// The table, one line per figure.
pub fn write_table(r: &Report, out: &mut impl Write) -> io::Result<()> {
    let rows = rows(r);
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in rows {
        writeln!(out, "{k:<width$}  {v}")?;
    }
    Ok(())
}

/// The report as one line of JSON.
pub fn write_json(r: &Report, out: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer(&mut *out, r)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_report() -> Report {
        Report {
            broker: "mosquitto version 2.0.11 on 127.0.0.1:1883".into(),
            mode: "rate".into(),
            qos: 1,
            rate_hz: Some(1000),
            seconds: Some(5.0),
            telemetry: Some(Telemetry {
                sent: 5000,
                delivered: 4990,
                lost: 10,
                throughput_msg_s: 998.2,
                latency: Latency::from_micros(vec![300.0, 400.0, 1200.0]),
                ..Telemetry::default()
            }),
            drops: Some(Drops {
                dropped: Some(0),
                dropped_qos0: Some(0),
                device_frames: Some(5000),
                device_errors: None,
            }),
            daemon: Some(Cost {
                cpu_ms: Some(21.0),
                cpu_us_per_msg: Some(4.2),
                idle_cpu_ms_per_s: Some(0.5),
                peak_rss_kib: Some(10_240),
            }),
            ..Report::default()
        }
    }

    #[test]
    fn the_table_has_one_aligned_line_per_figure() {
        let mut out = Vec::new();
        write_table(&rate_report(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "workload          1000 Hz for 5 s, QoS 1");
        assert!(text.contains("delivered / sent  4990 / 5000 (99.80%), 10 lost, 0 duplicates"));
        assert!(text.contains("throughput        998 msg/s"));
        assert!(text.contains(
            "latency           p50 0.400 ms  p99 1.200 ms  p99.9 1.200 ms  max 1.200 ms  (3 samples)"
        ));
        assert!(text
            .contains("daemon drops      0 QoS 1/2, 0 QoS 0, - device errors, 5000 device frames"));
        assert!(text.contains("daemon CPU        4.20 µs/message (21.0 ms in all); idle 0.50 ms/s"));
        assert!(text.contains("daemon peak RSS   10.0 MiB"));
        let value_column = lines[0].find("mosquitto").unwrap();
        assert!(lines.iter().all(|l| l.len() > value_column));
    }

    #[test]
    fn a_missing_baseline_tool_is_one_line() {
        let r = Report {
            baseline: Some(Baseline {
                tool: "mosquitto_pub -l".into(),
                note: Some("mosquitto_pub is not installed".into()),
                ..Baseline::default()
            }),
            ..rate_report()
        };
        let rows = rows(&r);
        let baseline: Vec<_> = rows
            .iter()
            .filter(|(k, _)| k.contains("baseline"))
            .collect();
        assert_eq!(
            baseline,
            [&(
                "baseline".to_string(),
                "mosquitto_pub is not installed".to_string()
            )]
        );
    }

    #[test]
    fn json_is_one_object_with_every_section_present_or_null() {
        let mut out = Vec::new();
        write_json(&rate_report(), &mut out).unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, FIELDS);
        assert_eq!(v["telemetry"]["latency"]["p50_ms"], 0.4);
        assert_eq!(v["daemon"]["cpu_us_per_msg"], 4.2);
        assert!(v["commands"].is_null());
    }
}
