//! The connection state machine driven with packets and instants, no sockets.

use super::*;
use bytes::Bytes;
use rumqttc::{PubAck, Publish};

const KA: Duration = Duration::from_secs(4);

fn conn(now: Instant) -> Connection {
    Connection::new(BytesMut::new(), KA, 10, 65_536, now)
}

fn msg(topic: &str, qos: QoS, len: usize) -> Outgoing {
    Outgoing::new(topic, vec![b'x'; len], qos, false)
}

/// Takes every packet out of the write buffer, as a socket that accepts it all would.
fn written(c: &mut Connection, now: Instant) -> Vec<Packet> {
    let mut buf = BytesMut::from(c.to_write());
    c.wrote(buf.len(), now);
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(Packet::read(&mut buf, usize::MAX).expect("a whole packet"));
    }
    out
}

fn feed(c: &mut Connection, p: Packet, now: Instant) -> Result<Vec<Event>, Lost> {
    p.write(c.read_buf(), usize::MAX).unwrap();
    c.on_read(now)?;
    Ok(c.events().collect())
}

#[test]
fn an_idle_connection_pings_at_its_keep_alive_and_a_pingresp_keeps_it() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    assert_eq!(c.poll(t0).deadline, t0 + KA);
    c.on_tick(t0 + KA).unwrap();
    assert_eq!(written(&mut c, t0 + KA), vec![Packet::PingReq]);
    // The PINGRESP is due within half the keep-alive.
    assert_eq!(c.poll(t0 + KA).deadline, t0 + KA + KA / 2);
    feed(&mut c, Packet::PingResp, t0 + KA).unwrap();
    assert_eq!(c.poll(t0 + KA).deadline, t0 + 2 * KA);
    c.on_tick(t0 + 2 * KA).unwrap();
}

#[test]
fn no_pingresp_in_time_means_a_half_open_connection() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    c.on_tick(t0 + KA).unwrap();
    written(&mut c, t0 + KA);
    c.on_tick(t0 + KA + KA / 4).unwrap();
    let e = c.on_tick(t0 + KA + KA / 2).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no PINGRESP within 2.0 s; the connection is half-open"
    );
}

#[test]
fn acknowledgements_arriving_while_a_ping_waits_prove_the_link_is_alive() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    c.publish(msg("t", QoS::AtLeastOnce, 10));
    c.on_tick(t0 + KA).unwrap();
    written(&mut c, t0 + KA);
    // A busy broker acknowledges the burst sent before the ping, just before the
    // PINGRESP deadline: the wait for the PINGRESP starts again from there.
    let t1 = t0 + KA + KA / 2 - Duration::from_millis(1);
    feed(&mut c, Packet::PubAck(PubAck::new(1)), t1).unwrap();
    assert!(c.on_tick(t0 + KA + KA / 2).is_ok());
    assert_eq!(c.poll(t1).deadline, t1 + KA / 2);
    // Silence after that is still a half-open link.
    assert!(c.on_tick(t1 + KA / 2).is_err());
}

#[test]
fn the_pingresp_wait_counts_from_when_the_ping_left_behind_a_backlog() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    // A backlog of QoS 0 being replayed over a slow uplink, with the ping behind it.
    for _ in 0..10 {
        c.publish(msg("t", QoS::AtMostOnce, 10_000));
    }
    c.on_tick(t0 + KA).unwrap();
    // The socket takes a little at a time, past the first half keep-alive.
    let t1 = t0 + KA + KA / 4 + KA / 8;
    c.wrote(50_000, t1);
    assert!(c.on_tick(t0 + KA + KA / 2).is_ok());
    // Once all of it (the ping too) left, the deadline runs from there.
    let rest = c.to_write().len();
    c.wrote(rest, t1);
    assert!(c.on_tick(t1 + KA / 2).is_err());
}

#[test]
fn messages_in_flight_with_no_acknowledgement_trip_the_watchdog() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    c.publish(msg("a", QoS::AtLeastOnce, 1));
    c.publish(msg("b", QoS::AtLeastOnce, 1));
    let w = c.poll(t0);
    // The watchdog is three keep-alives, but at least 10 s.
    assert_eq!(w.deadline, t0 + KA);
    let watchdog = Duration::from_secs(12);
    // An acknowledgement is progress: the watchdog restarts from it.
    let t1 = t0 + Duration::from_secs(11);
    let ev = feed(&mut c, Packet::PubAck(PubAck::new(1)), t1).unwrap();
    assert!(matches!(&ev[..], [Event::Delivered(m)] if &*m.topic == "a"));
    // Pings are answered, so only the watchdog can end it.
    c.on_tick(t1 + watchdog - Duration::from_millis(1)).unwrap();
    feed(&mut c, Packet::PingResp, t1).unwrap();
    let e = c.on_tick(t1 + watchdog).unwrap_err();
    assert_eq!(
        e.to_string(),
        "watchdog: 1 messages in flight and no acknowledgement for 12 s"
    );
    assert_eq!(c.into_unacked()[0].topic.as_ref(), "b");
}

