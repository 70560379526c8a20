//! The sans-IO MQTT connection: everything one broker connection knows, as a state machine
//! that takes bytes and timer ticks in and gives bytes to write and events out. Keep-alive,
//! the PINGRESP deadline (half-open detection), the acknowledgement watchdog, in-flight
//! QoS 1/2 publishes (through [`Session`]), oversized-packet discard, the write buffer's
//! high-water mark (backpressure) and a clean shutdown all live here, so they are tested
//! without sockets; the bus task around it only moves bytes.

use super::oversized::{oversized_publish, Oversized, TooLarge};
use super::session::{Session, SessionError};
use super::{Incoming, Outgoing};
use bytes::{Buf, BytesMut};
use rumqttc::{Packet, QoS};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// Above this much unwritten data, no more device data is taken until the socket drains.
pub const WBUF_HIGH: usize = 256 * 1024;
/// A write buffer at its high-water mark that the socket has not taken a byte of for this
/// long is a stalled link: device data is then taken again, QoS 1/2 into the outbox and
/// QoS 0 dropped and counted, so devices do not wait on a link that is not moving.
pub const STALL: Duration = Duration::from_millis(500);

/// Why a connection ended, short of a shutdown.
#[derive(Debug, Error)]
pub enum Lost {
    #[error("the broker closed the connection")]
    Closed,
    #[error("read: {0}")]
    Read(std::io::Error),
    #[error("write: {0}")]
    Write(std::io::Error),
    #[error("bad packet from broker: {0}")]
    BadPacket(rumqttc::Error),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("watchdog: {inflight} messages in flight and no acknowledgement for {secs} s")]
    Watchdog { inflight: usize, secs: u64 },
    #[error("no PINGRESP within {0:.1} s; the connection is half-open")]
    HalfOpen(f64),
}

/// What the broker's bytes meant, for the task to carry out.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A message on one of our subscriptions (or a refused oversized one).
    Message(Incoming),
    /// A QoS 1/2 publish of ours that the broker now owns.
    Delivered(Outgoing),
    /// A subscription the broker refused.
    Refused(String),
}

/// Whether device data may be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The write buffer has room.
    Open,
    /// The socket is draining a full buffer: leave data with the devices (backpressure).
    Full,
    /// The socket has taken nothing for [`STALL`]: take data, QoS 0 is dropped.
    Stalled,
}

/// What the task waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// When [`Connection::on_tick`] is due.
    pub deadline: Instant,
    pub data: Gate,
}

/// One broker connection's state.
pub struct Connection {
    session: Session,
    rbuf: BytesMut,
    wbuf: BytesMut,
    keep_alive: Duration,
    max_incoming: usize,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    /// Bytes of `wbuf` up to the end of the last PINGREQ not yet handed to the socket: the
    /// wait for its PINGRESP counts from when it left, so a backlog being replayed over a
    /// slow uplink is not mistaken for a dead link.
    ping_unsent: usize,
    /// With messages in flight, some acknowledgement must come within this bound, or the
    /// connection is recycled (a broker that answers pings but never acks would otherwise
    /// hold the spool forever).
    watchdog: Duration,
    /// The last acknowledgement, or the last moment nothing was in flight.
    progress: Instant,
    /// Bytes of an oversized packet still to skip.
    discard: usize,
    /// Since when the write buffer has been at its high-water mark without the socket
    /// taking any of it.
    full_since: Option<Instant>,
    /// The shutdown's deadline, once one began.
    closing: Option<Instant>,
    events: Vec<Event>,
}

