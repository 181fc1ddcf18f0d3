//! The series index: canonical name to a compact id, a name tree for glob finds, and a tag index
//! for `seriesByTag`.
//!
//! Ids are assigned once, in order, and never reused; the name-to-id table is the only thing
//! persisted (`series` column family: `n<name>` -> id, schema). The tree and the tag postings are
//! rebuilt from it at open. Names are stored once (`names[id]`); the hash table holds ids only.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use compact_str::CompactString;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use tally_proto::series_name;

use crate::error::{Error, Result};
use crate::glob::{compile, NodeMatcher};
use crate::retention::ArchiveSet;
use crate::tag_expr::TagExpr;

/// One value of a tag and how many series carry it (`/tags/<tag>`, autocomplete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagValue {
    pub value: String,
    pub series: usize,
}

/// A node of the name tree. Most nodes are leaves, so a node is 16 bytes and only a node with
/// children has a map; labels are short and kept inline (no allocation of their own).
#[derive(Debug, Default)]
// The box is the point: an empty `BTreeMap` is 24 bytes in every leaf, a `None` is 8.
#[allow(clippy::box_collection)]
struct Node {
    children: Option<Box<BTreeMap<CompactString, u32>>>,
    series: Option<u32>,
}

/// An empty map, for the leaves' children.
static NO_CHILDREN: BTreeMap<CompactString, u32> = BTreeMap::new();

impl Node {
    fn children(&self) -> &BTreeMap<CompactString, u32> {
        self.children.as_deref().unwrap_or(&NO_CHILDREN)
    }

    fn child(&self, label: &str) -> Option<u32> {
        self.children().get(label).copied()
    }

    fn has_children(&self) -> bool {
        !self.children().is_empty()
    }

    fn add_child(&mut self, label: &str, node: u32) {
        self.children
            .get_or_insert_with(Default::default)
            .insert(CompactString::from(label), node);
    }

    fn remove_child(&mut self, label: &str) {
        if let Some(map) = self.children.as_mut() {
            map.remove(label);
            if map.is_empty() {
                self.children = None;
            }
        }
    }
}

/// The series names, by id, in pages of one arena: a name costs its bytes and 8 bytes, not an
/// allocation of its own. A page never moves (it is made with its final capacity), so adding a
/// name never copies the others.
#[derive(Debug, Default)]
struct Names {
    pages: Vec<Vec<u8>>,
    /// Per id: page (24 bits), offset in it (20 bits), length (20 bits; `LONG` for a length
    /// kept in `long`). A deleted or never-given id is the empty name.
    at: Vec<u64>,
    long: hashbrown::HashMap<u32, usize>,
}

const PAGE: usize = 1 << 20;
const LONG: u64 = (1 << 20) - 1;

impl Names {
    fn len(&self) -> usize {
        self.at.len()
    }

    /// The name of `id` ("" for none).
    fn get(&self, id: u32) -> &str {
        // Only whole names of `&str`s are ever copied in, so this never fails.
        std::str::from_utf8(self.bytes(id)).unwrap_or("")
    }

    /// The name of `id` as bytes: what the hash table compares and hashes, so that a lookup
    /// (one per point written) does not validate UTF-8 it already knows is valid.
    fn bytes(&self, id: u32) -> &[u8] {
        let Some(&at) = self.at.get(id as usize) else {
            return b"";
        };
        let (page, off, len) = (
            (at >> 40) as usize,
            ((at >> 20) & 0xf_ffff) as usize,
            at & LONG,
        );
        let len = if len == LONG {
            self.long.get(&id).copied().unwrap_or(0)
        } else {
            len as usize
        };
        self.pages
            .get(page)
            .and_then(|p| p.get(off..off + len))
            .unwrap_or(b"")
    }

