//! The disk spool: every QoS 1/2 message is appended to a segmented log before it is sent,
//! and leaves it only when the broker acknowledged it (PUBACK/PUBCOMP). Writes are grouped
//! (one `write` per flush), records carry a CRC so a torn tail after a power cut is cut
//! off with a warning, and the log survives `kill -9`: whatever was not acknowledged is sent
//! again after a restart.
//!
//! On disk, under `<state dir>/<robot id>/spool/`: `<first id>.seg` files of records
//! `[0xB5][len u32][crc32 u32][qos u8][retain u8][topic len u16][topic][payload]` (little
//! endian), and `head`, the lowest id not yet acknowledged.

use crate::bus::{Outgoing, QoS};
use bytes::Bytes;
use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

const MAGIC: u8 = 0xB5;
const HEADER: usize = 9;
const MIN_SEGMENT: u64 = 16 * 1024;
const MAX_SEGMENT: u64 = 4 * 1024 * 1024;
/// Recent records kept in memory, so a connected robot never reads its own spool back.
const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// Data is written at every flush (enough for `kill -9`) and fsynced this often (power cuts).
const FSYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    /// Byte offset of each record; the record count is its length.
    offsets: Vec<u32>,
    bytes: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.offsets.len() as u64
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
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    drop_oldest: bool,
    segments: VecDeque<Segment>,
    active: Option<File>,
    /// Encoded records not yet written to the active segment.
    pending: Vec<u8>,
    /// Bytes of the active segment already on disk.
    written: u64,
    next_id: u64,
    /// Every id below `head` is acknowledged (or dropped).
    head: u64,
    head_written: u64,
    acked: BTreeSet<u64>,
    /// The next id to hand out for sending.
    cursor: u64,
    cache: VecDeque<(u64, Outgoing)>,
    cache_bytes: usize,
    total_bytes: u64,
    last_fsync: Instant,
    dirty_since_fsync: bool,
    unreadable: u64,
    /// Ids that `drop_oldest` removed while they were in flight: a PUBACK still makes them
    /// delivered; a connection that ends first makes them lost.
    evicted_in_flight: BTreeSet<u64>,
}

