//! Where the access token comes from: `Authorization: Bearer` by default, a custom header or a
//! cookie when configured, the query string only when explicitly enabled (FAPI 2.0 forbids it).
//! Exactly one token per request: two (in one source or across sources) are refused, so an
//! attacker cannot make two components of the stack judge different tokens.

use crate::reason::Reason;
use crate::request::RequestView;
use crate::spellings::{param_key, query_pairs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header (lowercased name); with a scheme, the value must be `<scheme> <token>`.
    Header {
        name: String,
        scheme: Option<String>,
    },
    Cookie {
        name: String,
    },
    Query {
        name: String,
    },
}

/// The query parameter RFC 6750 section 2.3 defines; refused when query tokens are not enabled.
pub const RFC6750_QUERY_PARAMETER: &str = "access_token";

/// Finds the one token in the request. `Ok(None)`: no token at all.
pub fn extract<'r>(
    sources: &'r [TokenSource],
    request: &'r RequestView,
) -> Result<Option<&'r str>, Reason> {
    let mut found: Option<&str> = None;
    let mut take = |token: &'r str| -> Result<(), Reason> {
        if found.replace(token).is_some() {
            return Err(Reason::TokenMultiple);
        }
        Ok(())
    };
    let mut query_enabled = false;
    for source in sources {
        match source {
            TokenSource::Header { name, scheme } => {
                for value in request.headers_named(name) {
                    if let Some(token) = header_token(value, scheme.as_deref())? {
                        take(token)?;
                    }
                }
            }
            TokenSource::Cookie { name } => {
                for header in request.headers_named("cookie") {
                    for token in cookie_values(header, name) {
                        take(token)?;
                    }
                }
            }
            TokenSource::Query { name } => {
                query_enabled |= param_key(name) == RFC6750_QUERY_PARAMETER;
                for token in query_values(request.query(), name) {
                    take(token)?;
                }
            }
        }
    }
    if !query_enabled
        && query_values(request.query(), RFC6750_QUERY_PARAMETER)
            .next()
            .is_some()
    {
        return Err(Reason::TokenInQuery);
    }
    Ok(found)
}

/// `Ok(None)` when the header uses another scheme (e.g. `Basic`): not a bearer token.
fn header_token<'v>(value: &'v str, scheme: Option<&str>) -> Result<Option<&'v str>, Reason> {
    // Envoy joins repeated headers with "," (RFC 9110 section 5.3), and a JWT never contains
    // one: a comma means two credentials were sent.
    if value.contains(',') {
        return Err(Reason::TokenMultiple);
    }
    let token = match scheme {
        None => value.trim(),
        Some(scheme) => {
            let Some((given, rest)) = value.split_once(' ') else {
                // "Bearer" with nothing after it is a malformed bearer credential.
                return if value.eq_ignore_ascii_case(scheme) {
                    Err(Reason::TokenMalformed)
                } else {
                    Ok(None)
                };
            };
            if !given.eq_ignore_ascii_case(scheme) {
                return Ok(None);
            }
            rest.trim_matches(' ')
        }
    };
    if token.is_empty() || token.contains(' ') {
        return Err(Reason::TokenMalformed);
    }
    Ok(Some(token))
}

fn cookie_values<'h>(header: &'h str, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    header.split(';').filter_map(move |pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n == name).then_some(v.trim_matches('"'))
    })
}

/// Values of a query parameter, found by its name as PHP and Rack decode it (`access%5Ftoken` is
/// `access_token` to them). Tokens are base64url and dots, so values need no decoding; an
/// encoded token simply fails to parse later.
fn query_values<'q>(query: Option<&'q str>, name: &'q str) -> impl Iterator<Item = &'q str> + 'q {
    let wanted = param_key(name);
    query_pairs(query).filter_map(move |(n, v)| (param_key(n) == wanted).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn bearer() -> Vec<TokenSource> {
        vec![TokenSource::Header {
            name: "authorization".into(),
            scheme: Some("Bearer".into()),
        }]
    }

    fn view(headers: &[(&str, &str)]) -> RequestView {
        let mut all = vec![(":path".to_string(), "/x".to_string())];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        RequestView::new(all)
    }

    #[test]
    fn bearer_header() {
        assert_eq!(
            extract(&bearer(), &view(&[("authorization", "Bearer abc.def.ghi")])),
            Ok(Some("abc.def.ghi"))
        );
        assert_eq!(
            extract(&bearer(), &view(&[("authorization", "bearer  abc")])),
            Ok(Some("abc"))
        );
        assert_eq!(
            extract(&bearer(), &view(&[("authorization", "Basic dXNlcg==")])),
            Ok(None)
        );
        assert_eq!(extract(&bearer(), &view(&[])), Ok(None));
        assert_eq!(
            extract(&bearer(), &view(&[("authorization", "Bearer")])),
            Err(Reason::TokenMalformed)
        );
        assert_eq!(
            extract(&bearer(), &view(&[("authorization", "Bearer a b")])),
            Err(Reason::TokenMalformed)
        );
    }

    #[test]
    fn two_tokens_are_refused() {
        let two = view(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(extract(&bearer(), &two), Err(Reason::TokenMultiple));
        // How Envoy presents two Authorization headers: one value, joined with a comma.
        let merged = view(&[("authorization", "Bearer a,Bearer b")]);
        assert_eq!(extract(&bearer(), &merged), Err(Reason::TokenMultiple));
        let mut sources = bearer();
        sources.push(TokenSource::Cookie { name: "at".into() });
        let header_and_cookie = view(&[("authorization", "Bearer a"), ("cookie", "x=1; at=b")]);
        assert_eq!(
            extract(&sources, &header_and_cookie),
            Err(Reason::TokenMultiple)
        );
        assert_eq!(
            extract(&sources, &view(&[("cookie", "x=1; at=b")])),
            Ok(Some("b"))
        );
    }

    #[test]
    fn query_tokens_only_when_enabled() {
        let request = RequestView::new(vec![(":path".into(), "/x?a=1&access_token=t".into())]);
        assert_eq!(extract(&bearer(), &request), Err(Reason::TokenInQuery));
        let mut sources = bearer();
        sources.push(TokenSource::Query {
            name: "access_token".into(),
        });
        assert_eq!(extract(&sources, &request), Ok(Some("t")));
        let harmless = RequestView::new(vec![(":path".into(), "/x?not_access_token=t".into())]);
        assert_eq!(extract(&bearer(), &harmless), Ok(None));
        // Names as PHP and Rack decode them.
        for spelling in [
            "access%5Ftoken",
            "%61ccess_token",
            "access.token",
            "access_token[]",
        ] {
            let path = format!("/x?{spelling}=t");
            let request = RequestView::new(vec![(":path".into(), path)]);
            assert_eq!(
                extract(&bearer(), &request),
                Err(Reason::TokenInQuery),
                "{spelling}"
            );
            assert_eq!(extract(&sources, &request), Ok(Some("t")), "{spelling}");
        }
    }

    #[test]
    fn custom_header_without_scheme() {
        let sources = vec![TokenSource::Header {
            name: "x-token".into(),
            scheme: None,
        }];
        assert_eq!(
            extract(&sources, &view(&[("x-token", " t1 ")])),
            Ok(Some("t1"))
        );
    }
}
