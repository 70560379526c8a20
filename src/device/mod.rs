//! Device drivers: one task per device, talking to it through its transport, publishing
//! its samples and carrying out the writes the command path asks for.

pub mod bytes;
pub mod modbus;
pub mod socketcan;

pub use crate::protocols::DeviceWrite;
use tokio::sync::oneshot;

/// A write, with an answer once it is done (or could not be).
pub struct WriteRequest {
    pub write: DeviceWrite,
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Sleeps until `wake` while the device is away, refusing its writes meanwhile. False when
/// the daemon is stopping (or the command path is gone): the driver ends.
pub(crate) async fn wait_to_retry(
    wake: tokio::time::Instant,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    writes: &mut tokio::sync::mpsc::Receiver<WriteRequest>,
) -> bool {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => return true,
            _ = shutdown.changed() => return false,
            req = writes.recv() => match req {
                Some(req) => refuse(req, "device is disconnected"),
                None => return false,
            },
        }
    }
}

pub(crate) fn refuse(req: WriteRequest, why: &str) {
    if let Some(done) = req.done {
        let _ = done.send(Err(why.to_string()));
    }
}

/// Hands a protocol core's outputs on: samples to their streams, frames and errors to the
/// device's counters.
pub(crate) fn dispatch(
    out: &mut Vec<crate::protocols::Output>,
    streams: &mut [crate::stream::StreamPublisher],
    diag: &crate::diagnostics::DeviceDiag,
    bus: &crate::bus::BusHandle,
) {
    use crate::protocols::Output;
    let now = tokio::time::Instant::now();
    for o in out.drain(..) {
        match o {
            Output::Frame => diag.frame(),
            Output::Error(e) => diag.error(e.to_string()),
            Output::Sample { stream, message } => {
                if let Some(s) = streams.get_mut(stream) {
                    s.offer(message, now, bus);
                }
            }
        }
    }
}
