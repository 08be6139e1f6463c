//! CrowdSec: sipguard as a bouncer (decisions from a Local API land in the
//! filter) and as a signal source (its own bans go to the Local API as
//! alerts). `config` is the `crowdsec:` section, `lapi` the HTTP client,
//! `decisions` what the stream says and the set it adds up to, `bouncer`
//! the pull loop, `signals` the alert sender.

pub mod bouncer;
pub mod config;
pub mod decisions;
pub mod lapi;
pub mod signals;

/// The scenario sipguard's alerts carry.
pub const SCENARIO: &str = "sipguard/sip-scanner";
