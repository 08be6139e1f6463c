//! The YAML configuration: parsed strictly (unknown keys are errors) and
//! validated so that every error names the field and the line.

use std::{fmt, net::IpAddr, path::Path};

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer};

/// Where `sipguard run` and `check` look when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/sipguard/sipguard.yaml";

/// The policy used when there is no config file at all: inspect untrusted
/// SIP with the scanner rules. Safe on first start, needs no allowlist.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Interfaces to attach to (the WAN side). `--iface` overrides.
    #[serde(default, deserialize_with = "list")]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub xdp_mode: XdpModeSetting,
    /// `enforce` drops; `monitor` only counts what would be dropped.
    #[serde(default)]
    pub mode: Mode,
    /// What happens to SIP from sources that are neither trusted nor blocked.
    #[serde(default)]
    pub policy: UntrustedPolicy,
    /// Destination ports (UDP and TCP) that carry SIP.
    #[serde(default = "default_ports", deserialize_with = "list")]
    pub sip_ports: Vec<PortRange>,
    /// Also judge UDP to any other port as SIP when its payload starts with
    /// a SIP request line (NAT pinholes, forwarded ports); other UDP there
    /// passes untouched.
    #[serde(default)]
    pub any_udp_port: bool,
    /// Sources that may always send SIP (provider proxies, own PBX):
    /// addresses, CIDRs or DNS names (resolved and refreshed, see `dns`).
    #[serde(default, deserialize_with = "list")]
    pub trusted: Vec<Trusted>,
    /// Sources whose SIP is always dropped.
    #[serde(default, deserialize_with = "list")]
    pub blocked: Vec<Cidr>,
    /// SIP rules for untrusted sources under `policy: inspect`.
    #[serde(default)]
    pub inspect: Inspect,
    /// How the names in `trusted` are resolved.
    #[serde(default)]
    pub dns: DnsSettings,
    /// Trust the destinations of outbound REGISTER/INVITE for a while.
    #[serde(default)]
    pub learn_registrars: LearnRegistrars,
    /// Blocklist files (one address or CIDR a line, `#` comments), reloaded
    /// on SIGHUP and when they change.
    #[serde(default, deserialize_with = "list")]
    pub feeds: Vec<std::path::PathBuf>,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub bans: BansConfig,
    /// Non-first fragments: `track` drops the rest of a datagram whose first
    /// fragment was dropped; `pass` lets every later fragment through.
    #[serde(default)]
    pub fragments: FragmentPolicy,
    /// SIGTERM/SIGINT: `detach` removes the filter and its pins; `keep`
    /// leaves it filtering for the next daemon to adopt.
    #[serde(default)]
    pub on_exit: OnExit,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// How the daemon logs drop events: `text`, `json` (one object a line
    /// on stdout) or `off`.
    #[serde(default)]
    pub log: EventLog,
    /// At most one event per source per this interval.
    #[serde(default = "default_event_interval")]
    pub interval: Dur,
    /// Unix socket `sipguard events` reads from (mode 0600).
    #[serde(default = "default_events_socket")]
    pub socket: std::path::PathBuf,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            log: EventLog::default(),
            interval: default_event_interval(),
            socket: default_events_socket(),
        }
    }
}

pub const DEFAULT_EVENTS_SOCKET: &str = "/run/sipguard/events.sock";

