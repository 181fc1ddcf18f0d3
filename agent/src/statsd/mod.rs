//! statsd: the agent as the application's metrics daemon on the host (`[statsd]`).
//!
//! ```text
//! UDP / TCP --listen--> journal --(reading loop)--> parse --> agg --> spool --> ship
//!                         \__ position __ checkpoint __ open buckets __/
//! ```
//!
//! - `listen`: the UDP and TCP listeners; a datagram or a TCP line is *accepted* once it is
//!   written to the journal.
//! - `journal`: the segments that give packets an offset, so they count exactly once across
//!   `kill -9`, as log lines do.
//! - [`parse`]: the line protocol (Etsy's, with DogStatsD tags).
//! - `buckets`: Spectator's percentile buckets, for timers that aggregate across hosts.
//! - here: from a parsed metric to an observation of the statsd aggregator (an [`Agg`] of its
//!   own, five "rules", one per type, whose series are a name and its tags), with Etsy's name
//!   sanitizing; bad parts are counted and logged at a bounded rate.

pub(crate) mod buckets;
pub(crate) mod journal;
pub(crate) mod listen;
pub mod parse;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::agg::{member_hash, Agg, Kind, Obs, RuleShape, SEP};
use crate::naming::StatsdNaming;
use parse::{Metric, Value};

/// The validated `[statsd]` section.
#[derive(Debug, Clone)]
pub struct StatsdSettings {
    /// Listen at all (the journal is read in any case, so nothing accepted is left behind
    /// when statsd is turned off).
    pub enabled: bool,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// `None`: Tally's tagged names (with the agent's host).
    pub etsy_naming: Option<StatsdNaming>,
    pub percentiles: Vec<f64>,
    pub percentile_buckets: bool,
    pub max_series: usize,
    pub journal_max_bytes: u64,
    pub max_line_bytes: usize,
    pub tcp_max_connections: usize,
    pub receive_buffer_bytes: usize,
}

impl Default for StatsdSettings {
    fn default() -> Self {
        StatsdSettings {
            enabled: false,
            udp: None,
            tcp: None,
            etsy_naming: None,
            percentiles: vec![90.0],
            percentile_buckets: false,
            max_series: 10_000,
            journal_max_bytes: 256 << 20,
            max_line_bytes: 64 << 10,
            tcp_max_connections: 256,
            receive_buffer_bytes: 8 << 20,
        }
    }
}

/// The statsd aggregator's rules, one per type, in this order.
const COUNTER: usize = 0;
const GAUGE: usize = 1;
const TIMER: usize = 2;
const HISTOGRAM: usize = 3;
const SET: usize = 4;

/// The statsd aggregator's rule shapes. Their names are what a checkpoint knows them by.
pub(crate) fn shapes(s: &StatsdSettings) -> Vec<RuleShape> {
    let shape = |name: &str, kind| RuleShape {
        name: name.into(),
        kind,
        tags: vec!["name".into(), "tags".into()],
        max_values: usize::MAX,
    };
    let timer = |prefix| Kind::StatsdTimer {
        percentiles: s.percentiles.clone(),
        buckets: s.percentile_buckets.then_some(prefix),
    };
    vec![
        shape("statsd.counter", Kind::StatsdCounter),
        shape("statsd.gauge", Kind::StatsdGauge),
        shape("statsd.timer", timer(b'T')),
        shape("statsd.histogram", timer(b'D')),
        shape("statsd.set", Kind::StatsdSet),
    ]
}

/// Bytes Etsy's `sanitizeKeyName` keeps (`[a-zA-Z_\-0-9.;=]`); blanks become `_`, `/` `-`.
fn keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b';' | b'=')
}

/// [`keep`] but `;`, as a table: whether a name byte needs no sanitizing and starts no tag,
/// the test every metric's name takes byte by byte.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'=');
        b += 1;
    }
    t
};

/// Etsy's `sanitizeKeyName`: runs of blanks become one `_`, `/` becomes `-`, bytes outside
/// `[a-zA-Z0-9_\-.;=]` go.
fn sanitize_into(out: &mut Vec<u8>, s: &[u8]) {
    let mut blank = false;
    for &b in s {
        if b.is_ascii_whitespace() || b == 0x0b {
            if !blank {
                out.push(b'_');
            }
            blank = true;
            continue;
        }
        blank = false;
        if b == b'/' {
            out.push(b'-');
        } else if keep(b) {
            out.push(b);
        }
    }
}

