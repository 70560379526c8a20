//! Line framing shared by the text protocols: chunks in, complete lines out, with a length
//! cap so a device spewing garbage without newlines cannot grow memory.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    #[error("line longer than {max} bytes discarded")]
    TooLong { max: usize },
}

/// Splits a byte stream into lines on `\n` or `\r`. Empty lines are skipped. Lines that
/// fit in one chunk are handed out without copying.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max_len: usize,
    discarding: bool,
}

impl LineFramer {
    pub fn new(max_len: usize) -> LineFramer {
        LineFramer {
            buf: Vec::with_capacity(max_len.min(4096)),
            max_len,
            discarding: false,
        }
    }

    /// Bytes of an unfinished line held back for the next chunk.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Forgets a partial line, e.g. after the device was reopened.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }

    pub fn push(&mut self, mut data: &[u8], mut on_line: impl FnMut(Result<&[u8], FramingError>)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    let piece = &data[..end];
                    data = &data[end + 1..];
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    if self.buf.is_empty() {
                        if piece.len() > self.max_len {
                            on_line(Err(FramingError::TooLong { max: self.max_len }));
                        } else if !piece.is_empty() {
                            on_line(Ok(piece));
                        }
                    } else if self.buf.len() + piece.len() > self.max_len {
                        self.buf.clear();
                        on_line(Err(FramingError::TooLong { max: self.max_len }));
                    } else {
                        self.buf.extend_from_slice(piece);
                        on_line(Ok(&self.buf));
                        self.buf.clear();
                    }
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + data.len() > self.max_len {
                            self.buf.clear();
                            self.discarding = true;
                            on_line(Err(FramingError::TooLong { max: self.max_len }));
                        } else {
                            self.buf.extend_from_slice(data);
                        }
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(f: &mut LineFramer, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, FramingError>> {
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, |l| out.push(l.map(|b| b.to_vec())));
        }
        out
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut f = LineFramer::new(100);
        let out = lines(&mut f, &[b"ab", b"c\r\nde", b"f\n\n"]);
        assert_eq!(out, vec![Ok(b"abc".to_vec()), Ok(b"def".to_vec())]);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_framing_recovers() {
        let mut f = LineFramer::new(4);
        let out = lines(&mut f, &[b"abcdefgh", b"ijk", b"l\nok\n"]);
        assert_eq!(
            out,
            vec![Err(FramingError::TooLong { max: 4 }), Ok(b"ok".to_vec())]
        );
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_lines(data in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..400) {
            let mut whole = LineFramer::new(64);
            let mut a = Vec::new();
            whole.push(&data, |l| a.push(l.map(|b| b.to_vec())));
            let cut = cut.min(data.len());
            let mut split = LineFramer::new(64);
            let mut b = Vec::new();
            split.push(&data[..cut], |l| b.push(l.map(|b| b.to_vec())));
            split.push(&data[cut..], |l| b.push(l.map(|b| b.to_vec())));
            // An overlong line may be reported at a different moment, but the good lines agree.
            let good = |v: &Vec<Result<Vec<u8>, FramingError>>| v.iter().filter_map(|l| l.clone().ok()).collect::<Vec<_>>();
            prop_assert_eq!(good(&a), good(&b));
            prop_assert!(split.pending() <= 64);
        }
    }
}
