//! The one device runner: opens a device through its protocol's [`Driver`], reopens it with
//! jittered backoff while it is missing, logs each state change once, tracks the link for
//! the safety layer, serves writes safe-first, flushes rate-capped streams and stops on
//! shutdown. A protocol supplies only the driver (open, next event, write).

use super::{refuse, DeviceWrite, WriteError, Writes};
use crate::backoff::Backoff;
use crate::bus::{DataSender, Outgoing};
use crate::diagnostics::DeviceDiag;
use crate::protocols::Output;
use crate::service::Pulse;
use crate::stream::StreamPublisher;
use crate::transport::TransportError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

/// Why a device could not be opened. The runner logs it once and retries with backoff.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The serial port or TCP serial server is missing or refused.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The device opened but did not take its setup bytes (e.g. an slcan adapter's `O`).
    #[error("could not send the device's setup")]
    Setup,
    /// A SocketCAN interface that is missing or down.
    #[error("{interface}: {source}")]
    Interface {
        interface: String,
        source: std::io::Error,
    },
}

/// How an open device's session ended, short of shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The link failed: the device counts as disconnected until it reopens.
    Lost(String),
    /// The link is fine but its input may hold a late answer: reopen it quietly, so the
    /// device's actuators do not see a disconnect (a Modbus unit that timed out).
    Resync(String),
}

/// How a write went, and whether the session must end because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub result: Result<(), WriteError>,
    pub ended: Option<Ended>,
}

impl Written {
    /// A write that leaves the session as it is, whatever its result.
    pub fn kept(result: Result<(), WriteError>) -> Written {
        Written {
            result,
            ended: None,
        }
    }
}

/// One protocol's side of a device. The runner calls `open`, then waits on `next_event`
/// and `Writes` together; whatever `next_event` woke for is carried out by `on_event`,
/// which is never cancelled.
pub trait Driver: Send {
    /// An open device: a byte stream, a Modbus client, a CAN socket.
    type Conn: Send;
    /// What `next_event` woke for.
    type Event: Send;
    /// Names the device's kind in logs ("device", "Modbus port", "CAN interface").
    const KIND: &'static str;
    /// Backoff between attempts to open: (first, cap).
    const RETRY: (Duration, Duration);

    /// The path, address or interface, for logs.
    fn describe(&self) -> String;

    /// Opens the device and sends whatever setup it needs.
    fn open(&mut self) -> impl Future<Output = Result<Self::Conn, OpenError>> + Send;

    /// Waits for the device's next event. Must be cancel-safe: the runner drops this future
    /// when a write, a flush or shutdown comes first, and asks again later.
    fn next_event(
        &mut self,
        conn: &mut Self::Conn,
    ) -> impl Future<Output = Result<Self::Event, Ended>> + Send;

    /// Carries out an event: samples, frames and errors go to `out`.
    fn on_event(
        &mut self,
        conn: &mut Self::Conn,
        event: Self::Event,
        out: &mut Vec<Output>,
    ) -> impl Future<Output = Result<(), Ended>> + Send;

    /// Writes a command's or a safe state's bytes to the device.
    fn write(
        &mut self,
        conn: &mut Self::Conn,
        write: &DeviceWrite,
    ) -> impl Future<Output = Written> + Send;
}

/// A device and everything around its driver.
pub struct Runner<D: Driver> {
    pub name: String,
    pub driver: D,
    pub streams: Vec<StreamPublisher>,
    pub diag: Arc<DeviceDiag>,
    /// The device's way into the bus, with its own credit.
    pub data: DataSender,
    pub writes: Writes,
    /// Whether the device is open, for the safety layer.
    pub link: watch::Sender<bool>,
    /// Answers the watchdog's pings while the runner's loops turn.
    pub pulse: Pulse,
}

/// Why a session ended.
enum Stop {
    Ended(Ended),
    Shutdown,
}

