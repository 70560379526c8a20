//! A CAN controller's error report (a SocketCAN error frame), as diagnostics count it:
//! every one is an error frame, and bus-off, the state in which the controller has left
//! the bus, is counted apart because it means nothing is sent until the bus recovers.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("CAN error frame: {detail}")]
pub struct BusFault {
    /// The controller went bus-off.
    pub bus_off: bool,
    /// What the frame reports, as the kernel's error classes name it.
    pub detail: String,
}

impl BusFault {
    /// The diagnostics counters this fault adds one to.
    pub fn counters(&self) -> &'static [&'static str] {
        if self.bus_off {
            &["error_frames", "bus_off"]
        } else {
            &["error_frames"]
        }
    }
}
