//! RSA signature verification (RS256/384/512: RSASSA-PKCS1-v1_5; PS256/384/512: RSASSA-PSS,
//! RFC 8017), with the public operation `s^e mod n` done here rather than by a general big-integer
//! library.
//!
//! Only public values take part (the modulus, the exponent, the signature), so the code is
//! variable-time on purpose. Numbers are little-endian limbs of 28 bits held in `u64`: a product of
//! two limbs takes 56 bits, so a column can sum hundreds of products before it must be carried, and
//! the inner loops are a multiply and an add with no carry chain, which is what makes the
//! Montgomery multiplication fast inside a Wasm engine (no 64×64→128-bit multiply there). The
//! exponentiation is plain left-to-right square-and-multiply: e = 65537 costs 16 squarings and 2
//! multiplications, plus the conversion into Montgomery form (R² mod n is computed once per key).

use super::Hash;
use sha2::{Digest, Sha256, Sha384, Sha512};

const LIMB_BITS: u32 = 28;
const MASK: u64 = (1 << LIMB_BITS) - 1;
/// RSA moduli above 4096 bits are refused: the cost of a verification grows with the square of the
/// size, and a remote JWKS must not be able to make each forged token cost more.
pub const MAX_MODULUS_BITS: usize = 4096;
/// Columns are carried after this many rows, far below the 2^64 / 2^57 headroom.
const ROWS_BETWEEN_CARRIES: usize = 64;

/// A public key made ready for verification: modulus limbs and the Montgomery constants.
pub struct RsaKey {
    n: Vec<u64>,
    /// -n^-1 mod 2^28.
    n0: u64,
    /// R^2 mod n, R = 2^(28 · limbs).
    rr: Vec<u64>,
    e: u64,
    /// Modulus length in bytes: the length every signature must have.
    k: usize,
    bits: usize,
}

