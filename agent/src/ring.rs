//! Placement of series on several stores, exactly as carbon-c-relay 3.7 places them.
//!
//! A site runs carbon-c-relay in front of its stores (`cluster stores carbon_ch replication 2
//! ...`), and an agent that ships to those stores itself must put every series on the stores the
//! relay would: a reader then finds a series where the relay's senders put it too, and one
//! store's loss costs the same share either way. This is a port of the relay's
//! `consistent-hash.c` (identical in 3.7.3, Debian's, and 3.9), checked against the relay itself:
//! `tests/it/relay.rs` feeds 10,000 names to `carbon-c-relay -t` and requires the same stores.
//!
//! - **`carbon_ch`**: graphite's own ring. Each member has 100 points at the first two bytes of
//!   the MD5 of `('host', 'instance'):i` (`('host', None):i` without an instance; the port is not
//!   part of it). A name's position is the first two bytes of its MD5; its stores are the first
//!   `replication` distinct members from the first point at or after that position, wrapping.
//! - **`fnv1a_ch`**: the same ring with 32-bit FNV-1a folded to 16 bits, over `i-host:port`, or
//!   `i-instance` when the member has one.
//! - **`jump_fnv1a_ch`**: Lamping and Veach's jump hash of the name's 64-bit FNV-1a over the
//!   members (those with an instance first, sorted by it; then the rest in the order given);
//!   each further replica is drawn again after an xorshift of the hash, among the rest.
//!
//! Where the ring sorts equal positions, the relay's order is kept (host, then instance or
//! port), and of several points at one position the first one's member takes them all, as the
//! relay overwrites them. Bytes are hashed as C `char`, which is signed: a byte of 0x80 or more
//! enters FNV-1a sign-extended. That is why FNV-1a is written out here rather than taken from
//! the `fnv` crate (64-bit only, unsigned bytes); MD5 comes from `md-5`.
//!
//! The live relay hashes a tagged series (`name;tag=value ...`) by its name before the first
//! `;` only, so every series of one name lands on the same stores ([`series_key`]); its test
//! mode (`-t`) hashes the whole text up to the first space instead.

use std::fmt;

use md5::{Digest, Md5};

/// The points each member has on a `carbon_ch` or `fnv1a_ch` ring (`HASH_REPLICAS`).
const POINTS_PER_MEMBER: usize = 100;

/// The relay writes a member's key with `snprintf` into 256 bytes: longer keys are cut there.
const KEY_MAX: usize = 255;

/// How the ring hashes: carbon-c-relay's cluster types of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    CarbonCh,
    Fnv1aCh,
    JumpFnv1aCh,
}

impl Hashing {
    /// Every name, as written in the config and in the relay's.
    pub const NAMES: [&'static str; 3] = ["carbon_ch", "fnv1a_ch", "jump_fnv1a_ch"];

    /// `carbon_ch`, `fnv1a_ch` or `jump_fnv1a_ch`.
    pub fn parse(s: &str) -> Option<Hashing> {
        match s {
            "carbon_ch" => Some(Hashing::CarbonCh),
            "fnv1a_ch" => Some(Hashing::Fnv1aCh),
            "jump_fnv1a_ch" => Some(Hashing::JumpFnv1aCh),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hashing::CarbonCh => "carbon_ch",
            Hashing::Fnv1aCh => "fnv1a_ch",
            Hashing::JumpFnv1aCh => "jump_fnv1a_ch",
        }
    }
}

impl fmt::Display for Hashing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One store as carbon-c-relay's cluster line names it: `host[:port][=instance]`. What the ring
/// hashes is taken from these: the host as written (not resolved), the port (2003 when not
/// given), the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub host: String,
    pub port: u16,
    pub instance: Option<String>,
}

impl Member {
    /// The relay's default port.
    pub const DEFAULT_PORT: u16 = 2003;

