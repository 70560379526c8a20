//! The one task that owns the broker connection. It only does I/O: it moves bytes between
//! the socket and the [`Connection`] state machine, takes publishes from the control queue
//! and device data from the data queue, and hands QoS 1/2 to the outbox. Every ready
//! publish is written before one flush, and nothing here blocks on anyone.

use super::connection::{Connection, Event, Gate, Lost, WBUF_HIGH};
use super::data::Batch;
use super::link::{self, Link};
use super::outbox::Outbox;
use super::{BusConfig, BusStats, Command, Incoming, LinkState, Outgoing};
use crate::backoff::Backoff;
use crate::spool::FlushNeed;
use rumqttc::QoS;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Control commands taken per wake-up, so many publishes share one write.
const DRAIN_COMMANDS: usize = 512;
/// Device batches taken per wake-up (each is one read chunk's samples).
const DRAIN_BATCHES: usize = 64;
/// A connection that lasted this long resets the reconnect backoff.
const STABLE: Duration = Duration::from_secs(10);
/// Group commit: spool appends are written at most this long after they were made.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// The bus task's queues.
pub(super) struct Queues {
    /// Publishes from everything but devices (acks, status, diagnostics), and requests.
    pub control: mpsc::Receiver<Command>,
    /// Device samples; each device's credit bounds it.
    pub data: mpsc::UnboundedReceiver<Batch>,
    /// Messages from our subscriptions.
    pub incoming: mpsc::Sender<Incoming>,
}

struct Ctx {
    cfg: BusConfig,
    q: Queues,
    /// False once every data sender is gone (so the queue is not polled in a loop).
    data_open: bool,
    link: watch::Sender<LinkState>,
    stats: Arc<BusStats>,
    outbox: Outbox,
    /// When the group commit is due: fixed when the first unflushed append is made, so a
    /// steady stream (a wake-up every few ms) cannot keep pushing it back.
    flush_due: Option<Instant>,
}

/// A shutdown request taken from the control queue.
struct ShutdownReq {
    /// Published first (the offline status).
    last: Vec<Outgoing>,
    grace: Duration,
    /// Answers whether everything was acknowledged before the connection closed.
    done: oneshot::Sender<bool>,
}

enum Ended {
    Lost(Lost),
    Shutdown,
    HandlesGone,
}

