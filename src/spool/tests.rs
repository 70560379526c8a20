use super::record::HEADER;
use super::*;
use crate::bus::QoS;
use std::fs::OpenOptions;

fn msg(i: u32) -> Outgoing {
    Outgoing::new(
        format!("robot/r1/t{}", i % 3),
        i.to_le_bytes().to_vec(),
        QoS::AtLeastOnce,
        false,
    )
}

fn num(m: &Outgoing) -> u32 {
    u32::from_le_bytes(m.payload[..4].try_into().unwrap())
}

/// The next message to send, waiting for reads from disk as the bus task does.
async fn next(s: &mut Spool) -> Option<Outgoing> {
    loop {
        if let Some(m) = s.next_to_send() {
            return Some(m);
        }
        if !s.has_unsent() {
            return None;
        }
        assert!(
            s.prefetch.in_flight(),
            "nothing to send yet, and no read to wait for"
        );
        s.readable().await;
    }
}

/// As if a second had passed since the head was last recorded: the next flush records it.
fn head_due(s: &mut Spool) {
    s.last_head = Instant::now() - FSYNC_EVERY;
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

/// A spool (`drop_oldest`) holding messages `0..n`, appended but not flushed.
fn filled(dir: &Path, max_bytes: u64, cache: usize, n: u32) -> Spool {
    let (mut s, _) = Spool::open_with_cache(dir, max_bytes, true, cache).unwrap();
    append_all(&mut s, 0..n);
    s
}

/// Appends messages `ids`; returns how many the size cap dropped.
fn append_all(s: &mut Spool, ids: std::ops::Range<u32>) -> u64 {
    ids.map(|i| s.append(&msg(i)).dropped).sum()
}

async fn drain(s: &mut Spool) -> Vec<u32> {
    let mut out = Vec::new();
    while let Some(m) = next(s).await {
        out.push(num(&m));
    }
    out
}

#[tokio::test]
async fn messages_come_back_in_order_and_leave_on_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 10);
    assert_eq!(drain(&mut s).await, (0..10).collect::<Vec<_>>());
    for id in [0, 1, 2, 5] {
        s.ack(id);
    }
    assert_eq!(s.len(), 6);
    s.rewind();
    assert_eq!(
        drain(&mut s).await,
        vec![3, 4, 6, 7, 8, 9],
        "acked ones are not resent"
    );
}

#[tokio::test]
async fn unacknowledged_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 100);
        for id in 0..40 {
            s.ack(id);
        }
        head_due(&mut s);
        s.flush(false).unwrap();
        // Dropped without a clean close, as under kill -9.
    }
    let (mut s, rec) = Spool::open(dir.path(), 1 << 20, true).unwrap();
    assert_eq!(rec.pending, 60);
    assert!(rec.repaired.is_empty());
    assert_eq!(drain(&mut s).await, (40..100).collect::<Vec<_>>());
    // New messages continue after the recovered ones.
    s.append(&msg(1000));
    assert_eq!(drain(&mut s).await, vec![1000]);
}

#[tokio::test]
async fn a_truncated_segment_is_recovered_up_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 20);
        s.flush(true).unwrap();
    }
    let seg = seg_files(dir.path()).remove(0);
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
    assert_eq!(drain(&mut s).await, (0..19).collect::<Vec<_>>());
    // Corrupt bytes in the middle: everything after them in that segment is cut.
    let mut data = std::fs::read(&seg).unwrap();
    data[HEADER + 4 + 2] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    let (mut s, rec) = Spool::open(dir.path(), 1 << 20, true).unwrap();
    assert_eq!(rec.repaired.len(), 1);
    assert_eq!(drain(&mut s).await, Vec::<u32>::new());
    s.append(&msg(7));
    assert_eq!(drain(&mut s).await, vec![7]);
}

