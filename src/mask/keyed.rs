//! Keyed determinism: every pseudonym is drawn from a generator seeded by a keyed hash
//! (SipHash-2-4, 128 bits) of the rule and the original value, so the same value masks the
//! same way in every table, run and machine that use the same key, and nobody without the key
//! can recompute the mapping. Keys of key columns go through keyed permutations instead, which
//! can never collide.

use hmac::{KeyInit, Mac};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher24};
use std::hash::Hasher;

/// The masking key, expanded: one half keys the hash, the other the permutations.
#[derive(Clone)]
pub struct Key {
    sip: [u8; 16],
    perm: [u8; 16],
}

impl Key {
    /// Derives the working keys from the user's key material (any length).
    pub fn from_material(material: &[u8]) -> Key {
        let d = Sha256::digest([b"weir-mask key v1\0".as_slice(), material].concat());
        let mut sip = [0u8; 16];
        let mut perm = [0u8; 16];
        sip.copy_from_slice(&d[..16]);
        perm.copy_from_slice(&d[16..]);
        Key { sip, perm }
    }

    /// A random key for this run only (no key given): consistent within the run, so keys still
    /// join, but different every run.
    pub fn random() -> Key {
        let mut m = [0u8; 32];
        crate::plumbing::random_bytes(&mut m);
        Key::from_material(&m)
    }

    /// The keyed state of one rule: its canonical text absorbed once, so each value costs
    /// only its own bytes.
    pub fn for_rule(&self, rule: &[u8]) -> RuleKey {
        let mut state = SipHasher24::new_with_key(&self.sip);
        state.write(&(rule.len() as u64).to_le_bytes());
        state.write(rule);
        let d = Sha256::digest([&self.perm[..], rule].concat());
        let word = |i: usize| u64::from_le_bytes(d[i..i + 8].try_into().unwrap());
        let mut block = [0u8; 16];
        block.copy_from_slice(&d[16..]);
        // The `hash` transformer's HMAC key: its own derivation, so its output reveals nothing
        // of the keys behind the pseudonyms.
        let mac_key = Sha256::digest(
            [
                b"weir-mask hash v1\0".as_slice(),
                &self.sip,
                &self.perm,
                rule,
            ]
            .concat(),
        );
        RuleKey {
            state,
            round_keys: (word(0), word(8)),
            block_key: block,
            mac: hmac::Hmac::new_from_slice(&mac_key).expect("HMAC takes any key length"),
        }
    }
}

/// One rule's keys: the seeded hash state, the Feistel round keys, the block-cipher key.
#[derive(Clone)]
pub struct RuleKey {
    state: SipHasher24,
    round_keys: (u64, u64),
    block_key: [u8; 16],
    mac: hmac::Hmac<Sha256>,
}

impl RuleKey {
    /// 128-bit keyed hash of the rule and `value`.
    pub fn hash(&self, value: &[u8]) -> u128 {
        let mut h = self.state;
        h.write(value);
        h.finish128().as_u128()
    }

    /// HMAC-SHA-256 (RFC 2104) of `value` under the rule's own key: for tokens and
    /// passwords, where 128 bits of SipHash would be too short to publish.
    pub fn mac(&self, value: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(value);
        m.finalize().into_bytes().into()
    }

    /// A generator for one value; what it yields depends only on key, rule and value.
    pub fn rng(&self, value: &[u8]) -> Xoshiro256PlusPlus {
        Self::rng_from(self.hash(value))
    }

    /// The generator for an already computed hash.
    pub fn rng_from(h: u128) -> Xoshiro256PlusPlus {
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(&h.to_le_bytes());
        seed[16..].copy_from_slice(&(!h).rotate_left(64).to_le_bytes());
        Xoshiro256PlusPlus::from_seed(seed)
    }

    /// A keyed permutation of the integers `0 .. 2^bits` (1 <= bits <= 64): four rounds of an
    /// unbalanced Feistel network (halves of bits/2 and the rest, swapping sides each round),
    /// SipHash-1-3 as the round function. Every round is invertible, so the whole is a
    /// bijection on exactly that range: masked keys never collide and never leave it.
    pub fn permute(&self, v: u64, bits: u32) -> u64 {
        let mask = |n: u32| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        let (mut a, mut b) = (bits / 2, bits - bits / 2);
        let (mut l, mut r) = ((v >> b) & mask(a), v & mask(b));
        for round in 0..4u64 {
            let f = sip13_two_words(self.round_keys, r, round) & mask(a);
            // (L: a bits, R: b bits) -> (R: b bits, L ^ F(R): a bits)
            (l, r) = (r, l ^ f);
            (a, b) = (b, a);
        }
        if b >= 64 { r } else { (l << b) | r }
    }