fn default_event_interval() -> Dur {
    Dur(std::time::Duration::from_secs(1))
}
fn default_events_socket() -> std::path::PathBuf {
    DEFAULT_EVENTS_SOCKET.into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventLog {
    #[default]
    Text,
    Json,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BansConfig {
    /// Default: on under `policy: inspect`, off under `policy: drop` (where
    /// every untrusted packet is dropped anyway).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Drops within `window` that ban the source.
    #[serde(default = "default_ban_threshold")]
    pub threshold: u32,
    #[serde(default = "default_ban_window")]
    pub window: Dur,
    /// How long a ban lasts.
    #[serde(default = "default_ban_ttl")]
    pub ttl: Dur,
    /// IPv6 sources are counted and banned per prefix of this length.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

impl Default for BansConfig {
    fn default() -> Self {
        BansConfig {
            enabled: None,
            threshold: default_ban_threshold(),
            window: default_ban_window(),
            ttl: default_ban_ttl(),
            ipv6_prefix: default_ipv6_prefix(),
        }
    }
}

/// User-Agent prefixes of known scanners, matched case-insensitively at the
/// start of the User-Agent value. Sources: the SIPVicious 0.3.8 source
/// (`friendly-scanner`), the tools' own names, and the lists operators and
/// PBX projects block (docs/INSPECTION.md). Tools that real devices share a
/// name with (PortSIP SDK, Asterisk, sipsak, Cisco) are left out on purpose.
pub const DEFAULT_SCANNER_USER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "friendly-request",
    "sipvicious",
    "svmap",
    "svwar",
    "svcrack",
    "sipcli",
    "sundayddr",
    "vaxsipuseragent",
    "vaxipuseragent",
    "pplsip",
    "sippts",
    "iwar",
    "sip-scan",
    "smap",
    "siparmyknife",
    "sivus",
    "voiphopper",
];

/// The `inspect:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inspect {
    /// Methods dropped from untrusted sources (e.g. MESSAGE, SUBSCRIBE).
    #[serde(default)]
    pub drop_methods: Vec<String>,
    /// Scanner User-Agent prefixes; when given, replaces the default list.
    #[serde(default)]
    pub user_agents: Option<Vec<String>>,
    /// Prefixes added to `user_agents` (or to the default list).
    #[serde(default)]
    pub extra_user_agents: Vec<String>,
    /// Drop requests whose Request-URI host is an IP literal (direct-IP calls).
    #[serde(default)]
    pub drop_ip_uri: bool,
    /// Accounts and numbers that may be called: INVITEs to any other
    /// Request-URI user are dropped. Empty: rule off.
    #[serde(default)]
    pub expected_users: Vec<String>,
    /// Drop the SIPVicious fingerprint (From equal to To with its display
    /// name or the 1.1.1.1 host).
    #[serde(default = "yes")]
    pub sipvicious: bool,
    /// Drop payloads that are not SIP requests (keepalives, STUN and
    /// responses always pass).
    #[serde(default = "yes")]
    pub drop_not_sip: bool,
}

fn yes() -> bool {
    true
}

impl Default for Inspect {
    fn default() -> Self {
        Inspect {
            drop_methods: vec![],
            user_agents: None,
            extra_user_agents: vec![],
            drop_ip_uri: false,
            expected_users: vec![],
            sipvicious: true,
            drop_not_sip: true,
        }
    }
}

fn default_ban_threshold() -> u32 {
    10
}
fn default_ban_window() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}
fn default_ban_ttl() -> Dur {
    Dur(std::time::Duration::from_secs(3600))
}
fn default_ipv6_prefix() -> u8 {
    64
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FragmentPolicy {
    #[default]
    Track,
    Pass,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnExit {
    #[default]
    Detach,
    Keep,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `ADDR:PORT` of the Prometheus endpoint (`/metrics`); off when unset.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

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

/// `learn_registrars:` (opt-in): a TC egress program trusts the address a
/// phone behind the router sends REGISTER or INVITE to, for `ttl` seconds
/// after each such request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnRegistrars {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_learn_ttl")]
    pub ttl: u32,
}

fn default_learn_ttl() -> u32 {
    3600
}

impl Default for LearnRegistrars {
    fn default() -> Self {
        LearnRegistrars {
            enabled: false,
            ttl: default_learn_ttl(),
        }
    }
}

/// `dns:`: where trusted names are resolved and how often they are asked
/// again. TTLs are clamped to `[min_ttl, max_ttl]` seconds so a zero TTL
/// cannot make the daemon hammer its resolver and a day-long one cannot
/// keep a moved provider out for a day.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// Name servers as "IP:port" (or a bare IP for port 53). Empty: the
    /// system's /etc/resolv.conf.
    #[serde(default, deserialize_with = "list")]
    pub servers: Vec<DnsServer>,
    #[serde(default = "default_min_ttl")]
    pub min_ttl: u32,
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u32,
}

fn default_min_ttl() -> u32 {
    30
}
fn default_max_ttl() -> u32 {
    3600
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            min_ttl: default_min_ttl(),
            max_ttl: default_max_ttl(),
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

impl Inspect {
    /// The effective scanner prefixes, lowercased, sorted, deduplicated.
    pub fn scanner_user_agents(&self) -> Vec<String> {
        let mut v: Vec<String> = match &self.user_agents {
            Some(list) => list.clone(),
            None => DEFAULT_SCANNER_USER_AGENTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        v.extend(self.extra_user_agents.iter().cloned());
        let mut v: Vec<String> = v.into_iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
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

impl<'de> Deserialize<'de> for Trusted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Trusted;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an IPv4/IPv6 address, a CIDR or a DNS name as a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Trusted, E> {
                let t = s.trim();
                let looks_numeric =
                    t.contains([':', '/']) || t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
                if !looks_numeric {
                    if let Some(n) = host_name(t) {
                        return Ok(Trusted::Name(n));
                    }
                    return Err(E::custom(format_args!(
                        "'{t}' is not an IPv4/IPv6 address, a CIDR or a DNS name"
                    )));
                }
                s.parse().map(Trusted::Net).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like 500ms, 30s, 5m, 2h or 1d")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(std::time::Duration::from_secs(v)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn default_ports() -> Vec<PortRange> {
    vec![PortRange {
        first: 5060,
        last: 5061,
    }]
}

/// A list that is present must have a value: `trusted:` with nothing after
/// it (say, every entry commented out) is refused rather than read as an
/// empty list, which would silently change who may send SIP.
fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Option::<Vec<T>>::deserialize(d)?.ok_or_else(|| {
        de::Error::custom("has no value (write [] for an empty list, or remove the key)")
    })
}

/// Deserializes one of a fixed set of words, with messages that list them
/// (serde_yaml's own enum errors talk about YAML tags).
fn keyword<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    choices: &'static [(&'static str, T)],
) -> Result<T, D::Error> {
    struct V<T: 'static>(&'static [(&'static str, T)]);
    impl<T: Copy> V<T> {
        fn names(&self) -> String {
            let v: Vec<String> = self.0.iter().map(|(n, _)| format!("`{n}`")).collect();
            v.join(", ")
        }
    }
    impl<T: Copy> de::Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "one of {}", self.names())
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            self.0
                .iter()
                .find(|(n, _)| *n == s)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    E::custom(format_args!(
                        "unknown value `{s}`, expected one of {}",
                        self.names()
                    ))
                })
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            Err(E::custom(format_args!(
                "has no value, expected one of {}",
                self.names()
            )))
        }
    }
    d.deserialize_any(V(choices))
}

