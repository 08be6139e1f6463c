//! What the Local API's decision stream says, and the set of decisions it
//! adds up to.
//!
//! The stream is read with `dedup=false`: the Local API then lists every
//! decision with its id, so a value banned twice (say by a scenario for 4h
//! and by hand for 10m) stays banned until its longest decision ends, and
//! the deletion of one of them (which the API repeats for two seconds'
//! worth of pulls) never lifts the other.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;
use serde::Deserialize;

/// One decision as `GET /v1/decisions/stream` sends it (1.4.x: every field
/// a string but `id`; lists may be `null`).
#[derive(Debug, Clone, Deserialize)]
pub struct WireDecision {
    pub id: i64,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub scenario: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamResponse {
    #[serde(default, rename = "new")]
    pub added: Option<Vec<WireDecision>>,
    #[serde(default)]
    pub deleted: Option<Vec<WireDecision>>,
}

/// A Go `time.Duration` string (`38m55.633568505s`, `-22.04441ms`, `1h`,
/// `0s`) in nanoseconds; negative for decisions already over.
pub fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return None;
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if frac.contains('.') {
            return None;
        }
        let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut value = int.checked_mul(scale)?;
        // Digits past the unit's nanosecond resolution are dropped, as Go does.
        let mut place = scale;
        for d in frac.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            value += i128::from(d - b'0') * place;
        }
        total = total.checked_add(value)?;
        rest = tail;
    }
    Some(if neg { -total } else { total })
}

/// Why a decision from the stream is not applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// `captcha`, `throttle`, ...: sipguard can only drop.
    Type(String),
    /// `Country`, `AS`, `Username`, ...: not an address.
    Scope(String),
    /// An `Ip`/`Range` whose value does not parse.
    Value,
    /// A duration that does not parse.
    Duration,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Type(t) => write!(f, "type '{t}' (only 'ban' is applied)"),
            Skip::Scope(s) => write!(f, "scope '{s}' (only 'Ip' and 'Range' are applied)"),
            Skip::Value => f.write_str("an Ip/Range value that is not an address or CIDR"),
            Skip::Duration => f.write_str("a duration that does not parse"),
        }
    }
}

/// `::ffff:a.b.c.d` (dual-stack daemons log IPv4 clients so, and scenarios
/// copy it into decisions) bans the IPv4 address: IPv4 packets carry the
/// plain address, and a mapped IPv6 entry would never match one.
fn unmapped(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(a) => ipnet::Ipv4Net::new(a, n.prefix_len() - 96)
                .map(|v4| IpNet::V4(v4.trunc()))
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// A ban decision reduced to what the filter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub net: IpNet,
    /// CLOCK_BOOTTIME nanoseconds at which the decision ends.
    pub until_ns: u64,
    pub origin: String,
}

/// Reads one decision; `now_ns` is CLOCK_BOOTTIME now.
pub fn ban_of(d: &WireDecision, now_ns: u64) -> Result<Ban, Skip> {
    let kind = d.kind.as_deref().unwrap_or("");
    if !kind.eq_ignore_ascii_case("ban") {
        return Err(Skip::Type(kind.to_string()));
    }
    let scope = d.scope.as_deref().unwrap_or("");
    let value = d.value.as_deref().unwrap_or("").trim();
    let net = if scope.eq_ignore_ascii_case("ip") {
        value
            .parse::<std::net::IpAddr>()
            .map(IpNet::from)
            .map_err(|_| Skip::Value)?
    } else if scope.eq_ignore_ascii_case("range") {
        value
            .parse::<IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| Skip::Value)?
    } else {
        return Err(Skip::Scope(scope.to_string()));
    };
    let net = unmapped(net);
    let left = d
        .duration
        .as_deref()
        .and_then(parse_go_duration)
        .ok_or(Skip::Duration)?;
    let until = i128::from(now_ns) + left;
    let until_ns = until.clamp(0, i128::from(u64::MAX)) as u64;
    Ok(Ban {
        net,
        until_ns,
        origin: d.origin.clone().unwrap_or_default(),
    })
}

/// What one pull changes in the filter: entries to write (new, or a longer
/// decision for a prefix already there) and prefixes no decision holds any
/// more.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub upsert: Vec<Ban>,
    pub remove: Vec<IpNet>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// The decisions the filter holds: by id, and per prefix the longest one.
#[derive(Debug, Default)]
pub struct DecisionSet {
    by_id: HashMap<i64, Ban>,
    /// Per prefix: its decisions' ids.
    by_net: HashMap<IpNet, Vec<i64>>,
    /// Entries found in the pinned map when the daemon started: the first
    /// startup pull is compared with them, so a restart rewrites only what
    /// changed while no daemon was running.
    held: HashMap<IpNet, u64>,
    /// Not applied, by reason: seen so far (for metrics and `stats`).
    pub skipped: BTreeMap<Skip, u64>,
}

