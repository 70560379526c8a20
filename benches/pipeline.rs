//! Per-sample cost of the protocol cores and encoding: NMEA sentence → NavSatFix bytes,
//! kv line → BatteryState bytes. `cargo bench --bench pipeline`.

use botbus::config::{DeviceKind, Robot};
use botbus::messages::Time;
use botbus::protocols::lines::LinesDecoder;
use botbus::protocols::nmea::NmeaDecoder;
use botbus::protocols::{Decoder, Output};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;

const ROBOT: &str = r#"
id = "b"
[[devices]]
name = "gps"
protocol = "nmea"
tcp = "h:1"
  [[devices.streams]]
  sensor = "gps/fix"
  type = "sensor_msgs/NavSatFix"
  source = "GGA"
[[devices]]
name = "base"
protocol = "lines"
tcp = "h:2"
format = "kv"
  [[devices.streams]]
  sensor = "battery"
  type = "sensor_msgs/BatteryState"
  when = { tag = "BAT" }
  fields = { voltage = "v", current = "i" }
"#;

fn decode_and_encode(
    c: &mut Criterion,
    name: &str,
    decoder: &mut dyn Decoder,
    input: &[u8],
    per_batch: u64,
) {
    let mut out: Vec<Output> = Vec::new();
    let mut buf = Vec::with_capacity(512);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(per_batch));
    g.bench_function(name, |b| {
        b.iter(|| {
            decoder.feed(input, Time { sec: 1, nanosec: 0 }, &mut out);
            for o in out.drain(..) {
                if let Output::Sample { message, .. } = o {
                    buf.clear();
                    message.encode_into(&mut buf).unwrap();
                }
            }
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let robot = Robot::from_str(ROBOT, Path::new("bench.toml")).unwrap();
    let mut gga = String::new();
    for _ in 0..100 {
        gga.push_str("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n");
    }
    let (DeviceKind::Nmea(gps), DeviceKind::Lines(base)) =
        (&robot.devices[0].kind, &robot.devices[1].kind)
    else {
        panic!("the bench robot is a GPS and a lines device");
    };
    let mut nmea = NmeaDecoder::new(&gps.streams);
    decode_and_encode(
        c,
        "nmea_gga_to_navsatfix_msgpack",
        &mut nmea,
        gga.as_bytes(),
        100,
    );
    let mut kv = String::new();
    for _ in 0..100 {
        kv.push_str("tag=BAT v=12.41 i=-0.83\n");
    }
    let mut lines = LinesDecoder::new(&base.format, &base.streams);
    decode_and_encode(
        c,
        "kv_line_to_batterystate_msgpack",
        &mut lines,
        kv.as_bytes(),
        100,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
