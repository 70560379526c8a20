//! Device drivers: one task per device, talking to it through its transport, publishing
//! its samples and carrying out the writes the command path asks for.

pub mod bytes;
pub mod modbus;

use crate::protocols::modbus::WriteOp;
use tokio::sync::oneshot;

/// What a command (or a safe state) asks a device to do.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceWrite {
    /// A rendered text line, newline included.
    Line(Vec<u8>),
    /// Modbus register and coil writes, in order.
    Modbus(Vec<WriteOp>),
}

/// A write, with an answer once it is done (or could not be).
pub struct WriteRequest {
    pub write: DeviceWrite,
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

pub(crate) fn refuse(req: WriteRequest, why: &str) {
    if let Some(done) = req.done {
        let _ = done.send(Err(why.to_string()));
    }
}
