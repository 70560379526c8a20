//! Devices: the one [`runner`] that keeps each device open and serves its writes, the
//! protocol drivers it runs, and the safe-first write queues between them and the
//! command path.

pub mod bytes;
pub mod dynamixel;
pub mod modbus;
pub mod runner;
pub mod schedule;
pub mod socketcan;

pub use crate::protocols::{DeviceWrite, WriteError};
use tokio::sync::{mpsc, oneshot};

/// A write, with an answer once it is done (or could not be).
pub struct WriteRequest {
    pub write: DeviceWrite,
    pub done: Option<oneshot::Sender<Result<(), WriteError>>>,
}

/// The command path's side of a device's writes: safe values have their own channel, so
/// a queue full of commands can never hold them back.
#[derive(Clone)]
pub struct WriteSender {
    pub safe: mpsc::Sender<WriteRequest>,
    pub commands: mpsc::Sender<WriteRequest>,
}

/// The driver's side of a device's writes.
pub struct Writes {
    safe: mpsc::Receiver<WriteRequest>,
    commands: mpsc::Receiver<WriteRequest>,
}

/// Commands a device may have queued; the queue is short so a stalled device is noticed.
pub const COMMAND_QUEUE: usize = 64;

/// The write queues of a device with `actuators` command routes. The safe queue holds
/// several rounds of safe values for every actuator (e-stop, deadman and broker loss can
/// each ask at once), so none is turned away.
pub fn write_channel(actuators: usize) -> (WriteSender, Writes) {
    let (safe_tx, safe_rx) = mpsc::channel(16 + 4 * actuators);
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    (
        WriteSender {
            safe: safe_tx,
            commands: cmd_tx,
        },
        Writes {
            safe: safe_rx,
            commands: cmd_rx,
        },
    )
}

impl Writes {
    /// The next write to carry out. Safe values come first, and taking one refuses every
    /// command queued before it: the safe state supersedes them. Commands whose sender
    /// stopped waiting (its ack timed out) are dropped unwritten, so a late write never
    /// contradicts an ack that said it failed. `None` when the command path is gone.
    pub async fn next(&mut self) -> Option<WriteRequest> {
        loop {
            let req = tokio::select! {
                biased;
                r = self.safe.recv() => {
                    let r = r?;
                    while let Ok(stale) = self.commands.try_recv() {
                        refuse(stale, WriteError::Superseded);
                    }
                    return Some(r);
                }
                r = self.commands.recv() => r?,
            };
            if req.done.as_ref().is_some_and(|d| d.is_closed()) {
                continue;
            }
            return Some(req);
        }
    }

    /// Refuses everything queued, e.g. while the device is away. False when the command
    /// path is gone.
    fn refuse_all(&mut self, why: &WriteError) -> bool {
        let mut open = true;
        loop {
            match self.safe.try_recv() {
                Ok(r) => refuse(r, why.clone()),
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                Err(_) => {}
            }
            match self.commands.try_recv() {
                Ok(r) => refuse(r, why.clone()),
                Err(mpsc::error::TryRecvError::Empty) => return open,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }
}

pub(crate) fn refuse(req: WriteRequest, why: WriteError) {
    if let Some(done) = req.done {
        let _ = done.send(Err(why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> (WriteRequest, oneshot::Receiver<Result<(), WriteError>>) {
        let (done, rx) = oneshot::channel();
        (
            WriteRequest {
                write: DeviceWrite::Line(line.as_bytes().to_vec()),
                done: Some(done),
            },
            rx,
        )
    }

    #[tokio::test]
    async fn a_safe_write_goes_first_even_behind_a_full_command_queue() {
        let (tx, mut writes) = write_channel(1);
        let mut answers = Vec::new();
        for i in 0..COMMAND_QUEUE {
            let (r, rx) = req(&format!("D {i}"));
            tx.commands.try_send(r).unwrap();
            answers.push(rx);
        }
        let (extra, _) = req("D late");
        assert!(
            tx.commands.try_send(extra).is_err(),
            "the command queue is full"
        );
        let (safe, _safe_rx) = req("D 0");
        tx.safe.try_send(safe).unwrap();
        let first = writes.next().await.unwrap();
        assert_eq!(first.write, DeviceWrite::Line(b"D 0".to_vec()));
        for rx in answers {
            let answer = rx.await.unwrap();
            assert_eq!(answer, Err(WriteError::Superseded));
            assert_eq!(
                answer.unwrap_err().to_string(),
                "superseded by the safe state",
                "the ack text is unchanged"
            );
        }
    }

    #[test]
    fn the_safe_queue_takes_several_rounds_of_safe_values_for_every_actuator() {
        // E-stop, deadman and broker loss can each queue every actuator's safe values
        // before the driver takes any.
        let actuators = 40;
        let (tx, _writes) = write_channel(actuators);
        for i in 0..3 * actuators {
            let (r, _) = req(&format!("S {i}"));
            assert!(tx.safe.try_send(r).is_ok(), "safe write {i} turned away");
        }
    }

    #[tokio::test]
    async fn a_command_whose_ack_gave_up_is_not_written() {
        let (tx, mut writes) = write_channel(1);
        let (abandoned, rx) = req("D 1");
        drop(rx);
        tx.commands.try_send(abandoned).unwrap();
        let (kept, _rx2) = req("D 2");
        tx.commands.try_send(kept).unwrap();
        let next = writes.next().await.unwrap();
        assert_eq!(next.write, DeviceWrite::Line(b"D 2".to_vec()));
    }
}