impl Connection {
    /// A connection whose CONNACK was just received; `rbuf` holds what came after it.
    pub fn new(
        rbuf: BytesMut,
        keep_alive: Duration,
        max_inflight: usize,
        max_incoming: usize,
        now: Instant,
    ) -> Connection {
        Connection {
            session: Session::new(max_inflight),
            rbuf,
            wbuf: BytesMut::with_capacity(64 * 1024),
            keep_alive,
            max_incoming,
            next_ping: now + keep_alive,
            pong_deadline: None,
            ping_unsent: 0,
            watchdog: (keep_alive * 3).max(Duration::from_secs(10)),
            progress: now,
            discard: 0,
            full_since: None,
            closing: None,
            events: Vec::new(),
        }
    }

    fn write_packet(&mut self, p: Packet) {
        // Encoding only fails for packets over the MQTT size limit (256 MB), which a
        // bounded payload cannot reach.
        if let Err(e) = p.write(&mut self.wbuf, usize::MAX) {
            tracing::error!("cannot encode an MQTT packet: {e}");
        }
    }

    /// Writes a PUBLISH; QoS 1/2 ones stay in flight until acknowledged.
    pub fn publish(&mut self, m: Outgoing) {
        let p = self.session.publish(m);
        self.write_packet(Packet::Publish(p));
    }

    pub fn subscribe(&mut self, filters: &[(String, QoS)]) {
        if let Some(sub) = self.session.subscribe(filters) {
            self.write_packet(Packet::Subscribe(sub));
        }
    }

    /// Whether another QoS 1/2 publish from the outbox may go out now.
    pub fn can_send(&self) -> bool {
        self.session.can_send() && self.wbuf.len() < WBUF_HIGH
    }

    pub fn inflight(&self) -> usize {
        self.session.inflight()
    }

    /// Room to read into.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// The bytes waiting for the socket.
    pub fn to_write(&self) -> &[u8] {
        &self.wbuf
    }

    /// Both buffers at once, for a task that reads and writes in one `select!`.
    pub fn buffers(&mut self) -> (&mut BytesMut, &[u8]) {
        (&mut self.rbuf, &self.wbuf)
    }

    /// The socket took `n` bytes.
    pub fn wrote(&mut self, n: usize, now: Instant) {
        self.wbuf.advance(n);
        if n > 0 {
            self.full_since = None;
        }
        if self.ping_unsent > 0 && self.pong_deadline.is_some() {
            self.ping_unsent = self.ping_unsent.saturating_sub(n);
            self.pong_deadline = Some(now + self.keep_alive / 2);
        }
    }

    /// Bookkeeping before the task waits: when to tick, and whether data may be taken.
    pub fn poll(&mut self, now: Instant) -> Wait {
        if self.session.inflight() == 0 {
            self.progress = now;
        }
        let data = if self.wbuf.len() < WBUF_HIGH {
            self.full_since = None;
            Gate::Open
        } else {
            let since = *self.full_since.get_or_insert(now);
            if now >= since + STALL {
                Gate::Stalled
            } else {
                Gate::Full
            }
        };
        let mut deadline = self.next_ping;
        if self.session.inflight() > 0 {
            deadline = deadline.min(self.progress + self.watchdog);
        }
        for d in [self.pong_deadline, self.closing].into_iter().flatten() {
            deadline = deadline.min(d);
        }
        if data == Gate::Full {
            deadline = deadline.min(self.full_since.unwrap_or(now) + STALL);
        }
        Wait { deadline, data }
    }

    /// Timers: the acknowledgement watchdog, the PINGRESP deadline and the next PINGREQ.
    pub fn on_tick(&mut self, now: Instant) -> Result<(), Lost> {
        if self.session.inflight() > 0 && now >= self.progress + self.watchdog {
            return Err(Lost::Watchdog {
                inflight: self.session.inflight(),
                secs: self.watchdog.as_secs(),
            });
        }
        if self.pong_deadline.is_some_and(|d| now >= d) {
            return Err(Lost::HalfOpen(self.keep_alive.as_secs_f64() / 2.0));
        }
        if now >= self.next_ping {
            self.write_packet(Packet::PingReq);
            if self.pong_deadline.is_none() {
                self.pong_deadline = Some(now + self.keep_alive / 2);
                self.ping_unsent = self.wbuf.len();
            }
            self.next_ping = now + self.keep_alive;
        }
        Ok(())
    }

