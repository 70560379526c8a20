//! ROBOTIS Dynamixel Protocol 2.0, sans-IO: packet framing with byte stuffing and CRC
//! ([`packet`], [`crc`]), request builders ([`instruction`]), the streaming status parser
//! and the error byte ([`status`]), reading answers ([`answer`]), control tables and
//! models ([`table`]), raw values to SI units ([`units`]) and the joint-state poll
//! ([`joints`]), robot-file keys and their validation ([`config`], [`validate`]), JointState
//! commands to goals ([`command`]) and a simulated servo bus ([`sim`]). The reference is the
//! ROBOTIS e-Manual's Protocol 2.0 page.

pub mod answer;
pub mod command;
pub mod config;
pub mod crc;
pub mod error;
pub mod instruction;
pub mod joints;
pub mod packet;
pub mod request;
pub mod sim;
pub mod status;
pub mod table;
pub mod units;
pub mod validate;

#[cfg(test)]
mod fuzz;

pub use answer::{ping_answer, read_answer, sync_read_answers, PingAnswer};
pub use command::{DxlWrite, GoalError, GoalMode};
pub use config::SafeConfig;
pub use error::DynamixelError;
pub use joints::{JointPoll, JointState};
pub use packet::{Instruction, BROADCAST_ID, MAX_PACKET};
pub use status::{ErrorNumber, Status, StatusError, StatusParser};
pub use table::{Item, Model};
pub use units::Units;
pub use validate::{DxlCommand, DxlPoll, Dynamixel, Joint, JointGoal, PollRead};
