//! Fleet-side tools: subscribe to robots and print what they send, as `botbus topic ...`.

pub mod cmd;
pub mod echo;
pub mod json;
