//! The effective policy: a validated config compiled into exactly what goes
//! into the maps, plus a host-side evaluator over the same shared logic.

use std::fmt::Write as _;

use ipnet::IpNet;
use sipguard_common::{
    packet::Flow,
    verdict::{self, Judgement, Outcome, SourceLists},
    Reason, Settings, FLAG_MONITOR, POLICY_DROP, POLICY_INSPECT,
};

use crate::config::{Config, Mode, UntrustedPolicy};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub settings: Settings,
    pub trusted: Vec<IpNet>,
    pub blocked: Vec<IpNet>,
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
        Policy { settings, trusted, blocked }
    }

    /// Adds the addresses trusted DNS names currently resolve to (host
    /// routes), keeping the list sorted and unique like the static part.
    pub fn with_names(mut self, names: &crate::names::NameState) -> Policy {
        self.trusted.extend(names.all().map(IpNet::from));
        self.trusted.sort();
        self.trusted.dedup();
        self
    }

    /// The verdict the host computes for a frame (headers stage; SIP
    /// inspection is applied by the caller where enabled). Same code as the
    /// kernel's.
    pub fn evaluate(&self, frame: &[u8]) -> Outcome {
        self.evaluate_link(frame, sipguard_common::packet::Link::Ethernet)
    }

    /// The host verdict for a packet starting with the link header `link`.
    pub fn evaluate_link(&self, frame: &[u8], link: sipguard_common::packet::Link) -> Outcome {
        let reason = match verdict::judge_link(frame, link, &self.settings, self) {
            Judgement::Done(r) => r,
            Judgement::Inspect(_) => Reason::PassInspected,
        };
        verdict::outcome(reason, &self.settings)
    }

    /// Human-readable summary for `sipguard check`.
    pub fn describe(&self, cfg: &Config) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "mode:        {}", if cfg.mode == Mode::Monitor { "monitor (count only, drop nothing)" } else { "enforce" });
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
        let _ = writeln!(s, "xdp mode:    {:?}", cfg.xdp_mode);
        let _ = writeln!(
            s,
            "interfaces:  {}",
            if cfg.interfaces.is_empty() { "(none; pass --iface)".to_string() } else { cfg.interfaces.join(", ") }
        );
        let list = |s: &mut String, title: &str, v: &[IpNet]| {
            let _ = writeln!(s, "{title} ({}):", v.len());
            for n in v {
                let _ = writeln!(s, "  {n}");
            }
        };
        list(&mut s, "trusted", &self.trusted);
        list(&mut s, "blocked", &self.blocked);
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
