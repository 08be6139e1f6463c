//! Checks that a parsed config makes sense as a whole, each error naming
//! the field and the line it is on.

use super::{
    yaml_errors::{find_line, find_nth_line},
    Config, ConfigError,
};

impl Config {
    pub(super) fn validate(&self, text: &str, source_name: &str) -> Result<(), ConfigError> {
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
        if let Some(cs) = &self.crowdsec {
            cs.validate().map_err(|(key, needle, message)| {
                err("crowdsec", &needle, format!("{key}: {message}"))
            })?;
        }
        Ok(())
    }
}
