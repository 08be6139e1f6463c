//! The values of `Settings::rules` and `Settings::methods`, and the method
//! ids events carry: what the SIP inspector's switches and method table
//! mean to the maps.

// `Settings::rules` bits.
/// Drop untrusted payloads that are not a SIP request line (keepalives,
/// STUN and responses excepted).
pub const RULE_NOT_SIP: u32 = 1 << 0;
/// Drop requests whose User-Agent starts with a listed prefix.
pub const RULE_USER_AGENT: u32 = 1 << 1;
/// Drop requests whose Request-URI host is an IP literal.
pub const RULE_URI_IP_HOST: u32 = 1 << 2;
/// Drop INVITEs whose Request-URI user is not an expected user.
pub const RULE_EXPECTED_USERS: u32 = 1 << 3;
/// Drop the SIPVicious From/To fingerprint.
pub const RULE_SIPVICIOUS: u32 = 1 << 4;

/// Known methods; the index is the method id and the bit in
/// `Settings::methods`. Id 0 is any other token.
pub const METHODS: [&str; 15] = [
    "",
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];
pub const METHOD_OTHER: u32 = 0;
pub const METHOD_INVITE: u32 = 1;

/// Method id of a method name, `None` when it is not one of [`METHODS`].
pub fn method_id(name: &str) -> Option<u32> {
    let mut i = 1;
    while i < METHODS.len() {
        if METHODS[i].as_bytes() == name.as_bytes() {
            return Some(i as u32);
        }
        i += 1;
    }
    None
}
