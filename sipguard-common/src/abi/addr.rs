//! Addresses as map keys: 16 bytes for both families, IPv4 in the first 4.

/// An IPv4 address in the first 4 bytes of a zeroed 16-byte field. Built
/// as one 128-bit value (two 64-bit stores in BPF): twelve zero bytes
/// stored one by one are merged by LLVM into a call of the byte-at-a-time
/// `memset` loop, which costs more than the rest of the parse.
#[inline(always)]
pub fn v4_in_16(a: [u8; 4]) -> [u8; 16] {
    (u32::from_le_bytes(a) as u128).to_le_bytes()
}

/// A source address (or a prefix of one, for bans) as a hash key. IPv4 uses
/// the first 4 bytes; the rest is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AddrKey {
    pub addr: [u8; 16],
    /// 4 or 6.
    pub family: u32,
}
const _: () = assert!(core::mem::size_of::<AddrKey>() == 20);

impl AddrKey {
    /// The key of `addr`; IPv6 addresses are cut to `v6_prefix` bits.
    #[inline(always)]
    pub fn new(ipv6: bool, addr: &[u8; 16], v6_prefix: u32) -> AddrKey {
        if !ipv6 {
            // Not `[0; 16]` then 4 bytes: see `v4_in_16`.
            return AddrKey {
                addr: v4_in_16([addr[0], addr[1], addr[2], addr[3]]),
                family: 4,
            };
        }
        let mut k = AddrKey {
            addr: [0; 16],
            family: 6,
        };
        let prefix = if v6_prefix > 128 { 128 } else { v6_prefix };
        let mut i = 0;
        while i < 16 {
            let bit = (i * 8) as u32;
            let m: u8 = if prefix >= bit + 8 {
                0xff
            } else if prefix <= bit {
                0
            } else {
                0xffu8 << (8 - (prefix - bit))
            };
            k.addr[i] = addr[i] & m;
            i += 1;
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_in_16_puts_the_address_first_and_zeroes_the_rest() {
        let mut want = [0u8; 16];
        want[..4].copy_from_slice(&[203, 0, 113, 9]);
        assert_eq!(v4_in_16([203, 0, 113, 9]), want);
    }

    #[test]
    fn v6_keys_are_cut_to_the_prefix() {
        let a = [
            0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let k = AddrKey::new(true, &a, 64);
        assert_eq!(
            k.addr,
            [0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(AddrKey::new(true, &a, 128).addr, a);
        assert_eq!(AddrKey::new(true, &a, 12).addr[..2], [0x20, 0x00]);
        assert_eq!(AddrKey::new(true, &a, 0).addr, [0; 16]);
        let k4 = AddrKey::new(false, &a, 64);
        assert_eq!(k4.addr[..4], a[..4]);
        assert_eq!(k4.addr[4..], [0; 12]);
        assert_eq!(k4.family, 4);
    }
}
