//! The disk spool: every QoS 1/2 message is appended to a segmented log before it is sent,
//! and leaves it only when the broker acknowledged it (PUBACK/PUBCOMP). Writes are grouped
//! (one `write` per flush), records carry a CRC so a torn tail after a power cut is cut
//! off with a warning, and the log survives `kill -9`: whatever was not acknowledged is sent
//! again after a restart.
//!
//! On disk, under `<state dir>/<robot id>/spool/`: `<first id>.seg` files of records (their
//! format is in `record.rs`) and `head`, the lowest id not yet acknowledged.
//!
//! The bus task calls the spool, and must never wait on a disk: [`Spool`] here is memory
//! only (ids, offsets, acknowledgements, a cache of recent records) and *sends* its file
//! work to the I/O thread in `io.rs`, the only code that touches the files besides the
//! start-up recovery in `recover.rs`, run by [`Spool::open`] before the bus task starts.
//! Records not in memory are read ahead asynchronously (`prefetch.rs`);
//! [`Spool::readable`] wakes the bus task when they arrive.

mod io;
mod prefetch;
mod record;
mod recover;
#[cfg(test)]
mod tests;

use crate::bus::Outgoing;
use io::{Io, Op, Span};
use prefetch::Prefetch;
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::oneshot;

const MIN_SEGMENT: u64 = 16 * 1024;
const MAX_SEGMENT: u64 = 4 * 1024 * 1024;
/// Recent records kept in memory, so a connected robot never reads its own spool back.
const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// Data is written at every flush (enough for `kill -9`); it is fsynced (power cuts), and
/// the acknowledged head recorded, at most this often. A head behind by up to this much
/// only means a few acknowledged messages are sent again after a crash (at-least-once);
/// writing it at every group commit cost more than the messages themselves at 1 kHz.
const FSYNC_EVERY: Duration = Duration::from_secs(1);

/// What a [`Spool::flush`] has to do, and how soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushNeed {
    Nothing,
    /// Appends wait to be written: a group commit is due soon.
    Appends,
    /// Only housekeeping (fsync, the head): due at this time.
    At(Instant),
}
/// A read-ahead takes at most this many records, or this many bytes (but at least one).
const READ_RECORDS: usize = 256;
const READ_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the spool's I/O thread has stopped")]
    Stopped,
}

impl SpoolError {
    fn io(path: &Path, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[derive(Debug)]
struct Segment {
    first: u64,
    /// Byte offset of each record; the record count is its length.
    offsets: Vec<u32>,
    bytes: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    /// Where record `i` ends.
    fn record_end(&self, i: usize) -> u64 {
        self.offsets.get(i + 1).map_or(self.bytes, |o| *o as u64)
    }
}

/// What [`Spool::append`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The message's id, or `None` when `drop_new` refused it.
    pub id: Option<u64>,
    /// Messages dropped to make room (or the refused one).
    pub dropped: u64,
}

/// What recovery found at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    pub pending: u64,
    pub segments: usize,
    /// Segments whose tail was cut off because it was torn or corrupt.
    pub repaired: Vec<String>,
}

pub struct Spool {
    max_bytes: u64,
    segment_bytes: u64,
    drop_oldest: bool,
    segments: VecDeque<Segment>,
    /// Whether the newest segment takes appends (a recovered one never does).
    appending: bool,
    /// Encoded records not yet handed to the I/O thread.
    pending: Vec<u8>,
    /// Bytes of the newest segment already handed to the I/O thread.
    written: u64,
    next_id: u64,
    /// Every id below `head` is acknowledged (or dropped).
    head: u64,
    head_written: u64,
    acked: BTreeSet<u64>,
    /// The next id to hand out for sending (with `live_first`, of the backlog).
    cursor: u64,
    /// With `live_first`: the in-flight budget of the backlog, and the live part of this
    /// connection (ids from `live.from` on, sent from `live.cursor`).
    backlog_cap: Option<u64>,
    live: Option<Live>,
    cache: VecDeque<(u64, Outgoing)>,
    cache_bytes: usize,
    cache_limit: usize,
    prefetch: Prefetch,
    total_bytes: u64,
    last_fsync: Instant,
    /// When the head was last handed to the I/O thread.
    last_head: Instant,
    dirty_since_fsync: bool,
    unreadable: u64,
    /// Ids that `drop_oldest` removed while they were in flight: a PUBACK still makes them
    /// delivered; a connection that ends first makes them lost.
    evicted_in_flight: BTreeSet<u64>,
    io: Io,
}

/// The live part of a connection under `live_first`.
#[derive(Debug, Clone, Copy)]
struct Live {
    /// The first id appended during this connection: those below are the backlog.
    from: u64,
    /// The next live id to hand out.
    cursor: u64,
    /// Backlog messages handed out and not yet acknowledged.
    backlog_in_flight: u64,
}