impl<D: Driver> Runner<D> {
    /// Runs until shutdown (or until the command path is gone).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (first, cap) = D::RETRY;
        let mut backoff = Backoff::new(first, cap);
        // True while reopening only to drop stale input: the link stays "up".
        let mut resyncing = false;
        loop {
            if *shutdown.borrow() {
                self.down();
                return;
            }
            let opened = {
                // Opening may take a while (a TCP connect): the watchdog is answered meanwhile.
                let open = self.driver.open();
                tokio::pin!(open);
                loop {
                    tokio::select! {
                        r = &mut open => break r,
                        epoch = self.pulse.pinged() => self.pulse.answer(epoch).await,
                    }
                }
            };
            match opened {
                Err(e) => {
                    if std::mem::take(&mut resyncing) {
                        self.down();
                    }
                    if backoff.attempts() == 0 {
                        tracing::warn!(device = %self.name, "{} unavailable: {e}; retrying", D::KIND);
                        self.diag.error(format!("unavailable: {e}"));
                    }
                    let wake = Instant::now() + backoff.next_delay();
                    if !self.wait_to_retry(wake, &mut shutdown).await {
                        return;
                    }
                }
                Ok(mut conn) => {
                    backoff.reset();
                    if !std::mem::take(&mut resyncing) {
                        if self.diag.set_connected(true) {
                            tracing::info!(device = %self.name, path = %self.driver.describe(), "{} connected", D::KIND);
                        }
                        let _ = self.link.send(true);
                    }
                    match self.pump(&mut conn, &mut shutdown).await {
                        Stop::Shutdown => {
                            self.down();
                            return;
                        }
                        Stop::Ended(Ended::Resync(reason)) => {
                            tracing::debug!(device = %self.name, "reopening to drop stale input: {reason}");
                            resyncing = true;
                        }
                        Stop::Ended(Ended::Lost(reason)) => {
                            self.down();
                            tracing::warn!(device = %self.name, "{} disconnected: {reason}", D::KIND);
                            self.diag.error(format!("disconnected: {reason}"));
                        }
                    }
                }
            }
        }
    }

    fn down(&mut self) {
        self.diag.set_connected(false);
        let _ = self.link.send(false);
    }

    /// Sleeps until `wake` while the device is away, refusing its writes meanwhile. False
    /// when the daemon is stopping (or the command path is gone).
    async fn wait_to_retry(&mut self, wake: Instant, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            if !self.writes.refuse_all(&WriteError::Disconnected) {
                return false;
            }
            tokio::select! {
                _ = sleep_until(wake) => return true,
                _ = shutdown.changed() => return false,
                epoch = self.pulse.pinged() => self.pulse.answer(epoch).await,
                req = self.writes.next() => match req {
                    Some(req) => refuse(req, WriteError::Disconnected),
                    None => return false,
                },
            }
        }
    }

    async fn pump(&mut self, conn: &mut D::Conn, shutdown: &mut watch::Receiver<bool>) -> Stop {
        let mut out = Vec::with_capacity(64);
        // Samples read but not yet taken by the bus. While any wait, the device is not read:
        // backpressure before loss, with the kernel buffering the device meanwhile.
        let mut batch: Vec<Outgoing> = Vec::with_capacity(256);
        let stop = loop {
            let due = self.streams.iter().filter_map(|s| s.deadline()).min();
            let far = Instant::now() + Duration::from_secs(3600);
            let holding = !batch.is_empty();
            // Biased: shutdown first, then writes, so a setpoint never waits behind a
            // register sweep, a busy input or a full link.
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Stop::Shutdown,
                epoch = self.pulse.pinged() => self.pulse.answer(epoch).await,
                req = self.writes.next() => {
                    let Some(req) = req else { break Stop::Shutdown };
                    let written = self.driver.write(conn, &req.write).await;
                    if let Some(done) = req.done {
                        let _ = done.send(written.result);
                    }
                    if let Some(end) = written.ended {
                        break Stop::Ended(end);
                    }
                }
                r = self.data.send(&mut batch), if holding => {
                    if r.is_err() {
                        // The bus is gone: the daemon is stopping.
                        break Stop::Shutdown;
                    }
                }
                _ = sleep_until(due.unwrap_or(far)), if due.is_some() => {
                    let now = Instant::now();
                    for s in &mut self.streams {
                        s.flush_due(now, &mut batch);
                    }
                }
                ev = self.driver.next_event(conn), if !holding => {
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(end) => break Stop::Ended(end),
                    };
                    let r = self.driver.on_event(conn, ev, &mut out).await;
                    self.dispatch(&mut out, &mut batch);
                    if let Err(end) = r {
                        break Stop::Ended(end);
                    }
                }
            }
        };
        // Whatever was read is handed over, whatever ended the session: the bus spools it
        // or counts it, but it is not silently lost here.
        let _ = self.data.send_now(&mut batch);
        stop
    }

    /// Hands a driver's outputs on: samples to their streams (and on into `batch`), frames
    /// and errors to the device's counters.
    fn dispatch(&mut self, out: &mut Vec<Output>, batch: &mut Vec<Outgoing>) {
        let now = Instant::now();
        for o in out.drain(..) {
            match o {
                Output::Frame => self.diag.frame(),
                Output::Error(e) => self.diag.protocol_error(&e),
                Output::Sample {
                    stream,
                    stamp,
                    message,
                } => {
                    if let Some(s) = self.streams.get_mut(stream) {
                        s.offer(message, stamp, now, batch);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusHandle;
    use crate::config::DeviceKind;
    use crate::config::Robot;
    use crate::device::bytes::{BytesDriver, Opener};
    use crate::device::{write_channel, WriteRequest, WriteSender};
    use crate::protocols::lines::LinesDecoder;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::{mpsc, oneshot};

    const ROBOT: &str = r#"
id = "r1"
[[devices]]
name = "base"
protocol = "lines"
serial = { path = "/dev/null-base" }
format = "kv"
  [[devices.streams]]
  sensor = "battery"
  type = "sensor_msgs/BatteryState"
  fields = { voltage = "v" }
  qos = 1
  [[devices.commands]]
  actuator = "drive"
  type = "geometry_msgs/Twist"
  template = "D {linear.x:.1}"
  safe = { "linear.x" = 0.0 }
"#;

    /// The device's side of each open: a queue of pipes the test fills. An empty queue
    /// is a device that is not there.
    type Plugs = Arc<Mutex<VecDeque<DuplexStream>>>;

    /// At each open: whether the device counted as connected, and its last error.
    type Opens = Arc<Mutex<Vec<(bool, Option<String>)>>>;

    struct Rig {
        plugs: Plugs,
        opens: Opens,
        writer: WriteSender,
        link: watch::Receiver<bool>,
        published: mpsc::Receiver<Outgoing>,
        diag: Arc<DeviceDiag>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Rig {
        fn start() -> Rig {
            Rig::start_with(None)
        }

        fn start_with(idle_timeout: Option<Duration>) -> Rig {
            let robot = Robot::from_str(ROBOT, std::path::Path::new("r1.toml")).unwrap();
            let device = &robot.devices[0];
            let DeviceKind::Lines(lines) = &device.kind else {
                panic!("the rig's device is a lines device");
            };
            let plugs: Plugs = Arc::default();
            let from = plugs.clone();
            let diag = DeviceDiag::new("base");
            let opens: Opens = Arc::default();
            let (seen, counted) = (opens.clone(), diag.clone());
            let open: Opener = Box::new(move || {
                // What the runner had recorded when it (re)opened.
                let state = (counted.is_connected(), counted.last_error());
                seen.lock().unwrap().push(state);
                let next = from.lock().unwrap().pop_front();
                Box::pin(async move {
                    match next {
                        Some(io) => Ok(Box::new(io) as crate::transport::BoxedStream),
                        None => Err(crate::transport::TransportError::Missing {
                            path: "/dev/null-base".into(),
                        }
                        .into()),
                    }
                })
            });
            let driver = BytesDriver::new(
                "pipe".into(),
                open,
                Box::new(LinesDecoder::new(&lines.format, &lines.streams)),
                idle_timeout,
            );
            let (bus, published) = BusHandle::capture();
            let streams = device
                .streams()
                .into_iter()
                .map(|s| StreamPublisher::new(s, format!("robot/r1/{}", s.sensor)))
                .collect();
            let (writer, writes) = write_channel(1);
            let (link_tx, link) = watch::channel(false);
            let (stop, stop_rx) = watch::channel(false);
            let runner = Runner {
                name: "base".into(),
                driver,
                streams,
                diag: diag.clone(),
                data: bus.data_sender(),
                writes,
                link: link_tx,
                pulse: Pulse::none(),
            };
            let task = tokio::spawn(runner.run(stop_rx));
            Rig {
                plugs,
                opens,
                writer,
                link,
                published,
                diag,
                stop,
                task,
            }
        }

        /// Plugs the device in; returns the device's end of the pipe.
        fn plug(&self) -> DuplexStream {
            let (ours, theirs) = tokio::io::duplex(4096);
            self.plugs.lock().unwrap().push_back(ours);
            theirs
        }

        /// Waits for the `n`th open; returns what the runner had recorded by then.
        async fn opened(&self, n: usize) -> (bool, Option<String>) {
            for _ in 0..500 {
                if let Some(state) = self.opens.lock().unwrap().get(n - 1) {
                    return state.clone();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the device was never opened {n} times");
        }

        async fn link_is(&mut self, up: bool) {
            let wait = self.link.wait_for(|l| *l == up);
            tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .expect("the link never changed")
                .unwrap();
        }

        async fn command(&self, line: &str) -> Result<(), WriteError> {
            let answer = queue(&self.writer.commands, line.as_bytes()).await;
            answer.await.unwrap()
        }
    }

    /// Queues a line on a write queue; the receiver gets the driver's answer.
    async fn queue(
        to: &mpsc::Sender<WriteRequest>,
        line: &[u8],
    ) -> oneshot::Receiver<Result<(), WriteError>> {
        let (done, rx) = oneshot::channel();
        let write = DeviceWrite::Line(line.to_vec());
        let req = WriteRequest {
            write,
            done: Some(done),
        };
        to.send(req).await.unwrap();
        rx
    }

    async fn read_line(dev: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            let mut b = [0u8; 1];
            dev.read_exact(&mut b).await.unwrap();
            got.push(b[0]);
        }
        String::from_utf8(got).unwrap()
    }

    #[tokio::test]
    async fn a_device_that_appears_is_opened_and_its_samples_published() {
        let mut rig = Rig::start();
        let mut dev = rig.plug();
        rig.link_is(true).await;
        dev.write_all(b"v=12.5\n").await.unwrap();
        let m = rig.published.recv().await.unwrap();
        assert_eq!(&*m.topic, "robot/r1/battery");
        let v =
            crate::fleet::json::to_json(&crate::fleet::json::decode_msgpack(&m.payload).unwrap());
        assert_eq!(v["voltage"], 12.5);
        assert_eq!(v["header"]["frame_id"], "base");
        assert!(rig.diag.is_connected());
        assert_eq!(rig.diag.frames(), 1);
    }

    #[tokio::test]
    async fn writes_to_a_missing_device_are_refused_as_disconnected_until_it_appears() {
        let mut rig = Rig::start();
        assert_eq!(rig.command("D 0.5\n").await, Err(WriteError::Disconnected));
        assert!(!*rig.link.borrow());
        assert!(rig
            .diag
            .last_error()
            .is_some_and(|e| e.starts_with("unavailable: /dev/null-base")));
        let mut dev = rig.plug();
        rig.link_is(true).await;
        assert_eq!(rig.command("D 0.5\n").await, Ok(()));
        assert_eq!(read_line(&mut dev).await, "D 0.5\n");
    }

    #[tokio::test]
    async fn a_device_that_goes_away_drops_the_link_and_is_reopened_when_it_returns() {
        let mut rig = Rig::start();
        let dev = rig.plug();
        rig.link_is(true).await;
        let mut dev2 = rig.plug();
        drop(dev);
        // By the reopen, the device counted as gone, and why.
        assert_eq!(
            rig.opened(2).await,
            (false, Some("disconnected: end of stream".into()))
        );
        rig.link_is(true).await;
        assert!(rig.diag.is_connected());
        dev2.write_all(b"v=11\n").await.unwrap();
        assert!(rig.published.recv().await.is_some());
        // And a device that stays away is retried without the link coming up.
        drop(dev2);
        rig.link_is(false).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!*rig.link.borrow());
        let mut dev = rig.plug();
        rig.link_is(true).await;
        dev.write_all(b"v=11\n").await.unwrap();
        assert!(rig.published.recv().await.is_some());
    }

    #[tokio::test]
    async fn a_safe_write_goes_out_before_commands_queued_ahead_of_it() {
        let mut rig = Rig::start();
        let mut dev = rig.plug();
        rig.link_is(true).await;
        // Hold the runner in a write the device does not read yet, then queue a command
        // and a safe value behind it: the safe value goes first, the command is dropped.
        let big: Vec<u8> = vec![b'x'; 8191].into_iter().chain([b'\n']).collect();
        let first = queue(&rig.writer.commands, &big).await;
        tokio::task::yield_now().await;
        let cmd_rx = queue(&rig.writer.commands, b"D 0.9\n").await;
        let safe_rx = queue(&rig.writer.safe, b"D 0.0\n").await;
        assert_eq!(read_line(&mut dev).await.len(), 8192);
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(read_line(&mut dev).await, "D 0.0\n");
        assert_eq!(safe_rx.await.unwrap(), Ok(()));
        assert_eq!(cmd_rx.await.unwrap(), Err(WriteError::Superseded));
    }

    #[tokio::test]
    async fn a_bus_that_takes_nothing_stops_the_reader_but_not_writes_and_loses_nothing() {
        let mut rig = Rig::start();
        let dev = rig.plug();
        rig.link_is(true).await;
        // More samples than the device's credit, the capture queue and the pipe hold.
        const N: usize = 12_000;
        let (mut from_dev, mut to_dev) = tokio::io::split(dev);
        let writer = tokio::spawn(async move {
            for i in 0..N {
                to_dev
                    .write_all(format!("v={i}\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        // Nobody takes from the bus: the runner runs out of credit and stops reading, so
        // the device's writer is held up rather than its samples dropped.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!writer.is_finished(), "the reader did not wait for the bus");
        // A command still reaches the device while its samples wait.
        assert_eq!(rig.command("D 0.5\n").await, Ok(()));
        assert_eq!(read_line(&mut from_dev).await, "D 0.5\n");
        // Once the bus takes them, every sample arrives, in order.
        for i in 0..N {
            let m = rig.published.recv().await.unwrap();
            let v = crate::fleet::json::to_json(
                &crate::fleet::json::decode_msgpack(&m.payload).unwrap(),
            );
            assert_eq!(v["voltage"], i as f64, "sample {i}");
        }
        writer.await.unwrap();
        assert_eq!(rig.diag.frames(), N as u64);
    }

    #[tokio::test]
    async fn shutdown_ends_the_runner_and_drops_the_link() {
        let mut rig = Rig::start();
        let _dev = rig.plug();
        rig.link_is(true).await;
        rig.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), &mut rig.task)
            .await
            .expect("the runner did not stop")
            .unwrap();
        assert!(!*rig.link.borrow());
        assert!(!rig.diag.is_connected());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_device_is_reopened_after_its_idle_timeout_and_not_before() {
        let mut rig = Rig::start_with(Some(Duration::from_millis(500)));
        let mut dev = rig.plug();
        let mut dev2 = rig.plug();
        rig.link_is(true).await;
        // Bytes keep it open past several timeouts.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            dev.write_all(b"v=1\n").await.unwrap();
        }
        assert!(*rig.link.borrow(), "a talking device stays open");
        assert_eq!(rig.opens.lock().unwrap().len(), 1);
        assert_eq!(
            rig.opened(2).await,
            (false, Some("disconnected: no data for 500 ms".into()))
        );
        rig.link_is(true).await;
        dev2.write_all(b"v=2\n").await.unwrap();
        assert!(rig.published.recv().await.is_some());
    }

    #[tokio::test]
    async fn a_silent_device_without_an_idle_timeout_stays_open() {
        let mut rig = Rig::start();
        let _dev = rig.plug();
        rig.link_is(true).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(*rig.link.borrow());
    }
}
