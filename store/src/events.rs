//! Events (graphite-web's `/events`): annotations Grafana draws on graphs, such as deploys or
//! the CDN incident a beacon spike belongs to. Kept in the `events` column family, keyed by time
//! then id ([`crate::layout`]), so a range read is one seek.

use serde::{Deserialize, Serialize};

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    /// Unix seconds.
    pub when: i64,
    pub what: String,
    pub data: String,
    pub tags: Vec<String>,
}

/// Which events a tag list selects (graphite-web's `set` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMatch {
    /// Events carrying every tag (the default).
    All,
    /// Events carrying any of the tags.
    Any,
}

impl Event {
    pub fn matches(&self, tags: &[String], how: TagMatch) -> bool {
        match how {
            TagMatch::All => tags.iter().all(|t| self.tags.contains(t)),
            TagMatch::Any => tags.iter().any(|t| self.tags.contains(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_matching() {
        let e = Event {
            id: 1,
            when: 0,
            what: "deploy".into(),
            data: String::new(),
            tags: vec!["a".into(), "b".into()],
        };
        assert!(e.matches(&["a".into(), "b".into()], TagMatch::All));
        assert!(!e.matches(&["a".into(), "c".into()], TagMatch::All));
        assert!(e.matches(&["a".into(), "c".into()], TagMatch::Any));
        assert!(e.matches(&[], TagMatch::All));
    }
}
