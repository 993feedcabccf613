//! The P-256 base field (p = 2^256 - 2^224 + 2^192 + 2^96 - 1) for the ES256 verification path:
//! eight 32-bit limbs, Montgomery form (R = 2^256), every value fully reduced.
//!
//! Why not the `p256` crate's field: on wasm32 its "32-bit" field converts to four 64-bit limbs
//! and multiplies them as `u128`, which Wasm has no instruction for: every product became a call
//! to compiler-rt's `__multi3`, and those calls were 43 % of an ES256 verification in V8 (a
//! further 26 % the multiplication around them). Here every product is one `u32 × u32 → u64`, a
//! native `i64.mul`. Only public values take part, so the code is variable-time; it is checked
//! against the `p256` crate's arithmetic on random values (tests below).

use std::ops::{Add, Mul, Neg, Sub};

const LIMBS: usize = 8;
/// p, little-endian limbs.
const P: [u32; LIMBS] = [
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0,
    0,
    1,
    0xffff_ffff,
];
/// R² mod p: multiplying by it enters Montgomery form.
const R2: [u32; LIMBS] = [
    3,
    0,
    0xffff_ffff,
    0xffff_fffb,
    0xffff_fffe,
    0xffff_ffff,
    0xffff_fffd,
    4,
];

/// A field element in Montgomery form, below p.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fe([u32; LIMBS]);

impl Fe {
    pub const ZERO: Fe = Fe([0; LIMBS]);
    /// R mod p (1 in Montgomery form).
    pub const ONE: Fe = Fe([
        1,
        0,
        0,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_fffe,
        0,
    ]);

    /// A big-endian 32-byte value; `None` unless it is below p.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Fe> {
        let limbs = limbs_from_be(bytes);
        below_p(&limbs).then(|| Fe(limbs) * Fe(R2))
    }

    /// Big-endian bytes of the (plain, not Montgomery) value.
    #[cfg(test)]
    pub fn to_bytes(self) -> [u8; 32] {
        let mut one = [0u32; LIMBS];
        one[0] = 1;
        limbs_to_be(&(self * Fe(one)).0)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; LIMBS]
    }

    pub fn square(&self) -> Fe {
        *self * *self
    }

    pub fn double(&self) -> Fe {
        *self + *self
    }

    /// The inverse (Fermat: a^(p-2)); `None` for zero. For table building, not the hot path.
    pub fn invert(&self) -> Option<Fe> {
        if self.is_zero() {
            return None;
        }
        // p - 2, most significant limb first.
        let mut exponent = P;
        exponent[0] -= 2;
        let mut result = Fe::ONE;
        for limb in exponent.iter().rev() {
            for bit in (0..32).rev() {
                result = result.square();
                if (limb >> bit) & 1 == 1 {
                    result = result * *self;
                }
            }
        }
        Some(result)
    }
}

fn below_p(limbs: &[u32; LIMBS]) -> bool {
    less(limbs, &P)
}

/// `a += b`; true on a carry out.
fn add_in_place(a: &mut [u32; LIMBS], b: &[u32; LIMBS]) -> bool {
    let mut carry = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let s = u64::from(*x) + u64::from(y) + carry;
        *x = s as u32;
        carry = s >> 32;
    }
    carry == 1
}

/// `a -= b`; true on a borrow out.
fn sub_in_place(a: &mut [u32; LIMBS], b: &[u32; LIMBS]) -> bool {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
    borrow == 1
}

/// `limbs - p` when `carry` is set or `limbs >= p` (the value is below 2p).
fn reduce_once(limbs: [u32; LIMBS], carry: bool) -> Fe {
    if !carry && below_p(&limbs) {
        return Fe(limbs);
    }
    let mut out = limbs;
    sub_in_place(&mut out, &P);
    Fe(out)
}

impl Add for Fe {
    type Output = Fe;
    fn add(self, other: Fe) -> Fe {
        let mut sum = self.0;
        let carry = add_in_place(&mut sum, &other.0);
        reduce_once(sum, carry)
    }
}

impl Sub for Fe {
    type Output = Fe;
    fn sub(self, other: Fe) -> Fe {
        let mut diff = self.0;
        if sub_in_place(&mut diff, &other.0) {
            // Went below zero: add p back (the carry out cancels the borrow).
            add_in_place(&mut diff, &P);
        }
        Fe(diff)
    }
}

