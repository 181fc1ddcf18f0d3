//! What the evaluator reads: a small trait, implemented by the RocksDB store and by an in-memory
//! source that tests and golden cases use.

use std::collections::BTreeMap;

use std::sync::{Arc, Mutex};

use tally_store::{Event, FindMatch, Store};

use crate::error::Result;

/// One stored series over a range: `values[i]` at `start + i * step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub start: i64,
    pub step: i64,
    pub values: Vec<Option<f64>>,
    /// `Some(k)`: every held value is an integer divided by 10^k, correctly rounded (as a
    /// store's decimal chunks decode), so that a writer of decimals (`format=tally`) need not
    /// check each; `None` promises nothing.
    pub places: Option<u32>,
}

/// A series read with its name.
pub type Named = (String, Fetched);

pub trait Source: Send + Sync {
    /// Nodes matching a glob, at the glob's depth.
    fn find(&self, pattern: &str) -> Result<Vec<FindMatch>>;
    /// Series names matching a glob, sorted.
    fn expand(&self, pattern: &str) -> Result<Vec<String>>;
    /// Tagged series matching `seriesByTag` expressions, sorted.
    fn select_by_tags(&self, exprs: &[&str]) -> Result<Vec<String>>;
    /// A series over `(from, until]` at the resolution the range needs.
    fn fetch(&self, name: &str, from: i64, until: i64) -> Result<Option<Fetched>>;
    /// How many values [`Source::fetch`] would return, without reading them, so that a
    /// request over its limit is refused before it allocates; `None` when not known (then
    /// the values are counted once read).
    fn points(&self, _name: &str, _from: i64, _until: i64) -> Option<usize> {
        None
    }
    /// Every series a glob matches, read over `(from, until]`, in one go: a source whose
    /// series are elsewhere (a query node over stores) answers here so that each store
    /// resolves the glob itself. `None` (the default): [`Source::expand`], then
    /// [`Source::fetch`] for each name.
    fn read_glob(&self, _pattern: &str, _from: i64, _until: i64) -> Option<Result<Vec<Named>>> {
        None
    }
    /// The same for a tag selection ([`Source::select_by_tags`]).
    fn read_tagged(&self, _exprs: &[&str], _from: i64, _until: i64) -> Option<Result<Vec<Named>>> {
        None
    }
    fn tag_names(&self) -> Vec<String>;
    fn tag_values(&self, tag: &str) -> Vec<tally_store::TagValue>;
    /// Creates a series without points; returns its canonical name.
    fn register(&self, name: &str) -> Result<String>;
    /// Deletes a series and its points; false if there was none.
    fn delete(&self, name: &str) -> Result<bool>;
    /// Records an event; returns its id.
    fn add_event(&self, when: i64, what: &str, data: &str, tags: Vec<String>) -> Result<u64>;
    /// Events with `from <= when <= until`, by time.
    fn events(&self, from: i64, until: i64) -> Result<Vec<Event>>;
    /// A small document kept durably with the data (alert states); `None` if never saved.
    fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Saves a document for [`Source::load_state`], durably.
    fn save_state(&self, key: &str, value: &[u8]) -> Result<()>;
}

impl Source for Store {
    fn find(&self, pattern: &str) -> Result<Vec<FindMatch>> {
        Ok(Store::find(self, pattern)?)
    }
    fn expand(&self, pattern: &str) -> Result<Vec<String>> {
        Ok(Store::expand(self, pattern)?)
    }
    fn select_by_tags(&self, exprs: &[&str]) -> Result<Vec<String>> {
        Ok(Store::select_by_tags(self, exprs)?)
    }
    fn fetch(&self, name: &str, from: i64, until: i64) -> Result<Option<Fetched>> {
        Ok(self.read(name, from, until, None)?.map(|s| Fetched {
            start: s.start,
            step: i64::from(s.step),
            values: s.values,
            places: s.places,
        }))
    }
    fn points(&self, name: &str, from: i64, until: i64) -> Option<usize> {
        self.points_in_range(name, from, until)
    }
    fn tag_names(&self) -> Vec<String> {
        Store::tag_names(self)
    }
    fn tag_values(&self, tag: &str) -> Vec<tally_store::TagValue> {
        Store::tag_values(self, tag)
    }
    fn register(&self, name: &str) -> Result<String> {
        Ok(Store::register(self, name)?)
    }
    fn delete(&self, name: &str) -> Result<bool> {
        Ok(Store::delete_series(self, name)?)
    }
    fn add_event(&self, when: i64, what: &str, data: &str, tags: Vec<String>) -> Result<u64> {
        Ok(Store::add_event(self, when, what, data, tags)?)
    }
    fn events(&self, from: i64, until: i64) -> Result<Vec<Event>> {
        Ok(Store::events(self, from, until)?)
    }
    fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(Store::get_meta(self, key)?)
    }
    fn save_state(&self, key: &str, value: &[u8]) -> Result<()> {
        Ok(Store::put_meta(self, key, value)?)
    }
}

