//! Atlas queries (`model/Query.scala`): predicates on a series' tags, and how they become
//! lookups in the store's tag index.
//!
//! Every tagged series `requests;host=web1;status=5xx` is the Atlas series `name=requests,
//! host=web1, status=5xx`; an untagged Graphite path is `name=<path>`. A query is first turned
//! into index lookups ([`Query::lookups`]) that can only widen it, then checked exactly on each
//! candidate's tags ([`Query::matches`]), so the index never decides what matches.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

/// A tag map, sorted by key.
pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub enum Query {
    True,
    False,
    Eq(String, String),
    /// A Java-style regex anchored at the start (`:re`), or ignoring case (`:reic`).
    Re {
        k: String,
        pattern: String,
        ignore_case: bool,
        re: Regex,
    },
    In(String, Vec<String>),
    Has(String),
    Lt(String, String),
    Le(String, String),
    Gt(String, String),
    Ge(String, String),
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
}

impl PartialEq for Query {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Query {
    /// `:re` / `:reic`: the pattern anchored at the start, as Atlas compiles `^<pattern>`.
    pub fn regex(k: &str, pattern: &str, ignore_case: bool) -> Result<Query, String> {
        let flags = if ignore_case { "(?i)" } else { "" };
        let re = regex::RegexBuilder::new(&format!("{flags}^(?:{pattern})"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("bad regex \"{pattern}\": {e}"))?;
        Ok(Query::Re {
            k: k.to_owned(),
            pattern: pattern.to_owned(),
            ignore_case,
            re,
        })
    }

    /// `:contains`, `:starts`, `:ends`: regexes of the escaped value, as Atlas defines them.
    pub fn contains(k: &str, v: &str) -> Result<Query, String> {
        Query::regex(k, &format!(".*{}", regex::escape(v)), false)
    }
    pub fn starts(k: &str, v: &str) -> Result<Query, String> {
        Query::regex(k, &regex::escape(v), false)
    }
    pub fn ends(k: &str, v: &str) -> Result<Query, String> {
        Query::regex(k, &format!(".*{}$", regex::escape(v)), false)
    }

    /// `:and`, with Atlas's simplifications of `:true` and `:false`.
    pub fn and(self, other: Query) -> Query {
        match (self, other) {
            (Query::True, q) | (q, Query::True) => q,
            (Query::False, _) | (_, Query::False) => Query::False,
            (a, b) => Query::And(Box::new(a), Box::new(b)),
        }
    }

    pub fn or(self, other: Query) -> Query {
        match (self, other) {
            (Query::True, _) | (_, Query::True) => Query::True,
            (Query::False, q) | (q, Query::False) => q,
            (a, b) => Query::Or(Box::new(a), Box::new(b)),
        }
    }

    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Query {
        match self {
            Query::True => Query::False,
            Query::False => Query::True,
            q => Query::Not(Box::new(q)),
        }
    }

    /// Whether a series with `tags` matches. A key the series lacks matches nothing but
    /// `:not` of it.
    pub fn matches(&self, tags: &Tags) -> bool {
        let v = |k: &String| tags.get(k);
        match self {
            Query::True => true,
            Query::False => false,
            Query::Eq(k, x) => v(k) == Some(x),
            Query::Re { k, re, .. } => v(k).is_some_and(|s| re.is_match(s)),
            Query::In(k, xs) => v(k).is_some_and(|s| xs.contains(s)),
            Query::Has(k) => tags.contains_key(k),
            Query::Lt(k, x) => v(k).is_some_and(|s| s < x),
            Query::Le(k, x) => v(k).is_some_and(|s| s <= x),
            Query::Gt(k, x) => v(k).is_some_and(|s| s > x),
            Query::Ge(k, x) => v(k).is_some_and(|s| s >= x),
            Query::And(a, b) => a.matches(tags) && b.matches(tags),
            Query::Or(a, b) => a.matches(tags) || b.matches(tags),
            Query::Not(q) => !q.matches(tags),
        }
    }

    /// The keys an `:eq` fixes whatever the rest says (`Query.exactKeys`): the tags an
    /// aggregate keeps.
    pub fn exact_keys(&self) -> BTreeSet<String> {
        match self {
            Query::And(a, b) => {
                let mut k = a.exact_keys();
                k.extend(b.exact_keys());
                k
            }
            Query::Eq(k, _) => BTreeSet::from([k.clone()]),
            _ => BTreeSet::new(),
        }
    }

    /// Every key the query names (`Query.allKeys`).
    pub fn all_keys(&self, out: &mut BTreeSet<String>) {
        match self {
            Query::And(a, b) | Query::Or(a, b) => {
                a.all_keys(out);
                b.all_keys(out);
            }
            Query::Not(q) => q.all_keys(out),
            Query::True | Query::False => {}
            Query::Eq(k, _)
            | Query::Re { k, .. }
            | Query::In(k, _)
            | Query::Has(k)
            | Query::Lt(k, _)
            | Query::Le(k, _)
            | Query::Gt(k, _)
            | Query::Ge(k, _) => {
                out.insert(k.clone());
            }
        }
    }

    /// The tags the `:eq` clauses fix (`Query.tags`).
    pub fn eq_tags(&self) -> Tags {
        match self {
            Query::And(a, b) => {
                let mut t = a.eq_tags();
                t.extend(b.eq_tags());
                t
            }
            Query::Eq(k, v) => Tags::from([(k.clone(), v.clone())]),
            _ => Tags::new(),
        }
    }

    /// The label Atlas writes for the query (`labelString`).
    pub fn label(&self) -> String {
        match self {
            Query::True => "true".into(),
            Query::False => "false".into(),
            Query::Eq(k, v) => format!("{k}={v}"),
            Query::Re {
                k,
                pattern,
                ignore_case,
                ..
            } => format!("{k}~/^{pattern}/{}", if *ignore_case { "i" } else { "" }),
            Query::In(k, vs) => format!("{k} in ({})", vs.join(",")),
            Query::Has(k) => format!("has({k})"),
            Query::Lt(k, v) => format!("{k}<{v}"),
            Query::Le(k, v) => format!("{k}<={v}"),
            Query::Gt(k, v) => format!("{k}>{v}"),
            Query::Ge(k, v) => format!("{k}>={v}"),
            Query::And(a, b) => format!("({}) and ({})", a.label(), b.label()),
            Query::Or(a, b) => format!("({}) or ({})", a.label(), b.label()),
            Query::Not(q) => format!("not({})", q.label()),
        }
    }

    /// Index lookups whose union holds every series the query can match: each lookup is a
    /// conjunction of `seriesByTag` expressions; `None` when no expression narrows the query
    /// (`:true`, `:not` or string comparisons alone), which is refused rather than read as
    /// every series. Graphite paths (untagged) are found by their whole name: `name,<path>,:eq`
    /// and `name,(,<path>,...,),:in`.
    pub fn lookups(&self) -> Option<Vec<Lookup>> {
        let one = |exprs: Vec<String>| {
            Some(vec![Lookup {
                exprs,
                paths: Vec::new(),
            }])
        };
        match self {
            Query::False => Some(Vec::new()),
            Query::Eq(k, v) if !v.is_empty() => Some(vec![Lookup {
                exprs: vec![format!("{k}={v}")],
                paths: if k == "name" {
                    vec![v.clone()]
                } else {
                    Vec::new()
                },
            }]),
            Query::In(k, vs) if !vs.is_empty() && vs.iter().all(|v| !v.is_empty()) => {
                let alts: Vec<String> = vs.iter().map(|v| regex::escape(v)).collect();
                Some(vec![Lookup {
                    exprs: vec![format!("{k}=~(?:{})$", alts.join("|"))],
                    paths: if k == "name" { vs.clone() } else { Vec::new() },
                }])
            }
            // Anchored at the start in both; a pattern that matches the empty string is
            // refused by the index, so those need another clause.
            Query::Re {
                k,
                pattern,
                ignore_case: false,
                re,
            } if !re.is_match("") => one(vec![format!("{k}=~{pattern}")]),
            Query::Has(k) => one(vec![format!("{k}=~.")]),
            Query::And(a, b) => match (a.lookups(), b.lookups()) {
                (None, None) => None,
                (Some(l), None) | (None, Some(l)) => Some(l),
                (Some(l), Some(r)) => {
                    let mut out = Vec::new();
                    for x in &l {
                        for y in &r {
                            let mut exprs = x.exprs.clone();
                            exprs.extend(y.exprs.iter().cloned());
                            // A path is a name alone: both sides must allow it.
                            let paths = if x.exprs.is_empty() || y.exprs.is_empty() {
                                Vec::new()
                            } else {
                                let mut p = x.paths.clone();
                                p.extend(y.paths.iter().cloned());
                                p
                            };
                            out.push(Lookup { exprs, paths });
                        }
                    }
                    Some(out)
                }
            },
            Query::Or(a, b) => {
                let mut l = a.lookups()?;
                l.extend(b.lookups()?);
                Some(l)
            }
            _ => None,
        }
    }
}

/// One index lookup: the tagged series matching every expression, and Graphite paths by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub exprs: Vec<String>,
    pub paths: Vec<String>,
}

impl std::fmt::Display for Query {
    /// The query as the stack program that makes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Query::True => write!(f, ":true"),
            Query::False => write!(f, ":false"),
            Query::Eq(k, v) => write!(f, "{k},{v},:eq"),
            Query::Re {
                k,
                pattern,
                ignore_case,
                ..
            } => write!(
                f,
                "{k},{pattern},{}",
                if *ignore_case { ":reic" } else { ":re" }
            ),
            Query::In(k, vs) => write!(f, "{k},(,{},),:in", vs.join(",")),
            Query::Has(k) => write!(f, "{k},:has"),
            Query::Lt(k, v) => write!(f, "{k},{v},:lt"),
            Query::Le(k, v) => write!(f, "{k},{v},:le"),
            Query::Gt(k, v) => write!(f, "{k},{v},:gt"),
            Query::Ge(k, v) => write!(f, "{k},{v},:ge"),
            Query::And(a, b) => write!(f, "{a},{b},:and"),
            Query::Or(a, b) => write!(f, "{a},{b},:or"),
            Query::Not(q) => write!(f, "{q},:not"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matching_follows_atlas() {
        let t = tags(&[("name", "requests"), ("status", "5xx"), ("vhost", "www")]);
        let eq = |k: &str, v: &str| Query::Eq(k.into(), v.into());
        assert!(eq("name", "requests").matches(&t));
        assert!(!eq("host", "a").matches(&t));
        assert!(
            eq("host", "a").not().matches(&t),
            "a missing key is not equal"
        );
        assert!(Query::regex("status", "5", false).expect("re").matches(&t));
        assert!(
            !Query::regex("status", "x", false).expect("re").matches(&t),
            "anchored"
        );
        assert!(Query::regex("vhost", "W", true).expect("re").matches(&t));
        assert!(Query::contains("vhost", "w").expect("re").matches(&t));
        assert!(Query::ends("vhost", "ww").expect("re").matches(&t));
        assert!(
            !Query::starts("vhost", "ww.").expect("re").matches(&t),
            "escaped"
        );
        assert!(Query::In("status".into(), vec!["4xx".into(), "5xx".into()]).matches(&t));
        assert!(Query::Has("vhost".into()).matches(&t));
        assert!(!Query::Has("host".into()).matches(&t));
        assert!(Query::Lt("status".into(), "6".into()).matches(&t));
        assert!(!Query::Gt("host".into(), "".into()).matches(&t));
        let q = eq("name", "requests").and(eq("status", "5xx").or(eq("status", "4xx")));
        assert!(q.matches(&t));
        assert_eq!(q.exact_keys(), BTreeSet::from(["name".to_string()]));
        assert_eq!(
            q.label(),
            "(name=requests) and ((status=5xx) or (status=4xx))"
        );
        assert_eq!(
            q.to_string(),
            "name,requests,:eq,status,5xx,:eq,status,4xx,:eq,:or,:and"
        );
        assert!(Query::regex("k", "(", false).is_err());
    }

    #[test]
    fn lookups_only_widen() {
        let eq = |k: &str, v: &str| Query::Eq(k.into(), v.into());
        let q = eq("name", "requests").and(eq("status", "5xx").or(eq("status", "4xx")));
        let l = q.lookups().expect("narrowed");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].exprs, ["name=requests", "status=5xx"]);
        assert_eq!(l[0].paths, ["requests"], "checked exactly after");
        assert!(Query::True.lookups().is_none());
        assert!(eq("a", "b").not().lookups().is_none());
        assert_eq!(
            eq("a", "b")
                .not()
                .and(eq("name", "x"))
                .lookups()
                .expect("narrowed")[0]
                .exprs,
            ["name=x"]
        );
        assert!(Query::regex("k", ".*", false)
            .expect("re")
            .lookups()
            .is_none());
        assert_eq!(
            eq("name", "web.host1.5xx").lookups().expect("path")[0].paths,
            ["web.host1.5xx"]
        );
        assert_eq!(Query::False.lookups(), Some(Vec::new()));
    }
}
