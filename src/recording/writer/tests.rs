//! The recorder's file read back with the `mcap` crate.

use super::*;
use crate::messages::{BatteryState, Header, MapMessage, Scalar, Time};

fn channel(topic: &str, schema_name: &str) -> Channel {
    Channel {
        topic: topic.into(),
        schema_name: schema_name.into(),
        qos: 0,
        retain: false,
        kind: TopicKind::Stream,
    }
}

#[test]
fn messages_get_their_channel_schema_stamp_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.mcap");
    let mut rec = Recorder::create(&path, Encoding::Json).unwrap();
    let stamp = Time {
        sec: 1_700_000_000,
        nanosec: 5,
    };
    let b = BatteryState {
        header: Header {
            stamp,
            ..Default::default()
        },
        voltage: 12.5,
        ..Default::default()
    };
    let battery = channel("robot/r1/battery", "sensor_msgs/BatteryState");
    let mut m = MapMessage::default();
    m.insert("rpm", Scalar::Int(900));
    let motor = channel("robot/r1/motor", "map");
    rec.write(&battery, &rmp_serde::to_vec_named(&b).unwrap(), 10)
        .unwrap();
    rec.write(&battery, &rmp_serde::to_vec_named(&b).unwrap(), 20)
        .unwrap();
    rec.write(&motor, &rmp_serde::to_vec_named(&m).unwrap(), 30)
        .unwrap();
    rec.write(&motor, b"\xc1 not msgpack", 40).unwrap();
    let totals = rec.finish().unwrap();
    assert_eq!(
        totals,
        Totals {
            messages: 3,
            channels: 2,
            skipped: 1
        }
    );

    let buf = std::fs::read(&path).unwrap();
    let msgs: Vec<mcap::Message> = mcap::MessageStream::new(&buf)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(msgs.len(), 3);
    let first = &msgs[0];
    assert_eq!(first.channel.topic, "/robot/r1/battery");
    assert_eq!(first.channel.message_encoding, "json");
    assert_eq!(first.channel.metadata["kind"], "stream");
    let schema = first.channel.schema.as_ref().unwrap();
    assert_eq!(
        (schema.name.as_str(), schema.encoding.as_str()),
        ("sensor_msgs/BatteryState", "jsonschema")
    );
    assert_eq!(first.log_time, 10);
    assert_eq!(first.publish_time, 1_700_000_000_000_000_005);
    assert_eq!((msgs[0].sequence, msgs[1].sequence), (0, 1));
    let data: serde_json::Value = serde_json::from_slice(&first.data).unwrap();
    assert_eq!(data["voltage"], 12.5);
    // A map stream's schema lists the fields of its first message.
    let map_schema: serde_json::Value =
        serde_json::from_slice(&msgs[2].channel.schema.as_ref().unwrap().data).unwrap();
    assert_eq!(map_schema["properties"]["rpm"]["type"], "number");
    let summary = mcap::read::Summary::read(&buf).unwrap().unwrap();
    assert_eq!(summary.chunk_indexes[0].compression, "zstd");
}

#[test]
fn a_chunk_is_closed_once_a_second_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.mcap");
    let mut rec = Recorder::create(&path, Encoding::Msgpack).unwrap();
    let c = channel("robot/r1/x", "map");
    let t0 = rec.last_chunk;
    for i in 0..5u64 {
        rec.write(&c, &[0x80], i).unwrap();
        // Ticks within the second close nothing; the one after it closes a chunk.
        rec.tick(t0 + Duration::from_millis(300 * (i + 1))).unwrap();
    }
    let summary_chunks = {
        let n = rec.finish().unwrap().messages;
        assert_eq!(n, 5);
        let buf = std::fs::read(&path).unwrap();
        mcap::read::Summary::read(&buf)
            .unwrap()
            .unwrap()
            .chunk_indexes
            .len()
    };
    // Closed at 1.2 s, then the rest at finish.
    assert_eq!(summary_chunks, 2);
}