/// Which cursor [`Spool::next_from`] advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Backlog,
    Live,
}

fn cost(m: &Outgoing) -> usize {
    m.payload.len() + m.topic.len()
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering what a previous run left, and
    /// starts its I/O thread.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        drop_oldest: bool,
    ) -> Result<(Spool, Recovery), SpoolError> {
        Self::open_with_cache(dir, max_bytes, drop_oldest, CACHE_BYTES)
    }

    fn open_with_cache(
        dir: &Path,
        max_bytes: u64,
        drop_oldest: bool,
        cache_limit: usize,
    ) -> Result<(Spool, Recovery), SpoolError> {
        let found = recover::recover(dir)?;
        let next_id = found.segments.back().map_or(found.head, |s| s.end());
        let spool = Spool {
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(MIN_SEGMENT, MAX_SEGMENT),
            drop_oldest,
            total_bytes: found.segments.iter().map(|s| s.bytes).sum(),
            segments: found.segments,
            // Later appends go to a fresh segment, never after a recovered tail.
            appending: false,
            pending: Vec::new(),
            written: 0,
            next_id: next_id.max(found.head),
            head: found.head,
            head_written: found.head,
            acked: BTreeSet::new(),
            cursor: found.head,
            backlog_cap: None,
            live: None,
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_limit,
            prefetch: Prefetch::default(),
            last_fsync: Instant::now(),
            last_head: Instant::now(),
            dirty_since_fsync: false,
            unreadable: 0,
            evicted_in_flight: BTreeSet::new(),
            io: Io::start(dir)?,
        };
        let recovery = Recovery {
            pending: spool.len(),
            segments: spool.segments.len(),
            repaired: found.repaired,
        };
        Ok((spool, recovery))
    }

    /// Replays `live_first`: on each connection, messages appended from then on go out
    /// before the backlog, which keeps at most `backlog_in_flight` messages in flight (so
    /// live data always finds room). Without this call, the spool replays oldest first.
    pub fn live_first(&mut self, backlog_in_flight: u64) {
        self.backlog_cap = Some(backlog_in_flight.max(1));
    }

    /// A connection is up: with `live_first`, what is in the spool now is the backlog.
    pub fn connected(&mut self) {
        if self.backlog_cap.is_some() {
            self.live = Some(Live {
                from: self.next_id,
                cursor: self.next_id,
                backlog_in_flight: 0,
            });
        }
    }

    /// Whether message `id` was handed out for sending on this connection.
    fn handed_out(&self, id: u64) -> bool {
        match self.live {
            Some(l) if id >= l.from => id < l.cursor,
            _ => id < self.cursor,
        }
    }

    /// Messages not yet acknowledged.
    pub fn len(&self) -> u64 {
        self.next_id - self.head - self.acked.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes on disk (or about to be).
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// What the next [`Spool::flush`] would do, and when it is due.
    pub fn flush_need(&self) -> FlushNeed {
        if !self.pending.is_empty() {
            return FlushNeed::Appends;
        }
        let head = (self.head != self.head_written).then_some(self.last_head + FSYNC_EVERY);
        let sync = self
            .dirty_since_fsync
            .then_some(self.last_fsync + FSYNC_EVERY);
        match head.into_iter().chain(sync).min() {
            Some(at) => FlushNeed::At(at),
            None => FlushNeed::Nothing,
        }
    }

    fn start_segment(&mut self) {
        self.write_pending();
        self.io.send(Op::Create(self.next_id));
        self.appending = true;
        self.written = 0;
        self.segments.push_back(Segment {
            first: self.next_id,
            offsets: Vec::new(),
            bytes: 0,
        });
    }

    fn uncache_below(&mut self, id: u64) {
        while self.cache.front().is_some_and(|(i, _)| *i < id) {
            let (_, m) = self.cache.pop_front().expect("checked");
            self.cache_bytes -= cost(&m);
        }
    }

    /// Drops the oldest segment to make room; returns how many unacknowledged messages
    /// went with it.
    fn drop_oldest_segment(&mut self) -> u64 {
        let Some(seg) = self.segments.pop_front() else {
            return 0;
        };
        if self.segments.is_empty() {
            // It was the one appended to: what is not written yet need not be.
            self.appending = false;
            self.pending.clear();
        }
        let lo = seg.first.max(self.head);
        let hi = seg.end();
        let acked_inside = self.acked.range(lo..hi).count() as u64;
        // Those already handed out for sending are not lost yet: see `evicted_in_flight`.
        let in_flight: Vec<u64> = (lo..hi)
            .filter(|id| self.handed_out(*id) && !self.acked.contains(id))
            .collect();
        let lost = hi.saturating_sub(lo) - acked_inside - in_flight.len() as u64;
        self.evicted_in_flight.extend(in_flight);
        self.acked = self.acked.split_off(&hi);
        self.head = self.head.max(hi);
        self.cursor = self.cursor.max(self.head);
        if let Some(l) = &mut self.live {
            l.cursor = l.cursor.max(self.head);
        }
        self.total_bytes -= seg.bytes;
        self.uncache_below(hi);
        self.io.send(Op::Remove(seg.first));
        lost
    }

    /// Appends a message, applying the `on_full` policy when the spool is at `max_bytes`.
    pub fn append(&mut self, m: &Outgoing) -> Appended {
        let size = record::encoded_len(m) as u64;
        let mut dropped = 0;
        if self.total_bytes + size > self.max_bytes {
            if !self.drop_oldest || size > self.max_bytes {
                return Appended {
                    id: None,
                    dropped: 1,
                };
            }
            while self.total_bytes + size > self.max_bytes && !self.segments.is_empty() {
                dropped += self.drop_oldest_segment();
            }
        }
        let need_new = match self.segments.back() {
            None => true,
            Some(s) => !self.appending || s.bytes + size > self.segment_bytes,
        };
        if need_new {
            self.start_segment();
        }
        let seg = self
            .segments
            .back_mut()
            .expect("a segment was just ensured");
        seg.offsets.push(seg.bytes as u32);
        seg.bytes += size;
        self.total_bytes += size;
        record::encode(m, &mut self.pending);
        let id = self.next_id;
        self.next_id += 1;
        let mut cached = m.clone();
        cached.spool_id = Some(id);
        self.cache_bytes += cost(m);
        self.cache.push_back((id, cached));
        // Evicted records are read back from disk if need be: the I/O thread writes them
        // before any later read.
        while self.cache_bytes > self.cache_limit && self.cache.len() > 1 {
            let (_, old) = self.cache.pop_front().expect("len > 1");
            self.cache_bytes -= cost(&old);
        }
        Appended {
            id: Some(id),
            dropped,
        }
    }

    fn cached(&self, id: u64) -> Option<Outgoing> {
        let (first, _) = self.cache.front()?;
        let i = id.checked_sub(*first)?;
        self.cache.get(i as usize).map(|(_, m)| m.clone())
    }

    fn segment_of(&self, id: u64) -> Option<usize> {
        self.segments
            .iter()
            .position(|s| id >= s.first && id < s.end())
    }

    /// Asks the I/O thread for the records from `id` on that are not in memory; false when
    /// it is gone.
    fn start_read(&mut self, id: u64, seg: usize) -> bool {
        // The read must see them: records evicted from the cache may still be here.
        self.write_pending();
        let until = self.cache.front().map_or(self.next_id, |(i, _)| *i);
        let (mut records, mut bytes) = (0, 0);
        let mut spans: Vec<Span> = Vec::new();
        let mut next = id;
        for s in self.segments.range(seg..) {
            if s.first > next {
                // A gap recovery left: the next read starts after it.
                break;
            }
            let mut span = Span {
                segment: s.first,
                first_id: next,
                offsets: Vec::new(),
                end: 0,
            };
            while next < s.end().min(until) && records < READ_RECORDS && bytes < READ_BYTES {
                let i = (next - s.first) as usize;
                span.offsets.push(s.offsets[i]);
                span.end = s.record_end(i);
                bytes += span.end - s.offsets[i] as u64;
                records += 1;
                next += 1;
            }
            if !span.offsets.is_empty() {
                spans.push(span);
            }
            if next < s.end() {
                break;
            }
        }
        let (done, answer) = oneshot::channel();
        if !self.io.send(Op::Read { spans, done }) {
            return false;
        }
        self.prefetch.start(id, answer);
        true
    }

    /// The next message to send, oldest first, skipping those already acknowledged.
    /// `None` also while records are being read back from disk: [`Spool::has_unsent`]
    /// stays true then, and [`Spool::readable`] resolves when they are here.
    /// With `live_first`, live messages come first and the backlog only within its
    /// in-flight budget.
    pub fn next_to_send(&mut self) -> Option<Outgoing> {
        let Some(live) = self.live else {
            return self.next_from(Part::Backlog, self.next_id);
        };
        if let Some(m) = self.next_from(Part::Live, self.next_id) {
            return Some(m);
        }
        if live.backlog_in_flight >= self.backlog_cap.unwrap_or(u64::MAX) {
            return None;
        }
        let m = self.next_from(Part::Backlog, live.from)?;
        if let Some(l) = &mut self.live {
            l.backlog_in_flight += 1;
        }
        Some(m)
    }

    fn cursor_of(&mut self, part: Part) -> &mut u64 {
        match (part, &mut self.live) {
            (Part::Live, Some(l)) => &mut l.cursor,
            _ => &mut self.cursor,
        }
    }

    /// The next message of one part, up to (not including) id `end`.
    fn next_from(&mut self, part: Part, end: u64) -> Option<Outgoing> {
        while *self.cursor_of(part) < end {
            let id = *self.cursor_of(part);
            if id < self.head || self.acked.contains(&id) {
                *self.cursor_of(part) += 1;
                continue;
            }
            let record = if let Some(m) = self.cached(id) {
                Some(m)
            } else if let Some(read) = self.prefetch.take(id) {
                read
            } else if let Some(seg) = self.segment_of(id) {
                if self.prefetch.poll() {
                    // A read just ended: look again.
                    continue;
                }
                if self.prefetch.in_flight() || self.start_read(id, seg) {
                    return None;
                }
                // No I/O thread: what is not in memory can never be sent.
                None
            } else {
                // A gap left by recovery.
                None
            };
            *self.cursor_of(part) += 1;
            match record {
                Some(m) => return Some(m),
                // A record lost to corruption can never be sent: count it as dropped and
                // let the head move past it, or the spool would never empty.
                None => self.lost(id),
            }
        }
        None
    }

    /// Resolves when records read back from disk arrived for [`Spool::next_to_send`];
    /// pending forever when no read is in flight. Cancel-safe.
    pub async fn readable(&mut self) {
        self.prefetch.arrived().await;
    }

    fn lost(&mut self, id: u64) {
        self.unreadable += 1;
        self.done(id);
    }

    /// Records lost since the last call (unreadable, or evicted by the size cap while in
    /// flight and then not acknowledged), to be counted as dropped.
    pub fn take_unreadable(&mut self) -> u64 {
        std::mem::take(&mut self.unreadable)
    }

    /// Whether [`Spool::next_to_send`] has more (perhaps once a read is over).
    pub fn has_unsent(&self) -> bool {
        match self.live {
            Some(l) => self.cursor < l.from || l.cursor < self.next_id,
            None => self.cursor < self.next_id,
        }
    }

    /// The broker acknowledged message `id`.
    pub fn ack(&mut self, id: u64) {
        if let Some(l) = &mut self.live {
            if id < l.from {
                l.backlog_in_flight = l.backlog_in_flight.saturating_sub(1);
            }
        }
        self.done(id);
    }

    /// Message `id` leaves the spool: acknowledged, or lost.
    fn done(&mut self, id: u64) {
        if id < self.head {
            self.evicted_in_flight.remove(&id);
            return;
        }
        if id >= self.next_id {
            return;
        }
        self.acked.insert(id);
        while self.acked.first() == Some(&self.head) {
            self.acked.pop_first();
            self.head += 1;
        }
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.end() <= self.head)
        {
            let seg = self.segments.pop_front().expect("checked");
            self.total_bytes -= seg.bytes;
            self.io.send(Op::Remove(seg.first));
        }
        self.uncache_below(self.head);
    }

    /// The connection dropped: everything not acknowledged is to be sent again, in order.
    pub fn rewind(&mut self) {
        self.cursor = self.head;
        // The next connection decides anew what is backlog.
        self.live = None;
        // Evicted while in flight and never acknowledged: gone for good.
        self.unreadable += self.evicted_in_flight.len() as u64;
        self.evicted_in_flight.clear();
    }

    /// Hands the appended records to the I/O thread, which writes them at once.
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        let at = self.written;
        self.written += bytes.len() as u64;
        self.dirty_since_fsync = true;
        if let Some(seg) = self.segments.back() {
            self.io.send(Op::Write {
                segment: seg.first,
                at,
                bytes,
            });
        }
    }

    /// Group commit: writes everything appended since the last flush in one write; records
    /// the acknowledged head and fsyncs at most once a second. With `sync` (at shutdown),
    /// waits until all of it, fsync included, is done.
    pub fn flush(&mut self, sync: bool) -> Result<(), SpoolError> {
        self.write_pending();
        if self.head != self.head_written && (sync || self.last_head.elapsed() >= FSYNC_EVERY) {
            self.io.send(Op::Head(self.head));
            self.head_written = self.head;
            self.last_head = Instant::now();
        }
        if sync {
            self.dirty_since_fsync = false;
            self.last_fsync = Instant::now();
            return self.io.wait(|done| Op::Fsync(Some(done)));
        }
        if self.dirty_since_fsync && self.last_fsync.elapsed() >= FSYNC_EVERY {
            self.dirty_since_fsync = false;
            self.last_fsync = Instant::now();
            self.io.send(Op::Fsync(None));
        }
        Ok(())
    }
}
