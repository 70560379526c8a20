//! Reading recordings back: what is replayed, with which flags, from whole and cut files.

use super::*;
use crate::messages::{BatteryState, Twist};
use crate::recording::writer::{Encoding, Recorder};
use crate::view::Channel;
use std::time::Instant;

#[test]
fn commands_are_replayed_only_when_the_filter_names_cmd() {
    use TopicKind::*;
    assert!(replayable("robot/r1/battery", Stream, None));
    assert!(!replayable("robot/r1/cmd/drive", Command, None));
    assert!(!replayable("robot/r1/cmd/drive", Command, Some("robot/#")));
    assert!(!replayable(
        "robot/r1/cmd/drive",
        Command,
        Some("robot/r1/+/drive")
    ));
    assert!(replayable(
        "robot/r1/cmd/drive",
        Command,
        Some("robot/r1/cmd/drive")
    ));
    assert!(replayable(
        "robot/r1/cmd/drive",
        Command,
        Some("robot/+/cmd/#")
    ));
    assert!(!replayable("robot/r1/battery", Stream, Some("robot/r2/#")));
    assert!(replayable(
        "robot/r1/battery",
        Stream,
        Some("$share/g/robot/+/battery")
    ));
}

fn channel(topic: &str, schema_name: &str, qos: u8, retain: bool, kind: TopicKind) -> Channel {
    Channel {
        topic: topic.into(),
        schema_name: schema_name.into(),
        qos,
        retain,
        kind,
    }
}

/// A recording of three messages 100 ms apart: a battery, a command, a battery.
fn recording(encoding: Encoding) -> (tempfile::TempDir, std::path::PathBuf, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.mcap");
    let mut rec = Recorder::create(&path, encoding).unwrap();
    let battery = channel(
        "robot/r1/battery",
        "sensor_msgs/BatteryState",
        1,
        true,
        TopicKind::Stream,
    );
    let drive = channel(
        "robot/r1/cmd/drive",
        "geometry_msgs/Twist",
        1,
        false,
        TopicKind::Command,
    );
    let mut b = BatteryState {
        voltage: 12.5,
        ..Default::default()
    };
    let first = rmp_serde::to_vec_named(&b).unwrap();
    b.header.seq = 1;
    b.voltage = 12.25;
    let second = rmp_serde::to_vec_named(&b).unwrap();
    let twist = rmp_serde::to_vec_named(&Twist::default()).unwrap();
    let t0 = 1_700_000_000_000_000_000;
    rec.write(&battery, &first, t0).unwrap();
    rec.write(&drive, &twist, t0 + 100_000_000).unwrap();
    rec.write(&battery, &second, t0 + 200_000_000).unwrap();
    rec.finish().unwrap();
    (dir, path, vec![first, twist, second])
}

fn opts(topics: Option<&str>) -> PlayOptions {
    PlayOptions {
        rate: 1.0,
        looped: false,
        topics: topics.map(str::to_string),
    }
}

#[test]
fn a_recording_reads_back_as_the_same_bytes_flags_and_offsets_without_commands() {
    for encoding in [Encoding::Json, Encoding::Msgpack] {
        let (_d, path, payloads) = recording(encoding);
        let buf = std::fs::read(&path).unwrap();
        let mut played = Played::default();
        let r = read(&buf, &path, &opts(None), &mut played).unwrap();
        assert_eq!(r.len(), 2, "{encoding:?}");
        assert_eq!(r[0].offset, Duration::ZERO);
        assert_eq!(r[1].offset, Duration::from_millis(200));
        assert_eq!(&r[0].message.payload[..], &payloads[0][..], "{encoding:?}");
        assert_eq!(&r[1].message.payload[..], &payloads[2][..], "{encoding:?}");
        assert_eq!(r[0].message.qos, qos_from_u8(1));
        assert!(r[0].message.retain);
        assert_eq!(
            played.commands_held,
            BTreeSet::from(["robot/r1/cmd/drive".to_string()])
        );
        assert_eq!(played.cut_off, None);
        // Named, the command is replayed too.
        let mut played = Played::default();
        let r = read(&buf, &path, &opts(Some("robot/r1/cmd/#")), &mut played).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(&r[0].message.payload[..], &payloads[1][..]);
        assert_eq!(
            r[0].offset,
            Duration::ZERO,
            "offsets count from the first played"
        );
    }
}

#[test]
fn a_cut_file_plays_what_it_holds_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.mcap");
    let mut rec = Recorder::create(&path, Encoding::Msgpack).unwrap();
    let battery = channel(
        "robot/r1/battery",
        "sensor_msgs/BatteryState",
        0,
        false,
        TopicKind::Stream,
    );
    let payload = rmp_serde::to_vec_named(&BatteryState::default()).unwrap();
    rec.write(&battery, &payload, 1).unwrap();
    // A chunk closed a second later, then more that never reaches the disk.
    rec.tick(Instant::now() + Duration::from_secs(2)).unwrap();
    let whole_chunk = std::fs::metadata(&path).unwrap().len();
    rec.write(&battery, &payload, 2).unwrap();
    drop(rec);
    let buf = std::fs::read(&path).unwrap();
    assert!(buf.len() as u64 >= whole_chunk);
    let cut = &buf[..whole_chunk as usize];
    let mut played = Played::default();
    let r = read(cut, &path, &opts(None), &mut played).unwrap();
    assert_eq!(r.len(), 1);
    assert!(played.cut_off.is_some());
}

#[test]
fn a_file_that_is_not_mcap_is_refused() {
    let mut played = Played::default();
    let e = read(b"hello", Path::new("x.mcap"), &opts(None), &mut played).unwrap_err();
    assert!(
        e.to_string().starts_with("x.mcap is not an MCAP file: "),
        "{e}"
    );
}