    /// Parses a relay server entry: `10.0.0.1`, `10.0.0.1:2103`, `store1:2003=a`,
    /// `[::1]:2003=b`. As the relay does, a last `:` is the port unless the text ends in `]`.
    pub fn parse(text: &str) -> Result<Member, String> {
        let (addr, instance) = match text.split_once('=') {
            Some((_, "")) => {
                return Err(format!("\"{text}\": an empty instance after '='"));
            }
            Some((a, i)) => (a, Some(i.to_string())),
            None => (text, None),
        };
        if let Some(i) = &instance {
            if i.contains(|c: char| c.is_whitespace() || c == ';' || c == '\'') {
                return Err(format!(
                    "\"{text}\": the instance \"{i}\" has a space, ';' or quote"
                ));
            }
        }
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) if !addr.ends_with(']') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("\"{text}\": \"{p}\" is not a port"))?;
                (h, port)
            }
            _ => (addr, Member::DEFAULT_PORT),
        };
        let host = match host.strip_prefix('[') {
            Some(h) => h
                .strip_suffix(']')
                .ok_or_else(|| format!("\"{text}\": expected ']'"))?,
            None => host,
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '\'') {
            return Err(format!("\"{text}\" is not host[:port][=instance]"));
        }
        Ok(Member {
            host: host.to_string(),
            port,
            instance,
        })
    }

    /// The key of the member's `i`-th point on a `carbon_ch` ring: Python's repr of the tuple
    /// graphite hashes, `('10.0.0.1', 'a'):7` or `('10.0.0.1', None):7`.
    fn carbon_key(&self, i: usize) -> Vec<u8> {
        let instance = match &self.instance {
            Some(inst) => format!("'{inst}'"),
            None => "None".to_string(),
        };
        cut(format!("('{}', {instance}):{i}", self.host))
    }

    /// The key of the member's `i`-th point on an `fnv1a_ch` ring: `7-10.0.0.1:2003`, or
    /// `7-a` with an instance (which then stands for host and port).
    fn fnv1a_key(&self, i: usize) -> Vec<u8> {
        cut(match &self.instance {
            Some(inst) => format!("{i}-{inst}"),
            None => format!("{i}-{}:{}", self.host, self.port),
        })
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if let Some(i) = &self.instance {
            write!(f, "={i}")?;
        }
        Ok(())
    }
}

fn cut(key: String) -> Vec<u8> {
    let mut key = key.into_bytes();
    key.truncate(KEY_MAX);
    key
}

/// The bytes of a series name the live relay hashes: up to the first `;` (its tags) or space.
pub fn series_key(name: &[u8]) -> &[u8] {
    let end = memchr::memchr2(b';', b' ', name).unwrap_or(name.len());
    &name[..end]
}

/// `carbon_hashpos`: the first two bytes of the MD5.
fn carbon_pos(key: &[u8]) -> u16 {
    let d = Md5::digest(key);
    u16::from_be_bytes([d[0], d[1]])
}

/// 32-bit FNV-1a over C's signed `char`s.
fn fnv1a_32(key: &[u8]) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for &b in key {
        // `(unsigned int)*p` of a signed char: sign-extended.
        h = (h ^ (b as i8 as i32 as u32)).wrapping_mul(16_777_619);
    }
    h
}

/// 64-bit FNV-1a over C's signed `char`s.
fn fnv1a_64(key: &[u8]) -> u64 {
    let mut h: u64 = 14_695_981_039_346_656_037;
    for &b in key {
        h = (h ^ (b as i8 as i64 as u64)).wrapping_mul(1_099_511_628_211);
    }
    h
}

/// `fnv1a_hashpos`: the 32-bit hash folded to 16.
fn fnv1a_pos(key: &[u8]) -> u16 {
    let h = fnv1a_32(key);
    ((h >> 16) ^ (h & 0xFFFF)) as u16
}

