//! Compiling a validated config into a [`Policy`]: the settings word, the
//! sorted source lists, the scanner prefixes and the expected users.

use ipnet::IpNet;
use sipguard_common::{Settings, FLAG_ANY_UDP_PORT, FLAG_MONITOR, POLICY_DROP, POLICY_INSPECT};

use super::{
    config::{Config, Mode, UntrustedPolicy},
    Policy,
};

impl Policy {
    /// The static part of the policy: the config alone, without what the
    /// dynamic sources add (see [`super::assemble`]).
    pub fn from_config(cfg: &Config) -> Policy {
        let mut settings = Settings::empty();
        settings.policy = match cfg.policy {
            UntrustedPolicy::Drop => POLICY_DROP,
            UntrustedPolicy::Inspect => POLICY_INSPECT,
        };
        if cfg.mode == Mode::Monitor {
            settings.flags |= FLAG_MONITOR;
        }
        if cfg.any_udp_port {
            settings.flags |= FLAG_ANY_UDP_PORT;
        }
        for r in &cfg.sip_ports {
            for p in r.first..=r.last {
                settings.set_sip_port(p);
            }
        }
        let mut trusted: Vec<IpNet> = cfg.trusted_nets().map(|c| c.0).collect();
        let mut blocked: Vec<IpNet> = cfg.blocked.iter().map(|c| c.0).collect();
        trusted.sort();
        trusted.dedup();
        blocked.sort();
        blocked.dedup();
        let ins = &cfg.inspect;
        let user_agents = ins.scanner_user_agents();
        let mut expected_users = ins.expected_users.clone();
        expected_users.sort();
        expected_users.dedup();
        if ins.drop_not_sip {
            settings.rules |= sipguard_common::RULE_NOT_SIP;
        }
        if !user_agents.is_empty() {
            settings.rules |= sipguard_common::RULE_USER_AGENT;
        }
        if ins.drop_ip_uri {
            settings.rules |= sipguard_common::RULE_URI_IP_HOST;
        }
        if !expected_users.is_empty() {
            settings.rules |= sipguard_common::RULE_EXPECTED_USERS;
        }
        if ins.sipvicious {
            settings.rules |= sipguard_common::RULE_SIPVICIOUS;
        }
        for m in &ins.drop_methods {
            // Validated in config: every name is known.
            if let Some(id) = sipguard_common::method_id(&m.to_ascii_uppercase()) {
                settings.methods |= 1 << id;
            }
        }
        Policy {
            settings,
            trusted,
            blocked,
            user_agents,
            expected_users,
            overlaps: Vec::new(),
        }
    }
}