impl RsaKey {
    /// `n` and `e` big-endian (as in a JWK). Refuses what cannot be a valid RSA public key.
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, &'static str> {
        let first = n
            .iter()
            .position(|&b| b != 0)
            .ok_or("RSA modulus is zero")?;
        let n = &n[first..];
        let k = n.len();
        let bits = 8 * k - n[0].leading_zeros() as usize;
        if bits > MAX_MODULUS_BITS {
            return Err("RSA modulus longer than 4096 bits");
        }
        if n[k - 1] & 1 == 0 || bits < 64 {
            return Err("RSA modulus is not a valid modulus");
        }
        let first = e.iter().position(|&b| b != 0).unwrap_or(e.len());
        let e = &e[first..];
        if e.is_empty() || e.len() > 8 {
            return Err("RSA exponent out of range");
        }
        let e = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        // The bounds the RustCrypto `rsa` crate also applies.
        if e < 3 || e & 1 == 0 || e > (1 << 33) - 1 {
            return Err("RSA exponent out of range");
        }
        // R > 4n, so Montgomery products of values below 2n stay below 2n: no reduction needed
        // between the steps of the exponentiation.
        let limbs = (bits + 2).div_ceil(LIMB_BITS as usize);
        let n = from_be_bytes(n, limbs).ok_or("RSA modulus is not a valid modulus")?;
        // Newton's iteration doubles the number of correct low bits each step: 1, 2, 4, ..., 64.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n[0].wrapping_mul(inv)));
        }
        let n0 = inv.wrapping_neg() & MASK;
        let rr = r_squared(&n, n0, bits);
        Ok(RsaKey {
            n,
            n0,
            rr,
            e,
            k,
            bits,
        })
    }

    pub fn modulus_bits(&self) -> usize {
        self.bits
    }

    /// RSASSA-PKCS1-v1_5 verification (RFC 8017 section 8.2.2), by building the expected encoded
    /// message and comparing.
    pub fn verify_pkcs1v15(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        let prefix = hash.digest_info_prefix();
        let digest = hash.digest(message);
        let t_len = prefix.len() + digest.len();
        if self.k < t_len + 11 {
            return false;
        }
        let ps_end = self.k - t_len - 1;
        em[0] == 0
            && em[1] == 1
            && em[2..ps_end].iter().all(|&b| b == 0xff)
            && em[ps_end] == 0
            && &em[ps_end + 1..ps_end + 1 + prefix.len()] == prefix
            && em[self.k - digest.len()..] == digest[..]
    }

    /// RSASSA-PSS verification (RFC 8017 section 8.1.2 and 9.1.2) with MGF1 over the same hash and
    /// a salt as long as the hash, as RFC 7518 section 3.5 requires for PS256/384/512.
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(mut em) = self.public_op(signature) else {
            return false;
        };
        let m_hash = hash.digest(message);
        let h_len = m_hash.len();
        let s_len = h_len;
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        // EM is I2OSP(m, emLen): with a modulus of 8k+1 bits the leading byte must be zero.
        let em = match self.k - em_len {
            0 => &mut em[..],
            _ if em[0] == 0 => &mut em[1..],
            _ => return false,
        };
        if em_len < h_len + s_len + 2 || em[em_len - 1] != 0xbc {
            return false;
        }
        let (masked_db, rest) = em.split_at_mut(em_len - h_len - 1);
        let h = &rest[..h_len];
        let unused_bits = 8 * em_len - em_bits;
        if unused_bits > 0 && masked_db[0] >> (8 - unused_bits) != 0 {
            return false;
        }
        mgf1_xor(hash, h, masked_db);
        masked_db[0] &= 0xff >> unused_bits;
        let ps_len = em_len - h_len - s_len - 2;
        if masked_db[..ps_len].iter().any(|&b| b != 0) || masked_db[ps_len] != 1 {
            return false;
        }
        let salt = &masked_db[ps_len + 1..];
        let h_prime = hash.digest_parts(&[&[0u8; 8], &m_hash, salt]);
        h_prime[..] == h[..]
    }

    /// `s^e mod n` as `k` big-endian bytes; `None` when the signature is not `k` bytes long or
    /// not below n (RFC 8017 section 5.2.2).
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.k {
            return None;
        }
        let s = self.n.len();
        let base = from_be_bytes(signature, s)?;
        if !less_than(&base, &self.n) {
            return None;
        }
        let n = &self.n[..];
        let mut t = vec![0u64; 2 * s + 1];
        let mut acc = vec![0u64; s];
        let mut tmp = vec![0u64; s];
        let mut base_m = vec![0u64; s];
        mont_mul(&mut base_m, &base, &self.rr, n, self.n0, &mut t);
        acc.copy_from_slice(&base_m);
        // e is odd and at least 3: every bit below the top one but the last is a squaring and,
        // when set, a multiplication; the last squaring is followed by a multiplication with the
        // plain base, which leaves Montgomery form at the same time.
        let top = 63 - self.e.leading_zeros();
        for bit in (1..top).rev() {
            mont_sqr(&mut tmp, &acc, n, self.n0, &mut t);
            if (self.e >> bit) & 1 == 1 {
                mont_mul(&mut acc, &tmp, &base_m, n, self.n0, &mut t);
            } else {
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        mont_sqr(&mut tmp, &acc, n, self.n0, &mut t);
        mont_mul(&mut acc, &tmp, &base, n, self.n0, &mut t);
        if !less_than(&acc, n) {
            sub_assign(&mut acc, n);
        }
        let mut out = vec![0u8; self.k];
        to_be_bytes(&acc, &mut out);
        Some(out)
    }
}

impl Hash {
    fn digest(self, message: &[u8]) -> Vec<u8> {
        self.digest_parts(&[message])
    }