impl Neg for Fe {
    type Output = Fe;
    fn neg(self) -> Fe {
        Fe::ZERO - self
    }
}

impl Mul for Fe {
    type Output = Fe;
    /// Montgomery product `a · b / R mod p` (CIOS). -p⁻¹ mod 2^32 is 1, so each row's multiple
    /// of p is its lowest limb. No sum overflows: (2^32 - 1)² + 2 (2^32 - 1) = 2^64 - 1.
    fn mul(self, other: Fe) -> Fe {
        let (a, b) = (self.0, other.0);
        let mut t = [0u32; LIMBS + 2];
        for &bi in &b {
            let bi = u64::from(bi);
            let mut carry = 0u64;
            for j in 0..LIMBS {
                let s = u64::from(t[j]) + u64::from(a[j]) * bi + carry;
                t[j] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[LIMBS]) + carry;
            t[LIMBS] = s as u32;
            t[LIMBS + 1] = (s >> 32) as u32;
            let m = u64::from(t[0]);
            let mut carry = (u64::from(t[0]) + m * u64::from(P[0])) >> 32;
            for j in 1..LIMBS {
                let s = u64::from(t[j]) + m * u64::from(P[j]) + carry;
                t[j - 1] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[LIMBS]) + carry;
            t[LIMBS - 1] = s as u32;
            t[LIMBS] = t[LIMBS + 1] + (s >> 32) as u32;
        }
        let mut out = [0u32; LIMBS];
        out.copy_from_slice(&t[..LIMBS]);
        reduce_once(out, t[LIMBS] != 0)
    }
}

/// Little-endian limbs of a big-endian 32-byte value.
pub fn limbs_from_be(bytes: &[u8; 32]) -> [u32; LIMBS] {
    let mut limbs = [0u32; LIMBS];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.rchunks_exact(4)) {
        *limb = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    limbs
}

/// Big-endian bytes of little-endian limbs.
pub fn limbs_to_be(limbs: &[u32; LIMBS]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, limb) in out.rchunks_exact_mut(4).zip(limbs) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// `a⁻¹ mod m` for an odd modulus `m` and `0 < a < m` (`None` otherwise, or when they share a
/// factor), by the binary extended Euclidean algorithm: variable-time, for public values only
/// (an ECDSA signature's `s`). The `p256` crate's `invert_vartime` took 29 % of an ES256
/// verification in V8, most of it in `subtle`'s constant-time selection helpers.
pub fn invert_mod(a: &[u32; LIMBS], m: &[u32; LIMBS]) -> Option<[u32; LIMBS]> {
    let zero = [0u32; LIMBS];
    if *a == zero || !less(a, m) || m[0] & 1 == 0 {
        return None;
    }
    let mut one = zero;
    one[0] = 1;
    // Invariants: x1 · a ≡ u and x2 · a ≡ v (mod m); x1, x2 < m.
    let (mut u, mut v, mut x1, mut x2) = (*a, *m, one, zero);
    while u != one && v != one {
        if u == zero || v == zero {
            return None;
        }
        while u[0] & 1 == 0 {
            shift_right(&mut u, false);
            halve_mod(&mut x1, m);
        }
        while v[0] & 1 == 0 {
            shift_right(&mut v, false);
            halve_mod(&mut x2, m);
        }
        if less(&u, &v) {
            sub_in_place(&mut v, &u);
            sub_mod(&mut x2, &x1, m);
        } else {
            sub_in_place(&mut u, &v);
            sub_mod(&mut x1, &x2, m);
        }
    }
    Some(if u == one { x1 } else { x2 })
}