macro_rules! keyword_enum {
    ($t:ty, $($name:literal => $v:expr),+) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                keyword(d, &[$(($name, $v)),+])
            }
        }
    };
}

keyword_enum!(XdpModeSetting, "auto" => XdpModeSetting::Auto, "native" => XdpModeSetting::Native, "skb" => XdpModeSetting::Skb);
keyword_enum!(Mode, "enforce" => Mode::Enforce, "monitor" => Mode::Monitor);
keyword_enum!(EventLog, "text" => EventLog::Text, "json" => EventLog::Json, "off" => EventLog::Off);
keyword_enum!(FragmentPolicy, "track" => FragmentPolicy::Track, "pass" => FragmentPolicy::Pass);
keyword_enum!(OnExit, "detach" => OnExit::Detach, "keep" => OnExit::Keep);
keyword_enum!(UntrustedPolicy, "drop" => UntrustedPolicy::Drop, "inspect" => UntrustedPolicy::Inspect);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XdpModeSetting {
    /// Native (driver) mode where the driver supports it, else generic.
    #[default]
    Auto,
    Native,
    Skb,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Enforce,
    Monitor,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UntrustedPolicy {
    /// Allowlist only: untrusted SIP is dropped (the providers' advice).
    #[default]
    Drop,
    /// Look at the SIP message and drop what matches a rule.
    Inspect,
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

fn port_number<E: de::Error>(v: u64) -> Result<u16, E> {
    if (1..=65535).contains(&v) {
        Ok(v as u16)
    } else {
        Err(E::custom(format_args!("port {v} is out of range 1-65535")))
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port (5060) or an inclusive range (\"5060-5080\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                let p = port_number(v)?;
                Ok(PortRange { first: p, last: p })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                Err(E::custom(format_args!("port {v} is out of range 1-65535")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortRange, E> {
                let num = |t: &str| -> Result<u16, E> {
                    let t = t.trim();
                    let n: u64 = t.parse().map_err(|_| {
                        if t.is_empty() {
                            E::custom(format_args!(
                                "'{s}' is not a port (5060) or a range (\"5060-5080\")"
                            ))
                        } else {
                            E::custom(format_args!("'{t}' is not a port number"))
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
                            return Err(E::custom(format_args!(
                                "port range \"{s}\" is reversed (did you mean \"{last}-{first}\"?)"
                            )));
                        }
                        Ok(PortRange { first, last })
                    }
                }
            }
        }
        d.deserialize_any(V)
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
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Cidr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an IPv4/IPv6 address or CIDR as a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Cidr, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A config error: what is wrong, where, in which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}: line {}: {}", self.source_name, l, self.message),
            None => write!(f, "{}: {}", self.source_name, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            line: None,
            message: format!("cannot read config file: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            ConfigError {
                source_name: name.clone(),
                line: Some(good.iter().filter(|&&b| b == b'\n').count() + 1),
                message: "the file is not UTF-8 text (is it a YAML file?)".into(),
            }
        })?;
        Config::parse(&text, &name)
    }

    /// Parses and validates YAML text; `source_name` is used in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        // YAML also breaks lines at CR, NEL, LS and PS; str::lines() does
        // not, and the line numbers in messages must match the parser's.
        let unified;
        let text = if text.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}']) {
            unified = text
                .replace("\r\n", "\n")
                .replace(['\r', '\u{85}', '\u{2028}', '\u{2029}'], "\n");
            unified.as_str()
        } else {
            text
        };
        let err = |line: Option<usize>, message: String| ConfigError {
            source_name: source_name.to_string(),
            line,
            message,
        };
        // Comments only, `---`, `~`: a document without settings.
        let value = serde_yaml::from_str::<serde_yaml::Value>(text);
        if matches!(value, Ok(serde_yaml::Value::Null)) || text.trim().is_empty() {
            return Err(err(
                None,
                "config file is empty (an empty policy would filter nothing)".into(),
            ));
        }
        // `key:` with nothing after it: serde_yaml reports these at the
        // start of the mapping, so find the key here.
        if let Ok(serde_yaml::Value::Mapping(m)) = &value {
            for (k, v) in m {
                if let (Some(k), true) = (k.as_str(), v.is_null()) {
                    if FIELDS.contains(&k) {
                        let hint = match k {
                            "interfaces" | "sip_ports" | "trusted" | "blocked" => {
                                "remove the key for the default, or write [] for an empty list"
                            }
                            _ => "remove the key for the default",
                        };
                        return Err(err(
                            find_top_level_key(text, k, 0),
                            format!("{k}: has no value ({hint})"),
                        ));
                    }
                }
            }
        }
        let cfg: Config = serde_yaml::from_str(text).map_err(|e| {
            let (line, msg) =
                explain_yaml_error(text, e.location().map(|l| l.line()), &e.to_string());
            err(line, msg)
        })?;
        cfg.validate(text, source_name)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, source_name: &str) -> Result<(), ConfigError> {
        let err = |field: &str, needle: &str, message: String| ConfigError {
            source_name: source_name.to_string(),
            line: find_line(text, field, needle),
            message: format!("{field}: {message}"),
        };
        for (i, name) in self.interfaces.iter().enumerate() {
            if name.is_empty()
                || name.len() > 15
                || name.contains('/')
                || name.contains(char::is_whitespace)
            {
                return Err(err(
                    "interfaces",
                    name,
                    format!("'{name}' is not a valid interface name"),
                ));
            }
            if self.interfaces[..i].contains(name) {
                return Err(ConfigError {
                    source_name: source_name.to_string(),
                    line: find_nth_line(text, "interfaces", name, 1),
                    message: format!("interfaces: interface '{name}' is listed twice"),
                });
            }
        }
        if self.interfaces.len() as u32 >= sipguard_common::IFACE_SLOTS {
            return Err(err(
                "interfaces",
                "interfaces",
                format!(
                    "at most {} interfaces are supported",
                    sipguard_common::IFACE_SLOTS - 1
                ),
            ));
        }
        if self.dns.min_ttl == 0 || self.dns.min_ttl > self.dns.max_ttl {
            return Err(err(
                "dns",
                "min_ttl",
                format!(
                    "min_ttl must be at least 1 and at most max_ttl ({})",
                    self.dns.max_ttl
                ),
            ));
        }
        if self.learn_registrars.ttl == 0 || self.learn_registrars.ttl > 7 * 86400 {
            return Err(err(
                "learn_registrars",
                "ttl",
                "ttl must be between 1 and 604800 seconds (a week)".into(),
            ));
        }
        if self.sip_ports.is_empty() {
            return Err(err(
                "sip_ports",
                "sip_ports",
                "must list at least one port".into(),
            ));
        }
        let uas = self
            .inspect
            .user_agents
            .iter()
            .flatten()
            .chain(&self.inspect.extra_user_agents);
        for ua in uas {
            let max = sipguard_common::UA_BYTES;
            if ua.is_empty() || ua.len() > max || ua.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
                return Err(err(
                    "inspect",
                    ua,
                    format!("user agent prefix '{ua}' must be 1-{max} printable ASCII characters"),
                ));
            }
        }
        for m in &self.inspect.drop_methods {
            if sipguard_common::method_id(&m.to_ascii_uppercase()).is_none() {
                let known: Vec<&str> = sipguard_common::METHODS[1..].to_vec();
                return Err(err(
                    "inspect",
                    m,
                    format!(
                        "drop_methods: unknown SIP method '{m}' (known: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        for (i, u) in self.inspect.expected_users.iter().enumerate() {
            let max = sipguard_common::USER_BYTES;
            if u.is_empty()
                || u.len() > max
                || u.bytes()
                    .any(|b| b <= b' ' || b == b'@' || b == b':' || b >= 0x7f)
            {
                return Err(err(
                    "inspect",
                    u,
                    format!("expected_users: '{u}' must be 1-{max} characters of a SIP user part (no spaces, '@' or ':')"),
                ));
            }
            if self.inspect.expected_users[..i].contains(u) {
                return Err(err(
                    "inspect",
                    u,
                    format!("expected_users: '{u}' is listed twice"),
                ));
            }
        }
        for t in self.trusted_nets() {
            if let Some(b) = self
                .blocked
                .iter()
                .find(|b| b.0.contains(&t.0) || t.0.contains(&b.0))
            {
                return Err(err(
                    "blocked",
                    &b.to_string(),
                    format!(
                        "{b} overlaps trusted {t}: a source cannot be both trusted and blocked"
                    ),
                ));
            }
        }
        if self.bans.ipv6_prefix == 0 || self.bans.ipv6_prefix > 128 {
            return Err(err(
                "bans",
                "ipv6_prefix",
                format!(
                    "ipv6_prefix {} is out of range 1-128",
                    self.bans.ipv6_prefix
                ),
            ));
        }
        if self.bans.threshold == 0 {
            return Err(err(
                "bans",
                "threshold",
                "threshold must be at least 1".into(),
            ));
        }
        if self.bans.window.0.is_zero() || self.bans.ttl.0.is_zero() {
            return Err(err(
                "bans",
                "window",
                "window and ttl must be longer than 0".into(),
            ));
        }
        Ok(())
    }

    /// The address and CIDR entries of `trusted`.
    pub fn trusted_nets(&self) -> impl Iterator<Item = &Cidr> {
        self.trusted.iter().filter_map(|t| match t {
            Trusted::Net(c) => Some(c),
            Trusted::Name(_) => None,
        })
    }

    /// The DNS names of `trusted`, each once, in config order.
    pub fn trusted_names(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for t in &self.trusted {
            if let Trusted::Name(n) = t {
                if !v.contains(n) {
                    v.push(n.clone());
                }
            }
        }
        v
    }

    /// Whether automatic bans are on (explicit, or by policy).
    pub fn bans_enabled(&self) -> bool {
        self.bans
            .enabled
            .unwrap_or(self.policy == UntrustedPolicy::Inspect)
    }

    /// The embedded default policy (tested to parse; an error here is a
    /// build bug, reported like any config error rather than a panic).
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, "<embedded default>")
    }
}

/// Top-level keys, as they appear in messages.
const FIELDS: [&str; 17] = [
    "interfaces",
    "xdp_mode",
    "mode",
    "policy",
    "sip_ports",
    "any_udp_port",
    "trusted",
    "blocked",
    "inspect",
    "dns",
    "learn_registrars",
    "feeds",
    "events",
    "bans",
    "fragments",
    "on_exit",
    "metrics",
];

/// Turns a serde_yaml error into (line, message) where the message starts
/// with the field it is about whenever the line tells which one that is.
fn explain_yaml_error(text: &str, line: Option<usize>, raw: &str) -> (Option<usize>, String) {
    // serde_yaml puts "at line L column C" inside or at the end of the
    // message; the line is reported on its own.
    let mut msg = raw.to_string();
    while let Some(i) = msg.find(" at line ") {
        let rest = &msg[i + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n = digits(rest);
        let mut end = i + " at line ".len() + n;
        if let Some(col) = msg[end..].strip_prefix(" column ") {
            end += " column ".len() + digits(col);
        }
        msg.replace_range(i..end, "");
    }
    let msg = msg.replace(
        "expected struct Config",
        "expected settings as `key: value` lines (e.g. `policy: drop`)",
    );
    if let Some(rest) = msg.strip_prefix("duplicate field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let line = find_top_level_key(text, field, 1).or(line);
        return (line, format!("{field}: is set twice"));
    }
    let names_field = FIELDS
        .iter()
        .any(|f| msg.starts_with(&format!("{f}:")) || msg.starts_with(&format!("{f}[")));
    if names_field || msg.starts_with("unknown field") {
        return (line, msg);
    }
    // A syntax error: name the setting whose block the line is in.
    match line.and_then(|l| governing_key(text, l)) {
        Some(key) => (line, format!("{key}: {msg}")),
        None => (line, msg),
    }
}

/// The top-level key whose block contains `line` (1-based).
fn governing_key(text: &str, line: usize) -> Option<String> {
    let mut key = None;
    for l in text.lines().take(line) {
        if l.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            if let Some((k, _)) = l.split_once(':') {
                key = Some(k.trim().to_string());
            }
        }
    }
    key
}

/// Line (1-based) of the `skip`+1-th top-level `key:`.
fn find_top_level_key(text: &str, key: &str, skip: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .nth(skip)
        .map(|(i, _)| i + 1)
}

/// First line (1-based) inside the block of `field` that mentions `needle`;
/// falls back to the line of the field itself.
fn find_line(text: &str, field: &str, needle: &str) -> Option<usize> {
    find_nth_line(text, field, needle, 0)
}

/// Like [`find_line`], skipping the first `skip` mentions (for duplicates).
fn find_nth_line(text: &str, field: &str, needle: &str, mut skip: usize) -> Option<usize> {
    let key = format!("{field}:");
    let mut in_field = false;
    let mut field_line = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let top_level = !line.starts_with(' ') && !line.starts_with('\t') && !line.starts_with('-');
        if top_level && !trimmed.is_empty() && !trimmed.starts_with('#') {
            in_field = trimmed.starts_with(&key);
            if in_field {
                field_line = Some(i + 1);
            }
        }
        if in_field
            && line.contains(needle)
            && (field_line != Some(i + 1) || trimmed.len() > key.len())
        {
            if skip == 0 {
                return Some(i + 1);
            }
            // A flow list (`[a, b, a]`) mentions the needle twice on one line.
            skip -= 1;
            if skip == 0 && line.matches(needle).count() > 1 {
                return Some(i + 1);
            }
        }
    }
    field_line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, "t.yaml")
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            "interfaces: [eth0, wan1]\nxdp_mode: skb\nmode: monitor\npolicy: inspect\n\
             sip_ports: [5060, \"5070-5080\"]\ntrusted:\n  - 203.0.113.10\n  - 2001:db8::/32\nblocked: [198.51.100.0/24]\n",
        )
        .unwrap();
        assert_eq!(c.interfaces, vec!["eth0", "wan1"]);
        assert_eq!(c.xdp_mode, XdpModeSetting::Skb);
        assert_eq!(c.mode, Mode::Monitor);
        assert_eq!(c.policy, UntrustedPolicy::Inspect);
        assert_eq!(
            c.sip_ports,
            vec![
                PortRange {
                    first: 5060,
                    last: 5060
                },
                PortRange {
                    first: 5070,
                    last: 5080
                }
            ]
        );
        assert_eq!(c.trusted.len(), 2);
        assert_eq!(c.blocked[0].to_string(), "198.51.100.0/24");
    }

    #[test]
    fn defaults_apply() {
        let c = parse("trusted: [192.0.2.1]\n").unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.policy, UntrustedPolicy::Drop);
        assert_eq!(c.xdp_mode, XdpModeSetting::Auto);
        assert_eq!(c.sip_ports, default_ports());
    }

    #[test]
    fn embedded_default_is_valid_inspect() {
        let c = Config::embedded_default().unwrap();
        assert_eq!(c.policy, UntrustedPolicy::Inspect);
        assert_eq!(c.mode, Mode::Enforce);
    }

    fn expect_err(s: &str, line: Option<usize>, needle: &str) {
        let e = parse(s).unwrap_err();
        assert_eq!(e.line, line, "{e}");
        assert!(
            e.to_string().contains(needle),
            "'{e}' does not mention '{needle}'"
        );
    }

    #[test]
    fn errors_name_field_and_line() {
        expect_err(
            "trusted: [192.0.2.1]\ntrustd: [1.2.3.4]\n",
            Some(2),
            "unknown field `trustd`",
        );
        expect_err(
            "trusted:\n  - 192.0.2.1\n  - 300.1.2.3\n",
            Some(3),
            "trusted[1]",
        );
        expect_err(
            "trusted:\n  - 192.0.2.1\n  - 300.1.2.3\n",
            Some(3),
            "'300.1.2.3' is not an IPv4/IPv6 address or CIDR",
        );
        expect_err("trusted: [10.0.0.1/24]\n", Some(1), "host bits set");
        expect_err("sip_ports: [70000]\n", Some(1), "out of range");
        expect_err("sip_ports: [0]\n", Some(1), "out of range");
        expect_err("sip_ports: [-5]\n", Some(1), "out of range");
        expect_err("sip_ports:\n  - \"5080-5060\"\n", Some(2), "reversed");
        expect_err("sip_ports: []\n", Some(1), "at least one port");
        expect_err(
            "mode: loud\n",
            Some(1),
            "mode: unknown value `loud`, expected one of `enforce`, `monitor`",
        );
        expect_err("trusted: 5\n", Some(1), "trusted");
        expect_err("interfaces: [eth0, eth1, eth0]\n", Some(1), "listed twice");
        expect_err(
            "interfaces:\n  - eth0\n  - eth1\n  - eth0\n",
            Some(4),
            "interfaces: interface 'eth0' is listed twice",
        );
        expect_err(
            "policy: drop\nmode: enforce\npolicy: inspect\n",
            Some(3),
            "policy: is set twice",
        );
        expect_err(
            "trusted:\n#  - 192.0.2.1\n",
            Some(1),
            "trusted: has no value",
        );
        expect_err("mode:\n", Some(1), "mode: has no value");
        expect_err(
            "policy: {a: 1}\n",
            Some(1),
            "policy: invalid type: map, expected one of `drop`, `inspect`",
        );
        expect_err(
            "trusted: [192.0.2.1\n",
            Some(2),
            "trusted: did not find expected",
        );
        expect_err(
            "policy: drop\ntrusted:\n\t- 192.0.2.1\n",
            Some(3),
            "trusted: found character that cannot start any token",
        );
        expect_err("---\n", None, "empty");
        // Old Mac line ends (found by the config fuzz target): lines count
        // as YAML counts them.
        expect_err(
            "policy: drop\rtrusted:\r  - 192.0.2.1\r  - 300.1.2.3\r",
            Some(4),
            "trusted[1]",
        );
        expect_err(
            "policy: drop\r\nsip_ports: [0]\r\n",
            Some(2),
            "sip_ports[0]",
        );
        expect_err(
            "trusted: [192.0.2.0/24]\rblocked:\r  - 192.0.2.7\r",
            Some(3),
            "both trusted and blocked",
        );
        expect_err(
            "policy: drop\rpolicy: drop\r",
            Some(2),
            "policy: is set twice",
        );
        expect_err("~\n", None, "empty");
        expect_err("- a\n", Some(1), "expected settings as `key: value` lines");
        expect_err(
            "trusted: [192.0.2.0/24]\nblocked:\n  - 192.0.2.7\n",
            Some(3),
            "both trusted and blocked",
        );
        expect_err("", None, "empty");
        expect_err("   \n# only a comment\n", None, "empty");
    }

    #[test]
    fn inspect_section() {
        let c = parse(
            "policy: inspect\ninspect:\n  drop_methods: [message, SUBSCRIBE]\n  extra_user_agents: [EvilScan]\n  \
             drop_ip_uri: true\n  expected_users: [alice, \"+4930123\"]\n  sipvicious: false\n",
        )
        .unwrap();
        assert_eq!(c.inspect.drop_methods, vec!["message", "SUBSCRIBE"]);
        assert!(c.inspect.drop_ip_uri && !c.inspect.sipvicious && c.inspect.drop_not_sip);
        let uas = c.inspect.scanner_user_agents();
        assert!(
            uas.contains(&"evilscan".to_string()) && uas.contains(&"friendly-scanner".to_string())
        );
        let only = parse("inspect:\n  user_agents: [Foo]\n").unwrap();
        assert_eq!(only.inspect.scanner_user_agents(), vec!["foo"]);
        let none = parse("inspect:\n  user_agents: []\n").unwrap();
        assert!(none.inspect.scanner_user_agents().is_empty());
        let d = parse("policy: inspect\n").unwrap();
        assert_eq!(d.inspect, Inspect::default());
        assert_eq!(
            d.inspect.scanner_user_agents().len(),
            DEFAULT_SCANNER_USER_AGENTS.len()
        );
    }

    #[test]
    fn inspect_errors_name_field_and_line() {
        expect_err(
            "inspect:\n  drop_methodz: [INVITE]\n",
            Some(2),
            "unknown field `drop_methodz`",
        );
        expect_err(
            "inspect:\n  drop_methods:\n    - INVITE\n    - FOO\n",
            Some(4),
            "unknown SIP method 'FOO'",
        );
        expect_err(
            "inspect:\n  extra_user_agents: [\"\"]\n",
            Some(2),
            "user agent prefix",
        );
        let long = "x".repeat(40);
        expect_err(
            &format!("trusted: [192.0.2.1]\ninspect:\n  user_agents: [{long}]\n"),
            Some(3),
            "1-32 printable",
        );
        expect_err(
            "inspect:\n  expected_users: [\"a b\"]\n",
            Some(2),
            "expected_users",
        );
        expect_err(
            "inspect:\n  expected_users: [bob, bob]\n",
            Some(2),
            "listed twice",
        );
        expect_err("inspect:\n  sipvicious: maybe\n", Some(2), "sipvicious");
    }

    #[test]
    fn trusted_names_and_dns() {
        let c = parse(
            "trusted: [192.0.2.1, SIP.Provider.example., sip.provider.example, \"2001:db8::/32\", pbx]\n\
             dns: {servers: [\"192.0.2.53:5353\", \"2001:db8::53\"], min_ttl: 1}\n",
        )
        .unwrap();
        assert_eq!(c.trusted_names(), vec!["sip.provider.example", "pbx"]);
        assert_eq!(c.trusted_nets().count(), 2);
        assert_eq!(c.dns.servers[0].0, "192.0.2.53:5353".parse().unwrap());
        assert_eq!(c.dns.servers[1].0, "[2001:db8::53]:53".parse().unwrap());
        assert_eq!((c.dns.min_ttl, c.dns.max_ttl), (1, 3600));
        assert_eq!(
            parse("trusted: [a.b]\n").unwrap().dns,
            DnsSettings::default()
        );
        expect_err(
            "trusted:\n  - sip provider.example\n",
            Some(2),
            "'sip provider.example' is not an IPv4/IPv6 address, a CIDR or a DNS name",
        );
        expect_err("trusted:\n  - -bad.example\n", Some(2), "trusted[0]");
        expect_err(
            "trusted: [a..b]\n",
            Some(1),
            "not an IPv4/IPv6 address, a CIDR or a DNS name",
        );
        expect_err(
            "trusted: [1.2.3.4.5]\n",
            Some(1),
            "not an IPv4/IPv6 address or CIDR",
        );
        expect_err(
            "dns:\n  servers: [\"nowhere\"]\n",
            Some(2),
            "'nowhere' is not a name server address",
        );
        expect_err(
            "dns:\n  min_ttl: 0\n",
            Some(2),
            "dns: min_ttl must be at least 1",
        );
        expect_err("dns:\n  retries: 3\n", Some(2), "unknown field `retries`");
        let c = parse("learn_registrars: {enabled: true, ttl: 2}\n").unwrap();
        assert_eq!(
            c.learn_registrars,
            LearnRegistrars {
                enabled: true,
                ttl: 2
            }
        );
        assert_eq!(
            parse("learn_registrars: {}\n").unwrap().learn_registrars,
            LearnRegistrars::default()
        );
        expect_err(
            "learn_registrars:\n  ttl: 0\n",
            Some(2),
            "learn_registrars: ttl must be between",
        );
        expect_err(
            "learn_registrars:\n  enable: true\n",
            Some(2),
            "unknown field `enable`",
        );
    }

    #[test]
    fn operations_sections_parse() {
        let c = parse(
            "trusted: [192.0.2.1]\nfeeds: [/etc/sipguard/feed.txt]\non_exit: keep\nfragments: pass\n\
             events:\n  log: json\n  interval: 250ms\n  socket: /tmp/x.sock\n\
             bans:\n  threshold: 3\n  window: 10s\n  ttl: 2m\n  ipv6_prefix: 56\nmetrics:\n  listen: 127.0.0.1:9560\n",
        )
        .unwrap();
        assert_eq!(c.on_exit, OnExit::Keep);
        assert_eq!(c.fragments, FragmentPolicy::Pass);
        assert_eq!(c.events.log, EventLog::Json);
        assert_eq!(c.events.interval.0, std::time::Duration::from_millis(250));
        assert_eq!(c.bans.ttl.0, std::time::Duration::from_secs(120));
        assert_eq!(c.bans.ipv6_prefix, 56);
        assert!(!c.bans_enabled(), "off by default under policy: drop");
        assert!(
            Config::embedded_default().unwrap().bans_enabled(),
            "on by default under inspect"
        );
        assert_eq!(c.metrics.listen.unwrap().port(), 9560);
        expect_err("bans:\n  ttl: 5 weeks\n", Some(2), "duration");
        expect_err("bans:\n  ipv6_prefix: 129\n", Some(2), "out of range");
        expect_err("on_exit: maybe\n", Some(1), "unknown value `maybe`");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = Config::load(Path::new("/nonexistent/sipguard.yaml")).unwrap_err();
        assert!(e.to_string().contains("cannot read config file"), "{e}");
    }
}
