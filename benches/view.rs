//! Per-message cost of what viewers get: MessagePack → viewer JSON text (`botbus foxglove`,
//! `botbus record`), and a recorded JSON payload back to MessagePack (`botbus play`).
//! `cargo bench --bench view`.

use botbus::messages::{BatteryState, NavSatFix};
use botbus::view::json::{to_msgpack, viewer_json};
use botbus::view::schema::schema;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn both_ways(c: &mut Criterion, type_name: &str, payload: &[u8]) {
    let mut g = c.benchmark_group(type_name);
    g.throughput(Throughput::Elements(1));
    g.bench_function("msgpack to viewer JSON text", |b| {
        b.iter(|| viewer_json(payload).unwrap().to_string())
    });
    let json = viewer_json(payload).unwrap();
    let s = schema(type_name);
    assert_eq!(
        to_msgpack(&json, &s).unwrap(),
        payload,
        "a lossless round trip"
    );
    g.bench_function("recorded JSON to msgpack", |b| {
        b.iter(|| to_msgpack(&json, &s).unwrap())
    });
    g.finish();
}

fn view(c: &mut Criterion) {
    let battery = BatteryState {
        voltage: 12.6,
        current: -0.8,
        percentage: 0.9,
        ..Default::default()
    };
    both_ways(
        c,
        "sensor_msgs/BatteryState",
        &rmp_serde::to_vec_named(&battery).unwrap(),
    );
    let fix = NavSatFix {
        latitude: 47.397_921_3,
        longitude: 8.545_610_7,
        altitude: 535.6,
        ..Default::default()
    };
    both_ways(
        c,
        "sensor_msgs/NavSatFix",
        &rmp_serde::to_vec_named(&fix).unwrap(),
    );
}

criterion_group!(benches, view);
criterion_main!(benches);
