//! Signature verification with keys prepared once, when a key set is loaded, instead of on every
//! token.
//!
//! `jsonwebtoken::crypto::verify` rebuilds the key from its raw components for every signature
//! and runs the RustCrypto arithmetic, which inside Envoy's V8 costs about 1 ms per RS256, PS256
//! or ES256 token. Each family here keeps a ready key (see the submodules for what is precomputed
//! and why); only public values take part, so the arithmetic need not be constant-time, except
//! for HMAC, whose tag comparison is.
//!
//! | family | verification | ready key |
//! |---|---|---|
//! | RSA (RS*, PS*) | [`rsa`]: Montgomery exponentiation with lazy carries | modulus limbs, R² mod n |
//! | P-256 (ES256) | [`p256`]: comb tables for G and the key, own 32-bit-limb field and `s⁻¹` | 256 KiB table per key, on first use |
//! | Ed25519 (EdDSA) | [`ed25519`]: radix-16 tables for B and the key | 30 KiB table per key, on first use |
//! | P-384 (ES384) | RustCrypto `p384` | decoded point |
//! | HMAC (HS*) | RustCrypto `hmac` | the secret |

pub mod ed25519;
pub mod p256;
mod p256_field;
pub mod roca;
pub mod rsa;

use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use sha2::{Sha256, Sha384, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// A verification key, ready to use. Never printed: it may hold an HMAC secret.
pub enum PublicKey {
    Rsa(rsa::RsaKey),
    P256(Box<p256::P256Key>),
    P384(Box<::p384::ecdsa::VerifyingKey>),
    Ed25519(Box<ed25519::Ed25519Key>),
    Hmac(Vec<u8>),
}

impl PublicKey {
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<PublicKey, &'static str> {
        rsa::RsaKey::new(n, e).map(PublicKey::Rsa)
    }

    pub fn p256(x: &[u8], y: &[u8]) -> Result<PublicKey, &'static str> {
        p256::P256Key::new(x, y).map(|k| PublicKey::P256(Box::new(k)))
    }

    pub fn p384(x: &[u8], y: &[u8]) -> Result<PublicKey, &'static str> {
        let mut point = Vec::with_capacity(97);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        ::p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map(|k| PublicKey::P384(Box::new(k)))
            .map_err(|_| "EC key is not a point on the curve")
    }

    pub fn ed25519(x: &[u8]) -> Result<PublicKey, &'static str> {
        ed25519::Ed25519Key::new(x).map(|k| PublicKey::Ed25519(Box::new(k)))
    }

    pub fn hmac(secret: &[u8]) -> PublicKey {
        PublicKey::Hmac(secret.to_vec())
    }

    /// True when `signature` (raw bytes, as decoded from the JWS) is valid for `message` under
    /// `alg`. An algorithm of another family is false, never an error.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        use Algorithm::*;
        match (self, alg) {
            (PublicKey::Rsa(key), RS256) => key.verify_pkcs1v15(Hash::Sha256, message, signature),
            (PublicKey::Rsa(key), RS384) => key.verify_pkcs1v15(Hash::Sha384, message, signature),
            (PublicKey::Rsa(key), RS512) => key.verify_pkcs1v15(Hash::Sha512, message, signature),
            (PublicKey::Rsa(key), PS256) => key.verify_pss(Hash::Sha256, message, signature),
            (PublicKey::Rsa(key), PS384) => key.verify_pss(Hash::Sha384, message, signature),
            (PublicKey::Rsa(key), PS512) => key.verify_pss(Hash::Sha512, message, signature),
            (PublicKey::P256(key), ES256) => key.verify(message, signature),
            (PublicKey::P384(key), ES384) => {
                use ::p384::ecdsa::signature::Verifier;
                ::p384::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            (PublicKey::Ed25519(key), EdDSA) => key.verify(message, signature),
            (PublicKey::Hmac(secret), HS256) => hmac_ok::<Hmac<Sha256>>(secret, message, signature),
            (PublicKey::Hmac(secret), HS384) => hmac_ok::<Hmac<Sha384>>(secret, message, signature),
            (PublicKey::Hmac(secret), HS512) => hmac_ok::<Hmac<Sha512>>(secret, message, signature),
            _ => false,
        }
    }
}

/// Constant-time tag comparison (`verify_slice`), which also refuses a truncated tag.
fn hmac_ok<M: Mac + hmac::digest::KeyInit>(secret: &[u8], message: &[u8], tag: &[u8]) -> bool {
    <M as Mac>::new_from_slice(secret)
        .map(|mac| mac.chain_update(message).verify_slice(tag).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod wycheproof_tests;
