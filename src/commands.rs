//! The command path: the thin async shell around the [`Supervisor`]. It takes
//! `robot/<id>/cmd/<actuator>` messages, broker and device link changes, device answers and
//! timer ticks, feeds them to the supervisor, and carries out what it decides: writes to
//! the device queues, acks on the bus and the e-stop file in the state directory. It runs
//! on its own timers, so safety holds with the broker down.

use crate::bus::{BusHandle, Incoming, LinkState, Outgoing, QoS};
use crate::config::Robot;
use crate::device::{WriteError, WriteRequest, WriteSender};
use crate::messages::Time;
use crate::meta::Topics;
use crate::safety::events::{
    Ack, Action, Command, Event, Outcome, Rejection, Route, Write, WriteId,
};
use crate::safety::{Payload, Supervisor};
use crate::service::Pulse;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

/// A device's answer to a write, for the supervisor.
type Answer = (WriteId, Outcome);

pub struct CommandRouter {
    supervisor: Supervisor,
    /// Each device's write queues, by device index.
    writers: Vec<WriteSender>,
    bus: BusHandle,
    topics: Topics,
    max_payload: usize,
    estop_file: PathBuf,
    broker: watch::Receiver<LinkState>,
    answers: (
        mpsc::UnboundedSender<Answer>,
        mpsc::UnboundedReceiver<Answer>,
    ),
}

/// A device writer and its link state, by device index.
pub struct DeviceLink {
    pub name: String,
    pub writer: WriteSender,
    pub link: watch::Receiver<bool>,
}

fn ack_payload(id: rmpv::Value, result: Result<rmpv::Value, Rejection>) -> Vec<u8> {
    let (ok, error, applied) = match result {
        Ok(applied) => (true, rmpv::Value::Nil, applied),
        Err(e) => (false, rmpv::Value::from(e.to_string()), rmpv::Value::Nil),
    };
    let v = rmpv::Value::Map(vec![
        (rmpv::Value::from("id"), id),
        (rmpv::Value::from("ok"), rmpv::Value::from(ok)),
        (rmpv::Value::from("error"), error),
        (rmpv::Value::from("applied"), applied),
    ]);
    let mut buf = Vec::new();
    // Encoding into a Vec has no I/O to fail; rmpv's error is for other writers.
    let _ = rmpv::encode::write_value(&mut buf, &v);
    buf
}

/// Waits for a device's answer to a write until `by`. Dropping `rx` on time-out tells the
/// driver to skip a write it has not started, so an ack that says "not written" stays true.
async fn answer(rx: oneshot::Receiver<Result<(), WriteError>>, by: Instant) -> Outcome {
    match tokio::time::timeout_at(by, rx).await {
        Err(_) => Outcome::TimedOut,
        Ok(Err(_)) => Outcome::DeviceStopped,
        Ok(Ok(Ok(()))) => Outcome::Written,
        Ok(Ok(Err(e))) => Outcome::Failed(e),
    }
}

impl CommandRouter {
    pub fn new(
        robot: &Robot,
        devices: &[DeviceLink],
        bus: BusHandle,
        topics: Topics,
        max_payload: usize,
        state_dir: PathBuf,
    ) -> CommandRouter {
        let routes = robot.devices.iter().enumerate().flat_map(|(i, d)| {
            d.commands().into_iter().map(move |spec| Route {
                spec,
                device: i,
                device_name: d.name.clone(),
            })
        });
        let estop_file = state_dir.join("estop");
        let estop = estop_file.exists();
        if estop {
            tracing::warn!(
                "e-stop is engaged (latched from a previous run); publish {{\"engage\": false}} to {} to release it",
                topics.command("estop")
            );
        }
        let broker = bus.link();
        CommandRouter {
            supervisor: Supervisor::new(routes, max_payload, estop, Instant::now()),
            writers: devices.iter().map(|d| d.writer.clone()).collect(),
            bus,
            topics,
            max_payload,
            estop_file,
            broker,
            answers: mpsc::unbounded_channel(),
        }
    }

    /// Feeds one event to the supervisor and carries out its actions, and the actions that
    /// their own outcomes lead to (a queue that is full, say).
    fn feed(&mut self, event: Event) {
        let mut todo: VecDeque<Action> = self.supervisor.handle(event, Instant::now()).into();
        while let Some(action) = todo.pop_front() {
            match action {
                Action::Write(w) => {
                    let queued = self.write(w);
                    todo.extend(self.supervisor.handle(queued, Instant::now()));
                }
                Action::Ack(a) => self.ack(a),
                Action::PersistEstop(engaged) => self.persist_estop(engaged),
            }
        }
    }

