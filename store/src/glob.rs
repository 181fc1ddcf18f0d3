//! Graphite path globs, node by node: `*`, `?`, `[0-9]`, `[!x]`, `{a,b}` (alternatives may hold
//! globs), and `**` for any number of nodes. A node without special characters is a literal and
//! is looked up directly, so `servers.web1.*` does not scan every server.

use regex::Regex;

use crate::error::{Error, Result};

/// One node of a compiled pattern.
#[derive(Debug, Clone)]
pub enum NodeMatcher {
    Literal(String),
    /// `*` alone: every node (the commonest glob; no regex to build or run).
    Any,
    Glob(Regex),
    /// `**`: zero or more nodes.
    AnyDepth,
}

impl NodeMatcher {
    pub fn matches(&self, node: &str) -> bool {
        match self {
            NodeMatcher::Literal(l) => l == node,
            NodeMatcher::Any => true,
            NodeMatcher::Glob(re) => re.is_match(node),
            NodeMatcher::AnyDepth => true,
        }
    }
}

/// How deeply `{a,{b,c}}` alternatives may nest (graphite-web has no limit; real patterns use
/// one or two levels, and each level is a recursion in [`to_regex`]).
pub const MAX_BRACE_DEPTH: i32 = 16;

/// Splits a pattern into nodes at dots outside `{}` and `[]`, and compiles each.
pub fn compile(pattern: &str) -> Result<Vec<NodeMatcher>> {
    let bad = |reason: &str| Error::Pattern {
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    if pattern.is_empty() {
        return Err(bad("empty pattern"));
    }
    let mut nodes = Vec::new();
    let (mut depth_brace, mut depth_bracket, mut start) = (0i32, 0i32, 0usize);
    for (i, c) in pattern.char_indices() {
        match c {
            // Alternatives compile recursively: bound the nesting before it can exhaust the stack.
            '{' if depth_brace >= MAX_BRACE_DEPTH => {
                return Err(bad(&format!(
                    "braces nested deeper than {MAX_BRACE_DEPTH} levels at byte {i}"
                )))
            }
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket = (depth_bracket - 1).max(0),
            '.' if depth_brace <= 0 && depth_bracket == 0 => {
                nodes.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    nodes.push(&pattern[start..]);
    if depth_brace != 0 {
        return Err(bad("unbalanced braces"));
    }
    nodes
        .into_iter()
        .map(|node| {
            if node.is_empty() {
                return Err(bad("empty node"));
            }
            if node == "**" {
                return Ok(NodeMatcher::AnyDepth);
            }
            if node == "*" {
                return Ok(NodeMatcher::Any);
            }
            if !node.contains(['*', '?', '[', '{']) {
                return Ok(NodeMatcher::Literal(node.to_owned()));
            }
            let re = format!("^(?:{})$", to_regex(node));
            Regex::new(&re)
                .map(NodeMatcher::Glob)
                .map_err(|e| bad(&e.to_string()))
        })
        .collect()
}

fn to_regex(glob: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str("[^.]*"),
            '?' => out.push_str("[^.]"),
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                Some(end) => {
                    let body: String = chars[i + 1..i + 1 + end].iter().collect();
                    let body = match body.strip_prefix('!') {
                        Some(rest) => format!("^{rest}"),
                        None => body,
                    };
                    out.push('[');
                    out.push_str(&body.replace('[', "\\[").replace("\\\\", "\\"));
                    out.push(']');
                    i += end + 1;
                }
                None => out.push_str("\\["),
            },
            '{' => {
                // Find the matching brace, splitting alternatives at top-level commas.
                let mut depth = 0;
                let mut end = None;
                for (j, &c) in chars.iter().enumerate().skip(i) {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                match end {
                    Some(end) => {
                        let inner: String = chars[i + 1..end].iter().collect();
                        let alts: Vec<String> =
                            split_top(&inner).iter().map(|a| to_regex(a)).collect();
                        out.push_str("(?:");
                        out.push_str(&alts.join("|"));
                        out.push(')');
                        i = end;
                    }
                    None => out.push_str("\\{"),
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out
}

fn split_top(inner: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut cur) = (0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, node: &str) -> bool {
        let nodes = compile(pattern).expect("compiles");
        assert_eq!(nodes.len(), 1, "{pattern}");
        nodes[0].matches(node)
    }

    #[test]
    fn node_globs() {
        assert!(m("web*", "web12"));
        assert!(!m("web*", "db1"));
        assert!(m("web?", "web1") && !m("web?", "web12"));
        assert!(m("web[0-9]", "web7") && !m("web[0-9]", "webx"));
        assert!(m("web[!0-9]", "webx") && !m("web[!0-9]", "web1"));
        assert!(m("{web,db}1", "db1") && !m("{web,db}1", "app1"));
        assert!(m("{web*,db?}", "web123") && m("{web*,db?}", "db1"));
        assert!(m("a+b(c)", "a+b(c)"));
        assert!(m("x[", "x["));
    }

    #[test]
    fn deep_braces_are_refused_not_a_stack_overflow() {
        let deep = format!("a.{}x{}", "{".repeat(100_000), "}".repeat(100_000));
        let e = compile(&deep).expect_err("too deep");
        assert!(
            e.to_string()
                .contains("nested deeper than 16 levels at byte 18"),
            "{e}"
        );
        let ok = format!("a.{}x{}", "{".repeat(16), "}".repeat(16));
        assert!(compile(&ok).expect("16 levels").len() == 2);
        assert!(compile(&"{".repeat(100_000)).is_err());
    }

    #[test]
    fn splitting() {
        let n = compile("servers.{web1,web2}.cpu.*").expect("compiles");
        assert_eq!(n.len(), 4);
        assert!(matches!(n[0], NodeMatcher::Literal(_)));
        assert!(matches!(
            compile("a.**.b").expect("compiles")[1],
            NodeMatcher::AnyDepth
        ));
        assert!(compile("a..b").is_err());
        assert!(compile("a.{b").is_err());
        assert!(compile("").is_err());
    }
}