/// `jump_bucketpos`: Lamping and Veach's jump consistent hash, in the relay's arithmetic.
fn jump_bucket(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

/// A ring over members, ready to place names.
#[derive(Debug, Clone)]
pub struct Ring {
    hashing: Hashing,
    replication: usize,
    members: usize,
    /// `carbon_ch`, `fnv1a_ch`: (position, member), sorted as the relay sorts them, each run of
    /// equal positions given to its first member.
    points: Vec<(u16, usize)>,
    /// `jump_fnv1a_ch`: the members in the relay's bucket order.
    order: Vec<usize>,
}

impl Ring {
    /// A ring over `members` (in the order the relay's cluster lists them) placing every name
    /// on `replication` of them. Refuses what the relay would mishandle: members the hash
    /// cannot tell apart, and more replicas than members.
    pub fn new(hashing: Hashing, members: &[Member], replication: usize) -> Result<Ring, String> {
        if members.is_empty() {
            return Err("no stores".into());
        }
        if replication == 0 || replication > members.len() {
            return Err(format!(
                "replication {replication} needs between 1 and {} stores (there are {})",
                members.len(),
                members.len()
            ));
        }
        // What tells two members apart on this ring; two alike would share every point.
        let identity = |m: &Member| -> String {
            match (hashing, &m.instance) {
                (Hashing::CarbonCh, i) => format!("host {} and instance {i:?}", m.host),
                (_, Some(i)) => format!("instance {i}"),
                (_, None) => format!("address {}:{}", m.host, m.port),
            }
        };
        for (i, a) in members.iter().enumerate() {
            for b in &members[..i] {
                if (&a.host, a.port) == (&b.host, b.port) {
                    // carbon-c-relay takes these for one server, and refuses two instances of it.
                    return Err(format!(
                        "stores \"{b}\" and \"{a}\" are one server, {}:{}",
                        a.host, a.port
                    ));
                }
                if identity(a) == identity(b) {
                    let hint = if hashing == Hashing::CarbonCh {
                        " (carbon_ch hashes host and instance, not the port: give each an =instance)"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "stores \"{b}\" and \"{a}\" have the same {} on a {hashing} ring{hint}",
                        identity(a)
                    ));
                }
            }
        }
        let mut points = Vec::new();
        let mut order = Vec::new();
        match hashing {
            Hashing::CarbonCh | Hashing::Fnv1aCh => {
                points.reserve(members.len() * POINTS_PER_MEMBER);
                for (m, member) in members.iter().enumerate() {
                    for i in 0..POINTS_PER_MEMBER {
                        let pos = if hashing == Hashing::CarbonCh {
                            carbon_pos(&member.carbon_key(i))
                        } else {
                            fnv1a_pos(&member.fnv1a_key(i))
                        };
                        points.push((pos, m));
                    }
                }
                // entrycmp_carbon: position, host, instance (none last); entrycmp_fnv1a:
                // position, host, port. Ties left are points of one member.
                points.sort_by(|&(pa, a), &(pb, b)| {
                    let (ma, mb) = (&members[a], &members[b]);
                    pa.cmp(&pb)
                        .then_with(|| ma.host.as_bytes().cmp(mb.host.as_bytes()))
                        .then_with(|| match hashing {
                            Hashing::CarbonCh => match (&ma.instance, &mb.instance) {
                                (None, None) => std::cmp::Ordering::Equal,
                                (None, Some(_)) => std::cmp::Ordering::Greater,
                                (Some(_), None) => std::cmp::Ordering::Less,
                                (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
                            },
                            _ => ma.port.cmp(&mb.port),
                        })
                });
                for i in 1..points.len() {
                    if points[i].0 == points[i - 1].0 {
                        points[i].1 = points[i - 1].1;
                    }
                }
            }
            Hashing::JumpFnv1aCh => {
                let numeric = |m: &Member| m.instance.as_deref().map(|i| i.parse::<i64>().ok());
                let kinds: Vec<Option<bool>> = members
                    .iter()
                    .map(|m| numeric(m).map(|n| n.is_some()))
                    .collect();
                if kinds.contains(&Some(true)) && kinds.contains(&Some(false)) {
                    return Err(
                        "jump_fnv1a_ch orders stores by instance: make the instances all numbers or all names"
                            .into(),
                    );
                }
                // entrycmp_jump_fnv1a: members with an instance first, by it (as numbers when
                // they are); the others in the order given.
                order = (0..members.len()).collect();
                order.sort_by(|&a, &b| {
                    let (ia, ib) = (&members[a].instance, &members[b].instance);
                    match (ia, ib) {
                        (None, None) => a.cmp(&b),
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (Some(x), Some(y)) => match (x.parse::<i64>(), y.parse::<i64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            _ => x.as_bytes().cmp(y.as_bytes()),
                        }
                        .then(a.cmp(&b)),
                    }
                });
            }
        }
        Ok(Ring {
            hashing,
            replication,
            members: members.len(),
            points,
            order,
        })
    }

    pub fn hashing(&self) -> Hashing {
        self.hashing
    }

    pub fn replication(&self) -> usize {
        self.replication
    }

    /// How many members the ring has.
    pub fn len(&self) -> usize {
        self.members
    }

    /// Never: a ring has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members == 0
    }

    /// The members (indexes into the list given to [`Ring::new`]) that hold the series named
    /// `name`, as the live relay places it (by [`series_key`]), first replica first.
    pub fn place_series(&self, name: &[u8], out: &mut Vec<usize>) {
        self.place_key(series_key(name), out)
    }

    /// The members for exactly the bytes `key` (what `carbon-c-relay -t` hashes: a line up to
    /// its first space).
    pub fn place_key(&self, key: &[u8], out: &mut Vec<usize>) {
        out.clear();
        match self.hashing {
            Hashing::CarbonCh | Hashing::Fnv1aCh => {
                let pos = if self.hashing == Hashing::CarbonCh {
                    carbon_pos(key)
                } else {
                    fnv1a_pos(key)
                };
                let first = self.points.partition_point(|&(p, _)| p < pos);
                for &(_, m) in self.points[first..].iter().chain(&self.points[..first]) {
                    if !out.contains(&m) {
                        out.push(m);
                        if out.len() == self.replication {
                            break;
                        }
                    }
                }
            }
            Hashing::JumpFnv1aCh => {
                let mut left = self.order.clone();
                let mut hash = fnv1a_64(key);
                while !left.is_empty() {
                    let j = jump_bucket(hash, left.len());
                    out.push(left[j]);
                    if out.len() == self.replication {
                        break;
                    }
                    hash ^= hash >> 12;
                    hash ^= hash << 25;
                    hash ^= hash >> 27;
                    hash = hash.wrapping_mul(2_685_821_657_736_338_717);
                    left.swap_remove(j);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members(list: &[&str]) -> Vec<Member> {
        list.iter()
            .map(|s| Member::parse(s).expect("member"))
            .collect()
    }

    fn place(ring: &Ring, key: &str) -> Vec<usize> {
        let mut out = Vec::new();
        ring.place_key(key.as_bytes(), &mut out);
        out
    }

    #[test]
    fn members_parse_as_the_relay_reads_its_cluster_lines() {
        for (text, host, port, instance) in [
            ("10.0.0.1", "10.0.0.1", 2003, None),
            ("10.0.0.1:2103", "10.0.0.1", 2103, None),
            ("store1:2003=a", "store1", 2003, Some("a")),
            ("127.0.0.1=7", "127.0.0.1", 2003, Some("7")),
            ("[::1]:2103=b", "::1", 2103, Some("b")),
            ("[::1]", "::1", 2003, None),
        ] {
            let m = Member::parse(text).expect(text);
            assert_eq!(
                (m.host.as_str(), m.port, m.instance.as_deref()),
                (host, port, instance),
                "{text}"
            );
            assert_eq!(Member::parse(&m.to_string()).expect("again"), m);
        }
        for (text, why) in [
            ("10.0.0.1:x", "\"10.0.0.1:x\": \"x\" is not a port"),
            ("10.0.0.1:0", "\"10.0.0.1:0\": \"0\" is not a port"),
            ("a=", "\"a=\": an empty instance after '='"),
            (":2003", "\":2003\" is not host[:port][=instance]"),
            ("[::1:2003", "\"[::1:2003\": expected ']'"),
            (
                "a=b c",
                "\"a=b c\": the instance \"b c\" has a space, ';' or quote",
            ),
        ] {
            assert_eq!(Member::parse(text).expect_err(text), why);
        }
    }

    /// Positions and placements printed by `carbon-c-relay -t -d` (3.7.3) for
    /// `cluster c carbon_ch replication 2 127.0.0.1:2103=a 127.0.0.1:2203=b 127.0.0.1:2303=c`
    /// and `fnv1a_ch` / `jump_fnv1a_ch` over `10.0.0.1:2003 10.0.0.2:2003 10.0.0.3:2004`.
    #[test]
    fn positions_and_placements_are_the_relays() {
        assert_eq!(carbon_pos(b"foo.bar"), 1273);
        assert_eq!(carbon_pos("café.x".as_bytes()), 7006);
        assert_eq!(carbon_pos(b"servers.web1.requests.www.2xx"), 44359);
        assert_eq!(fnv1a_pos(b"foo.bar"), 58720);
        // é is two bytes above 0x7f: this one checks the sign extension.
        assert_eq!(fnv1a_pos("café.x".as_bytes()), 34551);
        assert_eq!(fnv1a_pos(b"servers.web1.requests.www.2xx"), 11030);

        let c = Ring::new(
            Hashing::CarbonCh,
            &members(&["127.0.0.1:2103=a", "127.0.0.1:2203=b", "127.0.0.1:2303=c"]),
            2,
        )
        .expect("ring");
        // The relay's `-d` dump of the ring starts `330@c 398@a 474@a 784@c 1253@c`.
        let head: Vec<(u16, usize)> = c.points[..5].to_vec();
        assert_eq!(head, [(330, 2), (398, 0), (474, 0), (784, 2), (1253, 2)]);
        assert_eq!(place(&c, "foo.bar"), [2, 1]);
        assert_eq!(place(&c, "café.x"), [2, 0]);
        assert_eq!(place(&c, "servers.web1.requests.www.2xx"), [2, 0]);

        let plain = members(&["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2004"]);
        let f = Ring::new(Hashing::Fnv1aCh, &plain, 2).expect("ring");
        assert_eq!(place(&f, "foo.bar"), [2, 0]);
        assert_eq!(place(&f, "café.x"), [0, 2]);
        assert_eq!(place(&f, "servers.web1.requests.www.2xx"), [2, 1]);

        let j = Ring::new(Hashing::JumpFnv1aCh, &plain, 2).expect("ring");
        assert_eq!(place(&j, "foo.bar"), [1, 2]);
        assert_eq!(place(&j, "café.x"), [0, 1]);
        assert_eq!(place(&j, "servers.web1.requests.www.2xx"), [1, 2]);
    }

    #[test]
    fn a_tagged_series_is_placed_by_its_name() {
        let c = Ring::new(
            Hashing::CarbonCh,
            &members(&["127.0.0.1:2103=a", "127.0.0.1:2203=b", "127.0.0.1:2303=c"]),
            1,
        )
        .expect("ring");
        let mut a = Vec::new();
        let mut b = Vec::new();
        c.place_series(b"requests;host=web1;status=2xx", &mut a);
        c.place_series(b"requests", &mut b);
        assert_eq!(a, b);
        assert_eq!(series_key(b"requests;host=web1 1 2"), b"requests");
        assert_eq!(series_key(b"a.b 1 2"), b"a.b");
    }

    #[test]
    fn rings_the_relay_would_mishandle_are_refused() {
        let same_host = members(&["127.0.0.1:2103", "127.0.0.1:2203"]);
        assert_eq!(
            Ring::new(Hashing::CarbonCh, &same_host, 1).expect_err("alike"),
            "stores \"127.0.0.1:2103\" and \"127.0.0.1:2203\" have the same host 127.0.0.1 and \
             instance None on a carbon_ch ring (carbon_ch hashes host and instance, not the \
             port: give each an =instance)"
        );
        // fnv1a_ch tells them apart by port.
        assert!(Ring::new(Hashing::Fnv1aCh, &same_host, 2).is_ok());
        assert_eq!(
            Ring::new(Hashing::Fnv1aCh, &members(&["a:1=x", "b:2=x"]), 1).expect_err("alike"),
            "stores \"a:1=x\" and \"b:2=x\" have the same instance x on a fnv1a_ch ring"
        );
        assert_eq!(
            Ring::new(Hashing::CarbonCh, &members(&["a", "b"]), 3).expect_err("too many"),
            "replication 3 needs between 1 and 2 stores (there are 2)"
        );
        assert!(Ring::new(Hashing::JumpFnv1aCh, &members(&["a=1", "b=x"]), 1).is_err());
        assert_eq!(
            Ring::new(Hashing::Fnv1aCh, &members(&["a:1=x", "a:1=y"]), 1).expect_err("one"),
            "stores \"a:1=x\" and \"a:1=y\" are one server, a:1"
        );
    }

    fn any_ring() -> impl Strategy<Value = (Hashing, Vec<Member>, usize)> {
        (0usize..3, 1usize..8).prop_flat_map(|(h, n)| {
            let hashing = [Hashing::CarbonCh, Hashing::Fnv1aCh, Hashing::JumpFnv1aCh][h];
            let members: Vec<Member> = (0..n)
                .map(|i| Member {
                    host: format!("10.1.0.{i}"),
                    port: 2003,
                    instance: None,
                })
                .collect();
            (Just(hashing), Just(members), 1..=n)
        })
    }

    proptest! {
        #[test]
        fn every_name_gets_distinct_stores(
            (hashing, ms, repl) in any_ring(),
            name in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let ring = Ring::new(hashing, &ms, repl).expect("ring");
            let mut out = Vec::new();
            ring.place_key(&name, &mut out);
            prop_assert_eq!(out.len(), repl);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), repl);
            prop_assert!(out.iter().all(|&m| m < ms.len()));
        }

        /// Consistent hashing: a member added moves names only onto itself; the replicas a
        /// name had keep their order otherwise.
        #[test]
        fn adding_a_store_moves_names_only_to_it(
            (hashing, ms, _) in any_ring(),
            names in proptest::collection::vec("[a-z]{1,8}(\\.[a-z0-9]{1,8}){0,3}", 1..40),
        ) {
            let mut more = ms.clone();
            more.push(Member { host: "10.2.0.1".into(), port: 2003, instance: None });
            let before = Ring::new(hashing, &ms, 1).expect("ring");
            let after = Ring::new(hashing, &more, 1).expect("ring");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for n in &names {
                before.place_key(n.as_bytes(), &mut a);
                after.place_key(n.as_bytes(), &mut b);
                prop_assert!(a == b || b == [ms.len()], "{n}: {a:?} -> {b:?}");
            }
        }
    }
}