fn encode(m: &Outgoing, out: &mut Vec<u8>) {
    let topic = m.topic.as_bytes();
    let body_len = 4 + topic.len() + m.payload.len();
    out.push(MAGIC);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.push(m.qos as u8);
    out.push(m.retain as u8);
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(&m.payload);
    let crc = crc32fast::hash(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Parses the record at the start of `data`: the message and the record's length, or
/// `None` when the bytes are not a whole, intact record.
fn decode(data: &[u8]) -> Option<(Outgoing, usize)> {
    if data.len() < HEADER || data[0] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(data[1..5].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data[5..9].try_into().ok()?);
    let body = data.get(HEADER..HEADER + len)?;
    if len < 4 || crc32fast::hash(body) != crc {
        return None;
    }
    let qos = match body[0] {
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => return None,
    };
    let tlen = u16::from_le_bytes([body[2], body[3]]) as usize;
    let topic = std::str::from_utf8(body.get(4..4 + tlen)?).ok()?;
    let payload = Bytes::copy_from_slice(&body[4 + tlen..]);
    let m = Outgoing::new(Arc::<str>::from(topic), payload, qos, body[1] != 0);
    Some((m, HEADER + len))
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering what a previous run left.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        drop_oldest: bool,
    ) -> Result<(Spool, Recovery), SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let head_path = dir.join("head");
        let mut head = match std::fs::read(&head_path) {
            Ok(b) if b.len() == 12 && crc32fast::hash(&b[..8]).to_le_bytes() == b[8..12] => {
                u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
            }
            Ok(_) => {
                tracing::warn!(path = %head_path.display(), "spool head file is corrupt; resending everything in the spool");
                0
            }
            Err(_) => 0,
        };
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        for first in firsts {
            let path = seg_path(dir, first);
            let mut data = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(io(&path))?;
            let mut offsets = Vec::new();
            let mut at = 0usize;
            while at < data.len() {
                match decode(&data[at..]) {
                    Some((_, n)) => {
                        offsets.push(at as u32);
                        at += n;
                    }
                    None => break,
                }
            }
            if at < data.len() {
                tracing::warn!(
                    path = %path.display(),
                    kept = offsets.len(),
                    cut_bytes = data.len() - at,
                    "spool segment has a torn or corrupt tail (power cut?); recovered up to the last whole record"
                );
                recovery.repaired.push(path.display().to_string());
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(at as u64).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
            let seg = Segment {
                first,
                path,
                offsets,
                bytes: at as u64,
            };
            if seg.end() <= head || seg.offsets.is_empty() {
                // Fully acknowledged, or empty: nothing to keep.
                let _ = std::fs::remove_file(&seg.path);
                continue;
            }
            segments.push_back(seg);
        }
        let next_id = segments.back().map_or(head, |s| s.end()).max(head);
        if let Some(s) = segments.front() {
            head = head.max(s.first);
        }
        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let segment_bytes = (max_bytes / 8).clamp(MIN_SEGMENT, MAX_SEGMENT);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            drop_oldest,
            segments,
            active: None,
            pending: Vec::new(),
            written: 0,
            next_id,
            head,
            head_written: u64::MAX,
            acked: BTreeSet::new(),
            cursor: head,
            cache: VecDeque::new(),
            cache_bytes: 0,
            total_bytes,
            last_fsync: Instant::now(),
            dirty_since_fsync: false,
            unreadable: 0,
            evicted_in_flight: BTreeSet::new(),
        };
        recovery.segments = spool.segments.len();
        recovery.pending = spool.len();
        // Later appends go to a fresh segment, never after a recovered tail.
        spool.write_head()?;
        Ok((spool, recovery))
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

    /// Whether anything is buffered for the next [`Spool::flush`].
    pub fn needs_flush(&self) -> bool {
        !self.pending.is_empty() || self.head != self.head_written || self.dirty_since_fsync
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        self.flush_writes()?;
        let path = seg_path(&self.dir, self.next_id);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io(&path))?;
        self.active = Some(file);
        self.written = 0;
        self.segments.push_back(Segment {
            first: self.next_id,
            path,
            offsets: Vec::new(),
            bytes: 0,
        });
        Ok(())
    }

    /// Drops the oldest segment to make room; returns how many unacknowledged messages
    /// went with it.
    fn drop_oldest_segment(&mut self) -> Result<u64, SpoolError> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(0);
        };
        if self.segments.is_empty() {
            // It was the active one.
            self.flush_writes()?;
            self.active = None;
            self.pending.clear();
        }
        let lo = seg.first.max(self.head);
        let hi = seg.end();
        let acked_inside = self.acked.range(lo..hi).count() as u64;
        // Those already handed out for sending are not lost yet: see `evicted_in_flight`.
        let sent_end = self.cursor.clamp(lo, hi.max(lo));
        let in_flight: Vec<u64> = (lo..sent_end)
            .filter(|id| !self.acked.contains(id))
            .collect();
        let lost = hi.saturating_sub(lo) - acked_inside - in_flight.len() as u64;
        self.evicted_in_flight.extend(in_flight);
        self.acked = self.acked.split_off(&hi);
        self.head = self.head.max(hi);
        self.cursor = self.cursor.max(self.head);
        self.total_bytes -= seg.bytes;
        while self.cache.front().is_some_and(|(id, _)| *id < hi) {
            let (_, m) = self.cache.pop_front().expect("checked");
            self.cache_bytes -= m.payload.len() + m.topic.len();
        }
        let _ = std::fs::remove_file(&seg.path);
        Ok(lost)
    }

    /// Appends a message, applying the `on_full` policy when the spool is at `max_bytes`.
    pub fn append(&mut self, m: &Outgoing) -> Result<Appended, SpoolError> {
        let mut rec = Vec::with_capacity(HEADER + 4 + m.topic.len() + m.payload.len());
        encode(m, &mut rec);
        let size = rec.len() as u64;
        let mut dropped = 0;
        if self.total_bytes + size > self.max_bytes {
            if !self.drop_oldest || size > self.max_bytes {
                return Ok(Appended {
                    id: None,
                    dropped: 1,
                });
            }
            while self.total_bytes + size > self.max_bytes && !self.segments.is_empty() {
                dropped += self.drop_oldest_segment()?;
            }
        }
        let need_new = match self.segments.back() {
            None => true,
            Some(s) => self.active.is_none() || s.bytes + size > self.segment_bytes,
        };
        if need_new {
            self.start_segment()?;
        }
        let seg = self
            .segments
            .back_mut()
            .expect("a segment was just ensured");
        seg.offsets.push(seg.bytes as u32);
        seg.bytes += size;
        self.total_bytes += size;
        self.pending.extend_from_slice(&rec);
        let id = self.next_id;
        self.next_id += 1;
        let mut cached = m.clone();
        cached.spool_id = Some(id);
        self.cache_bytes += m.payload.len() + m.topic.len();
        self.cache.push_back((id, cached));
        while self.cache_bytes > CACHE_BYTES && self.cache.len() > 1 {
            // Evicted records must be readable from disk.
            if !self.pending.is_empty() {
                self.flush_writes()?;
            }
            let (_, old) = self.cache.pop_front().expect("len > 1");
            self.cache_bytes -= old.payload.len() + old.topic.len();
        }
        Ok(Appended {
            id: Some(id),
            dropped,
        })
    }

    fn load(&mut self, id: u64) -> Result<Option<Outgoing>, SpoolError> {
        if let Some((first, _)) = self.cache.front() {
            if id >= *first {
                return Ok(self
                    .cache
                    .get((id - first) as usize)
                    .map(|(_, m)| m.clone()));
            }
        }
        let Some(seg) = self.segments.iter().find(|s| id >= s.first && id < s.end()) else {
            return Ok(None);
        };
        let i = (id - seg.first) as usize;
        let start = seg.offsets[i] as u64;
        let end = seg.offsets.get(i + 1).map_or(seg.bytes, |o| *o as u64);
        let path = seg.path.clone();
        let is_active = self.segments.back().is_some_and(|s| s.first == seg.first);
        if is_active && end > self.written {
            self.flush_writes()?;
        }
        let mut buf = vec![0u8; (end - start) as usize];
        File::open(&path)
            .and_then(|f| f.read_exact_at(&mut buf, start))
            .map_err(io(&path))?;
        Ok(decode(&buf).map(|(mut m, _)| {
            m.spool_id = Some(id);
            m
        }))
    }

    /// The next message to send, oldest first, skipping those already acknowledged.
    pub fn next_to_send(&mut self) -> Result<Option<Outgoing>, SpoolError> {
        while self.cursor < self.next_id {
            let id = self.cursor;
            self.cursor += 1;
            if id < self.head || self.acked.contains(&id) {
                continue;
            }
            match self.load(id) {
                Ok(Some(m)) => return Ok(Some(m)),
                // A record lost to corruption (or a gap left by recovery) can never be
                // sent: count it as dropped and let the head move past it, or the spool
                // would never empty.
                Ok(None) => self.lost(id),
                Err(e) => {
                    self.lost(id);
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    fn lost(&mut self, id: u64) {
        self.unreadable += 1;
        self.ack(id);
    }

    /// Records lost since the last call (unreadable, or evicted by the size cap while in
    /// flight and then not acknowledged), to be counted as dropped.
    pub fn take_unreadable(&mut self) -> u64 {
        std::mem::take(&mut self.unreadable)
    }

    /// Whether [`Spool::next_to_send`] has more.
    pub fn has_unsent(&self) -> bool {
        self.cursor < self.next_id
    }

    /// The broker acknowledged message `id`.
    pub fn ack(&mut self, id: u64) {
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
            let _ = std::fs::remove_file(&seg.path);
        }
        while self.cache.front().is_some_and(|(i, _)| *i < self.head) {
            let (_, m) = self.cache.pop_front().expect("checked");
            self.cache_bytes -= m.payload.len() + m.topic.len();
        }
    }

    /// The connection dropped: everything not acknowledged is to be sent again, in order.
    pub fn rewind(&mut self) {
        self.cursor = self.head;
        // Evicted while in flight and never acknowledged: gone for good.
        self.unreadable += self.evicted_in_flight.len() as u64;
        self.evicted_in_flight.clear();
    }

    fn flush_writes(&mut self) -> Result<(), SpoolError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let (Some(f), Some(seg)) = (self.active.as_mut(), self.segments.back()) {
            f.seek(SeekFrom::Start(self.written))
                .map_err(io(&seg.path))?;
            f.write_all(&self.pending).map_err(io(&seg.path))?;
            self.written += self.pending.len() as u64;
            self.dirty_since_fsync = true;
        }
        self.pending.clear();
        Ok(())
    }

    fn write_head(&mut self) -> Result<(), SpoolError> {
        if self.head == self.head_written {
            return Ok(());
        }
        let path = self.dir.join("head");
        let tmp = self.dir.join("head.tmp");
        let mut b = self.head.to_le_bytes().to_vec();
        b.extend_from_slice(&crc32fast::hash(&b).to_le_bytes());
        std::fs::write(&tmp, &b).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.head_written = self.head;
        Ok(())
    }

    /// Group commit: writes everything appended since the last flush in one write, records
    /// the acknowledged head, and fsyncs at most once a second (or when `sync`).
    pub fn flush(&mut self, sync: bool) -> Result<(), SpoolError> {
        self.flush_writes()?;
        self.write_head()?;
        if self.dirty_since_fsync && (sync || self.last_fsync.elapsed() >= FSYNC_EVERY) {
            let file = self.active.as_ref().and_then(|f| f.try_clone().ok());
            let dir = self.dir.clone();
            let work = move || {
                if let Some(f) = file {
                    if let Err(e) = f.sync_data() {
                        tracing::error!(path = %dir.display(), "spool fsync failed: {e}");
                    }
                }
                if let Ok(d) = File::open(&dir) {
                    let _ = d.sync_all();
                }
            };
            // The periodic fsync can take tens of milliseconds on an SD card: off the bus
            // task's thread, so pings and acks keep flowing. A final one (`sync`) waits.
            match tokio::runtime::Handle::try_current() {
                Ok(h) if !sync => {
                    h.spawn_blocking(work);
                }
                _ => work(),
            }
            self.dirty_since_fsync = false;
            self.last_fsync = Instant::now();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u32) -> Outgoing {
        Outgoing::new(
            format!("robot/r1/t{}", i % 3),
            i.to_le_bytes().to_vec(),
            QoS::AtLeastOnce,
            false,
        )
    }

    fn drain(s: &mut Spool) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(m) = s.next_to_send().unwrap() {
            out.push(u32::from_le_bytes(m.payload[..4].try_into().unwrap()));
        }
        out
    }

    #[test]
    fn messages_come_back_in_order_and_leave_on_ack() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, true).unwrap();
        for i in 0..10 {
            s.append(&msg(i)).unwrap();
        }
        assert_eq!(drain(&mut s), (0..10).collect::<Vec<_>>());
        for id in [0, 1, 2, 5] {
            s.ack(id);
        }
        assert_eq!(s.len(), 6);
        s.rewind();
        assert_eq!(
            drain(&mut s),
            vec![3, 4, 6, 7, 8, 9],
            "acked ones are not resent"
        );
    }

    #[test]
    fn unacknowledged_messages_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Spool::open(dir.path(), 1 << 20, true).unwrap();
            for i in 0..100 {
                s.append(&msg(i)).unwrap();
            }
            for id in 0..40 {
                s.ack(id);
            }
            s.flush(false).unwrap();
            // Dropped without a clean close, as under kill -9.
        }
        let (mut s, rec) = Spool::open(dir.path(), 1 << 20, true).unwrap();
        assert_eq!(rec.pending, 60);
        assert!(rec.repaired.is_empty());
        assert_eq!(drain(&mut s), (40..100).collect::<Vec<_>>());
        // New messages continue after the recovered ones.
        s.append(&msg(1000)).unwrap();
        assert_eq!(drain(&mut s), vec![1000]);
    }

    #[test]
    fn a_truncated_segment_is_recovered_up_to_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Spool::open(dir.path(), 1 << 20, true).unwrap();
            for i in 0..20 {
                s.append(&msg(i)).unwrap();
            }
            s.flush(true).unwrap();
        }
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let len = std::fs::metadata(&seg).unwrap().len();
        // Cut the last record in half, as a power cut mid-write would.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let (mut s, rec) = Spool::open(dir.path(), 1 << 20, true).unwrap();
        assert_eq!(rec.repaired.len(), 1);
        assert_eq!(drain(&mut s), (0..19).collect::<Vec<_>>());
        // Corrupt bytes in the middle: everything after them in that segment is cut.
        let mut data = std::fs::read(&seg).unwrap();
        data[HEADER + 4 + 2] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        let (mut s, rec) = Spool::open(dir.path(), 1 << 20, true).unwrap();
        assert_eq!(rec.repaired.len(), 1);
        assert_eq!(drain(&mut s), Vec::<u32>::new());
        s.append(&msg(7)).unwrap();
        assert_eq!(drain(&mut s), vec![7]);
    }

    #[test]
    fn a_corrupt_record_mid_spool_is_counted_and_does_not_stop_the_spool_emptying() {
        let dir = tempfile::tempdir().unwrap();
        {
            // Small segments, so there are several.
            let (mut s, _) = Spool::open(dir.path(), 128 * 1024, true).unwrap();
            for i in 0..3000 {
                s.append(&msg(i)).unwrap();
            }
            s.flush(true).unwrap();
        }
        let mut segs: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        assert!(segs.len() >= 3, "{segs:?}");
        let mut data = std::fs::read(&segs[0]).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&segs[0], &data).unwrap();
        let (mut s, _) = Spool::open(dir.path(), 128 * 1024, true).unwrap();
        let sent = drain(&mut s);
        let lost = s.take_unreadable();
        assert!(lost > 0);
        assert_eq!(
            sent.len() as u64 + lost,
            3000,
            "every record is sent or counted"
        );
        for m in 0..s.next_id {
            s.ack(m);
        }
        assert_eq!(s.len(), 0, "the spool empties");
    }

    #[test]
    fn drop_oldest_counts_exactly_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 64 * 1024, true).unwrap();
        let mut dropped = 0;
        let mut kept_ids = 0;
        for i in 0..10_000 {
            let a = s.append(&msg(i)).unwrap();
            dropped += a.dropped;
            kept_ids += a.id.is_some() as u64;
        }
        assert_eq!(kept_ids, 10_000);
        assert!(s.bytes() <= 64 * 1024);
        assert_eq!(
            dropped + s.len(),
            10_000,
            "every message is either kept or counted"
        );
        let sent = drain(&mut s);
        assert_eq!(sent.len() as u64, s.len());
        assert_eq!(*sent.last().unwrap(), 9_999, "the newest survive");
        assert!(sent.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn drop_oldest_counts_in_flight_messages_only_once_their_connection_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 64 * 1024, true).unwrap();
        let mut dropped = 0;
        for i in 0..100 {
            dropped += s.append(&msg(i)).unwrap().dropped;
        }
        // Ten handed out for sending, awaiting their PUBACK.
        let sent: Vec<Outgoing> = (0..10)
            .map(|_| s.next_to_send().unwrap().unwrap())
            .collect();
        for i in 100..10_000 {
            dropped += s.append(&msg(i)).unwrap().dropped;
        }
        assert!(
            s.head > 10,
            "the oldest segment went, with the ten in flight"
        );
        // Five are acknowledged after all: delivered, not dropped.
        for m in &sent[..5] {
            s.ack(m.spool_id.unwrap());
        }
        assert_eq!(s.take_unreadable(), 0);
        // The connection ends: the other five can never be sent again.
        s.rewind();
        dropped += s.take_unreadable();
        assert_eq!(
            dropped + 5 + s.len(),
            10_000,
            "every message is delivered, kept or counted as dropped, once"
        );
    }

    #[test]
    fn drop_new_refuses_new_messages_and_keeps_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 64 * 1024, false).unwrap();
        let mut dropped = 0;
        for i in 0..10_000 {
            dropped += s.append(&msg(i)).unwrap().dropped;
        }
        assert_eq!(dropped + s.len(), 10_000);
        let sent = drain(&mut s);
        assert_eq!(sent[0], 0, "the oldest survive");
        assert!(sent.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn records_beyond_the_memory_cache_are_read_back_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 64 << 20, true).unwrap();
        let big = vec![7u8; 64 * 1024];
        for i in 0..200u32 {
            let mut p = i.to_le_bytes().to_vec();
            p.extend_from_slice(&big);
            s.append(&Outgoing::new("t", p, QoS::ExactlyOnce, true))
                .unwrap();
        }
        assert!(s.cache_bytes <= CACHE_BYTES);
        let first = s.next_to_send().unwrap().unwrap();
        assert_eq!(&first.payload[..4], &0u32.to_le_bytes());
        assert_eq!(first.qos, QoS::ExactlyOnce);
        assert!(first.retain);
        assert_eq!(first.payload.len(), 4 + big.len());
    }
}
