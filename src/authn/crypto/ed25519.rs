//! Ed25519 verification (RFC 8032 section 5.1.7, as `ed25519-dalek`'s `verify`: cofactorless,
//! canonical `S` required, `R` compared as encoded) with a fixed-base table for the public key.
//! Keys are checked at load as `ed25519-dalek`'s `VerifyingKey::is_weak` and `verify_strict` do,
//! and more: canonical encoding, not of small order, no small-order component.
//!
//! Verifying computes `[S]B - [k]A`. `ed25519-dalek` does it with one double-scalar
//! multiplication: about 253 point doublings per token. Both B and A are fixed per key, so here
//! each gets a radix-16 table (B's ships with curve25519-dalek; A's, about 30 KiB, is built on the
//! key's first use) and each multiplication is 64 table additions and 4 doublings: about 30 % less
//! work inside a Wasm engine.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable;
use sha2::{Digest, Sha512};
use std::cell::OnceCell;

pub struct Ed25519Key {
    encoded: [u8; 32],
    minus_a: EdwardsPoint,
    table: OnceCell<Box<EdwardsBasepointTable>>,
}

impl Ed25519Key {
    pub fn new(x: &[u8]) -> Result<Ed25519Key, &'static str> {
        let encoded: [u8; 32] = x
            .try_into()
            .map_err(|_| "Ed25519 key has the wrong length")?;
        let a = CompressedEdwardsY(encoded)
            .decompress()
            .ok_or("Ed25519 key is not a curve point")?;
        // Key hygiene (issue #19, class 9). A key of small order (the identity, the points of
        // order 2, 4 and 8) makes `[S]B - [k]A` independent of the message: with A the identity
        // the signature (R = identity, S = 0) verifies for anything. A non-canonical encoding
        // (y not below p, or "negative" x = 0) names one of those points, or some point, twice;
        // a key with a torsion component is never produced by key generation and is judged
        // differently by cofactored and cofactorless verifiers. All three are refused at load.
        if a.compress().0 != encoded {
            return Err("Ed25519 key is not canonically encoded");
        }
        if a.is_small_order() {
            return Err("Ed25519 key is of small order");
        }
        if !a.is_torsion_free() {
            return Err("Ed25519 key has a small-order component");
        }
        Ok(Ed25519Key {
            encoded,
            minus_a: -a,
            table: OnceCell::new(),
        })
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let (r, s) = signature.split_at(32);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(s);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r)
                .chain_update(self.encoded)
                .chain_update(message),
        );
        let table = self
            .table
            .get_or_init(|| Box::new(EdwardsBasepointTable::create(&self.minus_a)));
        let r_check = ED25519_BASEPOINT_TABLE * &s + &**table * &k;
        r_check.compress().as_bytes()[..] == r[..]
    }
}