#[tokio::test]
async fn a_corrupt_record_mid_spool_is_counted_and_does_not_stop_the_spool_emptying() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Small segments, so there are several.
        let mut s = filled(dir.path(), 128 * 1024, CACHE_BYTES, 3000);
        s.flush(true).unwrap();
    }
    let segs = seg_files(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let mut data = std::fs::read(&segs[0]).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&segs[0], &data).unwrap();
    let (mut s, _) = Spool::open(dir.path(), 128 * 1024, true).unwrap();
    let sent = drain(&mut s).await;
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

#[tokio::test]
async fn drop_oldest_counts_exactly_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), 64 * 1024, true).unwrap();
    let mut dropped = 0;
    let mut kept_ids = 0;
    for i in 0..10_000 {
        let a = s.append(&msg(i));
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
    let sent = drain(&mut s).await;
    assert_eq!(sent.len() as u64, s.len());
    assert_eq!(*sent.last().unwrap(), 9_999, "the newest survive");
    assert!(sent.windows(2).all(|w| w[1] == w[0] + 1));
}

#[tokio::test]
async fn drop_oldest_counts_in_flight_messages_only_once_their_connection_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), 64 * 1024, true).unwrap();
    let mut dropped = append_all(&mut s, 0..100);
    // Ten handed out for sending, awaiting their PUBACK.
    let sent: Vec<Outgoing> = (0..10).map(|_| s.next_to_send().unwrap()).collect();
    dropped += append_all(&mut s, 100..10_000);
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

#[tokio::test]
async fn drop_new_refuses_new_messages_and_keeps_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), 64 * 1024, false).unwrap();
    let dropped = append_all(&mut s, 0..10_000);
    assert_eq!(dropped + s.len(), 10_000);
    let sent = drain(&mut s).await;
    assert_eq!(sent[0], 0, "the oldest survive");
    assert!(sent.windows(2).all(|w| w[1] == w[0] + 1));
}

#[tokio::test]
async fn records_beyond_the_memory_cache_are_read_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), 64 << 20, true).unwrap();
    let big = vec![7u8; 64 * 1024];
    for i in 0..200u32 {
        let mut p = i.to_le_bytes().to_vec();
        p.extend_from_slice(&big);
        s.append(&Outgoing::new("t", p, QoS::ExactlyOnce, true));
    }
    assert!(s.cache_bytes <= CACHE_BYTES);
    assert_eq!(s.next_to_send(), None, "not in memory: read ahead");
    assert!(s.has_unsent());
    let first = next(&mut s).await.unwrap();
    assert_eq!(&first.payload[..4], &0u32.to_le_bytes());
    assert_eq!(first.qos, QoS::ExactlyOnce);
    assert!(first.retain);
    assert_eq!(first.payload.len(), 4 + big.len());
}

/// Records in the segment files, as a restart would find them.
fn records_on_disk(dir: &Path) -> usize {
    seg_files(dir)
        .iter()
        .map(|p| record::scan(&std::fs::read(p).unwrap()).0.len())
        .sum()
}

#[tokio::test]
async fn a_sync_flush_returns_once_everything_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 50);
    assert_eq!(s.flush_need(), FlushNeed::Appends);
    s.flush(true).unwrap();
    assert_eq!(s.flush_need(), FlushNeed::Nothing);
    assert_eq!(records_on_disk(dir.path()), 50);
    for id in 0..20 {
        s.ack(id);
    }
    s.flush(true).unwrap();
    let head = std::fs::read(dir.path().join("head")).unwrap();
    assert_eq!(record::decode_head(&head), Some(20));
}

#[tokio::test]
async fn segment_files_are_removed_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // 16 KiB segments.
    let mut s = filled(dir.path(), 128 * 1024, CACHE_BYTES, 2000);
    s.flush(false).unwrap();
    s.io.barrier();
    let before = seg_files(dir.path());
    assert!(before.len() >= 3, "{before:?}");
    assert_eq!(records_on_disk(dir.path()), 2000);
    // The first half acknowledged: the segments wholly below it go.
    for id in 0..1000 {
        s.ack(id);
    }
    s.io.barrier();
    let half = seg_files(dir.path());
    assert!(half.len() < before.len(), "{half:?}");
    assert_eq!(half.len(), s.segments.len());
    assert!(s.segments.front().unwrap().first <= 1000);
    // All of it: only the segment still appended to stays.
    for id in 1000..2000 {
        s.ack(id);
    }
    s.io.barrier();
    assert_eq!(seg_files(dir.path()), vec![before.last().unwrap().clone()]);
    assert!(s.is_empty());
}

