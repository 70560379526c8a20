//! The one task that owns the broker connection. It reads, writes and keeps alive the
//! socket in a single `select!`, never blocking on anyone: publishes wait in a bounded
//! backlog while the broker is away, and every ready publish is written before one flush.

use super::link::{self, Link};
use super::outbox::Outbox;
use super::session::{Session, SessionError};
use super::{BusConfig, BusStats, Command, Incoming, LinkState, Outgoing};
use crate::backoff::Backoff;
use bytes::{Buf, BytesMut};
use rumqttc::{Packet, QoS};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Above this much unwritten data, nothing more is put in the write buffer until the
/// socket drains: QoS 1/2 wait in the outbox, QoS 0 is dropped and counted.
const WBUF_HIGH: usize = 256 * 1024;
/// Commands taken from the queue per wake-up, so many publishes share one write.
const DRAIN_BATCH: usize = 512;
/// A connection that lasted this long resets the reconnect backoff.
const STABLE: Duration = Duration::from_secs(10);
/// Group commit: spool appends are written at most this long after they were made.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

enum Oversized {
    No,
    /// A packet too large is starting, but its topic is not in yet.
    NeedMore,
    Yes {
        topic: String,
        qos: QoS,
        retain: bool,
        pkid: u16,
        /// The whole packet's length on the wire.
        len: usize,
    },
}

/// Whether `rbuf` starts with a PUBLISH larger than `max`, and if so its topic and
/// packet id (read without buffering the payload).
fn oversized_publish(rbuf: &BytesMut, max: usize) -> Oversized {
    let Some(&byte1) = rbuf.first() else {
        return Oversized::No;
    };
    if byte1 >> 4 != 3 {
        return Oversized::No;
    }
    // The remaining length: 1 to 4 bytes of 7 bits each, least significant first.
    let mut remaining = 0usize;
    let mut varint = 0;
    loop {
        let Some(&b) = rbuf.get(1 + varint) else {
            return Oversized::NeedMore;
        };
        remaining |= ((b & 0x7F) as usize) << (7 * varint);
        varint += 1;
        if b & 0x80 == 0 {
            break;
        }
        if varint == 4 {
            // Malformed; let the packet reader report it.
            return Oversized::No;
        }
    }
    let start = 1 + varint;
    let len = start + remaining;
    if len <= max {
        return Oversized::No;
    }
    let qos = match (byte1 >> 1) & 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let need_topic = start + 2;
    if rbuf.len() < need_topic {
        return Oversized::NeedMore;
    }
    let tlen = u16::from_be_bytes([rbuf[start], rbuf[start + 1]]) as usize;
    let end = need_topic + tlen + if qos == QoS::AtMostOnce { 0 } else { 2 };
    if rbuf.len() < end {
        return Oversized::NeedMore;
    }
    let topic = String::from_utf8_lossy(&rbuf[need_topic..need_topic + tlen]).into_owned();
    let pkid = if qos == QoS::AtMostOnce {
        0
    } else {
        u16::from_be_bytes([rbuf[end - 2], rbuf[end - 1]])
    };
    Oversized::Yes {
        topic,
        qos,
        retain: byte1 & 1 == 1,
        pkid,
        len,
    }
}

struct Ctx {
    cfg: BusConfig,
    rx: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Incoming>,
    link: watch::Sender<LinkState>,
    stats: Arc<BusStats>,
    outbox: Outbox,
    /// When the group commit is due: fixed when the first unflushed append is made, so a
    /// steady stream (a wake-up every few ms) cannot keep pushing it back.
    flush_due: Option<Instant>,
}