    /// The permutation of non-negative integer keys, the same whatever the column's type: a
    /// value keeps its bit length (a value in `2^(L-1) .. 2^L` is permuted within that range,
    /// 0 stays 0). Every smallint, integer and bigint range is a union of such ranges, so an
    /// `integer` key and its `bigint` foreign key mask to the same value and each stays in its
    /// type (issue 13). It also bounds the masked keys of a sequence: values up to its last
    /// value stay below the next power of two, where the restored sequence then continues.
    /// What it reveals of a key is its magnitude within a factor of two.
    pub fn permute_key(&self, v: u64) -> u64 {
        if v == 0 {
            return 0;
        }
        let bits = 63 - v.leading_zeros();
        let top = 1u64 << bits;
        if bits == 0 {
            return v;
        }
        top | self.permute(v - top, bits)
    }

    /// A keyed permutation of 16-byte values (UUIDs): one AES-128 block encryption.
    pub fn permute_block(&self, block: [u8; 16]) -> [u8; 16] {
        use openssl::symm::{Cipher, Crypter, Mode};
        let mut c = Crypter::new(Cipher::aes_128_ecb(), Mode::Encrypt, &self.block_key, None)
            .expect("AES-128 is available");
        c.pad(false);
        let mut out = [0u8; 32];
        let n = c.update(&block, &mut out).expect("one block");
        debug_assert_eq!(n, 16);
        let mut r = [0u8; 16];
        r.copy_from_slice(&out[..16]);
        r
    }
}

/// SipHash-1-3 of the 16 bytes `m0` then `m1` (little-endian), exactly as `SipHasher13` with
/// `write_u64(m0); write_u64(m1)` computes it, without the streaming hasher's buffering: the
/// permutation's round function runs four times per masked key.
fn sip13_two_words((k0, k1): (u64, u64), m0: u64, m1: u64) -> u64 {
    let mut v = [
        k0 ^ 0x736f6d6570736575,
        k1 ^ 0x646f72616e646f6d,
        k0 ^ 0x6c7967656e657261,
        k1 ^ 0x7465646279746573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    // The message's two words, then the final block: its length (16) in the top byte.
    for m in [m0, m1, 16u64 << 56] {
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphasher::sip::SipHasher13;

    #[test]
    fn the_round_function_is_siphash13() {
        for (k, m0, m1) in [
            (0u64, 0u64, 0u64),
            (7, u64::MAX, 3),
            (0x0123456789abcdef, 42, 1),
        ] {
            let mut h = SipHasher13::new_with_keys(k, !k);
            h.write_u64(m0);
            h.write_u64(m1);
            assert_eq!(sip13_two_words((k, !k), m0, m1), h.finish());
        }
    }

    #[test]
    fn permutations_are_bijections_within_range() {
        let k = Key::from_material(b"k").for_rule(b"r");
        for bits in [7u32, 8, 15] {
            let n = 1u64 << bits;
            let mut seen = vec![false; n as usize];
            for v in 0..n {
                let p = k.permute(v, bits);
                assert!(p < n);
                assert!(!seen[p as usize], "collision at {v}");
                seen[p as usize] = true;
            }
        }
        // Keyed: another key gives another permutation; the rule is part of the key.
        let k2 = Key::from_material(b"other").for_rule(b"r");
        assert_ne!(
            (0..16).map(|v| k.permute(v, 31)).collect::<Vec<_>>(),
            (0..16).map(|v| k2.permute(v, 31)).collect::<Vec<_>>()
        );
        assert_eq!(
            k.hash(b"v"),
            Key::from_material(b"k").for_rule(b"r").hash(b"v")
        );
        assert_ne!(
            k.hash(b"v"),
            Key::from_material(b"k").for_rule(b"q").hash(b"v")
        );
        // Keys keep their bit length, so every type's range maps onto itself, and the same
        // value permutes to the same value in every type.
        let mut seen = std::collections::HashSet::new();
        for v in 0..(1u64 << 16) {
            let p = k.permute_key(v);
            assert_eq!(64 - p.leading_zeros(), 64 - v.leading_zeros(), "{v} -> {p}");
            assert!(seen.insert(p), "collision at {v}");
        }
        for v in [
            (1u64 << 31) - 1,
            1 << 31,
            (1 << 62) + 12345,
            i64::MAX as u64,
        ] {
            let p = k.permute_key(v);
            assert_eq!(p.leading_zeros(), v.leading_zeros(), "{v} -> {p}");
        }
        assert_ne!(k.permute_key(1 << 20), 1 << 20);
        // Whole 64-bit range too (bigint keys).
        assert_ne!(k.permute(u64::MAX, 64), k.permute(u64::MAX - 1, 64));
    }
}
