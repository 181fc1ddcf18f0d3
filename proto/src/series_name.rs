//! Series names: plain Graphite paths and carbon 1.1 tagged names.
//!
//! A series is identified by its *canonical* name. For a plain path that is the path itself
//! (`servers.web1.requests`); for a tagged name it is the metric name followed by the tags sorted
//! by tag name (`requests;dc=ny;host=web1`), exactly as carbon's `TaggedSeries` writes it, so the
//! same series sent with its tags in any order lands in one place.
//!
//! The rules are carbon 1.1's: tag names are non-empty and contain none of `; ! ^ =`; values are
//! non-empty, contain no `;` and do not start with `~`; a repeated tag keeps its last value; the tag
//! `name` is the metric name and cannot be set by a tag. We are stricter than carbon in one place:
//! a path with an empty node (`a..b`, `a.b.`) is rejected, because graphite-web cannot find or
//! query such a series either.
//!
//! [`canonicalize`] borrows the input whenever it is already canonical, which is the common case
//! (the agent and most senders write canonical names), so the hot path does not allocate.

use std::borrow::Cow;

/// Why a series name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty metric name")]
    Empty,
    #[error("empty path node")]
    EmptyNode,
    #[error("control character or whitespace in name")]
    Control,
    #[error("tag segment \"{0}\" is not tag=value")]
    Segment(String),
    #[error("tag name \"{0}\" contains one of ; ! ^ =")]
    TagName(String),
    #[error("tag \"{0}\" has an empty value")]
    EmptyValue(String),
    #[error("value of tag \"{0}\" starts with '~'")]
    TildeValue(String),
}

/// Validates `raw` and returns its canonical form, borrowed when `raw` is already canonical.
pub fn canonicalize(raw: &str) -> Result<Cow<'_, str>, NameError> {
    let Some(semi) = raw.find(';') else {
        check_path(raw)?;
        return Ok(Cow::Borrowed(raw));
    };
    let metric = &raw[..semi];
    check_metric(metric)?;
    let rest = &raw[semi + 1..];
    // Validate every segment, and see whether the tags are already strictly sorted with no `name`.
    let mut canonical = true;
    let mut prev: Option<&str> = None;
    for segment in rest.split(';') {
        let (tag, _) = split_tag(segment)?;
        if tag == "name" || prev.is_some_and(|p| p >= tag) {
            canonical = false;
        }
        prev = Some(tag);
    }
    if canonical {
        return Ok(Cow::Borrowed(raw));
    }
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for segment in rest.split(';') {
        let (tag, value) = split_tag(segment)?;
        if tag != "name" {
            tags.push((tag, value));
        }
    }
    // Stable sort, then keep the last of each run of equal tags: a repeated tag keeps its last value.
    tags.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(raw.len());
    out.push_str(metric);
    for (i, (tag, value)) in tags.iter().enumerate() {
        if tags.get(i + 1).is_some_and(|next| next.0 == *tag) {
            continue;
        }
        out.push(';');
        out.push_str(tag);
        out.push('=');
        out.push_str(value);
    }
    Ok(Cow::Owned(out))
}

/// Builds the canonical name of `metric` with `tags` (in any order), validating both.
pub fn tagged_name(metric: &str, tags: &[(&str, &str)]) -> Result<String, NameError> {
    let mut raw = String::with_capacity(metric.len() + tags.len() * 16);
    raw.push_str(metric);
    for (tag, value) in tags {
        raw.push(';');
        raw.push_str(tag);
        raw.push('=');
        raw.push_str(value);
    }
    if tags.is_empty() {
        check_path(&raw)?;
        return Ok(raw);
    }
    Ok(canonicalize(&raw)?.into_owned())
}

/// The metric name of a canonical name: the part before the first `;`.
pub fn metric_name(canonical: &str) -> &str {
    canonical.split_once(';').map_or(canonical, |(m, _)| m)
}

/// The tags of a canonical name, in canonical (sorted) order, without the implicit `name` tag.
pub fn tags(canonical: &str) -> impl Iterator<Item = (&str, &str)> {
    canonical
        .split_once(';')
        .map(|(_, rest)| rest)
        .into_iter()
        .flat_map(|rest| rest.split(';'))
        .filter_map(|segment| segment.split_once('='))
}

/// True when `canonical` carries tags.
pub fn is_tagged(canonical: &str) -> bool {
    canonical.contains(';')
}

