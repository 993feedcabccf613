//! ES256 verification (ECDSA over P-256 with SHA-256, signature `r || s`, RFC 7518 section 3.4),
//! with fixed-base comb tables for both the generator and the public key.
//!
//! ECDSA verification computes `u1·G + u2·Q`. The RustCrypto `p256` crate does it with two
//! constant-time multiplications (about 500 doublings and 130 additions with complete formulas),
//! which costs ~1 ms per token inside a Wasm engine. Here both points are fixed, so each gets a
//! table of `d · 2^(8i) · P` for every byte position i and d in 1..=128 (4,097 affine points,
//! 256 KiB): a scalar, recoded into signed bytes, is then at most 33 mixed additions and no
//! doubling. The generator's table is built once per VM on first use, a key's table on the key's
//! first use (a few milliseconds each). Only public values are involved, so the code is
//! variable-time. The field arithmetic and the inverse of `s` are finguard's own
//! ([`super::p256_field`]): the `p256` crate's field multiplies through `u128` on wasm32, a
//! compiler-rt call per product, and its scalar inversion spends most of its time in `subtle`.
//! Scalars (reduction of the hash, the two products) are still the crate's.

use super::p256_field::{invert_mod, limbs_from_be, limbs_to_be, Fe};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::{Field, PrimeField};
use p256::{FieldBytes, Scalar, U256};
use sha2::{Digest, Sha256};
use std::cell::OnceCell;
use std::sync::OnceLock;

const HALF: usize = 128;
/// 32 byte positions, plus one for the carry out of the signed recoding.
const TABLE_LEN: usize = 32 * HALF + 1;

const B_HEX: &str = "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b";
const GX_HEX: &str = "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
const GY_HEX: &str = "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
/// The group order n, and p - n: an x coordinate below p - n may stand for r or r + n.
const N_HEX: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const P_MINUS_N: U256 =
    U256::from_be_hex("000000000000000000000000000000004319055358e8617b0c46353d039cdaae");

/// The group order n, little-endian limbs (N_HEX; a unit test checks they agree).
const N_LIMBS: [u32; 8] = [
    0xfc63_2551,
    0xf3b9_cac2,
    0xa717_9e84,
    0xbce6_faad,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0xffff_ffff,
];

/// `s⁻¹ mod n` for the big-endian `s` of a signature (already checked to be in 1..n-1).
fn scalar_inverse(s: &[u8; 32]) -> Option<Scalar> {
    let inverse = invert_mod(&limbs_from_be(s), &N_LIMBS)?;
    Option::from(Scalar::from_repr(FieldBytes::from(limbs_to_be(&inverse))))
}

#[derive(Clone, Copy)]
struct Affine {
    x: Fe,
    y: Fe,
}

/// Jacobian coordinates: (X / Z², Y / Z³); Z = 0 is the point at infinity.
#[derive(Clone, Copy)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

const INFINITY: Jacobian = Jacobian {
    x: Fe::ONE,
    y: Fe::ONE,
    z: Fe::ZERO,
};