#[tokio::test]
async fn a_backlog_larger_than_the_cache_is_read_back_oldest_first_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 KiB cache holds about 30 of these messages.
    let mut s = filled(dir.path(), 8 << 20, 1024, 3000);
    assert!(s.cache.len() < 100);
    // The oldest are not in memory: a read is started, not waited for.
    assert_eq!(s.next_to_send(), None);
    assert!(s.has_unsent());
    assert!(s.prefetch.in_flight());
    let mut reads = 0;
    let mut sent = Vec::new();
    loop {
        while let Some(m) = s.next_to_send() {
            assert_eq!(m.spool_id, Some(sent.len() as u64));
            sent.push(num(&m));
        }
        if !s.has_unsent() {
            break;
        }
        s.readable().await;
        reads += 1;
    }
    assert_eq!(sent, (0..3000).collect::<Vec<_>>());
    assert!(reads >= 3000 / READ_RECORDS, "{reads} reads");
    assert_eq!(s.take_unreadable(), 0);
}

#[tokio::test]
async fn a_replay_after_a_restart_is_complete_and_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = filled(dir.path(), 1 << 20, 1024, 5000);
        // Some were delivered before the restart.
        assert_eq!(drain(&mut s).await.len(), 5000);
        for id in (0..100).chain([150, 4000]) {
            s.ack(id);
        }
        head_due(&mut s);
        s.flush(false).unwrap();
    }
    let (mut s, rec) = Spool::open_with_cache(dir.path(), 1 << 20, true, 1024).unwrap();
    // Only the head is kept on disk: those acknowledged out of order go again.
    assert_eq!(rec.pending, 4900);
    assert_eq!(drain(&mut s).await, (100..5000).collect::<Vec<_>>());
    // The connection drops mid-way: the unacknowledged are sent again, still in order.
    for id in 100..2000 {
        s.ack(id);
    }
    s.rewind();
    let again = drain(&mut s).await;
    assert_eq!(again.first(), Some(&2000));
    assert_eq!(again.len(), 5000 - 2000);
    assert!(again.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn a_rewind_while_a_read_is_in_flight_starts_again_from_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 1000);
        s.flush(false).unwrap();
    }
    let (mut s, _) = Spool::open_with_cache(dir.path(), 1 << 20, true, 1024).unwrap();
    let first: Vec<u32> = [next(&mut s).await, next(&mut s).await]
        .iter()
        .map(|m| num(m.as_ref().unwrap()))
        .collect();
    assert_eq!(first, vec![0, 1]);
    // Run past what was read, so a second read is in flight.
    while s.next_to_send().is_some() {}
    assert!(s.prefetch.in_flight());
    s.rewind();
    assert_eq!(drain(&mut s).await, (0..1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn records_whose_segment_vanished_are_counted_as_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 100);
        s.flush(false).unwrap();
    }
    let (mut s, rec) = Spool::open(dir.path(), 1 << 20, true).unwrap();
    assert_eq!(rec.pending, 100);
    for p in seg_files(dir.path()) {
        std::fs::remove_file(p).unwrap();
    }
    // The read fails on the I/O thread (logged), and the spool moves on.
    assert_eq!(drain(&mut s).await, Vec::<u32>::new());
    assert_eq!(s.take_unreadable(), 100);
    assert!(s.is_empty());
    s.append(&msg(7));
    assert_eq!(drain(&mut s).await, vec![7]);
}

