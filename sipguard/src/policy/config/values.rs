//! The value types of the config and how each is read from YAML: durations,
//! port ranges, addresses and CIDRs, trusted entries (address or DNS name),
//! name servers; and the rule that a listed key must have a value.

use std::{fmt, net::IpAddr};

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer};

/// A duration written as `500ms`, `30s`, `5m`, `2h`, `1d` (or a number of
/// seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub std::time::Duration);

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{s}' is not a duration (like 500ms, 30s, 5m, 2h, 1d)"))?;
        let ms = match unit.trim() {
            "ms" => Some(n),
            "" | "s" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            other => {
                return Err(format!(
                    "'{s}': unknown duration unit '{other}' (use ms, s, m, h or d)"
                ))
            }
        };
        ms.map(|ms| Dur(std::time::Duration::from_millis(ms)))
            .ok_or_else(|| format!("'{s}' is too long"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

/// A name server address; port 53 when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsServer(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for DnsServer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(sa) = s.trim().parse::<std::net::SocketAddr>() {
            return Ok(DnsServer(sa));
        }
        s.trim()
            .parse::<IpAddr>()
            .map(|ip| DnsServer(std::net::SocketAddr::new(ip, 53)))
            .map_err(|_| {
                de::Error::custom(format_args!(
                    "'{s}' is not a name server address (\"192.0.2.53:53\", \"[2001:db8::53]:53\")"
                ))
            })
    }
}

/// One `trusted:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trusted {
    Net(Cidr),
    /// A DNS name, lower case, without a final dot.
    Name(String),
}

impl fmt::Display for Trusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trusted::Net(c) => c.fmt(f),
            Trusted::Name(n) => f.write_str(n),
        }
    }
}

/// A host name as RFC 1123 allows it, with at least one dot-free label
/// that is not all digits at the end (so `300.1.2.3` stays a bad address).
fn host_name(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return None;
    }
    let labels: Vec<&str> = s.split('.').collect();
    for l in &labels {
        let ok = !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return None;
        }
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some(s.to_ascii_lowercase())
}

impl std::str::FromStr for Trusted {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let looks_numeric =
            t.contains([':', '/']) || t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !looks_numeric {
            if let Some(n) = host_name(t) {
                return Ok(Trusted::Name(n));
            }
            return Err(format!(
                "'{t}' is not an IPv4/IPv6 address, a CIDR or a DNS name"
            ));
        }
        s.parse().map(Trusted::Net)
    }
}

impl<'de> Deserialize<'de> for Trusted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Visit::text(
            "an IPv4/IPv6 address, a CIDR or a DNS name as a string",
        ))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Visit {
            unsigned: Some(|v| Ok(Dur(std::time::Duration::from_secs(v)))),
            ..Visit::text("a duration like 500ms, 30s, 5m, 2h or 1d")
        })
    }
}

/// An inclusive port range; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

fn port_number(v: u64) -> Result<u16, String> {
    if (1..=65535).contains(&v) {
        Ok(v as u16)
    } else {
        Err(format!("port {v} is out of range 1-65535"))
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| -> Result<u16, String> {
            let t = t.trim();
            let n: u64 = t.parse().map_err(|_| {
                if t.is_empty() {
                    format!("'{s}' is not a port (5060) or a range (\"5060-5080\")")
                } else {
                    format!("'{t}' is not a port number")
                }
            })?;
            port_number(n)
        };
        match s.split_once('-') {
            None => {
                let p = num(s)?;
                Ok(PortRange { first: p, last: p })
            }
            Some((a, b)) => {
                let (first, last) = (num(a)?, num(b)?);
                if first > last {
                    return Err(format!(
                        "port range \"{s}\" is reversed (did you mean \"{last}-{first}\"?)"
                    ));
                }
                Ok(PortRange { first, last })
            }
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Visit {
            unsigned: Some(|v| {
                let p = port_number(v)?;
                Ok(PortRange { first: p, last: p })
            }),
            negative: Some(|v| Err(format!("port {v} is out of range 1-65535"))),
            ..Visit::text("a port (5060) or an inclusive range (\"5060-5080\")")
        })
    }
}

/// An address or CIDR; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(pub IpNet);

impl fmt::Display for Cidr {
    /// A single host prints as a bare address, as users write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(addr)));
        }
        let net: IpNet = s
            .parse()
            .map_err(|_| format!("'{s}' is not an IPv4/IPv6 address or CIDR"))?;
        if net.trunc() != net {
            return Err(format!(
                "'{s}' has host bits set (did you mean {}?)",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Visit::text("an IPv4/IPv6 address or CIDR as a string"))
    }
}

/// The one serde visitor of these value types: a string goes through the
/// type's `FromStr` (whose message becomes the config error), and a plain
/// number through `unsigned` or `negative` where the type takes numbers.
/// Without them a number is refused as serde refuses any unexpected type.
struct Visit<T> {
    expecting: &'static str,
    unsigned: Option<fn(u64) -> Result<T, String>>,
    negative: Option<fn(i64) -> Result<T, String>>,
}

impl<T> Visit<T> {
    fn text(expecting: &'static str) -> Visit<T> {
        Visit {
            expecting,
            unsigned: None,
            negative: None,
        }
    }
}

impl<T: std::str::FromStr<Err = String>> de::Visitor<'_> for Visit<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        match self.unsigned {
            Some(from) => from(v).map_err(E::custom),
            None => Err(E::invalid_type(de::Unexpected::Unsigned(v), &self)),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match self.negative {
            Some(from) => from(v).map_err(E::custom),
            None => Err(E::invalid_type(de::Unexpected::Signed(v), &self)),
        }
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        s.parse().map_err(E::custom)
    }
}

/// A list that is present must have a value: `trusted:` with nothing after
/// it (say, every entry commented out) is refused rather than read as an
/// empty list, which would silently change who may send SIP.
pub(super) fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Option::<Vec<T>>::deserialize(d)?.ok_or_else(|| {
        de::Error::custom("has no value (write [] for an empty list, or remove the key)")
    })
}
