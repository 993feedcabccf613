//! What happens to a value (or to a detected match inside a string): mask, PAN truncation,
//! keyed tokenisation, a fixed replacement.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The tokenisation key, HMAC-SHA256 keyed once at configuration. Its `Debug` never shows it.
#[derive(Clone)]
pub struct TokenKey(Hmac<Sha256>);

impl TokenKey {
    /// `None` if the key is shorter than 32 bytes.
    pub fn new(key: &[u8]) -> Option<TokenKey> {
        if key.len() < 32 {
            return None;
        }
        Hmac::<Sha256>::new_from_slice(key).ok().map(TokenKey)
    }

    /// `prefix` + base64url of the first 128 bits of HMAC-SHA256(key, value): stable for one
    /// key, the same in every worker and Envoy, not reversible without the key.
    pub fn token(&self, prefix: &str, value: &str, out: &mut String) {
        use base64::Engine;
        let mut mac = self.0.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        out.push_str(prefix);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&digest[..16], out);
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// One transformation of text.
#[derive(Debug, Clone)]
pub enum Action {
    /// Every character but the last `keep_last` becomes `mask_char`; a value no longer than
    /// `keep_last` is masked entirely.
    Mask { keep_last: usize, mask_char: char },
    /// PCI DSS truncation: only digits are masked; at most the first `keep_first` (only when the
    /// value has at least 13 digits, i.e. is a card number) and the last `keep_last` digits (only
    /// when it has at least 8) stay; separators stay where they are.
    Pan {
        keep_first: usize,
        keep_last: usize,
        mask_char: char,
    },
    /// Keyed HMAC token with a prefix.
    Tokenise { prefix: String, key: TokenKey },
    /// A fixed value: compact JSON text for a field rule, plain text for a detector.
    Replace(String),
    /// The member or element is removed (field rules only).
    Remove,
}

impl Action {
    /// The transformed text of `value` (not for `Remove`/`Replace`, which the caller handles).
    pub fn apply(&self, value: &str, out: &mut String) {
        match self {
            Action::Mask {
                keep_last,
                mask_char,
            } => {
                let count = value.chars().count();
                let masked = if count <= *keep_last {
                    count
                } else {
                    count - keep_last
                };
                for (i, c) in value.chars().enumerate() {
                    out.push(if i < masked { *mask_char } else { c });
                }
            }
            Action::Pan {
                keep_first,
                keep_last,
                mask_char,
            } => {
                // Digits as the card-number detector folds them (full-width, Arabic-Indic).
                let is_digit = |c: char| super::detect::digit_value(c).is_some();
                let digits = value.chars().filter(|&c| is_digit(c)).count();
                let first = if digits >= 13 { *keep_first } else { 0 };
                let last = if digits >= 8 { *keep_last } else { 0 };
                let mut seen = 0usize;
                for c in value.chars() {
                    if is_digit(c) {
                        let keep = seen < first || seen >= digits.saturating_sub(last);
                        out.push(if keep { c } else { *mask_char });
                        seen += 1;
                    } else {
                        out.push(c);
                    }
                }
            }
            Action::Tokenise { prefix, key } => key.token(prefix, value, out),
            Action::Replace(text) => out.push_str(text),
            Action::Remove => {}
        }
    }
}

/// An e-mail address masked as a detector match: the first character of the local part, the
/// `@` as written (`@`, `%40`, `&#64;`) and the domain stay (`j*******@bank.example`), so
/// support staff can still tell addresses apart.
pub fn mask_email(value: &str, mask_char: char, out: &mut String) {
    let split = super::detect::last_at_sign(value).and_then(|at| {
        Some((
            value.get(..at.start)?,
            value.get(at.clone())?,
            value.get(at.end..)?,
        ))
    });
    let Some((local, at, domain)) = split else {
        out.extend(value.chars().map(|_| mask_char));
        return;
    };
    let mut chars = local.chars();
    if let Some(first) = chars.next() {
        out.push(first);
    }
    out.extend(chars.map(|_| mask_char));
    out.push_str(at);
    out.push_str(domain);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn run(action: &Action, value: &str) -> String {
        let mut out = String::new();
        action.apply(value, &mut out);
        out
    }

    #[test]
    fn mask_keeps_the_last_characters() {
        let mask = Action::Mask {
            keep_last: 4,
            mask_char: '*',
        };
        assert_eq!(
            run(&mask, "DE12500105170648489890"),
            "******************9890"
        );
        assert_eq!(run(&mask, "1234"), "****");
        assert_eq!(run(&mask, "é1234€"), "**234€");
    }

    #[test]
    fn pan_keeps_at_most_bin_and_last_four() {
        let pan = Action::Pan {
            keep_first: 6,
            keep_last: 4,
            mask_char: 'X',
        };
        assert_eq!(run(&pan, "4111 1111 1111 1111"), "4111 11XX XXXX 1111");
        assert_eq!(run(&pan, "378282246310005"), "378282XXXXX0005");
        assert_eq!(run(&pan, "12345678"), "XXXX5678");
        assert_eq!(run(&pan, "1234567"), "XXXXXXX");
        // Full-width and Arabic-Indic digits are digits.
        assert_eq!(
            run(&pan, "\u{ff14}\u{ff11}\u{ff11}\u{ff11}\u{a0}111111111111"),
            "\u{ff14}\u{ff11}\u{ff11}\u{ff11}\u{a0}11XXXXXX1111"
        );
        assert_eq!(
            run(&pan, "\u{664}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}"),
            "\u{664}\u{661}\u{661}\u{661}\u{661}\u{661}XXXXXX\u{661}\u{661}\u{661}\u{661}"
        );
    }

    #[test]
    fn tokens_are_stable_keyed_and_prefixed() {
        let key = TokenKey::new(&[7u8; 32]).unwrap();
        let other = TokenKey::new(&[8u8; 32]).unwrap();
        let t = |k: &TokenKey, v: &str| {
            let mut out = String::new();
            k.token("tok_", v, &mut out);
            out
        };
        assert_eq!(t(&key, "cust-1"), t(&key, "cust-1"));
        assert_ne!(t(&key, "cust-1"), t(&key, "cust-2"));
        assert_ne!(t(&key, "cust-1"), t(&other, "cust-1"));
        assert!(t(&key, "cust-1").starts_with("tok_"));
        assert_eq!(t(&key, "cust-1").len(), 4 + 22);
        assert!(TokenKey::new(&[1u8; 31]).is_none());
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn email_mask_keeps_first_letter_and_domain() {
        let mut out = String::new();
        mask_email("jane.doe@bank.example", '*', &mut out);
        assert_eq!(out, "j*******@bank.example");
        for (address, masked) in [
            ("jane%40bank.example", "j***%40bank.example"),
            ("jane&#64;bank.example", "j***&#64;bank.example"),
            ("\"jane doe\"@[192.0.2.1]", "\"*********@[192.0.2.1]"),
            ("\"a@b\"@c.de", "\"****@c.de"),
        ] {
            let mut out = String::new();
            mask_email(address, '*', &mut out);
            assert_eq!(out, masked);
        }
    }
}
