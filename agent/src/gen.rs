//! A deterministic generator of realistic access-log lines, for benchmarks, tests and the demo.
//!
//! Combined format plus `vhost=`, `cdn=` and `rt=` fields, as an nginx `log_format` would write
//! them: five vhosts, a status mix of about 82% 2xx, 8% 3xx, 6.5% 4xx and 3.5% 5xx, request times
//! that are log-normal (and slow for 5xx), a few percent failure beacons from several sources,
//! and a small share of malformed lines. During an *incident* one CDN's beacons spike, 5xx rise
//! and latency grows. [`Truth`] counts what was written, so a test can check every total.

use std::collections::BTreeMap;
use std::io::Write;

/// A small, fast, seedable PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn pick<'a, T>(&mut self, table: &'a [(T, u32)]) -> &'a T {
        let total: u32 = table.iter().map(|e| e.1).sum();
        let mut r = self.below(u64::from(total)) as u32;
        for (item, w) in table {
            if r < *w {
                return item;
            }
            r -= w;
        }
        &table[0].0
    }

    /// Log-normal with the given parameters of the underlying normal.
    fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.f64().max(1e-12), self.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mu + sigma * z).exp()
    }
}

pub(crate) const VHOSTS: &[(&str, u32)] = &[
    ("www.example.com", 50),
    ("api.example.com", 20),
    ("static.example.com", 15),
    ("img.example.net", 10),
    ("shop.example.org", 5),
];
const STATUS: &[(u16, u32)] = &[
    (200, 800),
    (204, 10),
    (206, 10),
    (301, 20),
    (302, 25),
    (304, 35),
    (400, 5),
    (401, 5),
    (403, 10),
    (404, 40),
    (429, 5),
    (500, 15),
    (502, 8),
    (503, 8),
    (504, 4),
];
const METHODS: &[(&str, u32)] = &[
    ("GET", 850),
    ("POST", 100),
    ("HEAD", 30),
    ("PUT", 10),
    ("DELETE", 5),
    ("OPTIONS", 5),
];
pub(crate) const SOURCES: &[(&str, u32)] = &[
    ("cdn_fastly", 45),
    ("cdn_akamai", 30),
    ("cdn_edgecast", 15),
    ("origin", 10),
];
const CDNS: &[(&str, u32)] = &[
    ("fastly", 45),
    ("akamai", 30),
    ("edgecast", 15),
    ("origin", 10),
];
const POPS: &[&str] = &[
    "NYC", "IAD", "SJC", "LAX", "ORD", "AMS", "FRA", "LHR", "NRT", "SYD",
];
const UAS: &[(&str, u32)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", 30),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15", 12),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", 15),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36", 12),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", 6),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 5),
    ("curl/7.88.1", 2),
    ("ExampleApp/6.42 (iPhone; iOS 17.1; Scale/3.00)", 4),
    ("-", 1),
];
const REFERERS: &[(&str, u32)] = &[
    ("-", 40),
    ("https://www.google.com/", 20),
    ("https://www.example.com/", 15),
    ("https://www.example.com/search?q=ceramic+mug", 8),
    ("https://www.example.com/listing/1234567/handmade-mug", 12),
];
const WORDS: &[&str] = &[
    "mug", "ceramic", "vintage", "ring", "silver", "print", "poster", "wool", "scarf", "leather",
    "lamp", "candle",
];

/// What the generator wrote: the exact totals a correct reader must find.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Truth {
    pub lines: u64,
    pub bad: u64,
    pub status: BTreeMap<u16, u64>,
    pub vhost: BTreeMap<String, u64>,
    pub beacons: BTreeMap<String, u64>,
    pub rt_sum_ms: u64,
}

impl Truth {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The generator.
#[derive(Debug, Clone)]
pub struct Gen {
    rng: Rng,
    /// The time of the next line, in Unix seconds.
    pub time: i64,
    /// Lines per second of log time.
    pub rate: u64,
    in_second: u64,
    /// Share of beacon lines (0.03 = 3%).
    pub beacon_share: f64,
    /// Share of malformed lines.
    pub bad_share: f64,
    /// During an incident, this beacon source spikes, 5xx rise and latency grows.
    pub incident: Option<&'static str>,
    stamp: (i64, String),
}

impl Gen {
    pub fn new(seed: u64, start: i64, rate: u64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            time: start,
            rate: rate.max(1),
            in_second: 0,
            beacon_share: 0.03,
            bad_share: 0.002,
            incident: None,
            stamp: (i64::MIN, String::new()),
        }
    }

    fn stamp(&mut self) -> &str {
        if self.stamp.0 != self.time {
            let t = chrono::DateTime::from_timestamp(self.time, 0).unwrap_or_default();
            self.stamp = (self.time, t.format("%d/%b/%Y:%H:%M:%S +0000").to_string());
        }
        &self.stamp.1
    }

