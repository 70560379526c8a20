//! The data path under load (issue 11): a real daemon reading a pseudo-terminal at 8 kHz
//! and then a 40,000-line burst, through a real mosquitto that drops nothing
//! (`max_queued_messages 0`). Backpressure, not loss: the daemon's reader waits while the
//! link catches up, and the kernel buffers the device meanwhile. No timing is asserted.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const RATE_HZ: f64 = 8000.0;
const STEADY: u64 = 40_000;
const BURST: u64 = 40_000;

struct Outcome {
    written: u64,
    delivered: BTreeSet<u64>,
    diag: Msg,
}

/// Runs 8 kHz for 5 s (40,000 lines), then writes 40,000 more as fast as the pty takes
/// them, at `qos`; returns what arrived once the daemon has read every line.
async fn steady_then_burst(qos: u8) -> Outcome {
    let broker = Broker::options().for_faults().persistence(false).start();
    let state = state_dir();
    let id = unique(&format!("load-q{qos}"));
    let (topic, diag) = (
        format!("robot/{id}/counter"),
        format!("robot/{id}/diagnostics"),
    );
    let pty = PtyDevice::open();
    let col = Collector::connect(&broker, &[&topic, &diag], SessionKind::Clean).await;
    let robot = counter_robot(&id, pty.path()).replace("qos = 1", &format!("qos = {qos}"));
    let _daemon = Daemon::start(DaemonOptions::new(robot, &broker, state.path()));
    wait_pump_ready(&col, &id).await;

    let feeder = Feeder::start(pty, "T", 0, RATE_HZ);
    eventually(Duration::from_secs(30), || feeder.written() >= STEADY).await;
    let (mut pty, steady) = feeder.stop().await;
    let burst: String = (steady..steady + BURST)
        .map(|k| format!("tag=T n={k}\n"))
        .collect();
    pty.write_all(burst.as_bytes())
        .await
        .expect("write the burst");
    let written = steady + BURST;

    let diag = col
        .wait_msg(
            &diag,
            Duration::from_secs(120),
            &format!("diagnostics with all {written} lines read and the spool empty"),
            |m| pump_frames(m) == written && m.u64("mqtt.spooled") == 0,
        )
        .await;
    // Let the tail arrive (QoS 1 must arrive entirely; QoS 0 may fall short).
    eventually(Duration::from_secs(30), || {
        col.lock().data_set(&topic).len() as u64 >= written
    })
    .await;
    let delivered = col.lock().data_set(&topic);
    println!(
        "QoS {qos}: {written} lines written, {} delivered, mqtt.dropped {}, dropped_qos0 {}",
        delivered.len(),
        diag.u64("mqtt.dropped"),
        diag.u64("mqtt.dropped_qos0"),
    );
    Outcome {
        written,
        delivered,
        diag,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_an_8khz_stream_then_a_40000_line_burst_arrive_complete_with_nothing_dropped() {
    let o = steady_then_burst(1).await;
    let missing: Vec<u64> = (0..o.written)
        .filter(|k| !o.delivered.contains(k))
        .take(20)
        .collect();
    assert!(missing.is_empty(), "missing (first 20): {missing:?}");
    assert_eq!(o.delivered.len() as u64, o.written);
    assert_eq!(o.diag.u64("mqtt.dropped"), 0, "{:?}", o.diag);
    assert_eq!(o.diag.u64("mqtt.dropped_qos0"), 0, "{:?}", o.diag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_an_8khz_stream_then_a_40000_line_burst_arrive_at_least_999_in_1000() {
    let o = steady_then_burst(0).await;
    let got = o.delivered.len() as u64;
    assert!(
        got * 1000 >= o.written * 999,
        "{got} of {} delivered ({:?})",
        o.written,
        o.diag
    );
    // On a healthy link botbus itself drops no QoS 0 message.
    assert_eq!(o.diag.u64("mqtt.dropped_qos0"), 0, "{:?}", o.diag);
}
