//! The effective policy: a validated config compiled into exactly what goes
//! into the maps, plus a host-side evaluator over the same shared logic.

use std::fmt::Write as _;

use ipnet::IpNet;
use sipguard_common::{
    method_id,
    packet::Flow,
    sip::{self, SipLists},
    verdict::{self, Judgement, Outcome, SourceLists},
    Settings, FLAG_ANY_UDP_PORT, FLAG_MONITOR, METHODS, POLICY_DROP, POLICY_INSPECT,
    RULE_EXPECTED_USERS, RULE_NOT_SIP, RULE_SIPVICIOUS, RULE_URI_IP_HOST, RULE_USER_AGENT,
    UA_BYTES, USER_BYTES,
};

use crate::config::{Config, Mode, UntrustedPolicy};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub settings: Settings,
    pub trusted: Vec<IpNet>,
    pub blocked: Vec<IpNet>,
    /// Lowercased scanner User-Agent prefixes (the UA_PREFIXES trie).
    pub user_agents: Vec<String>,
    /// Expected Request-URI users (the EXPECTED_USERS map); empty = rule off.
    pub expected_users: Vec<String>,
}

impl Policy {
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
            settings.rules |= RULE_NOT_SIP;
        }
        if !user_agents.is_empty() {
            settings.rules |= RULE_USER_AGENT;
        }
        if ins.drop_ip_uri {
            settings.rules |= RULE_URI_IP_HOST;
        }
        if !expected_users.is_empty() {
            settings.rules |= RULE_EXPECTED_USERS;
        }
        if ins.sipvicious {
            settings.rules |= RULE_SIPVICIOUS;
        }
        for m in &ins.drop_methods {
            // Validated in config: every name is known.
            if let Some(id) = method_id(&m.to_ascii_uppercase()) {
                settings.methods |= 1 << id;
            }
        }
        Policy {
            settings,
            trusted,
            blocked,
            user_agents,
            expected_users,
        }
    }

    /// Adds the addresses trusted DNS names currently resolve to (host
    /// routes), keeping the list sorted and unique like the static part.
    pub fn with_names(mut self, names: &crate::names::NameState) -> Policy {
        self.trusted.extend(names.all().map(IpNet::from));
        self.trusted.sort();
        self.trusted.dedup();
        self
    }

    /// The verdict the host computes for a frame: the kernel's code, with
    /// the SIP scanner driven by a plain loop of the same bound.
    pub fn evaluate(&self, frame: &[u8]) -> Outcome {
        self.evaluate_link(frame, sipguard_common::packet::Link::Ethernet)
    }

    /// The host verdict for a packet starting with the link header `link`.
    pub fn evaluate_link(&self, frame: &[u8], link: sipguard_common::packet::Link) -> Outcome {
        let reason = match verdict::judge_link(frame, link, &self.settings, self) {
            Judgement::Done(r) => r,
            Judgement::Inspect(flow) => {
                sip::decide(&sip::scan(&flow, frame, self), &self.settings, self)
            }
            // judge_link reads the request line itself; never returned.
            Judgement::Recognise(_) => sipguard_common::Reason::PassUninspectable,
        };
        verdict::outcome(reason, &self.settings)
    }

    /// Human-readable summary for `sipguard check`.
    pub fn describe(&self, cfg: &Config) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "mode:        {}",
            if cfg.mode == Mode::Monitor {
                "monitor (count only, drop nothing)"
            } else {
                "enforce"
            }
        );
        let _ = writeln!(
            s,
            "untrusted:   {}",
            match cfg.policy {
                UntrustedPolicy::Drop => "drop (allowlist only)",
                UntrustedPolicy::Inspect => "inspect (SIP rules)",
            }
        );
        let ports: Vec<String> = cfg.sip_ports.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(s, "sip ports:   {} (UDP and TCP)", ports.join(", "));
        if cfg.any_udp_port {
            let _ = writeln!(
                s,
                "             and any UDP port whose payload starts with a SIP request line"
            );
        }
        let _ = writeln!(s, "xdp mode:    {:?}", cfg.xdp_mode);
        let _ = writeln!(
            s,
            "interfaces:  {}",
            if cfg.interfaces.is_empty() {
                "(none; pass --iface)".to_string()
            } else {
                cfg.interfaces.join(", ")
            }
        );
        let list = |s: &mut String, title: &str, v: &[IpNet]| {
            let _ = writeln!(s, "{title} ({}):", v.len());
            for n in v {
                let _ = writeln!(s, "  {n}");
            }
        };
        list(&mut s, "trusted", &self.trusted);
        list(&mut s, "blocked", &self.blocked);
        if cfg.policy == UntrustedPolicy::Inspect {
            let on = |b: bool| if b { "on" } else { "off" };
            let ins = &cfg.inspect;
            let _ = writeln!(s, "inspection (untrusted UDP, first match wins):");
            let _ = writeln!(s, "  not a SIP request:     {}", on(ins.drop_not_sip));
            let _ = writeln!(
                s,
                "  user agent prefixes:   {} ({}{})",
                on(!self.user_agents.is_empty()),
                self.user_agents.len(),
                if ins.user_agents.is_none() {
                    ", built-in list"
                } else {
                    ", configured list"
                }
            );
            for ua in &self.user_agents {
                let _ = writeln!(s, "    {ua}");
            }
            let _ = writeln!(s, "  sipvicious fingerprint: {}", on(ins.sipvicious));
            let methods: Vec<&str> = (1..METHODS.len())
                .filter(|i| self.settings.methods & (1 << i) != 0)
                .map(|i| METHODS[i])
                .collect();
            let _ = writeln!(
                s,
                "  dropped methods:       {}",
                if methods.is_empty() {
                    "none".to_string()
                } else {
                    methods.join(", ")
                }
            );
            let _ = writeln!(s, "  IP-literal URI host:   {}", on(ins.drop_ip_uri));
            if self.expected_users.is_empty() {
                let _ = writeln!(s, "  expected users:        off (INVITEs to any user)");
            } else {
                let _ = writeln!(
                    s,
                    "  expected users:        {}",
                    self.expected_users.join(", ")
                );
            }
        }
        s
    }
}

fn flow_addr(flow: &Flow) -> std::net::IpAddr {
    if flow.ipv6 {
        std::net::IpAddr::from(flow.src)
    } else {
        std::net::IpAddr::from(flow.src_v4())
    }
}

impl SourceLists for Policy {
    fn blocked(&self, flow: &Flow) -> bool {
        let a = flow_addr(flow);
        self.blocked.iter().any(|n| n.contains(&a))
    }
    fn trusted(&self, flow: &Flow) -> bool {
        let a = flow_addr(flow);
        self.trusted.iter().any(|n| n.contains(&a))
    }
}

impl SipLists for Policy {
    fn user_agent_denied(&self, ua: &[u8; UA_BYTES], len: u32) -> bool {
        let seen = &ua[..(len as usize).min(UA_BYTES)];
        self.user_agents
            .iter()
            .any(|p| seen.starts_with(p.as_bytes()))
    }
    fn user_expected(&self, user: &[u8; USER_BYTES], len: u32) -> bool {
        let len = len as usize;
        len <= USER_BYTES
            && self
                .expected_users
                .iter()
                .any(|u| u.as_bytes() == &user[..len])
    }
}
