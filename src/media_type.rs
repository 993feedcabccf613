//! Media types (`Content-Type`), parsed strictly for request bodies (below) and for responses on
//! redacting routes (`response::body_format`, which adds the JSON-family spellings it redacts).
//!
//! The `Content-Type` of a request body, parsed strictly (RFC 9110 §8.3.1 and §5.6): exactly
//! one media type, `type "/" subtype *( OWS ";" OWS [ name "=" value ] )`, with type, subtype
//! and parameter names tokens and values tokens or quoted strings. Anything else is not a
//! media type, and the body is refused (415) rather than judged as JSON while the backend reads
//! it as something else: a list (`application/x-www-form-urlencoded, application/json`, which
//! is also what Envoy makes of two `Content-Type` headers, over HTTP/1.1 and HTTP/2: it joins
//! the values of this inline header with `,`), whitespace inside the essence,
//! a parameter without `=`, control or non-ASCII bytes.
//!
//! Stricter than the grammar where parsers are known to disagree: a quoted value with a
//! quoted-pair (`charset="utf\-8"`: unescaped by some, taken literally by others) and a
//! parameter named twice are refused too. Empty parameters (`application/json;`) are
//! grammatical and read alike everywhere, so they pass.
//!
//! A JSON body is `application/json` or `application/<name>+json` (RFC 6839), case-insensitive,
//! and UTF-8 (RFC 8259 §8.1): a `charset` parameter, if present, is `utf-8`. Other types with a
//! `+json` suffix (`multipart/form-data+json; boundary=x`, `text/x+json`) are refused: a
//! backend may dispatch on the type alone (Rack reads `multipart/...; boundary=` as a form).

/// A parsed media type, borrowing from the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// `type/subtype` as sent (compare case-insensitively).
    pub essence: &'a str,
    /// The part after `/`.
    subtype: &'a str,
    /// The type is `application`.
    application: bool,
    /// The `charset` parameter, unquoted, if any.
    pub charset: Option<&'a str>,
    /// Whether any parameter was given.
    pub has_parameters: bool,
}

impl MediaType<'_> {
    /// `application/json` or `application/<name>+json`, and UTF-8 if a charset is named.
    pub fn is_json_utf8(&self) -> bool {
        self.is_json_essence() && self.charset.is_none_or(|c| c.eq_ignore_ascii_case("utf-8"))
    }

    /// `application/json` or `application/<name>+json`, parameters aside.
    pub fn is_json_essence(&self) -> bool {
        let subtype = self.subtype.as_bytes();
        let suffixed = subtype.len() > 5
            && subtype
                .get(subtype.len() - 5..)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"+json"));
        self.application && (self.subtype.eq_ignore_ascii_case("json") || suffixed)
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The length of the token at the start of `bytes` (0: none).
fn token_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| is_tchar(**b)).count()
}

fn skip_ows(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| *b == b' ' || *b == b'\t') {
        at += 1;
    }
    at
}

