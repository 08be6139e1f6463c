//! Types and packet/SIP logic shared by the sipguard XDP program and its
//! userspace daemon.
//!
//! Everything that decides a verdict lives here, once, and is generic over how
//! bytes are read ([`packet::Bytes`]) and how source lists are looked up
//! ([`verdict::SourceLists`]). The XDP program instantiates it over packet
//! memory and BPF maps; the host instantiates it over slices and Rust
//! collections. Tests assert that both give the same verdict for every packet.

// Frames from the wire reach all of this: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(not(any(feature = "std", test)), no_std)]

// The layers, bottom first; each module uses only those before it.

// Verdict reasons (the counter index).
pub mod reason;

// The map ABI, shared byte for byte with userspace.
pub mod abi;

// Link, IP and L4 header parsing over any byte source.
pub mod packet;

// State and packet access shared by the two payload readers below.
pub mod scan_io;

// Is a UDP payload on any port a SIP request? (the any-port recogniser)
pub mod any_port;

// The SIP inspector: request line and headers, rules, decision.
pub mod sip;

// Verdict order over a parsed packet.
pub mod verdict;

// Which outbound packets teach a registrar.
pub mod learn;

pub use abi::*;
pub use reason::Reason;
