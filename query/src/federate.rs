//! A query node's [`Source`]: the stores behind a relay, read as one (`tally query --peers`).
//!
//! Fetches are pushed down: each store resolves a glob or a tag selection itself and answers
//! with the raw series, through graphite-web's cluster protocol (`/render?local=1`, what a
//! federating graphite-web asks for) in Tally's own binary answer (`format=tally`: raw f64s,
//! read at memory speed), so one read is one round trip per store. The node evaluates every function itself, over the merged series.
//!
//! Stores are asked in parallel, each within `timeout`. A series held by several stores
//! (carbon-c-relay's `replication`) is merged point by point: a slot one replica lacks is taken
//! from another, and a value is never added to another's. A store that does not answer (a
//! refused connection, a timeout, a 5xx) leaves the answer partial: the request's scope is
//! marked ([`crate::partial`]), the node counts it and logs it; when no store answers the
//! request fails with 503. A store's 4xx (a bad glob) is the caller's mistake and answered as
//! such.
//!
//! The node holds no series: registering one is refused (points go to the relay), deleting one
//! deletes it on every store, an event is posted to every store and read back from all of them
//! once. Its own documents (the alert engine's state) are files in its state directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tally_store::{Event, FindMatch, TagValue};

use crate::error::{QueryError, Result};
use crate::source::{Fetched, Named, Source};

tally_common::counters! {
    /// What the query node counts (its `/metrics`).
    pub struct FederationStats {
        peer_requests: Counter = "Requests the query node sent to its stores.",
        peer_failures: Counter = "Requests to a store that failed (no answer in time, refused, or a 5xx).",
        partial_answers: Counter = "Reads answered without one or more stores' share (marked with the X-Tally-Partial header).",
    }
}

/// One store the node reads.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The base URL, without a trailing slash (`http://10.0.0.1:8080`).
    pub url: String,
    /// How answers and logs name it: the URL's `host:port`.
    pub name: String,
}

