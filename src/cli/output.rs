//! [`Output`]: standard output for a command. Every write is flushed at once, so a line
//! reaches a pipe when it is printed, and a reader that went away ends the command quietly.

use super::CliError;
use std::fmt;
use std::io::{self, Write};

/// A writer for `write!` and `writeln!` whose errors are [`CliError`]s: a broken pipe is
/// [`CliError::StdoutClosed`] (exit code 0), any other failure [`CliError::Output`].
pub struct Output<W>(pub W);

impl<W: Write> Output<W> {
    /// What `write!` calls: writes `args` and flushes.
    pub fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> Result<(), CliError> {
        match self.0.write_fmt(args).and_then(|()| self.0.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(CliError::StdoutClosed),
            Err(e) => Err(CliError::Output(e)),
        }
    }

    /// Text that already ends in a newline (e.g. a rendered table).
    pub fn text(&mut self, text: &str) -> Result<(), CliError> {
        self.write_fmt(format_args!("{text}"))
    }
}

/// Writers that fail, for the tests of every command's output.
#[cfg(test)]
pub(crate) mod failing {
    use std::io::{self, Write};

    /// A pipe whose reader has gone away.
    pub struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    /// A writer that accepts `limit` bytes, then reports a full disk.
    pub struct FullDisk {
        pub written: Vec<u8>,
        pub limit: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written.len() + buf.len() > self.limit {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::failing::{ClosedPipe, FullDisk};
    use super::*;

    #[test]
    fn lines_are_written_as_formatted() {
        let mut out = Output(Vec::new());
        let (id, devices) = ("r1", 2);
        writeln!(out, "robot {id}: {devices} devices").unwrap();
        out.text("ok\n").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "robot r1: 2 devices\nok\n"
        );
    }

    #[test]
    fn a_closed_pipe_is_a_quiet_end_not_a_failure() {
        let mut out = Output(ClosedPipe);
        let err = writeln!(out, "ok").unwrap_err();
        assert!(matches!(err, CliError::StdoutClosed), "{err:?}");
    }

    #[test]
    fn any_other_write_failure_is_reported() {
        let mut out = Output(FullDisk {
            written: Vec::new(),
            limit: 4,
        });
        writeln!(out, "ok").unwrap();
        let err = writeln!(out, "more than fits").unwrap_err();
        assert!(
            matches!(&err, CliError::Output(e) if e.kind() == io::ErrorKind::StorageFull),
            "{err:?}"
        );
        assert_eq!(out.0.written, b"ok\n");
    }
}