    fn digest_parts(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for part in parts {
                d.update(part);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }

    /// DER of DigestInfo up to the digest (RFC 8017 section 9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// MGF1 (RFC 8017 appendix B.2.1) XORed into `out`.
fn mgf1_xor(hash: Hash, seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in out.chunks_mut(hash.output_len()).enumerate() {
        let c = (counter as u32).to_be_bytes();
        let mask = hash.digest_parts(&[seed, &c]);
        for (o, m) in chunk.iter_mut().zip(mask) {
            *o ^= m;
        }
    }
}

/// R^2 mod n. Doubling 2^(bits-1) up to 2^(L+j) mod n, with L = 28 · limbs = j · 2^q and j odd,
/// then q Montgomery squarings, each of which doubles the excess over L: 2^(L+j) -> 2^(L+2j) ...
fn r_squared(n: &[u64], n0: u64, bits: usize) -> Vec<u64> {
    let s = n.len();
    let l = s * LIMB_BITS as usize;
    let q = l.trailing_zeros();
    let j = l >> q;
    let mut x = vec![0u64; s];
    x[(bits - 1) / LIMB_BITS as usize] = 1 << ((bits - 1) % LIMB_BITS as usize);
    for _ in (bits - 1)..(l + j) {
        let mut carry = 0;
        for limb in x.iter_mut() {
            let v = (*limb << 1) | carry;
            *limb = v & MASK;
            carry = v >> LIMB_BITS;
        }
        if !less_than(&x, n) {
            sub_assign(&mut x, n);
        }
    }
    let mut t = vec![0u64; 2 * s + 1];
    let mut y = vec![0u64; s];
    for _ in 0..q {
        mont_sqr(&mut y, &x, n, n0, &mut t);
        std::mem::swap(&mut x, &mut y);
    }
    if !less_than(&x, n) {
        sub_assign(&mut x, n);
    }
    x
}

/// `out = a · b / R mod n` for `a, b < 2n`, with `out < 2n`. `t`: scratch of 2s + 1 limbs.
fn mont_mul(out: &mut [u64], a: &[u64], b: &[u64], n: &[u64], n0: u64, t: &mut [u64]) {
    let s = n.len();
    t.fill(0);
    let a = &a[..s];
    for (i, &bi) in b[..s].iter().enumerate() {
        // m makes the lowest column of this row divisible by 2^28.
        let m = (t[i].wrapping_add(a[0] * bi) & MASK).wrapping_mul(n0) & MASK;
        for ((tj, &aj), &nj) in t[i..i + s].iter_mut().zip(a).zip(n) {
            *tj += aj * bi + nj * m;
        }
        t[i + 1] += t[i] >> LIMB_BITS;
        if i % ROWS_BETWEEN_CARRIES == ROWS_BETWEEN_CARRIES - 1 {
            carry_through(&mut t[i + 1..]);
        }
    }
    normalise_into(out, &t[s..]);
}

/// `out = a² / R mod n`: the square with each cross product computed once, then a Montgomery
/// reduction, about 3/4 of the work of [`mont_mul`].
fn mont_sqr(out: &mut [u64], a: &[u64], n: &[u64], n0: u64, t: &mut [u64]) {
    let s = n.len();
    t.fill(0);
    let a = &a[..s];
    for (i, &ai) in a.iter().enumerate() {
        t[2 * i] += ai * ai;
        let twice = ai << 1;
        // Each column gets at most s/2 + 1 products below 2^57: no overflow below 4096 bits.
        for (tj, &aj) in t[2 * i + 1..i + s].iter_mut().zip(&a[i + 1..]) {
            *tj += twice * aj;
        }
    }
    carry_through(t);
    for i in 0..s {
        let m = (t[i] & MASK).wrapping_mul(n0) & MASK;
        for (tj, &nj) in t[i..i + s].iter_mut().zip(n) {
            *tj += m * nj;
        }
        t[i + 1] += t[i] >> LIMB_BITS;
    }
    normalise_into(out, &t[s..]);
}

fn carry_through(t: &mut [u64]) {
    let mut carry = 0;
    for limb in t.iter_mut() {
        let v = *limb + carry;
        *limb = v & MASK;
        carry = v >> LIMB_BITS;
    }
}

fn normalise_into(out: &mut [u64], t: &[u64]) {
    let mut carry = 0;
    for (o, &limb) in out.iter_mut().zip(t) {
        let v = limb + carry;
        *o = v & MASK;
        carry = v >> LIMB_BITS;
    }
}

fn less_than(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().zip(b).rev() {
        if x != y {
            return x < y;
        }
    }
    false
}

fn sub_assign(a: &mut [u64], b: &[u64]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = x.wrapping_sub(y).wrapping_sub(borrow);
        *x = d & MASK;
        borrow = d >> 63;
    }
}

/// Big-endian bytes into `limbs` limbs; `None` if the value does not fit.
fn from_be_bytes(bytes: &[u8], limbs: usize) -> Option<Vec<u64>> {
    let mut out = vec![0u64; limbs];
    let (mut acc, mut nbits, mut i) = (0u64, 0u32, 0usize);
    for &b in bytes.iter().rev() {
        acc |= u64::from(b) << nbits;
        nbits += 8;
        if nbits >= LIMB_BITS {
            match out.get_mut(i) {
                Some(limb) => *limb = acc & MASK,
                None if acc & MASK != 0 => return None,
                None => {}
            }
            i += 1;
            acc >>= LIMB_BITS;
            nbits -= LIMB_BITS;
        }
    }
    if acc != 0 {
        *out.get_mut(i)? = acc;
    }
    Some(out)
}

fn to_be_bytes(limbs: &[u64], out: &mut [u8]) {
    let (mut acc, mut nbits) = (0u64, 0u32);
    let mut limbs = limbs.iter();
    for byte in out.iter_mut().rev() {
        if nbits < 8 {
            acc |= limbs.next().copied().unwrap_or(0) << nbits;
            nbits += LIMB_BITS;
        }
        *byte = acc as u8;
        acc >>= 8;
        nbits -= 8;
    }
}
