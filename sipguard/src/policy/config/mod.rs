//! The YAML configuration: parsed strictly (unknown keys are errors) and
//! validated so that every error names the field and the line. The
//! top-level [`Config`] and loading it are here; [`sections`] and
//! [`values`] are the schema, [`validate`] the checks across fields,
//! [`yaml_errors`] the error messages.

pub mod sections;
pub mod validate;
pub mod values;
pub mod yaml_errors;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::{
    sections::{
        BansConfig, DnsSettings, EventLog, EventsConfig, FragmentPolicy, Inspect, LearnRegistrars,
        MetricsConfig, Mode, OnExit, UntrustedPolicy, XdpModeSetting, DEFAULT_EVENTS_SOCKET,
        DEFAULT_SCANNER_USER_AGENTS,
    },
    values::{Cidr, DnsServer, Dur, PortRange, Trusted},
    yaml_errors::ConfigError,
};
use self::{
    values::list,
    yaml_errors::{explain_yaml_error, find_top_level_key},
};

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
    /// Take ban decisions from a CrowdSec Local API (and push sipguard's
    /// own bans to it).
    #[serde(default)]
    pub crowdsec: Option<crate::policy::sources::crowdsec::config::CrowdsecConfig>,
}

fn default_ports() -> Vec<PortRange> {
    vec![PortRange {
        first: 5060,
        last: 5061,
    }]
}

/// Where the policy comes from, so SIGHUP re-reads the same source.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    Embedded,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::File(p) => Config::load(p),
            ConfigSource::Embedded => Config::embedded_default(),
        }
    }
}

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