fn less(a: &[u32; LIMBS], b: &[u32; LIMBS]) -> bool {
    for (x, y) in a.iter().zip(b).rev() {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `x >>= 1`, with `top` shifted in as bit 255.
fn shift_right(x: &mut [u32; LIMBS], top: bool) {
    let mut carry = u32::from(top);
    for limb in x.iter_mut().rev() {
        let next = *limb & 1;
        *limb = (*limb >> 1) | (carry << 31);
        carry = next;
    }
}

/// `x = x / 2 mod m` (m odd, x < m): an odd x becomes (x + m) / 2, whose 257th bit is the carry.
fn halve_mod(x: &mut [u32; LIMBS], m: &[u32; LIMBS]) {
    let carry = x[0] & 1 == 1 && add_in_place(x, m);
    shift_right(x, carry);
}

/// `x = x - y mod m` (x, y < m).
fn sub_mod(x: &mut [u32; LIMBS], y: &[u32; LIMBS], m: &[u32; LIMBS]) {
    if sub_in_place(x, y) {
        add_in_place(x, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::ff::PrimeField;
    use p256::{FieldBytes, FieldElement};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn values() -> Vec<[u8; 32]> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = vec![[0u8; 32], [0xff; 32]];
        let mut one = [0u8; 32];
        one[31] = 1;
        out.push(one);
        // p - 1, and values around 2^224 and 2^96 (the shape of p).
        let mut p_minus_1 = limbs_to_be(&P);
        p_minus_1[31] -= 1;
        out.push(p_minus_1);
        for _ in 0..200 {
            let mut b = [0u8; 32];
            for byte in b.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            out.push(b);
        }
        out
    }

    fn theirs(bytes: &[u8; 32]) -> Option<FieldElement> {
        Option::from(FieldElement::from_repr(FieldBytes::from(*bytes)))
    }

    #[test]
    fn scalar_inverse_agrees_with_the_p256_crate() {
        use p256::elliptic_curve::ops::Invert;
        use p256::Scalar;
        let n = limbs_from_be(&Scalar::ZERO.sub(&Scalar::ONE).to_bytes().into());
        // n - 1 + 1 = n: the order as limbs.
        let mut order = n;
        add_in_place(&mut order, &{
            let mut one = [0u32; LIMBS];
            one[0] = 1;
            one
        });
        for bytes in values() {
            let Some(k) = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(bytes))) else {
                assert_eq!(invert_mod(&limbs_from_be(&bytes), &order), None);
                continue;
            };
            let theirs: Option<Scalar> = Option::from(k.invert_vartime());
            let mine = invert_mod(&limbs_from_be(&bytes), &order);
            assert_eq!(
                mine.map(|i| limbs_to_be(&i).to_vec()),
                theirs.map(|i| i.to_bytes().to_vec()),
                "{bytes:?}"
            );
        }
        assert_eq!(invert_mod(&[0; LIMBS], &order), None);
        let mut even = order;
        even[0] &= !1;
        assert_eq!(invert_mod(&[3, 0, 0, 0, 0, 0, 0, 0], &even), None);
    }

    #[test]
    fn agrees_with_the_p256_crate() {
        let all = values();
        for x in &all {
            let (mine, reference) = (Fe::from_bytes(x), theirs(x));
            assert_eq!(mine.is_some(), reference.is_some());
            let (Some(a), Some(ra)) = (mine, reference) else {
                continue;
            };
            assert_eq!(a.to_bytes(), *x);
            assert_eq!(a.is_zero(), bool::from(ra.is_zero()));
            assert_eq!((-a).to_bytes()[..], (-ra).to_bytes()[..]);
            assert_eq!(a.square().to_bytes()[..], ra.square().to_bytes()[..]);
            assert_eq!(a.double().to_bytes()[..], ra.double().to_bytes()[..]);
            let inverse: Option<FieldElement> = Option::from(ra.invert());
            assert_eq!(
                a.invert().map(|i| i.to_bytes().to_vec()),
                inverse.map(|i| i.to_bytes().to_vec())
            );
            for y in all.iter().step_by(7) {
                let (Some(b), Some(rb)) = (Fe::from_bytes(y), theirs(y)) else {
                    continue;
                };
                assert_eq!((a + b).to_bytes()[..], (ra + rb).to_bytes()[..]);
                assert_eq!((a - b).to_bytes()[..], (ra - rb).to_bytes()[..]);
                assert_eq!((a * b).to_bytes()[..], (ra * rb).to_bytes()[..]);
            }
        }
        assert_eq!(Fe::ONE.to_bytes()[31], 1);
        assert!(Fe::ONE.to_bytes()[..31].iter().all(|&b| b == 0));
    }
}