/// Counts and the log of bad parts, for the agent's own metrics.
#[derive(Debug, Default)]
pub(crate) struct Ingest {
    /// Metrics counted.
    pub(crate) metrics: u64,
    /// Parts that were not metrics.
    pub(crate) bad: u64,
    key: Vec<u8>,
    scratch: Vec<u8>,
    tags: Vec<(Vec<u8>, Vec<u8>)>,
    logged: Option<Instant>,
    unlogged: u64,
}

impl Ingest {
    /// Counts one journal line, received at `t`, into `agg`.
    pub(crate) fn line(&mut self, agg: &mut Agg, line: &[u8], t: i64, now: i64) {
        // Never late, never ahead of the clock: a clock stepped back does not lose metrics.
        let t = t.min(now).max(agg.horizon());
        parse::parse_line(line, |r| match r {
            Ok(m) => match self.build_key(&m) {
                Ok(()) => {
                    let (rule, obs) = observation(&m);
                    agg.add(rule, &self.key, t, now, obs);
                    self.metrics += 1;
                }
                Err(reason) => self.bad(&parse::Bad { part: line, reason }),
            },
            Err(b) => self.bad(&b),
        });
    }

    fn bad(&mut self, b: &parse::Bad<'_>) {
        self.bad += 1;
        self.unlogged += 1;
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                bad = self.unlogged,
                "statsd: bad metric (one line per 10 s; the count includes those not logged): {b}"
            );
            self.logged = Some(Instant::now());
            self.unlogged = 0;
        }
    }

    /// The series key: the name as Etsy sanitizes it, [`SEP`], the tags (`k=v;k2=v2`, sorted,
    /// both from the name's own `;k=v` and from DogStatsD's `|#k:v`), [`SEP`].
    fn build_key(&mut self, m: &Metric<'_>) -> Result<(), &'static str> {
        self.key.clear();
        let fast = m.tags.is_none() && m.name.iter().all(|&b| PLAIN[usize::from(b)]);
        if fast {
            self.key.extend_from_slice(m.name);
        } else {
            sanitize_into(&mut self.key, m.name);
        }
        // Tags written into the name (`api.hits;env=prod`), as Etsy's graphite backend reads
        // them.
        let name_end = if fast {
            self.key.len()
        } else {
            memchr::memchr(b';', &self.key).unwrap_or(self.key.len())
        };
        let name = &self.key[..name_end];
        if name.is_empty() {
            return Err(
                "nothing is left of the name once characters Graphite cannot take are removed",
            );
        }
        if name.first() == Some(&b'.')
            || name.last() == Some(&b'.')
            || memchr::memchr_iter(b'.', name).any(|i| name.get(i + 1) == Some(&b'.'))
        {
            return Err("the name has an empty path node");
        }
        if fast {
            self.key.push(SEP);
            self.key.push(SEP);
            return Ok(());
        }
        self.tags.clear();
        for t in self.key[name_end..].split(|&b| b == b';') {
            if !t.is_empty() {
                push_tag(&mut self.tags, t);
            }
        }
        if let Some(raw) = m.tags {
            for t in raw.split(|&b| b == b',') {
                // Etsy: the first ';' becomes '_', the first ':' '='; then the sanitizing.
                let mut t = t.to_vec();
                if let Some(i) = t.iter().position(|&b| b == b';') {
                    t[i] = b'_';
                }
                if let Some(i) = t.iter().position(|&b| b == b':') {
                    t[i] = b'=';
                }
                self.scratch.clear();
                sanitize_into(&mut self.scratch, &t);
                let s = std::mem::take(&mut self.scratch);
                push_tag(&mut self.tags, &s);
                self.scratch = s;
            }
        }
        self.key.truncate(name_end);
        self.key.push(SEP);
        // Sorted by tag name, a repeated tag keeping its last value (carbon's rule).
        self.tags.sort_by(|a, b| a.0.cmp(&b.0));
        let mut first = true;
        for (i, (k, v)) in self.tags.iter().enumerate() {
            if self.tags.get(i + 1).is_some_and(|next| next.0 == *k) {
                continue;
            }
            if !first {
                self.key.push(b';');
            }
            first = false;
            self.key.extend_from_slice(k);
            self.key.push(b'=');
            self.key.extend_from_slice(v);
        }
        self.key.push(SEP);
        Ok(())
    }
}

