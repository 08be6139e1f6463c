//! What `sipguard check` prints about a compiled policy.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::{
    config::{Config, Mode, UntrustedPolicy},
    Policy,
};

impl Policy {
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
                "(none: `run` attaches nothing until one is listed here or given with --iface)"
                    .to_string()
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
            let methods: Vec<&str> = (1..sipguard_common::METHODS.len())
                .filter(|i| self.settings.methods & (1 << i) != 0)
                .map(|i| sipguard_common::METHODS[i])
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
