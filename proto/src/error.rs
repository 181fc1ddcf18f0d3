//! Errors of the line protocol: what is wrong with one line, and where that line was.

use crate::series_name::NameError;

/// What is wrong with one line. Texts are quoted and cut to [`CLIP_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("expected 3 fields \"path value timestamp\", found {0}")]
    Fields(usize),
    #[error("bad value \"{0}\"")]
    Value(String),
    #[error("bad timestamp \"{0}\"")]
    Timestamp(String),
    #[error("bad series name \"{name}\": {reason}")]
    Name { name: String, reason: NameError },
    #[error("series name is not UTF-8")]
    Utf8,
    #[error("line longer than {max} bytes")]
    TooLong { max: usize },
}

/// A bad line with its place: `line 17: bad timestamp "17o0000000" in "a.b 1 17o0000000"`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {kind} in \"{text}\"")]
pub struct ParseError {
    /// 1-based line number within the stream or batch.
    pub line: u64,
    pub kind: LineError,
    /// The line itself, cut to a sane length.
    pub text: String,
}

/// The crate's result type.
pub type Result<T, E = ParseError> = std::result::Result<T, E>;

/// How many characters of a bad input an error message quotes.
pub const CLIP_CHARS: usize = 80;

/// `bytes` as text for an error message: lossy UTF-8, control characters escaped, cut short.
pub(crate) fn clip(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == CLIP_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_and_escapes() {
        assert_eq!(clip(b"a\tb\x00"), "a\\tb\\u{0}");
        let long = vec![b'x'; 200];
        assert_eq!(clip(&long).chars().count(), CLIP_CHARS + 1);
        assert_eq!(clip(b"\xff"), "\u{fffd}");
    }

    #[test]
    fn message_names_line_and_input() {
        let e = ParseError {
            line: 17,
            kind: LineError::Timestamp("17o0000000".into()),
            text: "a.b 1 17o0000000".into(),
        };
        assert_eq!(
            e.to_string(),
            "line 17: bad timestamp \"17o0000000\" in \"a.b 1 17o0000000\""
        );
    }
}
