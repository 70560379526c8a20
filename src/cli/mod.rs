//! The `botbus` command line as library code: the argument definitions, each command's
//! output written to any [`std::io::Write`], and [`CliError`] with its exit code. `main.rs`
//! only wires these together, so what a user sees is unit-tested here.

pub mod args;
pub mod bench;
pub mod certs;
pub mod check;
pub mod cmd;
pub mod echo;
pub mod error;
pub mod hz;
pub mod list;
pub mod logging;
pub mod output;
pub mod signal;
pub mod sim;
pub mod tool;
pub mod view;

pub use error::CliError;
pub use output::Output;