impl Peer {
    /// A peer from a URL as given on the command line; `host:port` alone means `http://`.
    pub fn parse(url: &str) -> std::result::Result<Peer, String> {
        let url = url.trim().trim_end_matches('/');
        let full = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let parsed =
            reqwest::Url::parse(&full).map_err(|e| format!("peer \"{url}\" is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("peer \"{url}\": the scheme must be http or https"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("peer \"{url}\" names no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        Ok(Peer {
            url: full,
            name: format!("{host}:{port}"),
        })
    }
}

/// How a store failed to answer.
#[derive(Debug)]
enum Failure {
    /// It answered 4xx: the request is at fault, as it would be on one store.
    Refused(String),
    /// No usable answer: down, too slow, or failing.
    Missing(String),
}

/// How a query node reads its stores.
#[derive(Debug, Clone)]
pub struct FederationOptions {
    /// How long each store may take to answer.
    pub timeout: Duration,
    /// How many stores hold each series (the relay's `replication`): an answer lacking fewer
    /// stores than this still has every series from a replica, so it is complete.
    pub replication: usize,
    /// The stores' read token, if they have one.
    pub token: Option<String>,
    /// Where the node keeps its own documents (the alert engine's state).
    pub state_dir: PathBuf,
}

/// The stores, read as one.
pub struct Federated {
    peers: Vec<Peer>,
    client: reqwest::Client,
    /// The runtime the requests run on: the source's methods are called from blocking threads.
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    replication: usize,
    token: Option<String>,
    state_dir: PathBuf,
    stats: Arc<FederationStats>,
    /// One log line per store per [`LOG_EVERY`], however many requests miss it.
    logged: Vec<tally_store::RateLimited>,
}

/// How a store's answer is read.
type Decode<T> = fn(&[u8]) -> std::result::Result<T, String>;

/// What one store answered: decoded, undecodable (`Ok(Err)`), or no usable answer.
type Answer<T> = std::result::Result<std::result::Result<T, String>, Failure>;

/// A request to one store: the path and query, and a body with its content type.
type Ask = (String, Option<(&'static str, String)>);

const FORM: &str = "application/x-www-form-urlencoded";

/// Between two log lines about the same store.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Federated {
    /// A source over `peers`, read as `opts` says. Must be called inside a tokio runtime,
    /// whose handle the requests use.
    pub fn new(peers: Vec<Peer>, opts: FederationOptions) -> Result<Federated> {
        let FederationOptions {
            timeout,
            replication,
            token,
            state_dir,
        } = opts;
        if peers.is_empty() {
            return Err(QueryError::BadRequest(
                "a query node needs at least one store (--peers)".into(),
            ));
        }
        if replication == 0 || replication > peers.len() {
            return Err(QueryError::BadRequest(format!(
                "replication {replication}: must be between 1 and the number of stores ({})",
                peers.len()
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| QueryError::Internal(format!("HTTP client: {e}")))?;
        std::fs::create_dir_all(&state_dir).map_err(|e| {
            QueryError::Internal(format!(
                "creating the state directory {}: {e}",
                state_dir.display()
            ))
        })?;
        Ok(Federated {
            client,
            runtime: tokio::runtime::Handle::current(),
            timeout,
            replication,
            token,
            state_dir,
            stats: Arc::default(),
            logged: (0..peers.len())
                .map(|_| tally_store::RateLimited::new(LOG_EVERY))
                .collect(),
            peers,
        })
    }

    pub fn stats(&self) -> Arc<FederationStats> {
        self.stats.clone()
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Asks every store `path_and_query` (GET, or POST with a form `body`) in parallel, each
    /// within the timeout; the answers in the peers' order.
    /// Each answer is decoded by `decode` on a blocking thread as it arrives, so that the
    /// stores' answers are decoded in parallel.
    fn ask_all<T: Send + 'static>(
        &self,
        path_and_query: &str,
        body: Option<String>,
        decode: Decode<T>,
    ) -> Vec<Answer<T>> {
        let ask: Ask = (path_and_query.to_owned(), body.map(|b| (FORM, b)));
        let each = vec![Some(ask); self.peers.len()];
        self.ask_each(each, decode)
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(Failure::Missing("not asked".into()))))
            .collect()
    }

    /// Asks each store its own request (`None`: nothing), in parallel, as [`Federated::ask_all`].
    fn ask_each<T: Send + 'static>(
        &self,
        each: Vec<Option<Ask>>,
        decode: Decode<T>,
    ) -> Vec<Option<Answer<T>>> {
        let asks = self.peers.iter().zip(each).map(|(p, ask)| {
            let (path_and_query, body) = ask?;
            let url = format!("{}{path_and_query}", p.url);
            let mut req = match body {
                Some((ctype, b)) => self.client.post(url).header("content-type", ctype).body(b),
                None => self.client.get(url),
            };
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let timeout = self.timeout;
            Some(async move {
                let answer = async {
                    let resp = req.send().await.map_err(|e| Failure::Missing(reason(&e)))?;
                    let status = resp.status();
                    let bytes = resp
                        .bytes()
                        .await
                        .map_err(|e| Failure::Missing(reason(&e)))?;
                    if status.is_success() {
                        Ok(bytes)
                    } else {
                        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                            .trim()
                            .to_owned();
                        let why = format!("answered {status}: {text}");
                        if status.is_client_error() && status.as_u16() != 408 {
                            Err(Failure::Refused(text))
                        } else {
                            Err(Failure::Missing(why))
                        }
                    }
                };
                let bytes = match tokio::time::timeout(timeout, answer).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(Failure::Missing(format!(
                            "no answer within {} ms",
                            timeout.as_millis()
                        )))
                    }
                };
                tokio::task::spawn_blocking(move || decode(&bytes))
                    .await
                    .map_err(|e| Failure::Missing(format!("decoding task failed: {e}")))
            })
        });
        let asks: Vec<_> = asks.collect();
        self.stats
            .peer_requests
            .fetch_add(asks.iter().flatten().count() as u64, Relaxed);
        self.runtime.block_on(async move {
            let handles: Vec<_> = asks.into_iter().map(|a| a.map(tokio::spawn)).collect();
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(match h {
                    None => None,
                    Some(h) => Some(match h.await {
                        Ok(r) => r,
                        Err(e) => Err(Failure::Missing(format!("request task failed: {e}"))),
                    }),
                });
            }
            out
        })
    }

    /// The answers of the stores that answered, decoded; a store that did not answer marks the
    /// request partial. A store's 4xx is the answer (the caller's mistake); no store answering
    /// at all is an error.
    fn gather<T: Send + 'static>(
        &self,
        what: &str,
        path_and_query: &str,
        body: Option<String>,
        decode: Decode<T>,
    ) -> Result<Vec<T>> {
        Ok(self
            .gather_indexed(what, path_and_query, body, decode)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// [`Federated::gather`], each answer with the index of the store that sent it.
    fn gather_indexed<T: Send + 'static>(
        &self,
        what: &str,
        path_and_query: &str,
        body: Option<String>,
        decode: Decode<T>,
    ) -> Result<Vec<(usize, T)>> {
        let answers = self.ask_all(path_and_query, body, decode);
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for (i, (peer, answer)) in self.peers.iter().zip(answers).enumerate() {
            match answer {
                Ok(Ok(v)) => out.push((i, v)),
                Ok(Err(why)) => {
                    missing.push((i, peer, format!("sent an answer we cannot read: {why}")))
                }
                Err(Failure::Refused(msg)) => return Err(QueryError::BadRequest(msg)),
                Err(Failure::Missing(why)) => missing.push((i, peer, why)),
            }
        }
        self.stats
            .peer_failures
            .fetch_add(missing.len() as u64, Relaxed);
        // Fewer stores missing than hold each series: every series still came from a replica.
        let partial = missing.len() >= self.replication;
        for (i, peer, why) in &missing {
            if partial {
                crate::partial::mark(&peer.name);
            }
            if let Some(suppressed) = self.logged[*i].tick() {
                if partial {
                    tracing::warn!(store = %peer.name, %why, what, suppressed, "a store did not answer: answers lack its share (partial)");
                } else {
                    tracing::warn!(store = %peer.name, %why, what, suppressed, replication = self.replication, "a store did not answer: its replicas answered for it");
                }
            }
        }
        if out.is_empty() {
            let why: Vec<String> = missing
                .iter()
                .map(|(_, p, w)| format!("{} ({w})", p.name))
                .collect();
            return Err(QueryError::Unavailable(format!(
                "no store answered {what}: {}",
                why.join("; ")
            )));
        }
        if partial {
            self.stats.partial_answers.fetch_add(1, Relaxed);
        }
        Ok(out)
    }

    /// A target pushed down whole: its raw series from every store, replicas merged.
    fn read_target(&self, target: &str, from: i64, until: i64) -> Result<Vec<Named>> {
        let q = format!(
            "/render?format=tally&local=1&noCache=1&from={from}&until={until}&target={}",
            enc(target)
        );
        self.read_merged(&format!("the read of {target}"), &q, None)
    }

    /// A `format=tally` read asked of every store, the answers' replicas merged.
    fn read_merged(
        &self,
        what: &str,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<Vec<Named>> {
        let parts = self.gather(
            what,
            path_and_query,
            body,
            crate::graphite::cluster::read_render_tally,
        )?;
        Ok(merge_replicas(
            parts
                .into_iter()
                .map(|v| v.into_iter().map(named).collect()),
        ))
    }

    /// The body of a read of `names` by name (`series=`, Tally's addition to `local=1`).
    fn by_name(names: &[String], from: i64, until: i64) -> String {
        let mut body = format!("format=tally&local=1&noCache=1&from={from}&until={until}");
        for n in names {
            body.push_str("&series=");
            body.push_str(&enc(n));
        }
        body
    }

    /// A read where each series is on several stores (`replication` > 1): the names first
    /// (`names_query`, answered by every store), then each series from one store that holds
    /// it, the stores sharing the work, then the gaps of each (the slots from its first to its
    /// last missing one) from another store that holds it. Half the points move compared to
    /// asking every store for everything. The stores are asked for names with `series=`
    /// (Tally's addition to `local=1`: names taken verbatim). The names are gathered as any
    /// read is (a missing store counted, logged and, from `replication` on, marked); a store
    /// failing after that falls back to [`Federated::read_target`].
    fn read_replicated(
        &self,
        target: &str,
        names_query: &str,
        names: Decode<Vec<String>>,
        from: i64,
        until: i64,
    ) -> Result<Vec<Named>> {
        let fallback = || self.read_target(target, from, until);
        let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, ns) in
            self.gather_indexed(&format!("the names of {target}"), names_query, None, names)?
        {
            for n in ns {
                holders.entry(n).or_default().push(i);
            }
        }
        let shares = assign(&holders, self.peers.len());
        let ask = |share: &[String], from: i64, until: i64| -> Option<Ask> {
            (!share.is_empty()).then(|| {
                (
                    "/render".to_owned(),
                    Some((FORM, Self::by_name(share, from, until))),
                )
            })
        };
        let each = shares.iter().map(|s| ask(s, from, until)).collect();
        // Each name with the store it came from and its gaps (found while decoding).
        type Read = (usize, Fetched, Option<(usize, usize)>);
        let mut read: BTreeMap<String, Read> = BTreeMap::new();
        for (i, a) in self
            .ask_each(each, crate::graphite::cluster::read_render_tally)
            .into_iter()
            .enumerate()
        {
            match a {
                None => {}
                Some(Ok(Ok(series))) => {
                    for s in series {
                        let gaps = s.gaps;
                        let (name, f) = named(s);
                        match read.get_mut(&name) {
                            Some((_, have, gaps)) => {
                                merge_into(have, f);
                                *gaps = gaps_of(&have.values);
                            }
                            None => {
                                read.insert(name, (i, f, gaps));
                            }
                        }
                    }
                }
                Some(_) => return fallback(),
            }
        }
        // The gaps, from another holder: one request per store over the span of the gaps it
        // is asked to fill.
        let mut fills: Vec<(Vec<String>, i64, i64)> =
            vec![(Vec::new(), i64::MAX, i64::MIN); self.peers.len()];
        for (name, (from_store, f, gaps)) in &read {
            let Some((first, last)) = *gaps else {
                continue;
            };
            let Some(&other) = holders.get(name).and_then(|hs| {
                hs.iter()
                    .filter(|&&h| h != *from_store)
                    .min_by_key(|&&h| fills[h].0.len())
            }) else {
                continue;
            };
            let fill = &mut fills[other];
            fill.0.push(name.clone());
            fill.1 = fill.1.min(f.start + first as i64 * f.step - f.step);
            fill.2 = fill.2.max(f.start + last as i64 * f.step);
        }
        let each = fills
            .iter()
            .map(|(names, a, b)| ask(names, *a, *b))
            .collect();
        for a in self
            .ask_each(each, crate::graphite::cluster::read_render_tally)
            .into_iter()
            .flatten()
        {
            let Ok(Ok(series)) = a else {
                return fallback();
            };
            for (name, f) in series.into_iter().map(named) {
                if let Some((_, have, _)) = read.get_mut(&name) {
                    merge_into(have, f);
                }
            }
        }
        Ok(read.into_iter().map(|(n, (_, f, _))| (n, f)).collect())
    }

    fn state_path(&self, key: &str) -> PathBuf {
        // Keys are ours (`alerts`, ...); hex keeps any byte out of the path's syntax.
        let name: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        self.state_dir.join(format!("{name}.state"))
    }
}