/// What the broker sent that ends the connection: it no longer speaks MQTT we can follow.
#[derive(Debug, thiserror::Error)]
enum BrokerSaid {
    #[error("bad packet from broker: {0}")]
    BadPacket(rumqttc::Error),
    #[error(transparent)]
    Session(#[from] SessionError),
}

enum Ended {
    Lost(String),
    Shutdown,
    HandlesGone,
}

struct ShutdownReq {
    /// Answers whether everything was acknowledged before the connection closed.
    done: oneshot::Sender<bool>,
}

pub(super) async fn run(
    cfg: BusConfig,
    outbox: Outbox,
    rx: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Incoming>,
    link: watch::Sender<LinkState>,
    stats: Arc<BusStats>,
) {
    let mut ctx = Ctx {
        cfg,
        rx,
        incoming,
        link,
        stats,
        outbox,
        flush_due: None,
    };
    ctx.publish_gauge();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut ever_connected = false;
    let url = ctx.cfg.url.to_string();
    loop {
        let opened = {
            // A copy, so SetBirth/Subscribe can land while we connect.
            let cfg = ctx.cfg.clone();
            match ctx.offline_until(link::open(&cfg, CONNECT_TIMEOUT)).await {
                Some(r) => r,
                None => return,
            }
        };
        match opened {
            Err(e) => {
                // Logged once per transition; the retries after that are quiet.
                if backoff.attempts() == 0 {
                    if e.is_refusal() {
                        tracing::error!(broker = %url, "broker connection failed: {e}");
                    } else {
                        tracing::warn!(broker = %url, "broker unreachable: {e}; retrying with backoff");
                    }
                } else {
                    tracing::debug!(broker = %url, attempt = backoff.attempts(), "broker still unreachable: {e}");
                }
                let wake = Instant::now() + backoff.next_delay();
                if ctx.offline_until(sleep_until(wake)).await.is_none() {
                    return;
                }
            }
            Ok(link) => {
                let connected_at = Instant::now();
                if ever_connected {
                    ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                ever_connected = true;
                tracing::info!(broker = %url, client_id = %ctx.cfg.client_id, "connected to broker");
                ctx.stats.connected.store(true, Ordering::Relaxed);
                let _ = ctx.link.send(LinkState::Up);
                let ended = ctx.connected(link).await;
                ctx.stats.connected.store(false, Ordering::Relaxed);
                let _ = ctx.link.send(LinkState::Down);
                match ended {
                    Ended::Lost(reason) => {
                        tracing::warn!(broker = %url, "broker connection lost: {reason}");
                        // A connection that dies at once (a broker that keeps sending
                        // what kills it) must not turn into a reconnect storm: back off
                        // unless it had been stable.
                        if connected_at.elapsed() >= STABLE {
                            backoff.reset();
                        } else {
                            let wake = Instant::now() + backoff.next_delay();
                            if ctx.offline_until(sleep_until(wake)).await.is_none() {
                                return;
                            }
                        }
                    }
                    Ended::Shutdown | Ended::HandlesGone => return ctx.close(),
                }
            }
        }
    }
}

impl Ctx {
    /// Waits for `fut` while disconnected, still taking commands (publishes go to the
    /// outbox) and group-committing the spool. `None` when the bus was shut down (or every
    /// handle dropped) meanwhile: the task must end.
    async fn offline_until<T>(&mut self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            let flush_at = self.flush_deadline();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                r = &mut fut => return Some(r),
                cmd = self.rx.recv() => match cmd {
                    None => {
                        self.close();
                        return None;
                    }
                    Some(c) => if let Some(s) = self.offline(c) {
                        self.close();
                        let _ = s.done.send(false);
                        return None;
                    }
                },
                _ = sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => self.flush(),
            }
        }
    }

    /// When the next group commit is due, if anything awaits one.
    fn flush_deadline(&mut self) -> Option<Instant> {
        if !self.outbox.needs_flush() {
            self.flush_due = None;
            return None;
        }
        Some(
            *self
                .flush_due
                .get_or_insert_with(|| Instant::now() + FLUSH_EVERY),
        )
    }

    fn flush(&mut self) {
        self.outbox.flush(false);
        self.flush_due = None;
    }