    /// What the bytes read so far mean: replies go into the write buffer, the rest into
    /// [`Connection::events`].
    pub fn on_read(&mut self, now: Instant) -> Result<(), Lost> {
        loop {
            if self.discard > 0 {
                let n = self.discard.min(self.rbuf.len());
                self.rbuf.advance(n);
                self.discard -= n;
                if self.discard > 0 {
                    return Ok(());
                }
            }
            match oversized_publish(&self.rbuf, self.max_incoming) {
                Oversized::No => {}
                Oversized::NeedMore => return Ok(()),
                Oversized::Yes(TooLarge {
                    topic,
                    qos,
                    retain,
                    pkid,
                    len,
                }) => {
                    // Too big to take, but not a reason to drop the connection (the broker
                    // would send it again at once): acknowledge it, skip its bytes, and
                    // let the consumer say why it was refused.
                    if let Some(reply) = self.session.refused_publish(qos, pkid) {
                        self.write_packet(reply);
                    }
                    let n = len.min(self.rbuf.len());
                    self.rbuf.advance(n);
                    self.discard = len - n;
                    self.events.push(Event::Message(Incoming {
                        topic,
                        payload: bytes::Bytes::new(),
                        qos,
                        retain,
                        oversized: Some(len),
                    }));
                    continue;
                }
            }
            let packet = match Packet::read(&mut self.rbuf, self.max_incoming) {
                Ok(p) => p,
                Err(rumqttc::Error::InsufficientBytes(_)) => return Ok(()),
                Err(e) => return Err(Lost::BadPacket(e)),
            };
            // Any packet from the broker proves the link is not half-open. A broker busy
            // with a burst answers the ping only after the PUBLISHes queued before it, so
            // while acknowledgements keep coming the PINGRESP wait starts again.
            if self.pong_deadline.is_some() && self.ping_unsent == 0 {
                self.pong_deadline = Some(now + self.keep_alive / 2);
            }
            let r = self.session.on_packet(packet)?;
            if let Some(reply) = r.reply {
                self.write_packet(reply);
            }
            if let Some(m) = r.delivered {
                self.progress = now;
                self.events.push(Event::Delivered(m));
            }
            if r.pong {
                self.pong_deadline = None;
            }
            self.events
                .extend(r.refused.into_iter().map(Event::Refused));
            if let Some(p) = r.message {
                self.events.push(Event::Message(Incoming {
                    topic: p.topic,
                    payload: p.payload,
                    qos: p.qos,
                    retain: p.retain,
                    oversized: None,
                }));
            }
        }
    }

    /// The events of the last [`Connection::on_read`], in order.
    pub fn events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Begins a clean shutdown: `last` (the offline status) jumps the queue, and the
    /// connection closes once nothing is in flight and `outbox_empty`, or at `now + grace`.
    pub fn begin_shutdown(&mut self, last: Vec<Outgoing>, grace: Duration, now: Instant) {
        for m in last {
            self.publish(m);
        }
        self.closing = Some(now + grace);
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Whether the shutdown is complete: `Some(true)` when everything was acknowledged,
    /// `Some(false)` when the grace period ran out first. Either way a DISCONNECT is now
    /// at the end of the write buffer, for the task to write before closing.
    pub fn shutdown_done(&mut self, outbox_empty: bool, now: Instant) -> Option<bool> {
        let deadline = self.closing?;
        let drained = self.session.inflight() == 0 && outbox_empty;
        if !drained && now < deadline {
            return None;
        }
        self.write_packet(Packet::Disconnect);
        self.closing = None;
        Some(drained)
    }

    /// Ends the connection: every unacknowledged publish, oldest first.
    pub fn into_unacked(self) -> Vec<Outgoing> {
        self.session.into_unacked()
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;
