//! Fleet-side tools: subscribe to robots and print what they send, as `botbus topic ...`.

pub mod echo;
pub mod json;
