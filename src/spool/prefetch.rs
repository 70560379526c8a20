//! Records read back from disk ahead of the send cursor (a replay after a restart, or a
//! backlog larger than the memory cache). One read is in flight at a time; its answer
//! arrives through a channel, so the bus task never waits for it: it sends what it has and
//! is woken by [`Prefetch::arrived`].

use super::io::Records;
use crate::bus::Outgoing;
use std::collections::VecDeque;
use tokio::sync::oneshot;

#[derive(Default)]
pub struct Prefetch {
    /// The read in flight: the id of its first record, and where its answer comes.
    reading: Option<(u64, oneshot::Receiver<Records>)>,
    /// Records with consecutive ids from `first`; `None` where unreadable.
    first: u64,
    records: VecDeque<Option<Outgoing>>,
}

impl Prefetch {
    /// Waits for a read to start at `first`.
    pub fn start(&mut self, first: u64, answer: oneshot::Receiver<Records>) {
        self.reading = Some((first, answer));
    }

    pub fn in_flight(&self) -> bool {
        self.reading.is_some()
    }

    /// Takes record `id` if it was read: `Some(None)` when it was unreadable.
    pub fn take(&mut self, id: u64) -> Option<Option<Outgoing>> {
        if id < self.first || id - self.first >= self.records.len() as u64 {
            return None;
        }
        // Those before `id` were skipped (acknowledged meanwhile).
        self.records.drain(..(id - self.first) as usize);
        self.first = id + 1;
        self.records.pop_front()
    }

    /// Keeps the answer to the read in flight, if it came; true when the read is over.
    pub fn poll(&mut self) -> bool {
        let Some((first, answer)) = &mut self.reading else {
            return false;
        };
        let first = *first;
        let got = match answer.try_recv() {
            Ok(records) => records,
            Err(oneshot::error::TryRecvError::Empty) => return false,
            // The I/O thread is gone: the records are asked for again, and found unreadable.
            Err(oneshot::error::TryRecvError::Closed) => Records::new(),
        };
        self.keep(first, got);
        true
    }

    /// Resolves when the read in flight is over; pending forever when there is none.
    /// Cancel-safe: an answer is only taken when this resolves.
    pub async fn arrived(&mut self) {
        let Some((first, answer)) = &mut self.reading else {
            return std::future::pending().await;
        };
        let got = answer.await.unwrap_or_default();
        let first = *first;
        self.keep(first, got);
    }

    fn keep(&mut self, first: u64, records: Records) {
        self.reading = None;
        self.first = first;
        self.records = records.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::QoS;

    fn msg(id: u64) -> Option<Outgoing> {
        let mut m = Outgoing::new("t", id.to_le_bytes().to_vec(), QoS::AtLeastOnce, false);
        m.spool_id = Some(id);
        Some(m)
    }

    #[tokio::test]
    async fn records_are_taken_once_and_in_order_after_they_arrived() {
        let mut p = Prefetch::default();
        let (tx, rx) = oneshot::channel();
        p.start(10, rx);
        assert!(p.in_flight());
        assert!(!p.poll(), "nothing arrived yet");
        assert_eq!(p.take(10), None);
        tx.send(vec![msg(10), None, msg(12), msg(13)]).unwrap();
        p.arrived().await;
        assert!(!p.in_flight());
        assert_eq!(p.take(9), None, "before the read");
        assert_eq!(p.take(10), Some(msg(10)));
        assert_eq!(p.take(11), Some(None), "an unreadable record");
        assert_eq!(p.take(13), Some(msg(13)), "12 was skipped");
        assert_eq!(p.take(12), None, "skipped records are gone");
        assert_eq!(p.take(14), None, "after the read");
    }

    #[test]
    fn a_read_whose_thread_is_gone_ends_with_nothing() {
        let mut p = Prefetch::default();
        let (tx, rx) = oneshot::channel::<Records>();
        p.start(0, rx);
        drop(tx);
        assert!(p.poll());
        assert!(!p.in_flight());
        assert_eq!(p.take(0), None);
    }
}
