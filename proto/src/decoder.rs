//! Splitting bytes into lines: a whole buffer ([`Lines`]) or a stream read in pieces ([`Decoder`]).
//!
//! A socket read can end in the middle of a line; the decoder keeps the unfinished tail and joins
//! it with the next read, so where the reads split the stream never changes what comes out (the
//! fuzz target checks exactly that). A line longer than the bound is reported once as
//! [`LineError::TooLong`] and skipped up to its newline, so a hostile sender cannot grow memory.
//! At end of input, a last line without `\n` is still a line.

use memchr::memchr;

use crate::error::{clip, LineError, ParseError};
use crate::line::{parse_line, Parsed};

/// Default bound on one line, newline excluded.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024;

/// Every line of a complete buffer (an HTTP body, a file), the last one with or without `\n`.
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    buf: &'a [u8],
    line: u64,
    max_line_bytes: usize,
}

impl<'a> Lines<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self::starting_at(buf, 1, DEFAULT_MAX_LINE_BYTES)
    }

    /// Numbers lines from `first_line`, and refuses lines over `max_line_bytes`.
    pub fn starting_at(buf: &'a [u8], first_line: u64, max_line_bytes: usize) -> Self {
        Lines {
            buf,
            line: first_line.saturating_sub(1),
            max_line_bytes,
        }
    }

    /// The number of the last line returned.
    pub fn line_number(&self) -> u64 {
        self.line
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Parsed<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let (line, rest) = match memchr(b'\n', self.buf) {
            Some(i) => (&self.buf[..i], &self.buf[i + 1..]),
            None => (self.buf, &[][..]),
        };
        self.buf = rest;
        self.line += 1;
        Some(parse_numbered(line, self.line, self.max_line_bytes))
    }
}

fn parse_numbered(
    line: &[u8],
    number: u64,
    max_line_bytes: usize,
) -> Result<Parsed<'_>, ParseError> {
    if line.len() > max_line_bytes {
        return Err(ParseError {
            line: number,
            kind: LineError::TooLong {
                max: max_line_bytes,
            },
            text: clip(&line[..=max_line_bytes]),
        });
    }
    parse_line(line).map_err(|kind| ParseError {
        line: number,
        kind,
        text: clip(line),
    })
}

/// A stream decoder: feed it reads as they come, then [`Decoder::finish`] at end of stream.
#[derive(Debug)]
pub struct Decoder {
    pending: Vec<u8>,
    line: u64,
    max_line_bytes: usize,
    /// Inside an over-long line that was already reported: drop bytes up to the next newline.
    discarding: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE_BYTES)
    }
}

impl Decoder {
    pub fn new(max_line_bytes: usize) -> Self {
        Decoder {
            pending: Vec::new(),
            line: 0,
            max_line_bytes,
            discarding: false,
        }
    }

