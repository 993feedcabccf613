//! RSA signature verification (RS256/384/512: RSASSA-PKCS1-v1_5; PS256/384/512: RSASSA-PSS,
//! RFC 8017), with the public operation `s^e mod n` done here rather than by a general big-integer
//! library.
//!
//! Only public values take part (the modulus, the exponent, the signature), so the code is
//! variable-time on purpose. Numbers are little-endian limbs of 28 bits held in `u32`, summed into
//! `u64` columns: a product of two limbs takes 56 bits, so a column can take hundreds of products
//! before it must be carried, and the inner loops are a multiply and an add with no carry chain.
//! That shape is what Wasm SIMD does well: in Wasm the row loops ([`rows`]) multiply four limbs at
//! a time with `i64x2.extmul_{low,high}_i32x4_u` (a lane shuffle and a `pmuludq` in V8 on x86-64),
//! and the Montgomery reduction takes two rows per pass over the columns. Limb arrays are padded
//! with zero limbs to whole vectors, so no loop has a tail. The exponentiation is plain
//! left-to-right square-and-multiply: e = 65537 costs 16 squarings and 2 multiplications, plus the
//! conversion into Montgomery form (R² mod n is computed once per key).
//!
//! The SIMD functions make the module need a Wasm engine with SIMD (fixed-width SIMD is part of
//! Wasm 2.0; Envoy's V8 and Wasmtime have it). Only these functions are compiled with `simd128`,
//! not the whole module, so nothing else changes shape.

use super::Hash;
use sha2::{Digest, Sha256, Sha384, Sha512};

const LIMB_BITS: u32 = 28;
const MASK: u64 = (1 << LIMB_BITS) - 1;
/// Limbs per SIMD step of the row loops; limb arrays are padded to whole steps.
const LANES: usize = 4;
/// RSA moduli above 4096 bits are refused: the cost of a verification grows with the square of the
/// size, and a remote JWKS must not be able to make each forged token cost more.
pub const MAX_MODULUS_BITS: usize = 4096;
/// Columns are carried after this many rows, far below the 2^64 / 2^57 headroom.
const ROWS_BETWEEN_CARRIES: usize = 64;

/// A public key made ready for verification: modulus limbs and the Montgomery constants.
pub struct RsaKey {
    /// Padded limbs, see [`Shape`].
    n: Vec<u32>,
    /// The same limbs one place up (n · 2^28), for reductions that take two rows at once.
    n_up: Vec<u32>,
    /// -n^-1 mod 2^28.
    n0: u64,
    /// R^2 mod n, R = 2^(28 · limbs).
    rr: Vec<u32>,
    e: u64,
    /// Modulus length in bytes: the length every signature must have.
    k: usize,
    bits: usize,
    shape: Shape,
}

/// Sizes of the limb arrays for a modulus of `s` limbs: `w` is `s` rounded up to whole SIMD
/// steps, and every number is stored in `w + LANES` limbs (zero above `s`), so that a row that
/// starts at any limb can run in whole steps past its end and only read zeros there.
#[derive(Clone, Copy)]
struct Shape {
    s: usize,
    w: usize,
}

impl Shape {
    fn new(s: usize) -> Shape {
        Shape {
            s,
            w: s.next_multiple_of(LANES),
        }
    }

    fn limbs(self) -> usize {
        self.w + LANES
    }