    fn set(&mut self, id: u32, name: &str) {
        let i = id as usize;
        if self.at.len() <= i {
            self.at.resize(i + 1, 0);
        }
        self.long.remove(&id);
        if name.is_empty() {
            self.at[i] = 0;
            return;
        }
        let n = name.len();
        let fits = self
            .pages
            .last()
            .is_some_and(|p| p.capacity() - p.len() >= n && p.len() < PAGE);
        if !fits {
            self.pages.push(Vec::with_capacity(PAGE.max(n)));
        }
        let page_no = self.pages.len() - 1;
        let page = &mut self.pages[page_no];
        let off = page.len();
        page.extend_from_slice(name.as_bytes());
        // A name longer than a page has a page of its own, at offset 0.
        let len = if n as u64 >= LONG {
            self.long.insert(id, n);
            LONG
        } else {
            n as u64
        };
        self.at[i] = (page_no as u64) << 40 | (off as u64) << 20 | len;
    }
}

/// A match of `/metrics/find`: a node at the pattern's depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindMatch {
    /// The full path of the node.
    pub path: String,
    /// A series ends here.
    pub is_leaf: bool,
    /// Deeper nodes exist below.
    pub has_children: bool,
}

pub(crate) struct Index {
    table: HashTable<u32>,
    hasher: FxBuildHasher,
    names: Names,
    set_of: Vec<u16>,
    sets: Vec<ArchiveSet>,
    tree: Vec<Node>,
    /// tag -> value -> ids (ascending), for tagged series; `name` is the metric name.
    tags: BTreeMap<Box<str>, BTreeMap<Box<str>, Vec<u32>>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("series", &self.names.len())
            .finish()
    }
}

impl Default for Index {
    fn default() -> Self {
        Index {
            table: HashTable::new(),
            hasher: FxBuildHasher,
            names: Names::default(),
            set_of: Vec::new(),
            sets: Vec::new(),
            tree: vec![Node::default()],
            tags: BTreeMap::new(),
        }
    }
}