fn split_tag(segment: &str) -> Result<(&str, &str), NameError> {
    // One pass over the segment: where the first `=` is, and what the bytes before it hold.
    let bytes = segment.as_bytes();
    let mut eq = None;
    let mut bad_tag_char = false;
    for (i, &c) in bytes.iter().enumerate() {
        if c <= b' ' || c == 0x7f {
            return Err(NameError::Control);
        }
        if eq.is_none() {
            match c {
                b'=' => eq = Some(i),
                b'!' | b'^' => bad_tag_char = true,
                _ => {}
            }
        }
    }
    let Some(eq) = eq.filter(|&i| i > 0) else {
        return Err(NameError::Segment(segment.to_owned()));
    };
    let (tag, value) = (&segment[..eq], &segment[eq + 1..]);
    if bad_tag_char {
        return Err(NameError::TagName(tag.to_owned()));
    }
    match value.as_bytes().first() {
        None => Err(NameError::EmptyValue(tag.to_owned())),
        Some(b'~') => Err(NameError::TildeValue(tag.to_owned())),
        Some(_) => Ok((tag, value)),
    }
}

fn check_metric(metric: &str) -> Result<(), NameError> {
    if metric.is_empty() {
        return Err(NameError::Empty);
    }
    check_path(metric)
}

fn check_path(path: &str) -> Result<(), NameError> {
    // One pass: control characters and empty nodes (leading, trailing or doubled dots).
    if path.is_empty() {
        return Err(NameError::Empty);
    }
    let mut prev_dot = true;
    for &c in path.as_bytes() {
        if c <= b' ' || c == 0x7f {
            return Err(NameError::Control);
        }
        let dot = c == b'.';
        if dot && prev_dot {
            return Err(NameError::EmptyNode);
        }
        prev_dot = dot;
    }
    if prev_dot {
        return Err(NameError::EmptyNode);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let ok: &[(&str, &str)] = &[
            ("a.b.c", "a.b.c"),
            ("a", "a"),
            ("req;host=web1", "req;host=web1"),
            ("req;host=web1;dc=ny", "req;dc=ny;host=web1"),
            ("req;b=2;a=1;b=3", "req;a=1;b=3"),
            ("req;name=x;a=1", "req;a=1"),
            ("a.b;k=v=w", "a.b;k=v=w"),
            ("a.b;k=v~", "a.b;k=v~"),
            ("a.b;k=x.y.z", "a.b;k=x.y.z"),
        ];
        for (raw, want) in ok {
            assert_eq!(canonicalize(raw).as_deref(), Ok(*want), "{raw}");
        }
        let bad: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("a..b", NameError::EmptyNode),
            (".a", NameError::EmptyNode),
            ("a.", NameError::EmptyNode),
            ("a\u{1}b", NameError::Control),
            (";a=1", NameError::Empty),
            ("m;", NameError::Segment(String::new())),
            ("m;a", NameError::Segment("a".into())),
            ("m;=v", NameError::Segment("=v".into())),
            ("m;a!b=v", NameError::TagName("a!b".into())),
            ("m;a^b=v", NameError::TagName("a^b".into())),
            ("m;a=", NameError::EmptyValue("a".into())),
            ("m;a=~x", NameError::TildeValue("a".into())),
        ];
        for (raw, want) in bad {
            assert_eq!(canonicalize(raw), Err(want.clone()), "{raw:?}");
        }
    }

    #[test]
    fn canonical_input_is_borrowed() {
        assert!(matches!(canonicalize("a.b;x=1;y=2"), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonicalize("a.b;y=1;x=2"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn parts() {
        assert_eq!(metric_name("req;a=1;b=2"), "req");
        assert_eq!(metric_name("a.b"), "a.b");
        assert_eq!(
            tags("req;a=1;b=x=y").collect::<Vec<_>>(),
            [("a", "1"), ("b", "x=y")]
        );
        assert_eq!(tags("a.b").count(), 0);
        assert_eq!(
            tagged_name("req", &[("z", "1"), ("a", "2")]).as_deref(),
            Ok("req;a=2;z=1")
        );
        assert_eq!(tagged_name("a..b", &[]), Err(NameError::EmptyNode));
    }

    proptest! {
        #[test]
        fn canonicalize_is_idempotent(raw in "[a-c.;=~!]{0,12}") {
            if let Ok(once) = canonicalize(&raw) {
                let twice = canonicalize(&once).expect("canonical names stay valid");
                prop_assert_eq!(&*once, &*twice);
                prop_assert!(matches!(twice, Cow::Borrowed(_)));
            }
        }

        #[test]
        fn tag_order_does_not_matter(mut tags in proptest::collection::btree_map("[a-e]{1,3}", "[a-z0-9]{1,4}", 0..5)) {
            let pairs: Vec<(String, String)> = std::mem::take(&mut tags).into_iter().collect();
            let fwd: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut rev = fwd.clone();
            rev.reverse();
            prop_assert_eq!(tagged_name("m.x", &fwd), tagged_name("m.x", &rev));
        }
    }
}