/// One sanitized `k=v` (or a bare `k`, which becomes `k=true`); an empty name, the name
/// `name` (carbon's metric name) and a value starting with `~` are left out.
fn push_tag(tags: &mut Vec<(Vec<u8>, Vec<u8>)>, t: &[u8]) {
    let (k, v) = match memchr::memchr(b'=', t) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, &b""[..]),
    };
    if k.is_empty() || k == b"name" {
        return;
    }
    let v = if v.is_empty() { &b"true"[..] } else { v };
    tags.push((k.to_vec(), v.to_vec()));
}

/// Which rule a metric counts for, and as what.
fn observation(m: &Metric<'_>) -> (usize, Obs) {
    // As Etsy: a counter adds value * (1 / rate), a timer sample counts 1 / rate.
    let weight = 1.0 / m.rate;
    match m.value {
        Value::Counter(v) => (COUNTER, Obs::Value(v * weight)),
        Value::Gauge { value, delta } => (
            GAUGE,
            if delta {
                Obs::Delta(value)
            } else {
                Obs::Value(value)
            },
        ),
        Value::Timer { value, unit } => (
            if unit == parse::TimerType::Ms {
                TIMER
            } else {
                HISTOGRAM
            },
            Obs::Sample { value, weight },
        ),
        // Etsy: an empty member is "0".
        Value::Set(member) => (
            SET,
            Obs::Member(member_hash(if member.is_empty() { b"0" } else { member })),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::Point;
    use crate::naming::Naming;

    fn agg(settings: &StatsdSettings, naming: StatsdNaming) -> Agg {
        Agg::new(
            10,
            10,
            3600,
            shapes(settings),
            Naming {
                host: "web1".into(),
                path_prefix: None,
            },
        )
        .for_statsd(settings.max_series, naming)
    }

    fn run(a: &mut Agg, packets: &[(&str, i64)], to: i64) -> Vec<(String, f64, i64)> {
        let mut ing = Ingest::default();
        for (p, t) in packets {
            parse::lines(p.as_bytes(), |l| ing.line(a, l, *t, *t));
        }
        a.advance(to);
        let mut out: Vec<Point> = Vec::new();
        a.emit(&mut out);
        let mut got: Vec<_> = out.into_iter().map(|p| (p.name, p.value, p.time)).collect();
        got.sort_by(|x, y| x.0.cmp(&y.0).then(x.2.cmp(&y.2)));
        got
    }

    fn get(got: &[(String, f64, i64)], name: &str, t: i64) -> Option<f64> {
        got.iter().find(|p| p.0 == name && p.2 == t).map(|p| p.1)
    }

    fn etsy(legacy: bool) -> StatsdNaming {
        StatsdNaming::Etsy {
            legacy,
            global: "stats".into(),
            counter: "counters".into(),
            timer: "timers".into(),
            gauge: "gauges".into(),
            set: "sets".into(),
        }
    }

    #[test]
    fn etsy_names_and_values_for_every_type() {
        let s = StatsdSettings {
            percentiles: vec![90.0, 50.0],
            ..StatsdSettings::default()
        };
        let mut a = agg(&s, etsy(false));
        let mut packet = String::new();
        for ms in 1..=10 {
            packet.push_str(&format!("api.time:{ms}|ms\n"));
        }
        packet.push_str(
            "api.hits:3|c|@0.5\napi.hits:1|c\nq:5|g\nq:-2|g\nq:+10|g\nu:a|s\nu:b|s\nu:a|s\n",
        );
        packet.push_str("tagged:1|c|#env:prod,dc:ny\nin.name;env=prod:2|c\n");
        let got = run(&mut a, &[(&packet, 1001)], 1010);
        let g = |n: &str| get(&got, n, 1000);
        assert_eq!(g("stats.counters.api.hits.count"), Some(7.0));
        assert_eq!(g("stats.counters.api.hits.rate"), Some(0.7));
        assert_eq!(g("stats.gauges.q"), Some(13.0));
        assert_eq!(g("stats.sets.u.count"), Some(2.0));
        assert_eq!(g("stats.counters.tagged.count;dc=ny;env=prod"), Some(1.0));
        assert_eq!(g("stats.counters.in.name.count;env=prod"), Some(2.0));
        for (stat, want) in [
            ("count", 10.0),
            ("count_ps", 1.0),
            ("lower", 1.0),
            ("upper", 10.0),
            ("sum", 55.0),
            ("mean", 5.5),
            ("median", 5.5),
            ("count_90", 9.0),
            ("upper_90", 9.0),
            ("sum_90", 45.0),
            ("mean_90", 5.0),
            ("upper_50", 5.0),
            ("sum_squares", 385.0),
        ] {
            let v = g(&format!("stats.timers.api.time.{stat}")).unwrap_or(f64::NAN);
            assert!(
                (v - want).abs() <= want * 0.01,
                "{stat}: {v} want {want}; {got:?}"
            );
        }
        // The next, quiet interval: counters 0, timers count 0, sets empty, gauges kept.
        let got = run(&mut a, &[], 1020);
        let g = |n: &str| get(&got, n, 1010);
        assert_eq!(g("stats.counters.api.hits.count"), Some(0.0));
        assert_eq!(g("stats.timers.api.time.count"), Some(0.0));
        assert_eq!(g("stats.timers.api.time.upper"), None);
        assert_eq!(g("stats.sets.u.count"), Some(0.0));
        assert_eq!(g("stats.gauges.q"), Some(13.0));
        let legacy = run(&mut agg(&s, etsy(true)), &[("a:2|c\nt:1|ms", 1001)], 1010);
        assert_eq!(get(&legacy, "stats.a", 1000), Some(0.2));
        assert_eq!(get(&legacy, "stats_counts.a", 1000), Some(2.0));
        assert_eq!(get(&legacy, "stats.timers.t.upper_90", 1000), Some(1.0));
    }

    #[test]
    fn tally_names_with_host_stat_and_buckets() {
        let s = StatsdSettings {
            percentile_buckets: true,
            ..StatsdSettings::default()
        };
        let mut a = agg(&s, StatsdNaming::tags("web1"));
        let got = run(
            &mut a,
            &[("t:2|ms|#route:/a\nh:3|h\nc:1|c\ng:4|g\ns:x|s", 1001)],
            1010,
        );
        let g = |n: &str| get(&got, n, 1000);
        assert_eq!(g("t;host=web1;route=-a;stat=p90"), Some(2.0));
        assert_eq!(g("t;host=web1;route=-a;stat=rate"), Some(0.1));
        assert_eq!(g("c;host=web1;stat=count"), Some(1.0));
        assert_eq!(g("g;host=web1"), Some(4.0));
        assert_eq!(g("s;host=web1"), Some(1.0));
        // 2 ms = 2,000,000 ns; 3 (a histogram's own unit).
        let t_bucket = format!("T{:04X}", buckets::index(2_000_000));
        let d_bucket = format!("D{:04X}", buckets::index(3));
        assert_eq!(
            g(&format!(
                "t;host=web1;percentile={t_bucket};route=-a;stat=percentile"
            )),
            Some(1.0)
        );
        assert_eq!(
            g(&format!(
                "h;host=web1;percentile={d_bucket};stat=percentile"
            )),
            Some(1.0)
        );
    }

    #[test]
    fn bad_parts_are_counted_and_good_ones_kept() {
        let s = StatsdSettings::default();
        let mut a = agg(&s, StatsdNaming::tags("web1"));
        let mut ing = Ingest::default();
        parse::lines(b"ok:1|c\nbad\nx:1|c:y|zz\n..:1|c\n$$:1|c", |l| {
            ing.line(&mut a, l, 1001, 1001)
        });
        assert_eq!((ing.metrics, ing.bad), (2, 4));
    }

    #[test]
    fn a_flood_of_names_is_capped_and_forgotten_when_quiet() {
        let s = StatsdSettings {
            max_series: 3,
            ..StatsdSettings::default()
        };
        let mut a = agg(&s, StatsdNaming::tags("web1"));
        let packet: String = (0..10).map(|i| format!("n{i}:1|c\n")).collect();
        let got = run(&mut a, &[(&packet, 1001)], 1010);
        assert_eq!(get(&got, "other;host=web1;stat=count", 1000), Some(7.0));
        assert_eq!(a.sizes().series, 4);
        assert_eq!(a.counts().overflow, 7);
        // An hour later nothing is zero-filled any more, and the series are forgotten.
        run(&mut a, &[], 1010 + 3700);
        a.forget_idle(1010 + 3700 - 3600);
        assert_eq!(a.sizes().series, 0);
        let got = run(&mut a, &[("m:1|c", 5000)], 5010);
        assert_eq!(get(&got, "m;host=web1;stat=count", 5000), Some(1.0));
    }
}