    /// Hands a write to its device's queue, and says whether it took it; the device's
    /// answer comes back through `answers`.
    fn write(&self, w: Write) -> Event {
        let writer = &self.writers[w.device];
        let queue = if w.purpose.is_safe() {
            &writer.safe
        } else {
            &writer.commands
        };
        let (done, rx) = oneshot::channel();
        let req = WriteRequest {
            write: w.write,
            done: Some(done),
        };
        if queue.try_send(req).is_err() {
            return Event::NotQueued(w.id);
        }
        let answers = self.answers.0.clone();
        tokio::spawn(async move {
            let _ = answers.send((w.id, answer(rx, w.confirm_by).await));
        });
        Event::Queued(w.id)
    }

    fn ack(&self, a: Ack) {
        let msg = Outgoing::new(
            self.topics.ack(&a.actuator),
            ack_payload(a.id, a.result),
            QoS::AtLeastOnce,
            false,
        );
        let _ = self.bus.publish(msg);
    }

    fn persist_estop(&self, engaged: bool) {
        let r = if engaged {
            std::fs::write(&self.estop_file, b"engaged\n")
        } else {
            match std::fs::remove_file(&self.estop_file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        };
        if let Err(e) = r {
            tracing::error!(path = %self.estop_file.display(), "cannot persist the e-stop state: {e}");
        }
    }

    fn on_message(&mut self, msg: Incoming) {
        let prefix = self.topics.command("");
        let Some(actuator) = msg.topic.strip_prefix(prefix.as_str()) else {
            return;
        };
        let actuator = actuator.to_string();
        let event = match msg.oversized {
            Some(size) => Event::Oversized { actuator, size },
            // Read once: the supervisor answers everything from this one reading.
            None => Event::Command(Command {
                actuator,
                payload: Payload::read(&msg.payload, self.max_payload),
                retain: msg.retain,
                wall: Time::now(),
            }),
        };
        self.feed(event);
    }

    /// Runs until `stop`, then writes every safe value and waits for the writes.
    pub async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        device_links: Vec<watch::Receiver<bool>>,
        mut pulse: Pulse,
        mut stop: watch::Receiver<bool>,
    ) {
        let (up_tx, mut up_rx) = mpsc::channel::<usize>(16);
        for (i, mut link) in device_links.into_iter().enumerate() {
            let up_tx = up_tx.clone();
            tokio::spawn(async move {
                loop {
                    if *link.borrow_and_update() && up_tx.send(i).await.is_err() {
                        return;
                    }
                    if link.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        loop {
            let wake = self.supervisor.next_wake();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                m = incoming.recv() => match m {
                    Some(m) => self.on_message(m),
                    None => break,
                },
                _ = sleep_until(wake.unwrap_or(far)), if wake.is_some() => self.feed(Event::Tick),
                Some((id, outcome)) = self.answers.1.recv() => self.feed(Event::Done { id, outcome }),
                r = self.broker.changed() => {
                    if r.is_err() { break; }
                    let up = *self.broker.borrow_and_update() == LinkState::Up;
                    self.feed(Event::BrokerLink(up));
                }
                // A device that (re)appears may hold a command from before it vanished.
                Some(dev) = up_rx.recv() => self.feed(Event::DeviceConnected(dev)),
                _ = stop.changed() => break,
                epoch = pulse.pinged() => pulse.answer(epoch).await,
            }
        }
        // Every actuator to its safe state before exit. Every write has a deadline, so
        // every answer comes.
        self.feed(Event::Shutdown);
        while !self.supervisor.is_shut_down() {
            let Some((id, outcome)) = self.answers.1.recv().await else {
                break;
            };
            self.feed(Event::Done { id, outcome });
        }
        // Commands the safe values superseded have their answers by now: ack them.
        while let Ok((id, outcome)) = self.answers.1.try_recv() {
            self.feed(Event::Done { id, outcome });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_payloads_are_named_maps_in_the_contract_order() {
        let p = ack_payload(rmpv::Value::from(7), Err(Rejection::Unsafe("estop".into())));
        let v = crate::fleet::json::to_json(&crate::fleet::json::decode_msgpack(&p).unwrap());
        assert_eq!(
            v,
            serde_json::json!({"id": 7, "ok": false, "error": "estop", "applied": null})
        );
    }
}
