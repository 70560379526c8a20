//! Cost per CAN frame, in batches of 8,000 frames (one second of a 1 Mbit/s bus at full
//! load): (a) slcan text → frames (`SlcanDecoder`); (b) frames → DBC-decoded `map` message →
//! MessagePack bytes (`CanCore` + `Message::encode_into`); (c) both, through the slcan
//! device core the daemon runs, fed in the driver's 8 KiB reads. For an 8-byte Motorola
//! message (comma_body MOTORS_DATA) and multiplexed ones (GM Battery_Module_1, Motorola;
//! Tesla VCFRONT_LVPowerState, Intel, 20 signals per page). Criterion's time per iteration
//! ÷ 8,000 is the cost per frame; the throughput line gives frames/s.
//!
//! `cargo bench --bench can_frames -- --warm-up-time 1 --measurement-time 3`

use botbus::config::{DeviceKind, Robot};
use botbus::messages::Time;
use botbus::protocols::can::slcan::SlcanDecoder;
use botbus::protocols::can::{CanCore, CanFrame, CanLink, SlcanProtocol};
use botbus::protocols::{Decoder, Output};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::fmt::Write as _;
use std::path::Path;

/// Frames per batch: 1 Mbit/s ÷ ~125 bits per 8-byte standard frame.
const BATCH: usize = 8_000;

/// One device per message, each with its DBC file and one `can_message` stream.
const CASES: [(&str, &str, &str, u32); 3] = [
    ("motorola_8_byte", "comma_body.dbc", "MOTORS_DATA", 0x201),
    (
        "multiplexed_motorola",
        "gm_global_a_high_voltage_management.dbc",
        "Battery_Module_1",
        0x200,
    ),
    (
        "multiplexed_intel_20_signals",
        "tesla_model3_party.dbc",
        "VCFRONT_LVPowerState",
        0x221,
    ),
];

fn robot() -> Robot {
    let dbc = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dbc");
    let mut text = String::from("id = \"bench\"\n");
    for (i, (name, file, message, _)) in CASES.iter().enumerate() {
        let _ = write!(
            text,
            "[[devices]]\nname = \"{name}\"\nprotocol = \"slcan\"\ntcp = \"127.0.0.1:{}\"\n\
             bitrate = 1000000\ndbc = \"{dbc}/{file}\"\n  [[devices.streams]]\n  \
             sensor = \"bench/{name}\"\n  can_message = \"{message}\"\n",
            i + 1
        );
    }
    Robot::from_str(&text, Path::new("bench.toml")).expect("bench robot file")
}

/// `BATCH` frames of `id` with varied payloads (an LCG). The Tesla index (5 bits at bit 0)
/// is kept on its two pages, 0 and 1; the GM switch (3 bits) takes all eight.
fn frames(case: usize, id: u32) -> Vec<CanFrame> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ id as u64;
    (0..BATCH)
        .map(|i| {
            let mut data = [0u8; 8];
            for b in &mut data {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (x >> 56) as u8;
            }
            if case == 2 {
                data[0] = (data[0] & 0xE0) | (i % 2) as u8;
            }
            CanFrame {
                id,
                dlc: 8,
                data: data.to_vec(),
                ..CanFrame::default()
            }
        })
        .collect()
}

/// The frames as an adapter sends them: `tIIIDDD...\r`.
fn slcan_text(frames: &[CanFrame]) -> Vec<u8> {
    let mut s = String::with_capacity(frames.len() * 22);
    for f in frames {
        let _ = write!(s, "t{:03X}{}", f.id, f.data.len());
        for b in &f.data {
            let _ = write!(s, "{b:02X}");
        }
        s.push('\r');
    }
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let robot = robot();
    let stamp = Time {
        sec: 1_700_000_000,
        nanosec: 0,
    };
    for (i, (name, _, _, id)) in CASES.iter().enumerate() {
        let device = &robot.devices[i];
        let batch = frames(i, *id);
        let text = slcan_text(&batch);

        let mut g = c.benchmark_group("can_frames");
        g.throughput(Throughput::Elements(BATCH as u64));

        // (a) slcan text → frames.
        let mut decoder = SlcanDecoder::default();
        g.bench_function(format!("slcan_text_to_frame/{name}"), |b| {
            b.iter(|| {
                let mut n = 0usize;
                decoder.push(black_box(&text), |e| {
                    if e.is_ok() {
                        n += 1;
                    }
                });
                assert_eq!(n, BATCH);
            })
        });

        // (b) frame → DBC-decoded map → msgpack bytes.
        let DeviceKind::Can(can) = &device.kind else {
            panic!("the bench robot's devices are CAN buses");
        };
        let CanLink::Slcan { bitrate, .. } = can.link else {
            panic!("the bench robot's buses are slcan adapters");
        };
        let mut core = CanCore::new(&can.streams);
        let mut out: Vec<Output> = Vec::with_capacity(4);
        let mut buf = Vec::with_capacity(1024);
        g.bench_function(format!("frame_to_map_msgpack/{name}"), |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for f in &batch {
                    core.on_frame(black_box(f), stamp, &mut out);
                    for o in out.drain(..) {
                        if let Output::Sample { message, .. } = o {
                            buf.clear();
                            message.encode_into(&mut buf).expect("encode");
                            bytes += buf.len();
                        }
                    }
                }
                black_box(bytes)
            })
        });

        // (c) the whole device core: slcan text → map msgpack bytes, fed in the 8 KiB
        // chunks the device driver reads.
        let mut protocol = SlcanProtocol::new(bitrate, &can.streams);
        g.bench_function(format!("slcan_text_to_map_msgpack/{name}"), |b| {
            b.iter(|| {
                let mut samples = 0usize;
                for chunk in black_box(&text).chunks(8192) {
                    protocol.feed(chunk, stamp, &mut out);
                    for o in out.drain(..) {
                        if let Output::Sample { message, .. } = o {
                            buf.clear();
                            message.encode_into(&mut buf).expect("encode");
                            samples += 1;
                        }
                    }
                }
                assert_eq!(samples, BATCH);
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