/// The same grid as the store: (from, until], floored to the step; the first and last slot.
fn grid(step: i64, from: i64, until: i64) -> (i64, i64) {
    (
        from - from.rem_euclid(step) + step,
        until - until.rem_euclid(step),
    )
}

/// Series held in memory at one step, for tests: `(name, start, step, values)`.
#[derive(Debug, Default, Clone)]
pub struct MemSource {
    series: BTreeMap<String, (i64, i64, Vec<Option<f64>>)>,
    events: Arc<Mutex<Vec<Event>>>,
    state: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemSource {
    pub fn add(
        &mut self,
        name: &str,
        start: i64,
        step: i64,
        values: Vec<Option<f64>>,
    ) -> &mut Self {
        self.series.insert(name.to_owned(), (start, step, values));
        self
    }

    fn index(&self) -> tally_store::MemIndex {
        let mut ix = tally_store::MemIndex::default();
        for name in self.series.keys() {
            ix.insert(name);
        }
        ix
    }
}

impl Source for MemSource {
    fn find(&self, pattern: &str) -> Result<Vec<FindMatch>> {
        Ok(self.index().find(pattern)?)
    }
    fn expand(&self, pattern: &str) -> Result<Vec<String>> {
        Ok(self.index().expand(pattern)?)
    }
    fn select_by_tags(&self, exprs: &[&str]) -> Result<Vec<String>> {
        Ok(self.index().select_by_tags(exprs)?)
    }
    fn points(&self, name: &str, from: i64, until: i64) -> Option<usize> {
        let (_, step, _) = self.series.get(name)?;
        let (first, last) = grid(*step, from, until);
        Some(if last >= first {
            ((last - first) / step + 1) as usize
        } else {
            0
        })
    }
    fn fetch(&self, name: &str, from: i64, until: i64) -> Result<Option<Fetched>> {
        let Some((start, step, values)) = self.series.get(name) else {
            return Ok(None);
        };
        let (first, last) = grid(*step, from, until);
        let mut out = Vec::new();
        let mut t = first;
        while t <= last {
            let i = (t - start).div_euclid(*step);
            let v = if t >= *start && (t - start) % step == 0 {
                values.get(i as usize).copied().flatten()
            } else {
                None
            };
            out.push(v);
            t += step;
        }
        Ok(Some(Fetched {
            start: first,
            step: *step,
            values: out,
            places: None,
        }))
    }
    fn tag_names(&self) -> Vec<String> {
        self.index().tag_names()
    }
    fn tag_values(&self, tag: &str) -> Vec<tally_store::TagValue> {
        self.index().tag_values(tag)
    }
    fn register(&self, _name: &str) -> Result<String> {
        Err(crate::QueryError::BadRequest(
            "the in-memory source is read-only".into(),
        ))
    }
    fn delete(&self, _name: &str) -> Result<bool> {
        Err(crate::QueryError::BadRequest(
            "the in-memory source is read-only".into(),
        ))
    }
    fn add_event(&self, when: i64, what: &str, data: &str, tags: Vec<String>) -> Result<u64> {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let id = events.len() as u64 + 1;
        events.push(Event {
            id,
            when,
            what: what.to_owned(),
            data: data.to_owned(),
            tags,
        });
        events.sort_by_key(|e| (e.when, e.id));
        Ok(id)
    }
    fn events(&self, from: i64, until: i64) -> Result<Vec<Event>> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        Ok(events
            .iter()
            .filter(|e| e.when >= from && e.when <= until)
            .cloned()
            .collect())
    }
    fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(state.get(key).cloned())
    }
    fn save_state(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}