/// Remaining times the Local API computes at answer time jitter by the
/// request's latency: an entry whose end moved by less than this is not
/// rewritten.
const SAME_END_NS: u64 = 1_000_000_000;

fn same_end(a: u64, b: u64) -> bool {
    a.abs_diff(b) < SAME_END_NS
}

impl DecisionSet {
    pub fn len(&self) -> usize {
        self.by_net.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_net.is_empty()
    }

    /// The entry for each prefix: its longest decision.
    pub fn entries(&self) -> impl Iterator<Item = &Ban> {
        self.by_net.values().filter_map(|ids| self.longest(ids))
    }

    /// Applied prefixes per origin.
    pub fn by_origin(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for b in self.entries() {
            *m.entry(b.origin.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Entries that overlap a trusted prefix, with the trusted prefix. The
    /// filter checks trusted first, so these never drop the trusted part
    /// (a provider is never cut off); `check` and `bans` list them so an
    /// operator sees the decision is not (fully) applied.
    pub fn overlapping<'a>(&'a self, trusted: &'a [IpNet]) -> Vec<(&'a Ban, IpNet)> {
        let mut v = Vec::new();
        for b in self.entries() {
            if let Some(t) = trusted
                .iter()
                .find(|t| t.contains(&b.net) || b.net.contains(*t))
            {
                v.push((b, *t));
            }
        }
        v
    }

    /// Takes the entries a previous daemon left in the kernel (prefix, end).
    pub fn adopt(&mut self, held: impl IntoIterator<Item = (IpNet, u64)>) {
        self.held.extend(held);
    }

    fn longest(&self, ids: &[i64]) -> Option<&Ban> {
        ids.iter()
            .filter_map(|id| self.by_id.get(id))
            .max_by_key(|b| b.until_ns)
    }

    /// Applies one pull. With `startup`, the pull's `new` list is the whole
    /// truth: prefixes held before and absent from it are removed, so
    /// nothing stays stuck after the API was away. A skip reason seen for
    /// the first time is returned once, for the caller to log.
    pub fn apply(
        &mut self,
        resp: &StreamResponse,
        startup: bool,
        now_ns: u64,
    ) -> (Changes, Vec<Skip>) {
        let mut before: HashMap<IpNet, u64> = self
            .by_net
            .iter()
            .filter_map(|(n, ids)| self.longest(ids).map(|b| (*n, b.until_ns)))
            .collect();
        if startup {
            for (n, until) in self.held.drain() {
                before.entry(n).or_insert(until);
            }
        }
        let mut first_seen = Vec::new();
        if startup {
            self.by_id.clear();
            self.by_net.clear();
        }
        for d in resp.deleted.iter().flatten() {
            if let Some(b) = self.by_id.remove(&d.id) {
                if let Some(ids) = self.by_net.get_mut(&b.net) {
                    ids.retain(|i| *i != d.id);
                    if ids.is_empty() {
                        self.by_net.remove(&b.net);
                    }
                }
            }
        }
        for d in resp.added.iter().flatten() {
            match ban_of(d, now_ns) {
                Ok(b) if b.until_ns > now_ns => {
                    let net = b.net;
                    if let Some(old) = self.by_id.insert(d.id, b) {
                        if let Some(ids) = self.by_net.get_mut(&old.net) {
                            ids.retain(|i| *i != d.id);
                            if ids.is_empty() {
                                self.by_net.remove(&old.net);
                            }
                        }
                    }
                    self.by_net.entry(net).or_default().push(d.id);
                }
                Ok(_) => {}
                Err(skip) => {
                    let n = self.skipped.entry(skip.clone()).or_insert(0);
                    if *n == 0 {
                        first_seen.push(skip);
                    }
                    *n += 1;
                }
            }
        }
        let mut changes = Changes::default();
        for (net, ids) in &self.by_net {
            if let Some(b) = self.longest(ids) {
                if !before.get(net).is_some_and(|u| same_end(*u, b.until_ns)) {
                    changes.upsert.push(b.clone());
                }
            }
        }
        for net in before.keys() {
            if !self.by_net.contains_key(net) {
                changes.remove.push(*net);
            }
        }
        (changes, first_seen)
    }

    /// Drops decisions whose time is over (the kernel already ignores
    /// them; this keeps the host's set and the maps small).
    pub fn expire(&mut self, now_ns: u64) -> Vec<IpNet> {
        let over: Vec<i64> = self
            .by_id
            .iter()
            .filter(|(_, b)| b.until_ns <= now_ns)
            .map(|(id, _)| *id)
            .collect();
        let mut gone = Vec::new();
        for id in over {
            if let Some(b) = self.by_id.remove(&id) {
                if let Some(ids) = self.by_net.get_mut(&b.net) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
                        self.by_net.remove(&b.net);
                        gone.push(b.net);
                    }
                }
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn go_durations_as_the_local_api_writes_them() {
        assert_eq!(
            parse_go_duration("38m55.633568505s"),
            Some(38 * 60 * S + 55 * S + 633_568_505)
        );
        assert_eq!(parse_go_duration("-22.04441ms"), Some(-22_044_410));
        assert_eq!(
            parse_go_duration("1h59m58.025640066s"),
            Some(7198 * S + 25_640_066)
        );
        assert_eq!(parse_go_duration("0s"), Some(0));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("1.5h"), Some(5400 * S));
        assert_eq!(parse_go_duration("350µs"), Some(350_000));
        for bad in ["", "-", "5", "1x", "h", "1..2s", "1h-2m", "."] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    fn wire(id: i64, kind: &str, scope: &str, value: &str, dur: &str) -> WireDecision {
        WireDecision {
            id,
            origin: Some("cscli".into()),
            kind: Some(kind.into()),
            scope: Some(scope.into()),
            value: Some(value.into()),
            duration: Some(dur.into()),
            scenario: None,
        }
    }

    /// A stream response that only adds `decisions`.
    fn added(decisions: Vec<WireDecision>) -> StreamResponse {
        StreamResponse {
            added: Some(decisions),
            deleted: None,
        }
    }

    /// A new set after the start-up pull of `decisions` at `now`, with what
    /// that pull changed and skipped.
    fn pulled(now: u64, decisions: Vec<WireDecision>) -> (DecisionSet, Changes, Vec<Skip>) {
        let mut set = DecisionSet::default();
        let (ch, skipped) = set.apply(&added(decisions), true, now);
        (set, ch, skipped)
    }

    #[test]
    fn what_1_4_sends_null_lists_duplicates_and_other_types() {
        // Captured from crowdsec 1.4.6 (`dedup=false`, after cscli adds).
        let body = r#"{"deleted":null,"new":[
          {"duration":"28.011582576s","id":2,"origin":"cscli","scenario":"manual 'ban' from 'harness'","scope":"Range","type":"ban","value":"10.9.0.0/24"},
          {"duration":"4m59.011580663s","id":4,"origin":"cscli","scenario":"manual 'captcha' from 'harness'","scope":"Ip","type":"captcha","value":"2001:db8::5"},
          {"duration":"4m59.011580162s","id":5,"origin":"cscli","scenario":"manual 'ban' from 'harness'","scope":"Range","type":"ban","value":"2001:db8:1::/64"},
          {"duration":"4m59.011579831s","id":6,"origin":"cscli","scenario":"manual 'ban' from 'harness'","scope":"Country","type":"ban","value":"FR"},
          {"duration":"59m58.011579601s","id":1,"origin":"cscli","scenario":"manual 'ban' from 'harness'","scope":"Ip","type":"ban","value":"10.1.2.3"},
          {"duration":"1h59m58.011579311s","id":3,"origin":"cscli","scenario":"manual 'ban' from 'harness'","scope":"Ip","type":"ban","value":"10.1.2.3"}]}"#;
        let resp: StreamResponse = serde_json::from_str(body).unwrap();
        let now = 1_000 * S as u64;
        let mut set = DecisionSet::default();
        let (ch, first) = set.apply(&resp, true, now);
        assert_eq!(set.len(), 3);
        assert!(ch.remove.is_empty());
        let host = ch
            .upsert
            .iter()
            .find(|b| b.net == "10.1.2.3/32".parse::<IpNet>().unwrap())
            .unwrap();
        assert_eq!(
            i128::from(host.until_ns - now),
            7198 * S + 11_579_311,
            "the longer of the two decisions wins"
        );
        assert_eq!(
            first,
            vec![Skip::Type("captcha".into()), Skip::Scope("Country".into())]
        );

        // Deleting the longer one keeps the shorter; its deletion repeated
        // in the next pull changes nothing.
        let del = StreamResponse {
            added: None,
            deleted: Some(vec![wire(3, "ban", "Ip", "10.1.2.3", "-22.04441ms")]),
        };
        let (ch, _) = set.apply(&del, false, now);
        assert_eq!(ch.upsert.len(), 1);
        assert_eq!(
            i128::from(ch.upsert[0].until_ns - now),
            3598 * S + 11_579_601
        );
        assert_eq!(set.apply(&del, false, now).0, Changes::default());

        let del1 = StreamResponse {
            added: None,
            deleted: Some(vec![wire(1, "ban", "Ip", "10.1.2.3", "-1s")]),
        };
        let (ch, _) = set.apply(&del1, false, now);
        assert_eq!(ch.remove, vec!["10.1.2.3/32".parse::<IpNet>().unwrap()]);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn startup_pull_removes_what_the_api_no_longer_has() {
        let now = 10 * S as u64;
        let (mut set, ..) = pulled(
            now,
            vec![
                wire(1, "ban", "Ip", "192.0.2.1", "1h"),
                wire(2, "ban", "Range", "2001:db8::/64", "1h"),
            ],
        );
        let again = added(vec![wire(2, "ban", "Range", "2001:db8::/64", "59m59.5s")]);
        let (ch, _) = set.apply(&again, true, now);
        assert_eq!(ch.remove, vec!["192.0.2.1/32".parse::<IpNet>().unwrap()]);
        assert!(ch.upsert.is_empty(), "the same end is not written again");
        let later = added(vec![wire(3, "ban", "Range", "2001:db8::/64", "2h")]);
        assert_eq!(set.apply(&later, false, now).0.upsert.len(), 1);
    }

    #[test]
    fn decisions_over_trusted_prefixes_are_reported() {
        let (set, ..) = pulled(
            10 * S as u64,
            vec![
                wire(1, "ban", "Ip", "203.0.113.10", "1h"),
                wire(2, "ban", "Range", "2001:db8:100::/40", "1h"),
                wire(3, "ban", "Ip", "192.0.2.1", "1h"),
            ],
        );
        let trusted: Vec<IpNet> = vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8:100::/48".parse().unwrap(),
        ];
        let mut over: Vec<(String, String)> = set
            .overlapping(&trusted)
            .into_iter()
            .map(|(b, t)| (b.net.to_string(), t.to_string()))
            .collect();
        over.sort();
        assert_eq!(
            over,
            vec![
                ("2001:db8:100::/40".into(), "2001:db8:100::/48".into()),
                ("203.0.113.10/32".into(), "203.0.113.0/24".into()),
            ]
        );
    }

    #[test]
    fn a_restarted_daemon_rewrites_only_what_changed() {
        let now = 100 * S as u64;
        let mut set = DecisionSet::default();
        let hour = now + 3600 * S as u64;
        set.adopt([
            ("192.0.2.1/32".parse().unwrap(), hour),
            ("192.0.2.9/32".parse().unwrap(), hour),
        ]);
        let resp = added(vec![
            wire(1, "ban", "Ip", "192.0.2.1", "59m59.8s"),
            wire(2, "ban", "Ip", "192.0.2.2", "1h"),
        ]);
        let (ch, _) = set.apply(&resp, true, now);
        let up: Vec<String> = ch.upsert.iter().map(|b| b.net.to_string()).collect();
        assert_eq!(up, vec!["192.0.2.2/32"]);
        assert_eq!(ch.remove, vec!["192.0.2.9/32".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn bad_values_and_expired_decisions_are_not_applied() {
        let now = 10 * S as u64;
        let (mut set, ch, first) = pulled(
            now,
            vec![
                wire(1, "ban", "Ip", "not-an-ip", "1h"),
                wire(2, "ban", "Ip", "192.0.2.1", "soon"),
                wire(3, "ban", "Ip", "192.0.2.2", "-1s"),
                wire(4, "BAN", "ip", "192.0.2.3", "1h"),
                wire(5, "ban", "Range", "198.51.100.7/24", "1h"),
                wire(6, "ban", "Ip", "::ffff:203.0.113.9", "1h"),
                wire(7, "ban", "Range", "::ffff:203.0.113.0/120", "1h"),
            ],
        );
        assert_eq!(first, vec![Skip::Value, Skip::Duration]);
        let nets: Vec<String> = ch.upsert.iter().map(|b| b.net.to_string()).collect();
        assert_eq!(nets.len(), 4);
        for n in [
            "192.0.2.3/32",
            "198.51.100.0/24",
            "203.0.113.9/32",
            "203.0.113.0/24",
        ] {
            assert!(nets.contains(&n.to_string()), "{n} in {nets:?}");
        }
        let mut gone = set.expire(now + 3600 * S as u64);
        gone.sort();
        let mut want: Vec<IpNet> = [
            "192.0.2.3/32",
            "198.51.100.0/24",
            "203.0.113.9/32",
            "203.0.113.0/24",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
        want.sort();
        assert_eq!(gone, want);
        assert!(set.is_empty());
    }
}