impl Index {
    /// Live series (deleted ones excluded).
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Forgets a series: its name, tree leaf (pruning emptied branches) and tag postings. The id
    /// is not reused.
    pub(crate) fn remove(&mut self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name.as_bytes());
        let names = &self.names;
        let id = self
            .table
            .find_entry(hash, |&id| names.bytes(id) == name.as_bytes())
            .ok()?
            .remove()
            .0;
        if series_name::is_tagged(name) {
            let metric = series_name::metric_name(name);
            for (tag, value) in std::iter::once(("name", metric)).chain(series_name::tags(name)) {
                if let Some(values) = self.tags.get_mut(tag) {
                    if let Some(ids) = values.get_mut(value) {
                        ids.retain(|&i| i != id);
                        if ids.is_empty() {
                            values.remove(value);
                        }
                    }
                    if values.is_empty() {
                        self.tags.remove(tag);
                    }
                }
            }
        } else {
            let mut path = Vec::new();
            let mut node = 0usize;
            for part in name.split('.') {
                let Some(child) = self.tree[node].child(part) else {
                    break;
                };
                path.push((node, part));
                node = child as usize;
            }
            if self.tree[node].series == Some(id) {
                self.tree[node].series = None;
            }
            // Unlink nodes left with neither a series nor children, leaf upwards.
            for (parent, part) in path.into_iter().rev() {
                let Some(child) = self.tree[parent].child(part) else {
                    break;
                };
                let c = &self.tree[child as usize];
                if c.series.is_some() || c.has_children() {
                    break;
                }
                self.tree[parent].remove_child(part);
            }
        }
        self.names.set(id, "");
        Some(id)
    }

    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name.as_bytes());
        self.table
            .find(hash, |&id| self.names.bytes(id) == name.as_bytes())
            .copied()
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id)
    }

    pub(crate) fn archive_set(&self, id: u32) -> &ArchiveSet {
        &self.sets[self.set_of[id as usize] as usize]
    }

    /// Which of [`Index::sets`] a series keeps: a flush notes this small number per series
    /// rather than cloning the set a million times.
    pub(crate) fn set_slot(&self, id: u32) -> u16 {
        self.set_of[id as usize]
    }

    /// The distinct archive sets series keep (a handful).
    pub(crate) fn sets(&self) -> &[ArchiveSet] {
        &self.sets
    }

    /// One more than the highest id ever given (deleted series included).
    pub(crate) fn id_count(&self) -> usize {
        self.names.len()
    }

    /// Adds a series with the next id (the caller persists it). `name` must be canonical and new.
    pub(crate) fn insert(&mut self, name: &str, set: ArchiveSet) -> u32 {
        let id = self.names.len() as u32;
        let set_idx = self.set_index(set);
        self.insert_with_id(id, name, set_idx);
        id
    }

    /// The slot of an archive set, added if new (series share a handful of sets).
    fn set_index(&mut self, set: ArchiveSet) -> u16 {
        match self.sets.iter().position(|s| *s == set) {
            Some(i) => i as u16,
            None => {
                self.sets.push(set);
                (self.sets.len() - 1) as u16
            }
        }
    }

    fn insert_with_id(&mut self, id: u32, name: &str, set_idx: u16) {
        let hash = self.hasher.hash_one(name.as_bytes());
        let names = &self.names;
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, id, |&other| hasher.hash_one(names.bytes(other)));
        if self.set_of.len() <= id as usize {
            self.set_of.resize(id as usize + 1, 0);
        }
        self.names.set(id, name);
        self.set_of[id as usize] = set_idx;
        if series_name::is_tagged(name) {
            let metric = series_name::metric_name(name);
            for (tag, value) in std::iter::once(("name", metric)).chain(series_name::tags(name)) {
                self.tags
                    .entry(Box::from(tag))
                    .or_default()
                    .entry(Box::from(value))
                    .or_default()
                    .push(id);
            }
        } else {
            let mut node = 0usize;
            for part in name.split('.') {
                let next = match self.tree[node].child(part) {
                    Some(n) => n as usize,
                    None => {
                        self.tree.push(Node::default());
                        let n = self.tree.len() - 1;
                        self.tree[node].add_child(part, n as u32);
                        n
                    }
                };
                node = next;
            }
            self.tree[node].series = Some(id);
        }
    }

    /// Rebuilds a series read back from disk, with its persisted id.
    pub(crate) fn restore(&mut self, id: u32, name: &str, set: ArchiveSet) -> Result<()> {
        if (id as usize) < self.names.len() && !self.names.get(id).is_empty() {
            return Err(Error::Corrupt(format!("series id {id} used twice")));
        }
        let set_idx = self.set_index(set);
        self.insert_with_id(id, name, set_idx);
        Ok(())
    }

    /// Nodes at the pattern's depth, sorted by path: graphite's `/metrics/find`.
    pub(crate) fn find(&self, pattern: &str) -> Result<Vec<FindMatch>> {
        let matchers = compile(pattern)?;
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.walk(0, &matchers, &mut path, &mut out);
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.dedup_by(|a, b| a.path == b.path);
        Ok(out)
    }

    fn walk<'a>(
        &'a self,
        node: usize,
        matchers: &[NodeMatcher],
        path: &mut Vec<&'a str>,
        out: &mut Vec<FindMatch>,
    ) {
        let Some((first, rest)) = matchers.split_first() else {
            let n = &self.tree[node];
            out.push(FindMatch {
                path: path.join("."),
                is_leaf: n.series.is_some(),
                has_children: n.has_children(),
            });
            return;
        };
        match first {
            NodeMatcher::Literal(lit) => {
                if let Some((name, &child)) = self.tree[node].children().get_key_value(lit.as_str())
                {
                    path.push(name);
                    self.walk(child as usize, rest, path, out);
                    path.pop();
                }
            }
            NodeMatcher::AnyDepth => {
                // Zero nodes, or one node and `**` again.
                self.walk(node, rest, path, out);
                for (name, &child) in self.tree[node].children() {
                    path.push(name);
                    self.walk(child as usize, matchers, path, out);
                    path.pop();
                }
            }
            NodeMatcher::Any | NodeMatcher::Glob(_) => {
                for (name, &child) in self.tree[node].children() {
                    if first.matches(name) {
                        path.push(name);
                        self.walk(child as usize, rest, path, out);
                        path.pop();
                    }
                }
            }
        }
    }

    /// Full names of the series a pattern matches, sorted.
    pub(crate) fn expand(&self, pattern: &str) -> Result<Vec<String>> {
        Ok(self
            .find(pattern)?
            .into_iter()
            .filter(|m| m.is_leaf)
            .map(|m| m.path)
            .collect())
    }

    /// Tagged series matching every expression, sorted by canonical name.
    pub(crate) fn select(&self, exprs: &[TagExpr]) -> Result<Vec<String>> {
        let Some(driver) = exprs.iter().find(|e| !e.matches_empty()) else {
            return Err(Error::TagExpr {
                expr: exprs
                    .iter()
                    .map(|e| format!("{}{:?}{}", e.tag, e.op, e.value))
                    .collect::<Vec<_>>()
                    .join(","),
                reason: "at least one expression must not match the empty string".into(),
            });
        };
        let mut ids: Vec<u32> = Vec::new();
        if let Some(values) = self.tags.get(driver.tag.as_str()) {
            for (value, posting) in values {
                if driver.matches(value) {
                    ids.extend_from_slice(posting);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let mut names: Vec<String> = ids
            .into_iter()
            .map(|id| self.name(id))
            .filter(|name| {
                exprs.iter().all(|e| {
                    let value = if e.tag == "name" {
                        series_name::metric_name(name)
                    } else {
                        series_name::tags(name)
                            .find(|(t, _)| *t == e.tag)
                            .map_or("", |(_, v)| v)
                    };
                    e.matches(value)
                })
            })
            .map(str::to_owned)
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Tag names in use, sorted.
    pub(crate) fn tag_names(&self) -> Vec<String> {
        self.tags.keys().map(|k| k.to_string()).collect()
    }

    /// Values of a tag with how many series carry each, sorted by value.
    pub(crate) fn tag_values(&self, tag: &str) -> Vec<TagValue> {
        self.tags
            .get(tag)
            .map(|vals| {
                vals.iter()
                    .map(|(v, ids)| TagValue {
                        value: v.to_string(),
                        series: ids.len(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The index on its own, in memory: for query tests that need globs and tags without a database.
#[derive(Debug, Default)]
pub struct MemIndex(Index);

impl MemIndex {
    /// Adds a series (canonical name); a name already present is ignored.
    pub fn insert(&mut self, name: &str) {
        if self.0.get(name).is_none() {
            self.0.insert(name, ArchiveSet::default());
        }
    }
    pub fn find(&self, pattern: &str) -> Result<Vec<FindMatch>> {
        self.0.find(pattern)
    }
    pub fn expand(&self, pattern: &str) -> Result<Vec<String>> {
        self.0.expand(pattern)
    }
    pub fn select_by_tags(&self, exprs: &[&str]) -> Result<Vec<String>> {
        let parsed: Vec<TagExpr> = exprs
            .iter()
            .map(|e| TagExpr::parse(e))
            .collect::<Result<_>>()?;
        self.0.select(&parsed)
    }
    pub fn tag_names(&self) -> Vec<String> {
        self.0.tag_names()
    }
    pub fn tag_values(&self, tag: &str) -> Vec<TagValue> {
        self.0.tag_values(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::{parse_retentions, Aggregate};

    fn set() -> ArchiveSet {
        ArchiveSet {
            archives: parse_retentions("10s:1d").expect("valid"),
            aggregate: Aggregate::Average,
        }
    }

    fn index(names: &[&str]) -> Index {
        let mut ix = Index::default();
        for n in names {
            ix.insert(n, set());
        }
        ix
    }

    #[test]
    fn ids_are_dense_and_stable() {
        let ix = index(&["a.b", "a.c", "x;k=v"]);
        assert_eq!(ix.get("a.b"), Some(0));
        assert_eq!(ix.get("x;k=v"), Some(2));
        assert_eq!(ix.get("nope"), None);
        assert_eq!(ix.name(1), "a.c");
    }

    #[test]
    fn find_branches_and_leaves() {
        let ix = index(&[
            "servers.web1.cpu",
            "servers.web2.cpu",
            "servers.web1",
            "servers.db1.cpu.user",
        ]);
        let got = ix.find("servers.*").expect("valid");
        let paths: Vec<(&str, bool, bool)> = got
            .iter()
            .map(|m| (m.path.as_str(), m.is_leaf, m.has_children))
            .collect();
        assert_eq!(
            paths,
            [
                ("servers.db1", false, true),
                ("servers.web1", true, true),
                ("servers.web2", false, true)
            ]
        );
        assert_eq!(
            ix.expand("servers.{web1,web2}.cpu").expect("valid"),
            ["servers.web1.cpu", "servers.web2.cpu"]
        );
        assert_eq!(
            ix.expand("servers.**.user").expect("valid"),
            ["servers.db1.cpu.user"]
        );
        assert!(ix.find("nothing.*").expect("valid").is_empty());
    }

    #[test]
    fn names_are_kept_by_id_across_pages_and_at_any_length() {
        let mut names = Names::default();
        let long = "x".repeat(3 << 20);
        let mut want = Vec::new();
        for i in 0..120_000u32 {
            // ~1.2 MB of names: more than one page; one name longer than a page in between.
            let name = if i == 60_000 {
                long.clone()
            } else {
                format!("a.b{i}.c")
            };
            names.set(i, &name);
            want.push(name);
        }
        names.set(7, "");
        want[7] = String::new();
        names.set(200_000, "far.away");
        for (i, name) in want.iter().enumerate() {
            assert_eq!(names.get(i as u32), name, "id {i}");
        }
        assert_eq!(names.get(200_000), "far.away");
        assert_eq!(names.get(150_000), "");
        assert_eq!(names.get(u32::MAX), "");
        assert!(names.pages.len() >= 3);
    }

    #[test]
    fn removal_prunes_the_tree_and_postings() {
        let mut ix = index(&["a.b.c", "a.b.d", "x.y", "r;h=1", "r;h=2"]);
        assert_eq!(ix.remove("a.b.c"), Some(0));
        assert_eq!(ix.remove("a.b.c"), None);
        assert_eq!(ix.expand("a.b.*").expect("valid"), ["a.b.d"]);
        ix.remove("a.b.d");
        assert!(
            ix.find("a.*").expect("valid").is_empty(),
            "emptied branches are pruned"
        );
        assert_eq!(ix.find("*").expect("valid").len(), 1);
        ix.remove("r;h=1");
        assert_eq!(
            ix.tag_values("h"),
            [TagValue {
                value: "2".to_owned(),
                series: 1
            }]
        );
        assert_eq!(ix.len(), 2);
        // A new series never gets a deleted id.
        assert_eq!(ix.insert("a.b.c", set()), 5);
    }

    #[test]
    fn select_by_tags() {
        let ix = index(&[
            "requests;host=web1;status=200",
            "requests;host=web3;status=503",
            "requests;host=web2;status=500",
            "latency;host=web1",
        ]);
        let q = |exprs: &[&str]| {
            let e: Vec<TagExpr> = exprs
                .iter()
                .map(|s| TagExpr::parse(s).expect("valid"))
                .collect();
            ix.select(&e)
        };
        assert_eq!(
            q(&["name=requests", "status=~5..", "host!=web3"]).expect("valid"),
            ["requests;host=web2;status=500"]
        );
        assert_eq!(
            q(&["host=web1"]).expect("valid"),
            ["latency;host=web1", "requests;host=web1;status=200"]
        );
        // `status!=200` matches the empty string, so it also keeps series without `status`.
        assert_eq!(
            q(&["host=web1", "status!=200"]).expect("valid"),
            ["latency;host=web1"]
        );
        assert!(q(&["host!=web1"]).is_err());
        assert_eq!(ix.tag_values("host").len(), 3);
        assert_eq!(ix.tag_names(), ["host", "name", "status"]);
    }
}