pub(super) async fn run(
    cfg: BusConfig,
    outbox: Outbox,
    q: Queues,
    link: watch::Sender<LinkState>,
    stats: Arc<BusStats>,
) {
    let mut ctx = Ctx {
        cfg,
        q,
        data_open: true,
        link,
        stats,
        outbox,
        flush_due: None,
    };
    ctx.publish_gauge();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut ever_connected = false;
    let mut last_failure: Option<String> = None;
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
                // Logged once per change of state (the first failure since start or the
                // last connection, or a different reason: a fixed certificate that now
                // meets a refused login, say); retries that fail the same way are quiet.
                let reason = e.to_string();
                if last_failure.as_ref() != Some(&reason) {
                    if e.is_refusal() {
                        tracing::error!(broker = %url, "broker connection failed: {e}");
                    } else {
                        tracing::warn!(broker = %url, "broker unreachable: {e}; retrying with backoff");
                    }
                } else {
                    tracing::debug!(broker = %url, attempt = backoff.attempts(), "broker still unreachable: {e}");
                }
                last_failure = Some(reason);
                let wake = Instant::now() + backoff.next_delay();
                if ctx.offline_until(sleep_until(wake)).await.is_none() {
                    return;
                }
            }
            Ok(link) => {
                last_failure = None;
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
    /// Waits for `fut` while disconnected, still taking commands and device data (QoS 1/2
    /// to the outbox, QoS 0 counted as dropped) and group-committing the spool. `None`
    /// when the bus was shut down (or every handle dropped) meanwhile: the task must end.
    async fn offline_until<T>(&mut self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            let flush_at = self.flush_deadline();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                r = &mut fut => return Some(r),
                epoch = self.cfg.pulse.pinged() => self.cfg.pulse.answer(epoch).await,
                cmd = self.q.control.recv() => match cmd {
                    None => {
                        self.close();
                        return None;
                    }
                    Some(c) => if let Some(req) = self.on_command(c, None, Gate::Stalled) {
                        self.close();
                        let _ = req.done.send(false);
                        return None;
                    },
                },
                b = self.q.data.recv(), if self.data_open => match b {
                    Some(b) => self.take_data(b, None, Gate::Stalled),
                    None => self.data_open = false,
                },
                _ = sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => self.flush(),
            }
        }
    }

    /// When the next flush is due: a group commit [`FLUSH_EVERY`] after the first unwritten
    /// append, or the spool's housekeeping (fsync, head) when that is all there is.
    fn flush_deadline(&mut self) -> Option<Instant> {
        match self.outbox.flush_need() {
            FlushNeed::Nothing => {
                self.flush_due = None;
                None
            }
            FlushNeed::Appends => Some(
                *self
                    .flush_due
                    .get_or_insert_with(|| Instant::now() + FLUSH_EVERY),
            ),
            FlushNeed::At(at) => {
                self.flush_due = None;
                Some(Instant::from_std(at))
            }
        }
    }

    fn flush(&mut self) {
        self.outbox.flush(false);
        self.flush_due = None;
        self.publish_gauge();
    }

    /// Makes everything accepted durable before the task ends.
    fn close(&mut self) {
        // Whatever was published before the end is still accepted: spool it (QoS 1/2) so
        // the next start sends it, or count it (QoS 0).
        self.q.control.close();
        while let Ok(cmd) = self.q.control.try_recv() {
            if let Command::Publish(m) = cmd {
                self.enqueue(m);
            }
        }
        self.q.data.close();
        while let Ok(b) = self.q.data.try_recv() {
            self.take_data(b, None, Gate::Stalled);
        }
        self.outbox.flush(true);
        self.publish_gauge();
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

    /// A QoS 1/2 message into the outbox, or a QoS 0 one counted as dropped (there is no
    /// connection that could take it).
    fn enqueue(&mut self, m: Outgoing) {
        if m.qos == QoS::AtMostOnce {
            self.stats.dropped_qos0.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let dropped = self.outbox.push(m);
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Publishes `m` now if it is QoS 0 and the link moves, else spools or counts it.
    fn send_or_enqueue(&mut self, m: Outgoing, conn: Option<&mut Connection>, gate: Gate) {
        match conn {
            Some(c) if m.qos == QoS::AtMostOnce && gate != Gate::Stalled => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                c.publish(m);
            }
            _ => self.enqueue(m),
        }
    }

    /// One device batch. The caller only takes one when the gate is not `Full`, so QoS 0
    /// here is dropped only while the link is down or stalled.
    fn take_data(&mut self, b: Batch, mut conn: Option<&mut Connection>, gate: Gate) {
        for m in b.msgs {
            self.send_or_enqueue(m, conn.as_deref_mut(), gate);
        }
        self.publish_gauge();
    }

    /// A control command. Control publishes are few (acks, status, diagnostics) and never
    /// wait for device data: QoS 0 goes out even above the high-water mark. A shutdown is
    /// handed back: what it means depends on whether a connection is up.
    fn on_command(
        &mut self,
        cmd: Command,
        conn: Option<&mut Connection>,
        gate: Gate,
    ) -> Option<ShutdownReq> {
        match cmd {
            Command::Publish(m) => {
                self.send_or_enqueue(m, conn, gate);
                self.publish_gauge();
            }
            Command::SetBirth(b) => {
                if let Some(c) = conn {
                    for m in &b {
                        c.publish(m.clone());
                    }
                }
                self.cfg.birth = b;
            }
            Command::Subscribe(f, q) => {
                if let Some(c) = conn {
                    c.subscribe(&[(f.clone(), q)]);
                }
                self.cfg.subscriptions.push((f, q));
            }
            Command::Shutdown { last, grace, done } => {
                return Some(ShutdownReq { last, grace, done })
            }
        }
        None
    }

    /// Carries out what the broker's bytes meant.
    fn on_events(&mut self, conn: &mut Connection) {
        for ev in conn.events() {
            match ev {
                Event::Delivered(m) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    self.outbox.delivered(&m);
                }
                Event::Refused(f) => {
                    tracing::error!(filter = %f, "broker refused the subscription (check its ACL)");
                }
                Event::Message(msg) => {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    if self.q.incoming.try_send(msg).is_err() {
                        // Logged on the first drop of a burst only: a flood must not
                        // become a log flood too.
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

    async fn connected(&mut self, link: Link) -> Ended {
        let Link {
            stream,
            rbuf,
            quickack,
        } = link;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut conn = Connection::new(
            rbuf,
            self.cfg.keep_alive,
            self.cfg.max_inflight,
            self.cfg.max_incoming,
            Instant::now(),
        );
        self.outbox.connected();
        conn.subscribe(&self.cfg.subscriptions);
        for b in self.cfg.birth.clone() {
            conn.publish(b);
        }
        let mut shutdown: Option<oneshot::Sender<bool>> = None;
        // Bytes came in that our kernel has not acknowledged yet.
        let mut unacked_read = false;
        let ended = loop {
            while conn.can_send() {
                match self.outbox.next_to_send() {
                    Some(m) => {
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                        conn.publish(m);
                    }
                    None => break,
                }
            }
            if std::mem::take(&mut unacked_read) && conn.to_write().is_empty() {
                // Nothing of ours is about to carry the ACK: send it now, so the broker's
                // Nagle does not hold its next packet (a command) for our delayed ACK.
                // When we are about to write, the ACK rides on that instead, saving a
                // packet and a syscall per read in a burst.
                quickack.after_read();
            }
            let now = Instant::now();
            if let Some(drained) = conn.shutdown_done(!self.outbox.has_unsent(), now) {
                if !drained {
                    tracing::warn!(
                        unacked = conn.inflight(),
                        queued = self.outbox.pending(),
                        "shutdown grace period over with messages not acknowledged"
                    );
                }
                let flush = async {
                    wr.write_all(conn.to_write()).await?;
                    wr.flush().await?;
                    wr.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
                if let Some(done) = shutdown.take() {
                    let _ = done.send(drained);
                }
                break Ended::Shutdown;
            }
            let wait = conn.poll(now);
            let flush_at = self.flush_deadline();
            let far = now + Duration::from_secs(3600);
            let writing = !conn.to_write().is_empty();
            // Requests are taken even while the socket is backed up (a shutdown must never
            // wait behind a stalled link), but not once closing.
            let take_control = !conn.is_closing();
            // Device data waits with its device while the socket drains a full buffer.
            let take_data = self.data_open && wait.data != Gate::Full;
            let (rbuf, wbuf) = conn.buffers();
            // Unbiased: a busy inbound stream must not starve our writes (its own acks
            // among them), nor a busy outbound one our reads.
            tokio::select! {
                r = rd.read_buf(rbuf) => match r {
                    Ok(0) => break Ended::Lost(Lost::Closed),
                    Err(e) => break Ended::Lost(Lost::Read(e)),
                    Ok(_) => {
                        unacked_read = true;
                        if let Err(e) = conn.on_read(Instant::now()) {
                            break Ended::Lost(e);
                        }
                        self.on_events(&mut conn);
                    }
                },
                r = wr.write(wbuf), if writing => match r {
                    Ok(0) => break Ended::Lost(Lost::Write(std::io::ErrorKind::WriteZero.into())),
                    Ok(n) => conn.wrote(n, Instant::now()),
                    Err(e) => break Ended::Lost(Lost::Write(e)),
                },
                cmd = self.q.control.recv(), if take_control => {
                    let Some(cmd) = cmd else { break Ended::HandlesGone };
                    let mut next = Some(cmd);
                    let mut n = 0;
                    while let Some(cmd) = next.take() {
                        if let Some(req) = self.on_command(cmd, Some(&mut conn), wait.data) {
                            // Samples the devices handed over before stopping go first.
                            while let Ok(b) = self.q.data.try_recv() {
                                self.take_data(b, Some(&mut conn), wait.data);
                            }
                            // The final messages (offline status) jump the queue.
                            conn.begin_shutdown(req.last, req.grace, Instant::now());
                            shutdown = Some(req.done);
                            break;
                        }
                        n += 1;
                        if n < DRAIN_COMMANDS {
                            next = self.q.control.try_recv().ok();
                        }
                    }
                },
                b = self.q.data.recv(), if take_data => match b {
                    None => self.data_open = false,
                    Some(b) => {
                        self.take_data(b, Some(&mut conn), wait.data);
                        let mut n = 1;
                        while n < DRAIN_BATCHES && conn.to_write().len() < WBUF_HIGH {
                            let Ok(b) = self.q.data.try_recv() else { break };
                            self.take_data(b, Some(&mut conn), wait.data);
                            n += 1;
                        }
                    }
                },
                _ = sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => self.flush(),
                epoch = self.cfg.pulse.pinged() => self.cfg.pulse.answer(epoch).await,
                // Spooled messages read back from disk: the loop sends them.
                _ = self.outbox.readable() => {}
                _ = sleep_until(wait.deadline) => {
                    if let Err(e) = conn.on_tick(Instant::now()) {
                        break Ended::Lost(e);
                    }
                }
            }
        };
        if let Some(done) = shutdown {
            // The connection was lost while closing.
            let _ = done.send(false);
        }
        let mut unacked = conn.into_unacked();
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
}