#[tokio::test]
async fn without_its_io_thread_the_spool_still_sends_what_is_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = filled(dir.path(), 1 << 20, 1024, 100);
    let cached = s.cache.len() as u32;
    assert!(cached < 100);
    s.io.stop();
    s.append(&msg(100));
    let sent = drain(&mut s).await;
    assert_eq!(sent, (100 - cached + 1..=100).collect::<Vec<_>>());
    assert_eq!(s.take_unreadable() + sent.len() as u64, 101);
    assert!(matches!(s.flush(true), Err(SpoolError::Stopped)));
}

/// Takes `n` messages (waiting for reads), by number.
async fn take(s: &mut Spool, n: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(num(&next(s).await.expect("a message to send")));
    }
    out
}

#[tokio::test]
async fn live_first_sends_new_messages_before_the_backlog_which_keeps_to_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 5);
    s.live_first(2);
    s.connected();
    append_all(&mut s, 5..7);
    // Live first, then the backlog oldest first, up to two in flight.
    assert_eq!(take(&mut s, 4).await, [5, 6, 0, 1]);
    assert!(s.next_to_send().is_none(), "the backlog is over its budget");
    assert!(s.has_unsent());
    // Live data still goes at once.
    append_all(&mut s, 7..8);
    assert_eq!(num(&s.next_to_send().unwrap()), 7);
    // An acknowledged backlog message makes room for the next.
    s.ack(0);
    assert_eq!(num(&s.next_to_send().unwrap()), 2);
    assert!(s.next_to_send().is_none());
    for id in [1, 2, 5, 6, 7] {
        s.ack(id);
    }
    assert_eq!(take(&mut s, 2).await, [3, 4]);
    s.ack(3);
    s.ack(4);
    assert!(!s.has_unsent());
    assert!(s.is_empty());
}

#[tokio::test]
async fn after_a_lost_connection_live_first_takes_everything_unacknowledged_as_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 3);
    s.live_first(10);
    s.connected();
    append_all(&mut s, 3..5);
    assert_eq!(take(&mut s, 5).await, [3, 4, 0, 1, 2]);
    s.ack(3);
    // The connection drops with 4, 0, 1, 2 unacknowledged; more arrives while away.
    s.rewind();
    append_all(&mut s, 5..7);
    s.connected();
    append_all(&mut s, 7..8);
    assert_eq!(take(&mut s, 7).await, [7, 0, 1, 2, 4, 5, 6]);
    assert!(s.next_to_send().is_none());
    assert!(!s.has_unsent());
}

#[tokio::test]
async fn live_first_reads_a_backlog_beyond_the_cache_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    // A cache of about four messages: most of the backlog is on disk only.
    let mut s = filled(dir.path(), 1 << 20, 4 * 20, 50);
    s.flush(false).unwrap();
    s.live_first(100);
    s.connected();
    append_all(&mut s, 50..52);
    let want: Vec<u32> = [50, 51].into_iter().chain(0..50).collect();
    assert_eq!(take(&mut s, 52).await, want);
}

#[tokio::test]
async fn the_head_is_recorded_at_most_once_a_second_and_a_crash_before_only_resends() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = filled(dir.path(), 1 << 20, CACHE_BYTES, 10);
        s.flush(false).unwrap();
        for id in 0..4 {
            s.ack(id);
        }
        // Data is due at once; the head only a second after the last one.
        match s.flush_need() {
            FlushNeed::At(at) => assert!(at > Instant::now() + FSYNC_EVERY / 2),
            other => panic!("{other:?}"),
        }
        s.flush(false).unwrap();
        s.io.barrier();
        // Killed within that second: the acknowledged four are not lost, only sent again.
    }
    let (mut s, rec) = Spool::open(dir.path(), 1 << 20, true).unwrap();
    assert_eq!(rec.pending, 10);
    assert_eq!(drain(&mut s).await, (0..10).collect::<Vec<_>>());
    for id in 0..4 {
        s.ack(id);
    }
    // A shutdown (sync) records it at once.
    s.flush(true).unwrap();
    drop(s);
    let (_, rec) = Spool::open(dir.path(), 1 << 20, true).unwrap();
    assert_eq!(rec.pending, 6);
}
