// Shared by several benchmarks, each of which uses only part of it.
#![allow(dead_code)]

//! Deterministic benchmark inputs: the same bytes on every machine, from a fixed seed.

/// xorshift64*: tiny, seeded, good enough to spread names and values.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const VHOSTS: [&str; 5] = ["www", "api", "static", "img", "m"];
const STATUS: [&str; 8] = ["200", "200", "200", "200", "304", "404", "500", "503"];
const SOURCES: [&str; 4] = ["cdn_fastly", "cdn_akamai", "cdn_cloudfront", "origin"];

/// Graphite plaintext as an agent fleet and collectd-style senders write it: `tagged_pct` percent
/// tagged lines (`requests;host=..;status=..;vhost=..`), the rest plain paths; counter values as
/// integers, latencies as floats with 3 decimals, timestamps 10 s apart.
pub fn plaintext(lines: usize, tagged_pct: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(lines * 64);
    let mut ts: u64 = 1_763_000_000;
    for i in 0..lines {
        if i % 1000 == 0 {
            ts += 10;
        }
        let host = rng.below(200);
        let vhost = VHOSTS[rng.below(5) as usize];
        let float = rng.below(3) == 0;
        let value = if float {
            format!("{}.{:03}", rng.below(3), rng.below(1000))
        } else {
            rng.below(5000).to_string()
        };
        let line = if rng.below(100) < tagged_pct {
            if float {
                format!("latency.p99;host=web{host};vhost={vhost} {value} {ts}\n")
            } else if rng.below(10) == 0 {
                let src = SOURCES[rng.below(4) as usize];
                format!("beacons;host=web{host};source={src} {value} {ts}\n")
            } else {
                let st = STATUS[rng.below(8) as usize];
                format!("requests;host=web{host};status={st};vhost={vhost} {value} {ts}\n")
            }
        } else if float {
            format!("servers.web{host}.{vhost}.latency.p99 {value} {ts}\n")
        } else {
            let st = STATUS[rng.below(8) as usize];
            format!("servers.web{host}.{vhost}.requests.{st} {value} {ts}\n")
        };
        out.extend_from_slice(line.as_bytes());
    }
    out
}