/// Parses one media type (see the module docs). `None`: not exactly one well-formed media type.
pub fn parse(value: &str) -> Option<MediaType<'_>> {
    let bytes = value.as_bytes();
    let start = skip_ows(bytes, 0);
    let type_len = token_len(bytes.get(start..)?);
    if type_len == 0 || bytes.get(start + type_len) != Some(&b'/') {
        return None;
    }
    let sub_start = start + type_len + 1;
    let sub_len = token_len(bytes.get(sub_start..)?);
    if sub_len == 0 {
        return None;
    }
    let essence = value.get(start..sub_start + sub_len)?;
    let subtype = value.get(sub_start..sub_start + sub_len)?;
    let mut media = MediaType {
        essence,
        subtype,
        application: value
            .get(start..start + type_len)?
            .eq_ignore_ascii_case("application"),
        charset: None,
        has_parameters: false,
    };
    // Parameter names seen, to refuse repeats (a handful at most in any real header).
    let mut names: [&str; 8] = [""; 8];
    let mut count = 0;
    let mut at = sub_start + sub_len;
    loop {
        at = skip_ows(bytes, at);
        match bytes.get(at) {
            None => return Some(media),
            Some(b';') => at = skip_ows(bytes, at + 1),
            Some(_) => return None,
        }
        // An empty parameter: `;` followed by OWS and `;` or the end.
        if matches!(bytes.get(at), None | Some(b';')) {
            continue;
        }
        let name_len = token_len(bytes.get(at..)?);
        if name_len == 0 || bytes.get(at + name_len) != Some(&b'=') {
            return None;
        }
        let name = value.get(at..at + name_len)?;
        at += name_len + 1;
        let parameter = if bytes.get(at) == Some(&b'"') {
            // qdtext only: HTAB, SP and visible ASCII but `"` and `\` (no quoted-pair, no
            // obs-text).
            let inner = bytes.get(at + 1..)?;
            let len = inner
                .iter()
                .take_while(|b| {
                    **b == b'\t' || ((b' '..=b'~').contains(*b) && !b"\"\\".contains(b))
                })
                .count();
            if inner.get(len) != Some(&b'"') {
                return None;
            }
            let text = value.get(at + 1..at + 1 + len)?;
            at += len + 2;
            text
        } else {
            let len = token_len(bytes.get(at..)?);
            if len == 0 {
                return None;
            }
            let text = value.get(at..at + len)?;
            at += len;
            text
        };
        if names
            .get(..count)
            .is_some_and(|seen| seen.iter().any(|n| n.eq_ignore_ascii_case(name)))
        {
            return None;
        }
        *names.get_mut(count)? = name;
        count += 1;
        media.has_parameters = true;
        if name.eq_ignore_ascii_case("charset") {
            media.charset = Some(parameter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reads_one_media_type_with_parameters() {
        let m = parse("Application/Merge-Patch+JSON ; charset=\"UTF-8\";profile=x;").unwrap();
        assert_eq!(m.essence, "Application/Merge-Patch+JSON");
        assert_eq!(m.charset, Some("UTF-8"));
        assert!(m.has_parameters && m.is_json_utf8());
        let plain = parse("application/json").unwrap();
        assert!(!plain.has_parameters && plain.charset.is_none() && plain.is_json_utf8());
        assert!(parse("application/json;").unwrap().is_json_utf8());
        assert!(parse("application/json; ;charset=utf-8")
            .unwrap()
            .is_json_utf8());
        assert!(parse("application/vnd.api+json; version=2")
            .unwrap()
            .is_json_utf8());
        assert!(parse("application/json; q=\"a b\"").is_some());
    }

    #[test]
    fn refuses_what_is_not_exactly_one_media_type() {
        for bad in [
            "",
            " ",
            "json",
            "application",
            "application/",
            "/json",
            "application /json",
            "application/ json",
            "application/js on",
            "application/json x",
            "application/json/x",
            "application/json, text/plain",
            "application/x-www-form-urlencoded, a/b+json",
            "application/x-www-form-urlencoded,application/json",
            "application/json; charset",
            "application/json; =utf-8",
            "application/json; charset=",
            "application/json; charset = utf-8",
            "application/json; charset =utf-8",
            "application/json; charset= utf-8",
            "application/json; charset=\"utf-8",
            "application/json; charset=\"utf\\-8\"",
            "application/json; charset=utf-8; CHARSET=utf-8",
            "application/json; a=b c",
            "application/json; a=\"b\"c",
            "application/json; \u{1}=x",
            "application/json\u{7f}",
            "application/json\u{0}",
            "appl\u{ec}cation/json",
            "application/json; charset=utf-8\u{a0}",
            "application/json; a=\"\u{e9}\"",
            "application/json; a=b; c=d; e=f; g=h; i=j; k=l; m=n; o=p; q=r",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn json_is_application_json_or_a_plus_json_suffix_in_utf_8() {
        for json in [
            "application/json",
            "APPLICATION/JSON; CHARSET=UTF-8",
            "application/merge-patch+json",
            "application/problem+JSON",
        ] {
            assert!(parse(json).unwrap().is_json_utf8(), "{json}");
        }
        for other in [
            "application/json+x",
            "application/jsonx",
            "application/+json",
            "text/json",
            "text/x+json",
            "multipart/form-data+json; boundary=x",
            "application/*",
            "*/*",
            "application/json; charset=utf-16",
            "application/json; charset=UTF-16LE",
            "application/json; charset=latin1",
            "application/json; charset=us-ascii",
            "application/json; charset=utf8",
            "application/x-www-form-urlencoded",
        ] {
            assert!(!parse(other).is_some_and(|m| m.is_json_utf8()), "{other}");
        }
    }
}