    /// Lines started so far.
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// Bytes held back waiting for their newline.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Decodes every line that `data` completes, calling `sink` for each.
    pub fn feed<F>(&mut self, mut data: &[u8], mut sink: F)
    where
        F: FnMut(Result<Parsed<'_>, ParseError>),
    {
        if self.discarding || !self.pending.is_empty() {
            let Some(i) = memchr(b'\n', data) else {
                self.hold(data, &mut sink);
                return;
            };
            if self.discarding {
                self.discarding = false;
            } else {
                self.pending.extend_from_slice(&data[..i]);
                self.line += 1;
                sink(parse_numbered(
                    &self.pending,
                    self.line,
                    self.max_line_bytes,
                ));
                self.pending.clear();
            }
            data = &data[i + 1..];
        }
        let tail_start = memchr::memrchr(b'\n', data).map_or(0, |i| i + 1);
        let mut lines = Lines::starting_at(&data[..tail_start], self.line + 1, self.max_line_bytes);
        for parsed in lines.by_ref() {
            sink(parsed);
        }
        self.line = lines.line_number();
        self.hold(&data[tail_start..], &mut sink);
    }

    /// End of stream: the held-back tail, if any, is the last line.
    pub fn finish<F>(&mut self, mut sink: F)
    where
        F: FnMut(Result<Parsed<'_>, ParseError>),
    {
        if !self.discarding && !self.pending.is_empty() {
            self.line += 1;
            sink(parse_numbered(
                &self.pending,
                self.line,
                self.max_line_bytes,
            ));
        }
        self.pending.clear();
        self.discarding = false;
    }

    /// Keeps an unfinished line, reporting it once if it grows past the bound.
    fn hold<F>(&mut self, tail: &[u8], sink: &mut F)
    where
        F: FnMut(Result<Parsed<'_>, ParseError>),
    {
        if self.discarding || tail.is_empty() {
            return;
        }
        if self.pending.len() + tail.len() > self.max_line_bytes {
            let mut start = std::mem::take(&mut self.pending);
            // Quote the same prefix as `Lines` does, whatever the reads were.
            let room = (self.max_line_bytes + 1).saturating_sub(start.len());
            start.extend_from_slice(&tail[..tail.len().min(room)]);
            self.line += 1;
            sink(Err(ParseError {
                line: self.line,
                kind: LineError::TooLong {
                    max: self.max_line_bytes,
                },
                text: clip(&start),
            }));
            self.discarding = true;
            return;
        }
        self.pending.extend_from_slice(tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{Metric, Timestamp};
    use proptest::prelude::*;

    /// Outcomes as owned, comparable values.
    fn outcomes_of(
        run: impl FnOnce(&mut dyn FnMut(Result<Parsed<'_>, ParseError>)),
    ) -> Vec<String> {
        let mut out = Vec::new();
        run(&mut |r| {
            out.push(match r {
                Ok(Parsed::Metric(Metric {
                    name,
                    value,
                    timestamp,
                })) => format!("{name} {value} {timestamp:?}"),
                Ok(Parsed::Skipped(s)) => format!("{s:?}"),
                Err(e) => e.to_string(),
            })
        });
        out
    }

    fn whole(input: &[u8], max: usize) -> Vec<String> {
        outcomes_of(|sink| {
            for r in Lines::starting_at(input, 1, max) {
                sink(r)
            }
        })
    }

    fn chunked(input: &[u8], cuts: &[usize], max: usize) -> Vec<String> {
        outcomes_of(|sink| {
            let mut d = Decoder::new(max);
            let mut start = 0;
            for &c in cuts {
                let c = c.clamp(start, input.len());
                d.feed(&input[start..c], &mut *sink);
                start = c;
            }
            d.feed(&input[start..], &mut *sink);
            d.finish(&mut *sink);
        })
    }

    #[test]
    fn split_reads_and_crlf() {
        let input = b"a 1 10\r\nb 2 20\nc 3 3";
        let want = ["a 1 At(10)", "b 2 At(20)", "c 3 At(3)"];
        assert_eq!(whole(input, 100), want);
        for cut in 0..input.len() {
            assert_eq!(chunked(input, &[cut], 100), want, "cut at {cut}");
        }
    }

    #[test]
    fn bad_line_keeps_neighbours() {
        let got = whole(b"a 1 10\nbad line\nb 2 20\n", 100);
        assert_eq!(got[0], "a 1 At(10)");
        assert!(
            got[1].starts_with("line 2: expected 3 fields"),
            "{}",
            got[1]
        );
        assert_eq!(got[2], "b 2 At(20)");
    }

    #[test]
    fn too_long_line_is_reported_once_and_skipped() {
        let mut input = b"a 1 10\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 50));
        input.extend_from_slice(b" 1 2\nb 2 20\n");
        let want_err = "line 2: line longer than 20 bytes";
        for cuts in [&[][..], &[10], &[10, 20, 30, 40, 50]] {
            let got = chunked(&input, cuts, 20);
            assert_eq!(got.len(), 3, "{got:?}");
            assert!(got[1].starts_with(want_err), "{got:?}");
            assert_eq!(got[2], "b 2 At(20)");
        }
        assert_eq!(whole(&input, 20).len(), 3);
    }

    #[test]
    fn final_line_without_newline_only_at_finish() {
        let mut d = Decoder::default();
        let mut n = 0;
        d.feed(b"a 1 2\nb 1 2", |_| n += 1);
        assert_eq!(n, 1);
        assert_eq!(d.pending_bytes(), 5);
        d.finish(|r| {
            assert!(matches!(
                r,
                Ok(Parsed::Metric(Metric {
                    timestamp: Timestamp::At(2),
                    ..
                }))
            ));
            n += 1
        });
        assert_eq!(n, 2);
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_result(
            lines in proptest::collection::vec("[ab.;=1 \t\r-]{0,12}", 0..12),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let input = lines.join("\n").into_bytes();
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(chunked(&input, &cuts, 8), whole(&input, 8));
        }
    }
}