    /// Columns of a double-width product, with room for the padded rows.
    fn columns(self) -> usize {
        2 * self.w + 2 * LANES
    }
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
        let shape = Shape::new((bits + 2).div_ceil(LIMB_BITS as usize));
        let n = from_be_bytes(n, shape).ok_or("RSA modulus is not a valid modulus")?;
        // Newton's iteration doubles the number of correct low bits each step: 1, 2, 4, ..., 64.
        let n_low = u64::from(n[0]);
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n_low.wrapping_mul(inv)));
        }
        let n0 = inv.wrapping_neg() & MASK;
        let n_up = shifted_up(&n);
        let rr = r_squared(&n, &n_up, n0, bits, shape);
        Ok(RsaKey {
            n,
            n_up,
            n0,
            rr,
            e,
            k,
            bits,
            shape,
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
        let shape = self.shape;
        let base = from_be_bytes(signature, shape)?;
        if !less_than(&base, &self.n) {
            return None;
        }
        let m = Montgomery {
            n: &self.n,
            n_up: &self.n_up,
            n0: self.n0,
            shape,
        };
        let mut t = vec![0u64; shape.columns()];
        let mut acc = vec![0u32; shape.limbs()];
        let mut tmp = vec![0u32; shape.limbs()];
        let mut base_m = vec![0u32; shape.limbs()];
        m.mul(&mut base_m, &base, &self.rr, &mut t);
        acc.copy_from_slice(&base_m);
        // e is odd and at least 3: every bit below the top one but the last is a squaring and,
        // when set, a multiplication; the last squaring is followed by a multiplication with the
        // plain base, which leaves Montgomery form at the same time.
        let top = 63 - self.e.leading_zeros();
        for bit in (1..top).rev() {
            m.sqr(&mut tmp, &acc, &mut t);
            if (self.e >> bit) & 1 == 1 {
                m.mul(&mut acc, &tmp, &base_m, &mut t);
            } else {
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        m.sqr(&mut tmp, &acc, &mut t);
        m.mul(&mut acc, &tmp, &base, &mut t);
        if !less_than(&acc, &self.n) {
            sub_assign(&mut acc, &self.n);
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
fn r_squared(n: &[u32], n_up: &[u32], n0: u64, bits: usize, shape: Shape) -> Vec<u32> {
    let l = shape.s * LIMB_BITS as usize;
    let q = l.trailing_zeros();
    let j = l >> q;
    let mut x = vec![0u32; shape.limbs()];
    x[(bits - 1) / LIMB_BITS as usize] = 1 << ((bits - 1) % LIMB_BITS as usize);
    for _ in (bits - 1)..(l + j) {
        let mut carry = 0;
        for limb in &mut x[..shape.s] {
            let v = (*limb << 1) | carry;
            *limb = v & MASK as u32;
            carry = v >> LIMB_BITS;
        }
        if !less_than(&x, n) {
            sub_assign(&mut x, n);
        }
    }
    let m = Montgomery { n, n_up, n0, shape };
    let mut t = vec![0u64; shape.columns()];
    let mut y = vec![0u32; shape.limbs()];
    for _ in 0..q {
        m.sqr(&mut y, &x, &mut t);
        std::mem::swap(&mut x, &mut y);
    }
    if !less_than(&x, n) {
        sub_assign(&mut x, n);
    }
    x
}

/// Limbs moved one place up (the top padding limb absorbs the top limb).
fn shifted_up(n: &[u32]) -> Vec<u32> {
    let mut up = vec![0u32; n.len()];
    up[1..].copy_from_slice(&n[..n.len() - 1]);
    up
}

/// Montgomery arithmetic modulo n, on padded limb arrays of `shape.limbs()` limbs.
struct Montgomery<'a> {
    n: &'a [u32],
    n_up: &'a [u32],
    n0: u64,
    shape: Shape,
}

impl Montgomery<'_> {
    /// `out = a · b / R mod n` for `a, b < 2n`, with `out < 2n`. `t`: scratch of `columns()`.
    fn mul(&self, out: &mut [u32], a: &[u32], b: &[u32], t: &mut [u64]) {
        let Shape { s, w } = self.shape;
        t.fill(0);
        for (i, &bi) in b[..s].iter().enumerate() {
            // m makes the lowest column of this row divisible by 2^28.
            let low = t[i].wrapping_add(u64::from(a[0]) * u64::from(bi));
            let m = (low & MASK).wrapping_mul(self.n0) & MASK;
            rows::mul_add2(&mut t[i..i + w], &a[..w], bi, &self.n[..w], m as u32);
            t[i + 1] += t[i] >> LIMB_BITS;
            if i % ROWS_BETWEEN_CARRIES == ROWS_BETWEEN_CARRIES - 1 {
                carry_through(&mut t[i + 1..]);
            }
        }
        normalise_into(&mut out[..s], &t[s..]);
    }

    /// `out = a² / R mod n`: the square with each cross product computed once, then a Montgomery
    /// reduction, about 3/4 of the work of [`Self::mul`].
    fn sqr(&self, out: &mut [u32], a: &[u32], t: &mut [u64]) {
        let s = self.shape.s;
        t.fill(0);
        for i in 0..s {
            let ai = u64::from(a[i]);
            t[2 * i] += ai * ai;
            // Each column gets at most s/2 + 1 products below 2^57: no overflow below 4096 bits.
            // The row runs in whole steps over the zero padding above a[s - 1].
            let len = (s - i - 1).next_multiple_of(LANES);
            let start = 2 * i + 1;
            rows::mul_add(
                &mut t[start..start + len],
                &a[i + 1..i + 1 + len],
                (2 * ai) as u32,
            );
        }
        carry_through(t);
        self.reduce(t);
        normalise_into(&mut out[..s], &t[s..]);
    }

    /// Montgomery reduction of the carried product in `t`, two rows per pass: m for the second
    /// row follows from the first row's effect on its lowest two columns, and one pass adds
    /// `n · m0 + n · 2^28 · m1`, which halves the loads and stores of the columns. Each column
    /// still gets one product below 2^56 per row, s in all: no overflow up to 4096 bits.
    fn reduce(&self, t: &mut [u64]) {
        let Shape { s, w } = self.shape;
        let (n, n_up, n0) = (self.n, self.n_up, self.n0);
        let mut i = 0;
        while i + 1 < s {
            let m0 = (t[i] & MASK).wrapping_mul(n0) & MASK;
            let low = t[i] + u64::from(n[0]) * m0;
            let next = t[i + 1] + u64::from(n[1]) * m0 + (low >> LIMB_BITS);
            let m1 = (next & MASK).wrapping_mul(n0) & MASK;
            // n_up is one limb longer than n: the pass covers w + LANES columns.
            let span = w + LANES;
            rows::mul_add2(
                &mut t[i..i + span],
                &n[..span],
                m0 as u32,
                &n_up[..span],
                m1 as u32,
            );
            t[i + 1] += t[i] >> LIMB_BITS;
            t[i + 2] += t[i + 1] >> LIMB_BITS;
            i += 2;
        }
        if i < s {
            let m = (t[i] & MASK).wrapping_mul(n0) & MASK;
            rows::mul_add(&mut t[i..i + w], &n[..w], m as u32);
            t[i + 1] += t[i] >> LIMB_BITS;
        }
    }
}

/// The row loops of the multiplications: `t[j] += a[j] · x (+ n[j] · m)` over whole SIMD steps
/// (slices of equal length, a multiple of [`LANES`]; limbs below 2^29, so no sum overflows while
/// the callers carry in time). In Wasm they use SIMD; elsewhere (native tests and tools) the
/// scalar loops, which the Wasm tests also check the SIMD ones against.
mod rows {
    #[cfg(not(target_arch = "wasm32"))]
    pub use super::scalar_rows::{mul_add, mul_add2};
    #[cfg(target_arch = "wasm32")]
    pub use super::simd_rows::{mul_add, mul_add2};
}

#[cfg(any(test, not(target_arch = "wasm32")))]
mod scalar_rows {
    pub fn mul_add2(t: &mut [u64], a: &[u32], x: u32, n: &[u32], m: u32) {
        let (x, m) = (u64::from(x), u64::from(m));
        for ((tj, &aj), &nj) in t.iter_mut().zip(a).zip(n) {
            *tj += u64::from(aj) * x + u64::from(nj) * m;
        }
    }

    pub fn mul_add(t: &mut [u64], a: &[u32], x: u32) {
        let x = u64::from(x);
        for (tj, &aj) in t.iter_mut().zip(a) {
            *tj += u64::from(aj) * x;
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod simd_rows {
    use super::LANES;
    use core::arch::wasm32::*;

    /// Adds four products (of `limbs` with the splat `x`) to four columns.
    #[target_feature(enable = "simd128")]
    fn add4(columns: &mut [u64], lo: v128, hi: v128) {
        let p = columns.as_mut_ptr().cast::<v128>();
        // SAFETY: callers pass exactly LANES (4) columns: 32 bytes, two v128 that `p` and
        // `p.add(1)` address; v128_load and v128_store need no alignment.
        unsafe {
            v128_store(p, i64x2_add(v128_load(p), lo));
            v128_store(p.add(1), i64x2_add(v128_load(p.add(1)), hi));
        }
    }

    /// Four limbs as one vector.
    #[target_feature(enable = "simd128")]
    fn load4(limbs: &[u32]) -> v128 {
        debug_assert_eq!(limbs.len(), LANES);
        // SAFETY: callers pass exactly LANES (4) limbs: the 16 bytes one v128 load reads; it
        // needs no alignment.
        unsafe { v128_load(limbs.as_ptr().cast::<v128>()) }
    }

    /// `x` in every lane, rebuilt in each step from data the step loads, so that LLVM cannot
    /// hoist it out of the loop. Hoisted, the splat's widening to 64 bits leaves the loop with
    /// it, and the step's `extmul(a, splat(x))` is compiled to `i64x2.mul(extend(a), splat(x as
    /// u64))`: a full 64-bit lane multiply, which V8 on x86-64 emulates with three `pmuludq` and
    /// shifts, where `extmul` is one `pmuludq` and two lane shuffles (the RSA operation took 77
    /// instead of 53 µs in V8). `limbs` are below 2^29 (see [`super::rows`]), so the shifted
    /// value ORed in is zero; LLVM cannot know that.
    #[target_feature(enable = "simd128")]
    fn splat_in_step(x: v128, limbs: v128) -> v128 {
        v128_or(x, u32x4_shr(limbs, 29))
    }

    #[target_feature(enable = "simd128")]
    pub fn mul_add2(t: &mut [u64], a: &[u32], x: u32, n: &[u32], m: u32) {
        let (vx, vm) = (u32x4_splat(x), u32x4_splat(m));
        let steps = t
            .chunks_exact_mut(LANES)
            .zip(a.chunks_exact(LANES))
            .zip(n.chunks_exact(LANES));
        for ((t, a), n) in steps {
            let (va, vn) = (load4(a), load4(n));
            let both = v128_or(va, vn);
            let (vx, vm) = (splat_in_step(vx, both), splat_in_step(vm, both));
            let lo = i64x2_add(
                i64x2_extmul_low_u32x4(va, vx),
                i64x2_extmul_low_u32x4(vn, vm),
            );
            let hi = i64x2_add(
                i64x2_extmul_high_u32x4(va, vx),
                i64x2_extmul_high_u32x4(vn, vm),
            );
            add4(t, lo, hi);
        }
    }

    #[target_feature(enable = "simd128")]
    pub fn mul_add(t: &mut [u64], a: &[u32], x: u32) {
        let vx = u32x4_splat(x);
        for (t, a) in t.chunks_exact_mut(LANES).zip(a.chunks_exact(LANES)) {
            let va = load4(a);
            let vx = splat_in_step(vx, va);
            add4(
                t,
                i64x2_extmul_low_u32x4(va, vx),
                i64x2_extmul_high_u32x4(va, vx),
            );
        }
    }
}

fn carry_through(t: &mut [u64]) {
    let mut carry = 0;
    for limb in t.iter_mut() {
        let v = *limb + carry;
        *limb = v & MASK;
        carry = v >> LIMB_BITS;
    }
}

fn normalise_into(out: &mut [u32], t: &[u64]) {
    let mut carry = 0;
    for (o, &limb) in out.iter_mut().zip(t) {
        let v = limb + carry;
        *o = (v & MASK) as u32;
        carry = v >> LIMB_BITS;
    }
}

fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().zip(b).rev() {
        if x != y {
            return x < y;
        }
    }
    false
}

fn sub_assign(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u32;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = x.wrapping_sub(y).wrapping_sub(borrow);
        *x = d & MASK as u32;
        borrow = d >> 31;
    }
}

/// Big-endian bytes into padded limbs; `None` if the value does not fit in `shape.s` limbs.
fn from_be_bytes(bytes: &[u8], shape: Shape) -> Option<Vec<u32>> {
    let mut out = vec![0u32; shape.limbs()];
    let (mut acc, mut nbits, mut i) = (0u64, 0u32, 0usize);
    for &b in bytes.iter().rev() {
        acc |= u64::from(b) << nbits;
        nbits += 8;
        if nbits >= LIMB_BITS {
            let limb = (acc & MASK) as u32;
            match out[..shape.s].get_mut(i) {
                Some(slot) => *slot = limb,
                None if limb != 0 => return None,
                None => {}
            }
            i += 1;
            acc >>= LIMB_BITS;
            nbits -= LIMB_BITS;
        }
    }
    if acc != 0 {
        *out[..shape.s].get_mut(i)? = acc as u32;
    }
    Some(out)
}

fn to_be_bytes(limbs: &[u32], out: &mut [u8]) {
    let (mut acc, mut nbits) = (0u64, 0u32);
    let mut limbs = limbs.iter();
    for byte in out.iter_mut().rev() {
        if nbits < 8 {
            acc |= u64::from(limbs.next().copied().unwrap_or(0)) << nbits;
            nbits += LIMB_BITS;
        }
        *byte = acc as u8;
        acc >>= 8;
        nbits -= 8;
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod simd_tests {
    use super::{scalar_rows, simd_rows, LANES, MASK};
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The SIMD rows against the scalar ones, on pseudo-random limbs up to 2^29 (the doubled
    /// limbs of a squaring) and columns with high bits set.
    #[test]
    fn simd_rows_agree_with_scalar_rows() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in [LANES, 2 * LANES, 19 * LANES] {
            let a: Vec<u32> = (0..len)
                .map(|_| (next() & ((MASK << 1) | 1)) as u32)
                .collect();
            let n: Vec<u32> = (0..len).map(|_| (next() & MASK) as u32).collect();
            let t: Vec<u64> = (0..len).map(|_| next() >> 2).collect();
            let (x, m) = ((next() & ((MASK << 1) | 1)) as u32, (next() & MASK) as u32);
            let (mut scalar, mut simd) = (t.clone(), t.clone());
            scalar_rows::mul_add2(&mut scalar, &a, x, &n, m);
            simd_rows::mul_add2(&mut simd, &a, x, &n, m);
            assert_eq!(scalar, simd);
            scalar_rows::mul_add(&mut scalar, &a, x);
            simd_rows::mul_add(&mut simd, &a, x);
            assert_eq!(scalar, simd);
        }
    }
}