    /// Makes everything accepted durable before the task ends.
    fn close(&mut self) {
        // Whatever was published before the end is still accepted: spool it (QoS 1/2) so
        // the next start sends it, or count it (QoS 0).
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            if let Command::Publish(m) = cmd {
                self.enqueue(m);
            }
        }
        self.outbox.flush(true);
    }

    fn publish_gauge(&mut self) {
        let lost = self.outbox.take_unreadable();
        if lost > 0 {
            tracing::warn!(
                messages = lost,
                "spooled messages lost (unreadable, or evicted by the size cap and then not acknowledged); counted as dropped"
            );
            self.stats.dropped.fetch_add(lost, Ordering::Relaxed);
        }
        self.stats
            .spooled
            .store(self.outbox.pending(), Ordering::Relaxed);
    }

    /// Handles a command while there is no connection. Returns a shutdown request.
    fn offline(&mut self, cmd: Command) -> Option<ShutdownReq> {
        match cmd {
            Command::Publish(m) => self.enqueue(m),
            Command::SetBirth(b) => self.cfg.birth = b,
            Command::Subscribe(f, q) => self.cfg.subscriptions.push((f, q)),
            Command::Shutdown { done, .. } => return Some(ShutdownReq { done }),
        }
        None
    }

    fn enqueue(&mut self, m: Outgoing) {
        if m.qos == QoS::AtMostOnce {
            // QoS 0 is fire and forget: with no broker there is nowhere to fire it.
            self.stats.dropped_qos0.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let dropped = self.outbox.push(m);
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        self.publish_gauge();
    }

    fn write_packet(wbuf: &mut BytesMut, p: Packet) {
        // Encoding only fails for packets over the MQTT size limit (256 MB), which a
        // bounded payload cannot reach.
        if let Err(e) = p.write(wbuf, usize::MAX) {
            tracing::error!("cannot encode an MQTT packet: {e}");
        }
    }

    async fn connected(&mut self, link: Link) -> Ended {
        let Link { stream, mut rbuf } = link;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        let mut session = Session::new(self.cfg.max_inflight);
        let ka = self.cfg.keep_alive;
        let mut next_ping = Instant::now() + ka;
        let mut pong_deadline: Option<Instant> = None;
        // Bytes of `wbuf` up to the end of the last PINGREQ not yet handed to the socket:
        // the wait for its PINGRESP counts from when it left, so a backlog being replayed
        // over a slow uplink is not mistaken for a dead link.
        let mut ping_unsent = 0usize;
        let mut shutting: Option<(Instant, ShutdownReq)> = None;
        // Watchdog: with messages in flight, some acknowledgement must come within this
        // bound, or the connection is recycled (a broker that answers pings but never acks
        // would otherwise hold the spool forever).
        let watchdog = (ka * 3).max(Duration::from_secs(10));
        let mut progress = Instant::now();
        // Bytes of an oversized packet still to skip.
        let mut discard = 0usize;

        if let Some(sub) = session.subscribe(&self.cfg.subscriptions) {
            Self::write_packet(&mut wbuf, Packet::Subscribe(sub));
        }
        for b in self.cfg.birth.clone() {
            Self::write_packet(&mut wbuf, Packet::Publish(session.publish(b)));
        }

        let ended = loop {
            while session.can_send() && wbuf.len() < WBUF_HIGH {
                match self.outbox.next_to_send() {
                    Some(m) => {
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                        Self::write_packet(&mut wbuf, Packet::Publish(session.publish(m)));
                    }
                    None => break,
                }
            }
            if let Some((deadline, _)) = &shutting {
                let drained = session.inflight() == 0 && !self.outbox.has_unsent();
                if drained || Instant::now() >= *deadline {
                    if !drained {
                        tracing::warn!(
                            unacked = session.inflight(),
                            queued = self.outbox.pending(),
                            "shutdown grace period over with messages not acknowledged"
                        );
                    }
                    Self::write_packet(&mut wbuf, Packet::Disconnect);
                    let flush = async {
                        wr.write_all(&wbuf).await?;
                        wr.flush().await?;
                        wr.shutdown().await
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
                    let (_, req) = shutting.take().unwrap();
                    let _ = req.done.send(drained);
                    break Ended::Shutdown;
                }
            }
            if session.inflight() == 0 {
                progress = Instant::now();
            }
            let mut timer = next_ping.min(progress + watchdog);
            if let Some(d) = pong_deadline {
                timer = timer.min(d);
            }
            let flush_at = self.flush_deadline();
            let far = Instant::now() + Duration::from_secs(3600);
            if let Some((d, _)) = &shutting {
                timer = timer.min(*d);
            }
            // Commands are taken even while the socket is backed up: QoS 1/2 go to the
            // outbox, and a shutdown request must never wait behind a stalled link.
            let take_commands = shutting.is_none();
            // Unbiased: a busy inbound stream must not starve our writes (its own acks
            // among them), nor a busy outbound one our reads.
            tokio::select! {
                r = rd.read_buf(&mut rbuf) => match r {
                    Ok(0) => break Ended::Lost("the broker closed the connection".into()),
                    Err(e) => break Ended::Lost(format!("read: {e}")),
                    Ok(_) => {
                        if let Err(reason) = self.on_bytes(&mut rbuf, &mut session, &mut wbuf, &mut pong_deadline, &mut progress, &mut discard) {
                            break Ended::Lost(reason.to_string());
                        }
                    }
                },
                r = wr.write(&wbuf), if !wbuf.is_empty() => match r {
                    Ok(0) => break Ended::Lost("write: connection closed".into()),
                    Ok(n) => {
                        wbuf.advance(n);
                        if ping_unsent > 0 && pong_deadline.is_some() {
                            ping_unsent = ping_unsent.saturating_sub(n);
                            pong_deadline = Some(Instant::now() + ka / 2);
                        }
                    }
                    Err(e) => break Ended::Lost(format!("write: {e}")),
                },
                cmd = self.rx.recv(), if take_commands => {
                    let Some(cmd) = cmd else { break Ended::HandlesGone };
                    let mut next = Some(cmd);
                    let mut n = 0;
                    while let Some(cmd) = next.take() {
                        match cmd {
                            Command::Publish(m) if m.qos == QoS::AtMostOnce => {
                                if wbuf.len() < WBUF_HIGH {
                                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                                    Self::write_packet(&mut wbuf, Packet::Publish(session.publish(m)));
                                } else {
                                    // Fire and forget, into a link that is not taking it.
                                    self.stats.dropped_qos0.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Command::Publish(m) => self.enqueue(m),
                            Command::SetBirth(b) => {
                                for m in &b {
                                    Self::write_packet(&mut wbuf, Packet::Publish(session.publish(m.clone())));
                                }
                                self.cfg.birth = b;
                            }
                            Command::Subscribe(f, q) => {
                                if let Some(sub) = session.subscribe(&[(f.clone(), q)]) {
                                    Self::write_packet(&mut wbuf, Packet::Subscribe(sub));
                                }
                                self.cfg.subscriptions.push((f, q));
                            }
                            Command::Shutdown { last, grace, done } => {
                                // The final messages (offline status) jump the queue.
                                let mut last: Vec<Outgoing> = last;
                                for m in last.drain(..) {
                                    Self::write_packet(&mut wbuf, Packet::Publish(session.publish(m)));
                                }
                                shutting = Some((Instant::now() + grace, ShutdownReq { done }));
                                break;
                            }
                        }
                        n += 1;
                        if n < DRAIN_BATCH {
                            next = self.rx.try_recv().ok();
                        }
                    }
                },
                _ = sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                    self.flush();
                    self.publish_gauge();
                }
                // Spooled messages read back from disk: the loop sends them.
                _ = self.outbox.readable() => {}
                _ = sleep_until(timer) => {
                    let now = Instant::now();
                    if session.inflight() > 0 && now >= progress + watchdog {
                        break Ended::Lost(format!(
                            "watchdog: {} messages in flight and no acknowledgement for {} s",
                            session.inflight(),
                            watchdog.as_secs()
                        ));
                    }
                    if pong_deadline.is_some_and(|d| now >= d) {
                        break Ended::Lost(format!(
                            "no PINGRESP within {:.1} s; the connection is half-open",
                            ka.as_secs_f64() / 2.0
                        ));
                    }
                    if now >= next_ping {
                        Self::write_packet(&mut wbuf, Packet::PingReq);
                        if pong_deadline.is_none() {
                            pong_deadline = Some(now + ka / 2);
                            ping_unsent = wbuf.len();
                        }
                        next_ping = now + ka;
                    }
                }
            }
        };
        let mut unacked = session.into_unacked();
        // Status and catalog are published afresh on every connection.
        unacked.retain(|m| !self.cfg.birth.iter().any(|b| b.topic == m.topic));
        if !unacked.is_empty() {
            tracing::debug!(
                count = unacked.len(),
                "unacknowledged messages will be sent again"
            );
        }
        self.outbox.rewind(unacked);
        self.outbox.flush(false);
        self.publish_gauge();
        ended
    }

    fn on_bytes(
        &mut self,
        rbuf: &mut BytesMut,
        session: &mut Session,
        wbuf: &mut BytesMut,
        pong_deadline: &mut Option<Instant>,
        progress: &mut Instant,
        discard: &mut usize,
    ) -> Result<(), BrokerSaid> {
        loop {
            if *discard > 0 {
                let n = (*discard).min(rbuf.len());
                rbuf.advance(n);
                *discard -= n;
                if *discard > 0 {
                    return Ok(());
                }
            }
            match oversized_publish(rbuf, self.cfg.max_incoming) {
                Oversized::No => {}
                Oversized::NeedMore => return Ok(()),
                Oversized::Yes {
                    topic,
                    qos,
                    retain,
                    pkid,
                    len,
                } => {
                    // Too big to take, but not a reason to drop the connection (the broker
                    // would send it again at once): acknowledge it, skip its bytes, and
                    // let the consumer say why it was refused.
                    if let Some(reply) = session.refused_publish(qos, pkid) {
                        Self::write_packet(wbuf, reply);
                    }
                    let n = len.min(rbuf.len());
                    rbuf.advance(n);
                    *discard = len - n;
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    let msg = Incoming {
                        topic,
                        payload: bytes::Bytes::new(),
                        qos,
                        retain,
                        oversized: Some(len),
                    };
                    if self.incoming.try_send(msg).is_err() {
                        self.stats.dropped_incoming.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
            }
            let packet = match Packet::read(rbuf, self.cfg.max_incoming) {
                Ok(p) => p,
                Err(rumqttc::Error::InsufficientBytes(_)) => return Ok(()),
                Err(e) => return Err(BrokerSaid::BadPacket(e)),
            };
            let r = session.on_packet(packet)?;
            if let Some(reply) = r.reply {
                Self::write_packet(wbuf, reply);
            }
            if let Some(m) = r.delivered {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.outbox.delivered(&m);
                *progress = Instant::now();
            }
            if r.pong {
                *pong_deadline = None;
            }
            for f in r.refused {
                tracing::error!(filter = %f, "broker refused the subscription (check its ACL)");
            }
            if let Some(p) = r.message {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let msg = Incoming {
                    topic: p.topic,
                    payload: p.payload,
                    qos: p.qos,
                    retain: p.retain,
                    oversized: None,
                };
                if self.incoming.try_send(msg).is_err() {
                    // Logged on the first drop of a burst only: a flood must not become a
                    // log flood too.
                    let before = self.stats.dropped_incoming.fetch_add(1, Ordering::Relaxed);
                    if before.is_power_of_two() || before == 0 {
                        tracing::warn!(
                            dropped = before + 1,
                            "incoming message queue full; messages dropped"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_publish_is_recognised_from_its_first_bytes() {
        let p = rumqttc::Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "robot/r1/cmd/drive".into(),
            pkid: 42,
            payload: bytes::Bytes::from(vec![b'a'; 70_000]),
        };
        let mut buf = BytesMut::new();
        Packet::Publish(p).write(&mut buf, usize::MAX).unwrap();
        let total = buf.len();
        // Only the first 100 bytes have arrived.
        let head = BytesMut::from(&buf[..100]);
        match oversized_publish(&head, 65_536) {
            Oversized::Yes {
                topic,
                qos,
                retain,
                pkid,
                len,
            } => {
                assert_eq!(
                    (topic.as_str(), qos, retain, pkid, len),
                    ("robot/r1/cmd/drive", QoS::AtLeastOnce, true, 42, total)
                );
            }
            _ => panic!("not recognised"),
        }
        assert!(matches!(
            oversized_publish(&BytesMut::from(&buf[..3]), 65_536),
            Oversized::NeedMore
        ));
        assert!(matches!(oversized_publish(&buf, 1 << 20), Oversized::No));
    }
}
