//! The device data path into the bus, with backpressure before loss. Every device holds
//! its own credit of messages in flight to the bus task: a device whose samples the link
//! cannot take yet waits for credit (and stops reading, so the kernel buffers its bytes)
//! instead of dropping them, and it never holds back another device or the command path,
//! whose messages use their own credit or the control queue.

use super::{BusError, Outgoing};
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Messages one device may have queued towards the bus task. Enough for a few read
/// chunks' worth of samples, small enough to bound memory per device (about 0.5 MB).
pub const CREDIT: u32 = 4096;

/// Samples from one device read, handed over together: one queue operation per read
/// chunk instead of one per sample.
pub(crate) struct Batch {
    pub msgs: Vec<Outgoing>,
    /// Returned to the device when the bus task has taken the batch.
    _credit: Option<OwnedSemaphorePermit>,
}

/// A device's way into the bus. Created per device by [`super::BusHandle::data_sender`].
pub struct DataSender {
    tx: mpsc::UnboundedSender<Batch>,
    credit: Arc<Semaphore>,
}

impl DataSender {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Batch>) -> DataSender {
        DataSender {
            tx,
            credit: Arc::new(Semaphore::new(CREDIT as usize)),
        }
    }

    /// Waits until the bus has room for `msgs`, then hands all of them over and leaves
    /// `msgs` empty. Cancel-safe: if the future is dropped while waiting, `msgs` is
    /// untouched, so the caller can serve a command and come back.
    pub async fn send(&self, msgs: &mut Vec<Outgoing>) -> Result<(), BusError> {
        if msgs.is_empty() {
            return Ok(());
        }
        // A batch larger than the whole credit waits for all of it, then goes as one.
        let n = (msgs.len() as u32).min(CREDIT);
        let credit = self
            .credit
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| BusError::Closed)?;
        self.tx
            .send(Batch {
                msgs: std::mem::take(msgs),
                _credit: Some(credit),
            })
            .map_err(|_| BusError::Closed)
    }

    /// Hands `msgs` over without waiting for credit: the last samples of a device that is
    /// stopping, which the bus spools or counts like any other on its way down.
    pub fn send_now(&self, msgs: &mut Vec<Outgoing>) -> Result<(), BusError> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Batch {
                msgs: std::mem::take(msgs),
                _credit: None,
            })
            .map_err(|_| BusError::Closed)
    }

    /// Credit left, for tests of the wait.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.credit.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::QoS;

    fn msgs(n: usize) -> Vec<Outgoing> {
        (0..n)
            .map(|i| Outgoing::new("robot/r1/t", vec![i as u8], QoS::AtLeastOnce, false))
            .collect()
    }

    #[tokio::test]
    async fn a_device_out_of_credit_waits_and_keeps_its_samples() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let dev = DataSender::new(tx);
        let mut first = msgs(CREDIT as usize);
        dev.send(&mut first).await.unwrap();
        assert!(first.is_empty());
        assert_eq!(dev.available(), 0);
        // No credit: the send waits, and giving up on it leaves the samples with the caller.
        let mut second = msgs(3);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), dev.send(&mut second)).await;
        assert!(waited.is_err(), "sent without credit");
        assert_eq!(second.len(), 3);
        // The bus takes the first batch: its credit comes back and the second goes.
        let taken = rx.recv().await.unwrap();
        assert_eq!(taken.msgs.len(), CREDIT as usize);
        drop(taken);
        dev.send(&mut second).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().msgs.len(), 3);
    }

    #[tokio::test]
    async fn one_device_out_of_credit_does_not_hold_back_another() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let flood = DataSender::new(tx.clone());
        let quiet = DataSender::new(tx);
        flood.send(&mut msgs(CREDIT as usize)).await.unwrap();
        assert_eq!(flood.available(), 0);
        let mut one = msgs(1);
        quiet.send(&mut one).await.unwrap();
        assert!(one.is_empty());
        assert_eq!(rx.recv().await.unwrap().msgs.len(), CREDIT as usize);
        assert_eq!(rx.recv().await.unwrap().msgs.len(), 1);
    }

    #[tokio::test]
    async fn a_stopping_device_hands_over_its_last_samples_without_credit() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let dev = DataSender::new(tx);
        dev.send(&mut msgs(CREDIT as usize)).await.unwrap();
        let mut last = msgs(2);
        dev.send_now(&mut last).unwrap();
        assert!(last.is_empty());
        rx.recv().await.unwrap();
        assert_eq!(rx.recv().await.unwrap().msgs.len(), 2);
    }
}
