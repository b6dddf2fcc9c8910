//! Keyed determinism: every pseudonym is drawn from a generator seeded by a keyed hash
//! (SipHash-2-4, 128 bits) of the rule and the original value, so the same value masks the
//! same way in every table, run and machine that use the same key, and nobody without the key
//! can recompute the mapping. Keys of key columns go through keyed permutations instead, which
//! can never collide.

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
        getrandom_fill(&mut m);
        Key::from_material(&m)
    }

    /// 128-bit keyed hash of `rule` (a canonical description of the transformer) and `value`.
    pub fn hash(&self, rule: &[u8], value: &[u8]) -> u128 {
        let mut h = SipHasher24::new_with_key(&self.sip);
        h.write(&(rule.len() as u64).to_le_bytes());
        h.write(rule);
        h.write(value);
        h.finish128().as_u128()
    }

    /// A generator for one value; what it yields depends only on key, rule and value.
    pub fn rng(&self, rule: &[u8], value: &[u8]) -> Xoshiro256PlusPlus {
        let h = self.hash(rule, value);
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(&h.to_le_bytes());
        seed[16..].copy_from_slice(&(!h).rotate_left(64).to_le_bytes());
        Xoshiro256PlusPlus::from_seed(seed)
    }

    /// A keyed permutation of the integers `0 .. 2^bits` (bits <= 63): a balanced Feistel
    /// network on the next even bit count, cycle-walked back into range. A bijection, so
    /// masked keys never collide.
    pub fn permute(&self, rule: &[u8], v: u64, bits: u32) -> u64 {
        let width = bits.div_ceil(2) * 2;
        let half = width / 2;
        let mask = (1u64 << half) - 1;
        let limit = 1u128 << bits;
        let mut x = v;
        loop {
            let (mut l, mut r) = (x >> half, x & mask);
            for round in 0..4u8 {
                let mut h = SipHasher24::new_with_key(&self.perm);
                h.write(rule);
                h.write(&[round]);
                h.write(&r.to_le_bytes());
                let f = h.finish() & mask;
                (l, r) = (r, l ^ f);
            }
            x = (l << half) | r;
            if u128::from(x) < limit {
                return x;
            }
        }
    }

    /// A keyed permutation of 16-byte values (UUIDs): one AES-128 block encryption.
    pub fn permute_block(&self, rule: &[u8], block: [u8; 16]) -> [u8; 16] {
        use openssl::symm::{Cipher, Crypter, Mode};
        let k = Sha256::digest([&self.perm[..], rule].concat());
        let mut c = Crypter::new(Cipher::aes_128_ecb(), Mode::Encrypt, &k[..16], None)
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

fn getrandom_fill(buf: &mut [u8]) {
    openssl::rand::rand_bytes(buf).expect("the system's random source works");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_bijections_within_range() {
        let k = Key::from_material(b"k");
        for bits in [7u32, 8, 15] {
            let n = 1u64 << bits;
            let mut seen = vec![false; n as usize];
            for v in 0..n {
                let p = k.permute(b"r", v, bits);
                assert!(p < n);
                assert!(!seen[p as usize], "collision at {v}");
                seen[p as usize] = true;
            }
        }
        // Keyed: another key gives another permutation.
        let k2 = Key::from_material(b"other");
        assert_ne!(
            (0..16).map(|v| k.permute(b"r", v, 31)).collect::<Vec<_>>(),
            (0..16).map(|v| k2.permute(b"r", v, 31)).collect::<Vec<_>>()
        );
        assert_eq!(
            k.hash(b"r", b"v"),
            Key::from_material(b"k").hash(b"r", b"v")
        );
    }
}
