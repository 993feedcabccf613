//! How backends spell the names finguard judges. A backend must never read a header, query
//! parameter or cookie finguard did not see under the name it reads it by (DESIGN.md principle 5),
//! so finguard compares names the way the most lenient common backend reads them:
//!
//! - **Header names** ([`header_key`]): case-folded, `_` read as `-`. CGI-style gateways (PHP-FPM,
//!   Rack, WSGI) expose `X-Auth-Subject`, `x_auth_subject` and `X_Auth_Subject` alike as
//!   `HTTP_X_AUTH_SUBJECT`.
//! - **Parameter and cookie names** ([`param_key`]): percent-decoded (`+` as a space), leading
//!   spaces dropped, ` ` and `.` read as `_` and an array suffix (`name[]`, `name[0]`) cut off,
//!   as PHP builds `$_GET`/`$_COOKIE` and Rack its params, then case-folded (Go's
//!   `encoding/json`-style and Spring binders match names case-insensitively).
//!
//! Values of query parameters are decoded the same way ([`decode_component`]). Undecodable escapes
//! are kept literally, as PHP's `urldecode` does, so no spelling makes a name unreadable to
//! finguard while a backend still reads it.

use std::borrow::Cow;

/// A header name as a CGI-style backend reads it: ASCII lowercase, `_` as `-`.
pub fn header_key(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        Cow::Owned(
            name.bytes()
                .map(|b| match b {
                    b'_' => '-',
                    other => char::from(other.to_ascii_lowercase()),
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(name)
    }
}

/// A query parameter or cookie name as PHP and Rack read it, case-folded (see the module docs).
pub fn param_key(raw: &str) -> String {
    let decoded = decode_component(raw);
    let trimmed = decoded.trim_start_matches(' ');
    // `name[]` and `name[key]` are `name` to PHP and Rack; a lone `[` PHP reads as `_`.
    let base = match trimmed.find('[') {
        Some(at) if trimmed[at..].contains(']') => &trimmed[..at],
        _ => trimmed,
    };
    base.chars()
        .map(|c| match c {
            ' ' | '.' | '[' => '_',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// Percent-decodes a URL component, `+` as a space. Invalid escapes stay as they are; bytes that
/// are not UTF-8 become U+FFFD (they can never equal a configured name or a bound id).
pub fn decode_component(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (b, escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The query's parameters as (raw name, raw value), in order; `a` alone is (`a`, ``).
pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The cookies of one `Cookie` header as (raw name, raw value).
pub fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        Some((name.trim(), value.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn header_names_fold_case_and_underscores() {
        for spelling in [
            "x-auth-subject",
            "x_auth_subject",
            "X_Auth_Subject",
            "x-auth_subject",
            "X-AUTH-SUBJECT",
        ] {
            assert_eq!(header_key(spelling), "x-auth-subject", "{spelling}");
        }
        assert!(matches!(header_key("x-plain"), Cow::Borrowed(_)));
        assert_ne!(header_key("x-auth-subjects"), "x-auth-subject");
    }

    #[test]
    fn parameter_names_as_php_and_rack_read_them() {
        for spelling in [
            "access_token",
            "access%5Ftoken",
            "access%5ftoken",
            "%61ccess_token",
            "%61%63%63%65%73%73%5f%74%6f%6b%65%6e",
            "access.token",
            "access+token",
            "access%20token",
            "access[token",
            "access_token[]",
            "access_token[0]",
            "access_token[a][b]",
            "ACCESS_TOKEN",
            "Access_Token",
            "+access_token",
            "%20access_token",
        ] {
            assert_eq!(param_key(spelling), "access_token", "{spelling}");
        }
        for other in [
            "access_tokens",
            "xaccess_token",
            "access-token",
            "access%zztoken",
        ] {
            assert_ne!(param_key(other), "access_token", "{other}");
        }
    }

    #[test]
    fn decoding_keeps_invalid_escapes_and_never_fails() {
        assert_eq!(decode_component("a%2"), "a%2");
        assert_eq!(decode_component("a%zz%41"), "a%zzA");
        assert_eq!(decode_component("%ff"), "\u{fffd}");
        assert_eq!(decode_component("cust-42"), "cust-42");
        assert_eq!(decode_component("cust%2D43+x"), "cust-43 x");
        assert_eq!(decode_component("%"), "%");
        assert_eq!(decode_component("%é"), "%é");
    }

    #[test]
    fn pairs() {
        let q: Vec<_> = query_pairs(Some("a=1&&b&c=x=y")).collect();
        assert_eq!(q, [("a", "1"), ("b", ""), ("c", "x=y")]);
        assert_eq!(query_pairs(None).count(), 0);
        let c: Vec<_> = cookie_pairs("a=1; b = 2 ;junk; c=").collect();
        assert_eq!(c, [("a", "1"), ("b", "2"), ("c", "")]);
    }
}