/// 64 hex digits as 32 big-endian bytes.
fn hex32(hex: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

fn fe(hex: &str) -> Option<Fe> {
    Fe::from_bytes(&hex32(hex)?)
}

impl Jacobian {
    fn is_infinity(&self) -> bool {
        self.z.is_zero()
    }

    fn from_affine(p: &Affine) -> Jacobian {
        Jacobian {
            x: p.x,
            y: p.y,
            z: Fe::ONE,
        }
    }

    /// dbl-2001-b (a = -3): 3M + 5S.
    fn double(&self) -> Jacobian {
        if self.is_infinity() {
            return *self;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x * gamma;
        let t = (self.x - delta) * (self.x + delta);
        let alpha = t.double() + t;
        let beta4 = beta.double().double();
        let x3 = alpha.square() - beta4.double();
        let z3 = (self.y + self.z).square() - gamma - delta;
        let gamma_sq8 = gamma.square().double().double().double();
        let y3 = alpha * (beta4 - x3) - gamma_sq8;
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// Mixed addition (Z2 = 1): 8M + 3S, with the exceptional cases handled explicitly.
    fn add_affine(&self, q: &Affine) -> Jacobian {
        if self.is_infinity() {
            return Jacobian::from_affine(q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x * z1z1;
        let s2 = q.y * self.z * z1z1;
        let h = u2 - self.x;
        let r = s2 - self.y;
        if h.is_zero() {
            return if r.is_zero() { self.double() } else { INFINITY };
        }
        let hh = h.square();
        let hhh = h * hh;
        let v = self.x * hh;
        let x3 = r.square() - hhh - v.double();
        let y3 = r * (v - x3) - self.y * hhh;
        Jacobian {
            x: x3,
            y: y3,
            z: self.z * h,
        }
    }
}

/// Affine forms of Jacobian points with one field inversion (Montgomery's trick). `None` if one
/// of them is the point at infinity.
fn normalize(points: &[Jacobian]) -> Option<Vec<Affine>> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = Fe::ONE;
    for p in points {
        acc = acc * p.z;
        prefix.push(acc);
    }
    let mut inv = acc.invert()?;
    let mut out = vec![
        Affine {
            x: Fe::ZERO,
            y: Fe::ZERO
        };
        points.len()
    ];
    for i in (0..points.len()).rev() {
        let z_inv = if i == 0 { inv } else { inv * prefix[i - 1] };
        inv = inv * points[i].z;
        let z_inv2 = z_inv.square();
        out[i] = Affine {
            x: points[i].x * z_inv2,
            y: points[i].y * z_inv2 * z_inv,
        };
    }
    Some(out)
}

/// `table[HALF·i + d - 1] = d · 2^(8i) · P`.
struct Comb(Vec<Affine>);

impl Comb {
    fn new(p: &Affine) -> Option<Comb> {
        let mut table = Vec::with_capacity(TABLE_LEN);
        let mut base = *p;
        for i in 0..=32 {
            let count = if i < 32 { HALF } else { 1 };
            let mut points = Vec::with_capacity(count + 1);
            let mut m = Jacobian::from_affine(&base);
            points.push(m);
            for _ in 1..count {
                m = m.add_affine(&base);
                points.push(m);
            }
            if i < 32 {
                // 2 · 128 · 2^(8i) · P = 2^(8(i+1)) · P, the next row's base.
                points.push(m.double());
            }
            let affine = normalize(&points)?;
            table.extend_from_slice(&affine[..count]);
            if let Some(next) = affine.get(count) {
                base = *next;
            }
        }
        Some(Comb(table))
    }

    /// `acc += k · P`, with k recoded into 33 signed bytes in -127..=128.
    fn add_multiple(&self, k: &Scalar, acc: &mut Jacobian) {
        let bytes = k.to_bytes();
        let mut carry = 0i32;
        for i in 0..=32 {
            let byte = if i < 32 { i32::from(bytes[31 - i]) } else { 0 };
            let mut d = byte + carry;
            carry = 0;
            if d > HALF as i32 {
                d -= 256;
                carry = 1;
            }
            let index = HALF * i + d.unsigned_abs() as usize;
            if d > 0 {
                *acc = acc.add_affine(&self.0[index - 1]);
            } else if d < 0 {
                let p = &self.0[index - 1];
                *acc = acc.add_affine(&Affine { x: p.x, y: -p.y });
            }
        }
    }
}

fn generator_table() -> Option<&'static Comb> {
    static TABLE: OnceLock<Option<Comb>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let g = Affine {
                x: fe(GX_HEX)?,
                y: fe(GY_HEX)?,
            };
            Comb::new(&g)
        })
        .as_ref()
}

pub struct P256Key {
    q: Affine,
    table: OnceCell<Option<Comb>>,
}

impl P256Key {
    /// Coordinates as in a JWK (32 bytes each, big-endian); the point must be on the curve.
    pub fn new(x: &[u8], y: &[u8]) -> Result<P256Key, &'static str> {
        const NOT_ON_CURVE: &str = "EC key is not a point on the curve";
        let (Ok(x), Ok(y)) = (<[u8; 32]>::try_from(x), <[u8; 32]>::try_from(y)) else {
            return Err("EC coordinates have the wrong length");
        };
        let x = Fe::from_bytes(&x).ok_or(NOT_ON_CURVE)?;
        let y = Fe::from_bytes(&y).ok_or(NOT_ON_CURVE)?;
        let b = fe(B_HEX).ok_or(NOT_ON_CURVE)?;
        // y² = x³ - 3x + b
        let rhs = x.square() * x - (x.double() + x) + b;
        if y.square() != rhs {
            return Err(NOT_ON_CURVE);
        }
        Ok(P256Key {
            q: Affine { x, y },
            table: OnceCell::new(),
        })
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let mut r_arr = [0u8; 32];
        let mut s_arr = [0u8; 32];
        r_arr.copy_from_slice(&signature[..32]);
        s_arr.copy_from_slice(&signature[32..]);
        let (r_bytes, s_bytes) = (FieldBytes::from(r_arr), FieldBytes::from(s_arr));
        // Both in 1..n-1.
        let (Some(r), Some(s)) = (
            Option::<Scalar>::from(Scalar::from_repr(r_bytes)),
            Option::<Scalar>::from(Scalar::from_repr(s_bytes)),
        ) else {
            return false;
        };
        if bool::from(r.is_zero()) || bool::from(s.is_zero()) {
            return false;
        }
        let z = <Scalar as Reduce<U256>>::reduce_bytes(&Sha256::digest(message));
        let Some(w) = scalar_inverse(&s_arr) else {
            return false;
        };
        let (Some(g), Some(q)) = (
            generator_table(),
            self.table.get_or_init(|| Comb::new(&self.q)).as_ref(),
        ) else {
            return false;
        };
        let mut point = INFINITY;
        g.add_multiple(&(z * w), &mut point);
        q.add_multiple(&(r * w), &mut point);
        if point.is_infinity() {
            return false;
        }
        // x(point) = X / Z² must be r or r + n (as an integer below p): compare X with r·Z².
        let z2 = point.z.square();
        let Some(r_fe) = Fe::from_bytes(&r_arr) else {
            return false;
        };
        if point.x == r_fe * z2 {
            return true;
        }
        let r_uint = U256::from_be_slice(&r_bytes);
        match fe(N_HEX) {
            Some(n) if r_uint < P_MINUS_N => point.x == (r_fe + n) * z2,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::point::AffineCoordinates;
    use p256::ProjectivePoint;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The comb's signed-byte recoding at its edges (digits 128 and 129, carries through 0xff
    /// runs, the last carry) against the RustCrypto scalar multiplication.
    #[test]
    fn order_limbs_match_the_order() {
        assert_eq!(hex32(N_HEX).map(|n| limbs_from_be(&n)), Some(N_LIMBS));
    }

    #[test]
    fn comb_matches_scalar_multiplication() {
        let g = generator_table().unwrap();
        let mut cases = vec![
            Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(128u64),
            Scalar::from(129u64),
        ];
        for byte in [0x7fu8, 0x80, 0x81, 0xff] {
            let mut bytes = [byte; 32];
            bytes[0] &= 0x7f;
            cases.push(<Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(
                bytes,
            )));
        }
        cases.push(<Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(
            [0xffu8; 32],
        )));
        for k in cases {
            let mut acc = INFINITY;
            g.add_multiple(&k, &mut acc);
            let ours = normalize(&[acc]).unwrap()[0];
            let theirs = (ProjectivePoint::GENERATOR * k).to_affine();
            assert_eq!(ours.x.to_bytes()[..], theirs.x()[..], "{k:?}");
            // And 2k: the sum of two table walks, through the doubling case when k = k.
            g.add_multiple(&k, &mut acc);
            let ours = normalize(&[acc]).unwrap()[0];
            let theirs = (ProjectivePoint::GENERATOR * (k + k)).to_affine();
            assert_eq!(ours.x.to_bytes()[..], theirs.x()[..], "2·{k:?}");
        }
        // k + (-k) = infinity.
        let mut acc = INFINITY;
        g.add_multiple(&Scalar::from(5u64), &mut acc);
        g.add_multiple(&-Scalar::from(5u64), &mut acc);
        assert!(acc.is_infinity());
    }
}