#[test]
fn a_publish_too_large_is_acknowledged_skipped_and_reported() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    let mut big = Publish::new("robot/r1/cmd/drive", QoS::AtLeastOnce, vec![b'a'; 70_000]);
    big.pkid = 9;
    let mut small = Publish::new("robot/r1/cmd/drive", QoS::AtMostOnce, b"ok".to_vec());
    small.pkid = 0;
    let mut bytes = BytesMut::new();
    Packet::Publish(big).write(&mut bytes, usize::MAX).unwrap();
    let total = bytes.len();
    Packet::Publish(small)
        .write(&mut bytes, usize::MAX)
        .unwrap();
    // It arrives in pieces; nothing of its payload is kept.
    let mut events = Vec::new();
    for chunk in bytes.chunks(4096) {
        c.read_buf().extend_from_slice(chunk);
        c.on_read(t0).unwrap();
        assert!(c.read_buf().len() <= 4096);
        events.extend(c.events());
    }
    assert_eq!(written(&mut c, t0), vec![Packet::PubAck(PubAck::new(9))]);
    let [Event::Message(refused), Event::Message(next)] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(refused.oversized, Some(total));
    assert!(refused.payload.is_empty());
    assert_eq!(next.payload, Bytes::from_static(b"ok"));
    assert_eq!(next.oversized, None);
}

#[test]
fn a_qos1_command_is_acknowledged_and_handed_on() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    let mut p = Publish::new("robot/r1/cmd/drive", QoS::AtLeastOnce, b"x".to_vec());
    p.pkid = 3;
    let ev = feed(&mut c, Packet::Publish(p), t0).unwrap();
    assert!(matches!(&ev[..], [Event::Message(m)] if m.topic == "robot/r1/cmd/drive"));
    assert_eq!(written(&mut c, t0), vec![Packet::PubAck(PubAck::new(3))]);
}

#[test]
fn what_the_broker_must_not_send_ends_the_connection() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    let e = feed(&mut c, Packet::PubAck(PubAck::new(77)), t0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "broker acknowledged packet id 77, which is not in flight"
    );
    let mut c = conn(t0);
    c.read_buf().extend_from_slice(&[0xF0, 0x00]);
    assert!(matches!(c.on_read(t0), Err(Lost::BadPacket(_))));
}

#[test]
fn a_full_write_buffer_holds_data_back_until_the_link_counts_as_stalled() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    assert_eq!(c.poll(t0).data, Gate::Open);
    while c.to_write().len() < WBUF_HIGH + 2000 {
        c.publish(msg("t", QoS::AtMostOnce, 1000));
    }
    assert!(!c.can_send(), "the outbox waits too");
    let w = c.poll(t0);
    assert_eq!(w.data, Gate::Full);
    assert_eq!(w.deadline, t0 + STALL, "woken to re-judge the stall");
    // The socket takes a little: still draining, not stalled.
    c.wrote(100, t0 + STALL / 2);
    assert_eq!(c.poll(t0 + STALL / 2).data, Gate::Full);
    assert_eq!(c.poll(t0 + STALL).data, Gate::Full);
    // Nothing taken for a whole STALL: stalled.
    assert_eq!(c.poll(t0 + STALL / 2 + STALL).data, Gate::Stalled);
    // Drained below the mark: open again.
    let n = c.to_write().len();
    c.wrote(n, t0 + 2 * STALL);
    assert_eq!(c.poll(t0 + 2 * STALL).data, Gate::Open);
}

#[test]
fn shutdown_waits_for_acknowledgements_then_disconnects() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    c.publish(msg("data", QoS::AtLeastOnce, 1));
    c.begin_shutdown(
        vec![msg("status", QoS::AtLeastOnce, 1)],
        Duration::from_secs(2),
        t0,
    );
    assert!(c.is_closing());
    assert_eq!(c.shutdown_done(true, t0), None);
    written(&mut c, t0);
    feed(&mut c, Packet::PubAck(PubAck::new(1)), t0).unwrap();
    feed(&mut c, Packet::PubAck(PubAck::new(2)), t0).unwrap();
    // The outbox still has some: not yet.
    assert_eq!(c.shutdown_done(false, t0), None);
    assert_eq!(c.shutdown_done(true, t0), Some(true));
    assert_eq!(written(&mut c, t0), vec![Packet::Disconnect]);
}

#[test]
fn shutdown_gives_up_at_its_grace_period() {
    let t0 = Instant::now();
    let mut c = conn(t0);
    c.begin_shutdown(
        vec![msg("status", QoS::AtLeastOnce, 1)],
        Duration::from_secs(2),
        t0,
    );
    assert_eq!(c.poll(t0).deadline, t0 + Duration::from_secs(2));
    assert_eq!(c.shutdown_done(true, t0 + Duration::from_secs(1)), None);
    assert_eq!(
        c.shutdown_done(true, t0 + Duration::from_secs(2)),
        Some(false)
    );
    let sent = written(&mut c, t0);
    assert_eq!(sent.last(), Some(&Packet::Disconnect));
}
