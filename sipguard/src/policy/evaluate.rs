//! The host-side evaluator: the kernel's verdict code from
//! sipguard-common, with the policy's lists as plain vectors.

use std::net::IpAddr;

use sipguard_common::{
    decision_live,
    packet::{Flow, Link},
    sip::{self, SipLists},
    verdict::{self, Judgement, Outcome, SourceLists},
    UA_BYTES, USER_BYTES,
};

use super::Policy;

impl Policy {
    /// The verdict the host computes for a frame: the kernel's code, with
    /// the SIP scanner driven by a plain loop of the same bound.
    pub fn evaluate(&self, frame: &[u8]) -> Outcome {
        self.evaluate_link(frame, Link::Ethernet)
    }

    /// The host verdict for a packet starting with the link header `link`.
    pub fn evaluate_link(&self, frame: &[u8], link: Link) -> Outcome {
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
}

/// An address as the parser and the maps store it: 16 bytes, of which an
/// IPv4 address uses the first 4.
pub fn ip_from(ipv6: bool, bytes: [u8; 16]) -> IpAddr {
    if ipv6 {
        IpAddr::from(bytes)
    } else {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

fn flow_addr(flow: &Flow) -> IpAddr {
    ip_from(flow.ipv6, flow.src)
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
    /// As the kernel's trie: the entry of the longest prefix holding the
    /// source decides, live or not.
    fn decided(&self, flow: &Flow) -> bool {
        let a = flow_addr(flow);
        self.decisions
            .iter()
            .filter(|d| d.net.contains(&a))
            .max_by_key(|d| d.net.prefix_len())
            .is_some_and(|d| decision_live(&d.entry, super::clock::boot_ns()))
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
