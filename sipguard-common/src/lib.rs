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

pub mod abi;
pub mod learn;
pub mod ops;
pub mod packet;
pub mod reason;
pub mod sip;
pub mod sipline;
pub mod verdict;

pub use abi::*;
pub use reason::Reason;