    /// Appends one line (with its newline) and counts it in `truth`.
    pub fn line(&mut self, out: &mut Vec<u8>, truth: &mut Truth) {
        self.in_second += 1;
        if self.in_second > self.rate {
            self.in_second = 1;
            self.time += 1;
        }
        truth.lines += 1;
        let r = self.rng.f64();
        let ip = match self.rng.below(3) {
            0 => format!("198.51.100.{}", 1 + self.rng.below(254)),
            1 => format!("203.0.113.{}", 1 + self.rng.below(254)),
            _ => format!("2001:db8::{:x}", self.rng.below(65536)),
        };
        let incident = self.incident;
        let beacon_share = if incident.is_some() {
            self.beacon_share * 4.0
        } else {
            self.beacon_share
        };
        let (vhost, status, method, path, bytes, rt, cdn, src);
        if r < beacon_share {
            let s = match incident {
                Some(s) if self.rng.f64() < 0.8 => s,
                _ => *self.rng.pick(SOURCES),
            };
            let pop = POPS[self.rng.below(POPS.len() as u64) as usize];
            src = Some(s);
            vhost = "www.example.com";
            status = 200;
            method = "GET";
            path = format!(
                "/status/images/beacon.gif?source={s}&server_identity=cache-{}{}-{pop}",
                pop.to_lowercase(),
                1 + self.rng.below(98)
            );
            bytes = 43;
            rt = self.rng.below(4) as f64 / 1000.0;
            cdn = if s == "origin" { "origin" } else { &s[4..] };
        } else {
            src = None;
            vhost = *self.rng.pick(VHOSTS);
            let mut st = *self.rng.pick(STATUS);
            if incident.is_some() && self.rng.f64() < 0.15 {
                st = 503;
            }
            status = st;
            method = *self.rng.pick(METHODS);
            let w = WORDS[self.rng.below(WORDS.len() as u64) as usize];
            path = match vhost {
                "api.example.com" => {
                    format!("/v3/listings/{}", 1_000_000 + self.rng.below(9_000_000))
                }
                "static.example.com" => {
                    format!("/assets/dist/js/{w}.{:016x}.js", self.rng.next_u64())
                }
                "img.example.net" => format!(
                    "/il/{:06x}/il_570xN.{}.jpg",
                    self.rng.below(1 << 24),
                    self.rng.below(4_000_000_000)
                ),
                _ => format!(
                    "/listing/{}/{w}-{}",
                    1_000_000 + self.rng.below(9_000_000),
                    WORDS[self.rng.below(WORDS.len() as u64) as usize]
                ),
            };
            bytes = if status == 204 || status == 304 || method == "HEAD" {
                0
            } else {
                self.rng.lognormal(8.3, 1.3) as u64
            };
            let slow = if incident.is_some() { 1.5 } else { 0.0 };
            let secs = if status >= 500 {
                self.rng.lognormal(-0.5 + slow, 1.2)
            } else if vhost.starts_with("static") || vhost.starts_with("img") {
                self.rng.lognormal(-5.0 + slow, 1.0)
            } else {
                self.rng.lognormal(-2.8 + slow, 1.0)
            };
            rt = (secs.min(59.0) * 1000.0).round() / 1000.0;
            cdn = *self.rng.pick(CDNS);
        }
        let ua = *self.rng.pick(UAS);
        let referer = *self.rng.pick(REFERERS);
        let proto = if self.rng.below(10) < 3 {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        let stamp = self.stamp().to_string();
        let start = out.len();
        let _ = write!(
            out,
            "{ip} - - [{stamp}] \"{method} {path} {proto}\" {status} {bytes} \"{referer}\" \"{ua}\" vhost={vhost} cdn={cdn} rt={rt:.3}"
        );
        if self.rng.f64() < self.bad_share {
            // Malformed: cut before the request ends, or junk.
            if self.rng.below(2) == 0 {
                let quote = memchr::memchr(b'"', &out[start..]).unwrap_or(0);
                out.truncate(start + quote + 4);
            } else {
                out.truncate(start);
                out.extend_from_slice(b"\x00\x01 not an access log line ]\"[");
            }
            out.push(b'\n');
            truth.bad += 1;
            return;
        }
        out.push(b'\n');
        *truth.status.entry(status).or_default() += 1;
        *truth.vhost.entry(vhost.to_string()).or_default() += 1;
        if let Some(s) = src {
            *truth.beacons.entry(s.to_string()).or_default() += 1;
        }
        truth.rt_sum_ms += (rt * 1000.0).round() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_as_the_presets_expect_and_truth_adds_up() {
        let mut g = Gen::new(7, 1_795_328_389, 100);
        let mut truth = Truth::default();
        let mut out = Vec::new();
        for _ in 0..20_000 {
            g.line(&mut out, &mut truth);
        }
        let mut good = 0;
        for l in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(a) = crate::access::parse(l) {
                if crate::access::field(a.rest, b"rt").is_some() {
                    good += 1;
                    assert!(crate::access::parse_clf_time(a.time).is_some());
                }
            }
        }
        assert_eq!(good, truth.lines - truth.bad);
        assert_eq!(truth.status.values().sum::<u64>(), good);
        let beacons: u64 = truth.beacons.values().sum();
        assert!((400..800).contains(&beacons), "{beacons}");
        assert_eq!(g.time, 1_795_328_389 + 199);
    }
}
