//! Where QoS 1/2 messages wait for the broker: the disk spool for the daemon, or a bounded
//! memory queue for the short-lived fleet tools.

use super::Outgoing;
use crate::spool::{FlushNeed, Spool};
use std::collections::VecDeque;

/// QoS 1/2 messages waiting for the broker, bounded in bytes.
pub struct Backlog {
    queue: VecDeque<Outgoing>,
    bytes: u64,
    cap: u64,
    drop_oldest: bool,
}

impl Backlog {
    pub fn size(m: &Outgoing) -> u64 {
        (m.payload.len() + m.topic.len() + 16) as u64
    }

    /// Adds a message; returns how many messages the cap made us drop.
    pub fn push(&mut self, m: Outgoing) -> u64 {
        let size = Self::size(&m);
        let mut dropped = 0;
        if self.bytes + size > self.cap {
            if !self.drop_oldest || size > self.cap {
                return 1;
            }
            while self.bytes + size > self.cap {
                match self.queue.pop_front() {
                    Some(old) => {
                        self.bytes -= Self::size(&old);
                        dropped += 1;
                    }
                    None => break,
                }
            }
        }
        self.bytes += size;
        self.queue.push_back(m);
        dropped
    }

    /// Puts messages back at the front, keeping their order, beyond the cap if need be:
    /// they were accepted once and are not dropped for being unlucky.
    pub fn requeue_front(&mut self, msgs: Vec<Outgoing>) {
        for m in msgs.into_iter().rev() {
            self.bytes += Self::size(&m);
            self.queue.push_front(m);
        }
    }

    pub fn pop(&mut self) -> Option<Outgoing> {
        let m = self.queue.pop_front()?;
        self.bytes -= Self::size(&m);
        Some(m)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The queue behind the bus: the spool, or memory.
pub enum Outbox {
    Memory(Backlog),
    Disk(Box<Spool>),
}

impl Outbox {
    pub fn memory(cap: u64, drop_oldest: bool) -> Outbox {
        Outbox::Memory(Backlog {
            queue: VecDeque::new(),
            bytes: 0,
            cap,
            drop_oldest,
        })
    }

    /// Queues a message; returns how many messages the size cap dropped.
    pub fn push(&mut self, m: Outgoing) -> u64 {
        match self {
            Outbox::Memory(b) => b.push(m),
            Outbox::Disk(s) => s.append(&m).dropped,
        }
    }

    /// The next message to send, oldest first. `None` also while the spool reads messages
    /// back from disk: then [`Outbox::has_unsent`] stays true and [`Outbox::readable`]
    /// resolves when they are here.
    pub fn next_to_send(&mut self) -> Option<Outgoing> {
        match self {
            Outbox::Memory(b) => b.pop(),
            Outbox::Disk(s) => s.next_to_send(),
        }
    }

    /// Resolves when messages read back from disk can be sent; pending forever when no
    /// read is in flight (and for the memory queue). Cancel-safe, for a `select!` branch.
    pub async fn readable(&mut self) {
        match self {
            Outbox::Memory(_) => std::future::pending().await,
            Outbox::Disk(s) => s.readable().await,
        }
    }

    /// Messages lost since the last call because the spool could not read them back.
    pub fn take_unreadable(&mut self) -> u64 {
        match self {
            Outbox::Memory(_) => 0,
            Outbox::Disk(s) => s.take_unreadable(),
        }
    }

    /// The broker acknowledged `m`.
    pub fn delivered(&mut self, m: &Outgoing) {
        if let (Outbox::Disk(s), Some(id)) = (self, m.spool_id) {
            s.ack(id);
        }
    }

    /// A connection is up (the spool's `live_first` takes what it holds as the backlog).
    pub fn connected(&mut self) {
        if let Outbox::Disk(s) = self {
            s.connected();
        }
    }

    /// The connection ended with `unacked` in flight: send them again, oldest first.
    pub fn rewind(&mut self, unacked: Vec<Outgoing>) {
        match self {
            Outbox::Memory(b) => b.requeue_front(unacked),
            // The spool still holds every unacknowledged message, in order.
            Outbox::Disk(s) => s.rewind(),
        }
    }

    /// Messages not yet acknowledged (queued or in flight on disk; queued in memory).
    pub fn pending(&self) -> u64 {
        match self {
            Outbox::Memory(b) => b.queue.len() as u64,
            Outbox::Disk(s) => s.len(),
        }
    }

    /// Whether [`Outbox::next_to_send`] has more to give.
    pub fn has_unsent(&self) -> bool {
        match self {
            Outbox::Memory(b) => !b.is_empty(),
            Outbox::Disk(s) => s.has_unsent(),
        }
    }

    pub fn flush_need(&self) -> FlushNeed {
        match self {
            Outbox::Memory(_) => FlushNeed::Nothing,
            Outbox::Disk(s) => s.flush_need(),
        }
    }

    pub fn flush(&mut self, sync: bool) {
        if let Outbox::Disk(s) = self {
            if let Err(e) = s.flush(sync) {
                tracing::error!("spool flush failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::QoS;

    fn msg(n: usize) -> Outgoing {
        Outgoing::new("t", vec![0u8; n], QoS::AtLeastOnce, false)
    }

    #[test]
    fn backlog_drops_oldest_when_full_and_counts_exactly() {
        let mut b = Backlog {
            queue: VecDeque::new(),
            bytes: 0,
            cap: 3 * Backlog::size(&msg(10)),
            drop_oldest: true,
        };
        let mut dropped = 0;
        for _ in 0..5 {
            dropped += b.push(msg(10));
        }
        assert_eq!(dropped, 2);
        assert_eq!(b.queue.len(), 3);
    }

    #[test]
    fn backlog_drop_new_keeps_the_oldest() {
        let mut b = Backlog {
            queue: VecDeque::new(),
            bytes: 0,
            cap: 2 * Backlog::size(&msg(10)),
            drop_oldest: false,
        };
        let mut first = msg(10);
        first.topic = "f".into();
        assert_eq!(b.push(first), 0);
        assert_eq!(b.push(msg(10)), 0);
        assert_eq!(b.push(msg(10)), 1);
        assert_eq!(b.pop().unwrap().topic.as_ref(), "f");
    }
}