/// A series as a store sent it, as the engine reads it.
fn named(s: crate::graphite::cluster::RemoteSeries) -> Named {
    (
        s.name,
        Fetched {
            start: s.start,
            step: s.step,
            values: s.values,
            places: None,
        },
    )
}

fn reason(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One node of a store's `/metrics/find?format=msgpack`.
#[derive(Deserialize)]
struct RemoteNode {
    path: String,
    is_leaf: bool,
}

/// The series of every store as one list, sorted by name: a series several stores hold is
/// merged point by point ([`merge_into`]).
pub fn merge_replicas(parts: impl IntoIterator<Item = Vec<Named>>) -> Vec<Named> {
    let mut by_name: BTreeMap<String, Fetched> = BTreeMap::new();
    for part in parts {
        for (name, f) in part {
            match by_name.get_mut(&name) {
                Some(have) => merge_into(have, f),
                None => {
                    by_name.insert(name, f);
                }
            }
        }
    }
    by_name.into_iter().collect()
}

/// Fills the slots `have` lacks from another replica of the same series: a value is taken,
/// never added. Replicas at different steps (stores with different retentions) keep the finer
/// one as it is: a coarser slot aggregates several finer ones, so it fills none of them.
pub fn merge_into(have: &mut Fetched, mut other: Fetched) {
    if other.step <= 0 || have.step <= 0 {
        return;
    }
    if other.step < have.step {
        std::mem::swap(have, &mut other);
    }
    if other.step != have.step {
        return;
    }
    // Each value kept is one of the two's: the finer places hold both.
    have.places = have.places.zip(other.places).map(|(a, b)| a.max(b));
    if other.start == have.start {
        // The same grid (the same range read from two stores): slot by slot.
        for (slot, v) in have.values.iter_mut().zip(other.values) {
            if slot.is_none() {
                *slot = v;
            }
        }
        return;
    }
    for (i, v) in other.values.into_iter().enumerate() {
        let Some(v) = v else { continue };
        let t = other.start + i as i64 * other.step;
        let off = t - have.start;
        if off < 0 || off % have.step != 0 {
            continue;
        }
        if let Some(slot) = have.values.get_mut((off / have.step) as usize) {
            if slot.is_none() {
                *slot = Some(v);
            }
        }
    }
}

/// A `seriesByTag` call of `exprs`, each quoted with a quote it does not contain.
fn series_by_tag(exprs: &[&str]) -> Result<String> {
    let quoted: Result<Vec<String>> = exprs
        .iter()
        .map(|e| {
            if !e.contains('\'') {
                Ok(format!("'{e}'"))
            } else if !e.contains('"') {
                Ok(format!("\"{e}\""))
            } else {
                Err(QueryError::BadRequest(format!(
                    "tag expression {e:?} holds both quotes; a query node cannot pass it on"
                )))
            }
        })
        .collect();
    Ok(format!("seriesByTag({})", quoted?.join(",")))
}

/// `/metrics/expand`'s answer.
#[derive(Deserialize)]
struct Expanded {
    results: Vec<String>,
}

/// `expr=...&expr=...` for `/tags/findSeries`.
fn expr_query(exprs: &[&str]) -> String {
    exprs
        .iter()
        .map(|e| format!("expr={}", enc(e)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The first and the last missing slot's index, if any is missing.
fn gaps_of(values: &[Option<f64>]) -> Option<(usize, usize)> {
    Some((
        values.iter().position(Option::is_none)?,
        values.iter().rposition(Option::is_none)?,
    ))
}

/// Which holder reads each name: the least loaded so far, so that the stores share the read.
fn assign(holders: &BTreeMap<String, Vec<usize>>, stores: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = vec![Vec::new(); stores];
    for (name, hs) in holders {
        if let Some(&h) = hs.iter().min_by_key(|&&h| out[h].len()) {
            out[h].push(name.clone());
        }
    }
    out
}

fn json<T: serde::de::DeserializeOwned>(b: &[u8]) -> std::result::Result<T, String> {
    serde_json::from_slice(b).map_err(|e| e.to_string())
}

/// A canonical name's value of `tag` (`name` is the part before the first `;`).
fn tag_of<'a>(name: &'a str, tag: &str) -> Option<&'a str> {
    use tally_proto::series_name::{metric_name, tags};
    if tag == "name" {
        return Some(metric_name(name));
    }
    tags(name).find(|(k, _)| *k == tag).map(|(_, v)| v)
}

impl Source for Federated {
    fn find(&self, pattern: &str) -> Result<Vec<FindMatch>> {
        let q = format!(
            "/metrics/find?local=1&format=msgpack&query={}",
            enc(pattern)
        );
        let parts = self.gather(&format!("the find of {pattern}"), &q, None, |b| {
            rmp_serde::from_slice::<Vec<RemoteNode>>(b).map_err(|e| e.to_string())
        })?;
        let mut nodes: BTreeMap<String, FindMatch> = BTreeMap::new();
        for n in parts.into_iter().flatten() {
            let m = nodes.entry(n.path.clone()).or_insert(FindMatch {
                path: n.path,
                is_leaf: false,
                has_children: false,
            });
            if n.is_leaf {
                m.is_leaf = true;
            } else {
                m.has_children = true;
            }
        }
        Ok(nodes.into_values().collect())
    }

    fn expand(&self, pattern: &str) -> Result<Vec<String>> {
        let q = format!("/metrics/expand?leavesOnly=1&query={}", enc(pattern));
        let parts = self.gather(
            &format!("the expansion of {pattern}"),
            &q,
            None,
            json::<Expanded>,
        )?;
        let all: BTreeSet<String> = parts.into_iter().flat_map(|e| e.results).collect();
        Ok(all.into_iter().collect())
    }

    fn select_by_tags(&self, exprs: &[&str]) -> Result<Vec<String>> {
        let parts = self.gather(
            "a tag selection",
            &format!("/tags/findSeries?{}", expr_query(exprs)),
            None,
            json::<Vec<String>>,
        )?;
        let all: BTreeSet<String> = parts.into_iter().flatten().collect();
        Ok(all.into_iter().collect())
    }

    fn fetch(&self, name: &str, from: i64, until: i64) -> Result<Option<Fetched>> {
        // A name read alone (a language that found its names itself), by name.
        let body = Self::by_name(&[name.to_owned()], from, until);
        Ok(self
            .read_merged(&format!("the read of {name}"), "/render", Some(body))?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f))
    }

    fn read_glob(&self, pattern: &str, from: i64, until: i64) -> Option<Result<Vec<Named>>> {
        if self.replication > 1 {
            let q = format!("/metrics/expand?leavesOnly=1&query={}", enc(pattern));
            return Some(self.read_replicated(
                pattern,
                &q,
                |b| json::<Expanded>(b).map(|e| e.results),
                from,
                until,
            ));
        }
        Some(self.read_target(pattern, from, until))
    }

    fn read_tagged(&self, exprs: &[&str], from: i64, until: i64) -> Option<Result<Vec<Named>>> {
        let target = match series_by_tag(exprs) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        if self.replication > 1 {
            let q = format!("/tags/findSeries?{}", expr_query(exprs));
            return Some(self.read_replicated(&target, &q, json::<Vec<String>>, from, until));
        }
        Some(self.read_target(&target, from, until))
    }

    fn tag_names(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Tag {
            tag: String,
        }
        let parts = self
            .gather("the tag list", "/tags", None, json::<Vec<Tag>>)
            .unwrap_or_default();
        let all: BTreeSet<String> = parts.into_iter().flatten().map(|t| t.tag).collect();
        all.into_iter().collect()
    }

    fn tag_values(&self, tag: &str) -> Vec<TagValue> {
        // Counted over the union of the series, so that replicas count once.
        let expr = format!("{tag}=~.+");
        let names = self.select_by_tags(&[&expr]).unwrap_or_default();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &names {
            if let Some(v) = tag_of(n, tag) {
                *counts.entry(v).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(value, series)| TagValue {
                value: value.to_owned(),
                series,
            })
            .collect()
    }

    fn register(&self, name: &str) -> Result<String> {
        Err(QueryError::BadRequest(format!(
            "a query node holds no series: send \"{name}\" to the relay or a store"
        )))
    }

    fn delete(&self, name: &str) -> Result<bool> {
        let body = format!("path={}", enc(name));
        let parts = self.gather(
            &format!("the deletion of {name}"),
            "/tags/delSeries",
            Some(body),
            json::<serde_json::Value>,
        )?;
        Ok(parts.iter().any(|v| v.as_bool() == Some(true)))
    }

    fn add_event(&self, when: i64, what: &str, data: &str, tags: Vec<String>) -> Result<u64> {
        let doc = serde_json::json!({"when": when, "what": what, "data": data, "tags": tags});
        let ask: Ask = (
            "/events".to_owned(),
            Some(("application/json", doc.to_string())),
        );
        let results: Vec<std::result::Result<(), String>> = self
            .ask_each(vec![Some(ask); self.peers.len()], |_| Ok(()))
            .into_iter()
            .map(|a| match a {
                Some(Ok(r)) => r,
                Some(Err(Failure::Refused(why) | Failure::Missing(why))) => Err(why),
                None => Err("not asked".to_owned()),
            })
            .collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        for (p, r) in self.peers.iter().zip(&results) {
            if let Err(why) = r {
                // Events are on every store: one that missed this one lacks it for good.
                crate::partial::mark(&p.name);
                tracing::warn!(store = %p.name, %why, "an event did not reach a store");
            }
        }
        if ok == 0 {
            return Err(QueryError::Unavailable(
                "no store took the event; it is not recorded".into(),
            ));
        }
        Ok(0)
    }

    fn events(&self, from: i64, until: i64) -> Result<Vec<Event>> {
        let q = format!("/events/get_data?from={from}&until={until}");
        let parts = self.gather("the events", &q, None, json::<Vec<serde_json::Value>>)?;
        // One event posted through the node is on every store: kept once.
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for v in parts.into_iter().flatten() {
            let tags: Vec<String> = v["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let e = Event {
                id: v["id"].as_u64().unwrap_or(0),
                when: v["when"].as_i64().unwrap_or(0),
                what: v["what"].as_str().unwrap_or_default().to_owned(),
                data: v["data"].as_str().unwrap_or_default().to_owned(),
                tags,
            };
            if seen.insert((e.when, e.what.clone(), e.data.clone(), e.tags.clone())) {
                out.push(e);
            }
        }
        out.sort_by(|a, b| a.when.cmp(&b.when).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.state_path(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(QueryError::Internal(format!(
                "reading {}: {e}",
                self.state_path(key).display()
            ))),
        }
    }

    fn save_state(&self, key: &str, value: &[u8]) -> Result<()> {
        // Written aside, synced, renamed over, and the directory synced: a crash leaves the old
        // document or the new one, never half of one.
        let path = self.state_path(key);
        let tmp = path.with_extension("tmp");
        let fail =
            |e: std::io::Error| QueryError::Internal(format!("writing {}: {e}", path.display()));
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(value).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        std::fs::File::open(&self.state_dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(start: i64, step: i64, values: &[Option<f64>]) -> Fetched {
        Fetched {
            start,
            step,
            values: values.to_vec(),
            places: None,
        }
    }

    #[test]
    fn replicas_fill_each_others_gaps_and_never_add() {
        let a = vec![(
            "s".to_owned(),
            f(60, 60, &[Some(1.0), None, Some(3.0), None]),
        )];
        let b = vec![
            (
                "s".to_owned(),
                f(60, 60, &[Some(9.0), Some(2.0), None, None]),
            ),
            ("t".to_owned(), f(60, 60, &[Some(5.0)])),
        ];
        let merged = merge_replicas([a, b]);
        assert_eq!(merged.len(), 2);
        assert_eq!(
            merged[0].1.values,
            [Some(1.0), Some(2.0), Some(3.0), None],
            "the first replica's value wins where both have one; gaps filled, nothing summed"
        );
        assert_eq!(merged[1].0, "t");
    }

    #[test]
    fn a_finer_replica_is_kept_and_a_coarser_one_fills_none_of_it() {
        let mut have = f(120, 120, &[Some(1.0), None]);
        merge_into(&mut have, f(60, 60, &[None, Some(7.0), Some(8.0), None]));
        assert_eq!((have.start, have.step), (60, 60));
        assert_eq!(have.values, [None, Some(7.0), Some(8.0), None]);
    }

    /// The model: merging replicas of one true series, each with slots dropped at random,
    /// gives the true series wherever any replica has the slot, whatever the order.
    #[test]
    fn merging_replicas_with_random_gaps_gives_the_union_of_what_they_hold() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let n = (next() % 40) as usize + 1;
            let truth: Vec<f64> = (0..n).map(|_| (next() % 1000) as f64).collect();
            let replicas = (next() % 3) as usize + 1;
            let mut held = vec![false; n];
            let parts: Vec<Vec<Named>> = (0..replicas)
                .map(|_| {
                    let values: Vec<Option<f64>> = truth
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            let keep = next() % 3 != 0;
                            held[i] |= keep;
                            keep.then_some(v)
                        })
                        .collect();
                    vec![("s".to_owned(), f(600, 10, &values))]
                })
                .collect();
            let merged = merge_replicas(parts);
            let want: Vec<Option<f64>> = truth
                .iter()
                .zip(&held)
                .map(|(&v, &h)| h.then_some(v))
                .collect();
            assert_eq!(merged[0].1.values, want);
        }
    }

    #[test]
    fn tag_values_are_read_from_canonical_names() {
        assert_eq!(tag_of("req;host=a;vhost=b", "vhost"), Some("b"));
        assert_eq!(tag_of("req;host=a", "name"), Some("req"));
        assert_eq!(tag_of("req;host=a", "dc"), None);
        assert_eq!(
            series_by_tag(&["name=a", "x=~b'c"]).expect("quotable"),
            "seriesByTag('name=a',\"x=~b'c\")"
        );
        assert!(series_by_tag(&["x='\""]).is_err());
    }

    #[test]
    fn peers_are_named_by_host_and_port() {
        let p = Peer::parse("127.0.0.1:8081/").expect("parses");
        assert_eq!(
            (p.url.as_str(), p.name.as_str()),
            ("http://127.0.0.1:8081", "127.0.0.1:8081")
        );
        assert_eq!(
            Peer::parse("https://s1.example").expect("parses").name,
            "s1.example:443"
        );
        assert!(Peer::parse("ftp://x").is_err());
    }
}
