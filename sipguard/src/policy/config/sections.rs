//! The sections of the config file and their defaults: `events`, `bans`,
//! `inspect`, `metrics`, `learn_registrars`, `dns`, and the keyword
//! settings (`mode`, `policy`, `xdp_mode`, ...).

use std::fmt;

use serde::{de, Deserialize, Deserializer};

use super::values::{list, DnsServer, Dur};

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
    /// At most this many events per second from each CPU, however many
    /// sources are dropped (0: no limit). The rest are counted
    /// (`events_over_budget`) and carried in their source's next event.
    #[serde(default = "default_events_per_second")]
    pub max_per_second: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            log: EventLog::default(),
            interval: default_event_interval(),
            socket: default_events_socket(),
            max_per_second: default_events_per_second(),
        }
    }
}

pub const DEFAULT_EVENTS_SOCKET: &str = "/run/sipguard/events.sock";

fn default_event_interval() -> Dur {
    Dur(std::time::Duration::from_secs(1))
}
/// Enough for every scanner of an ordinary day to be logged as it comes;
/// a distributed flood's tens of thousands of sources a second are not
/// worth a CPU of the router to log one by one.
pub const DEFAULT_EVENTS_PER_SECOND: u32 = 200;

fn default_events_per_second() -> u32 {
    DEFAULT_EVENTS_PER_SECOND
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
