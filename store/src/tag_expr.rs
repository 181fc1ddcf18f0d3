//! `seriesByTag` expressions: `tag=value`, `tag!=value`, `tag=~regex`, `tag!=~regex`.
//!
//! As in graphite-web: regexes are anchored at the start only; a series that lacks a tag is seen
//! as having it empty, so an expression that matches the empty string also matches series without
//! the tag; and at least one expression must not match the empty string, or the query would be
//! every series.

use regex::Regex;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOp {
    Eq,
    Ne,
    Match,
    NotMatch,
}

#[derive(Debug, Clone)]
pub struct TagExpr {
    pub tag: String,
    pub op: TagOp,
    pub value: String,
    regex: Option<Regex>,
}

impl TagExpr {
    pub fn parse(expr: &str) -> Result<TagExpr> {
        let bad = |reason: &str| Error::TagExpr {
            expr: expr.to_owned(),
            reason: reason.to_owned(),
        };
        let Some(i) = expr.find(['=', '!']) else {
            return Err(bad(
                "expected tag=value, tag!=value, tag=~regex or tag!=~regex",
            ));
        };
        let (tag, rest) = expr.split_at(i);
        let (op, value) = if let Some(v) = rest.strip_prefix("!=~") {
            (TagOp::NotMatch, v)
        } else if let Some(v) = rest.strip_prefix("=~") {
            (TagOp::Match, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (TagOp::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (TagOp::Eq, v)
        } else {
            return Err(bad("expected an operator after the tag name"));
        };
        let tag = tag.trim();
        if tag.is_empty() {
            return Err(bad("empty tag name"));
        }
        let regex = match op {
            TagOp::Match | TagOp::NotMatch => {
                Some(Regex::new(&format!("^(?:{value})")).map_err(|e| bad(&e.to_string()))?)
            }
            _ => None,
        };
        Ok(TagExpr {
            tag: tag.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// Whether a series whose tag has `value` (empty when the series lacks the tag) matches.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (TagOp::Eq, _) => value == self.value,
            (TagOp::Ne, _) => value != self.value,
            (TagOp::Match, Some(re)) => re.is_match(value),
            (TagOp::NotMatch, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }

    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators() {
        let e = TagExpr::parse("status=~5..").expect("valid");
        assert!(e.matches("503") && e.matches("5000") && !e.matches("404") && !e.matches_empty());
        let e = TagExpr::parse("host!=web3").expect("valid");
        assert!(e.matches("web1") && !e.matches("web3") && e.matches_empty());
        let e = TagExpr::parse("name=requests").expect("valid");
        assert!(e.matches("requests") && !e.matches("requests2"));
        let e = TagExpr::parse("dc!=~ny.*").expect("valid");
        assert!(e.matches("sf") && !e.matches("ny1"));
        assert!(TagExpr::parse("noop").is_err());
        assert!(TagExpr::parse("=x").is_err());
        assert!(TagExpr::parse("a=~(").is_err());
    }
}
