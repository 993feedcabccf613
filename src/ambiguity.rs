//! Parts of a request that a backend may read differently from finguard (DESIGN.md principle 5:
//! what finguard authorizes is what the backend executes). Each is refused or removed before the
//! request is forwarded:
//!
//! - **Method overrides** ([`method_override`]): `X-HTTP-Method-Override`, `X-Method-Override`,
//!   `X-HTTP-Method` (any spelling a CGI gateway folds to them) and the `_method` query parameter
//!   (any spelling PHP or Rack decodes to it). Rack, Laravel, Symfony, Express and Spring execute
//!   the overridden method, so finguard authorizes that one, and only on routes that opt in.
//! - **Look-alike identity headers** ([`ProtectedHeaders`]): a client header whose name folds to a
//!   header finguard vouches for (`x_auth_subject` for `x-auth-subject`) is removed.
//! - **Credentials finguard does not verify** ([`credential_carriers`]): every place a backend
//!   may take a credential from is counted; a request that carries more than the one finguard
//!   verified is refused.

use crate::authn::extract::{TokenSource, RFC6750_QUERY_PARAMETER};
use crate::request::RequestView;
use crate::spellings::{cookie_pairs, decode_component, header_key, param_key, query_pairs};

/// Header names (as [`header_key`] folds them) that frameworks read as the real method.
pub const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

/// The form and query parameter Rails, Laravel, Symfony and Spring read as the real method.
pub const OVERRIDE_PARAMETER: &str = "_method";

/// Methods an override may name (anything else is refused, not passed on).
const OVERRIDE_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// What the request asks the backend to execute instead of its own method.
#[derive(Debug, PartialEq, Eq)]
pub enum MethodOverride {
    /// No override signal at all.
    None,
    /// Every signal names this method (uppercase).
    To(&'static str),
    /// Signals disagree, name no known method, or are empty: never forwarded.
    Ambiguous,
}

/// Finds every method-override signal of the request (see the module docs).
pub fn method_override(request: &RequestView) -> MethodOverride {
    let headers = request
        .headers()
        .filter(|(name, _)| OVERRIDE_HEADERS.contains(&header_key(name).as_ref()))
        .map(|(_, value)| std::borrow::Cow::Borrowed(value));
    let params = query_pairs(request.query())
        .filter(|(name, _)| param_key(name) == OVERRIDE_PARAMETER)
        .map(|(_, value)| decode_component(value));
    let mut found = MethodOverride::None;
    for value in headers.chain(params) {
        // Envoy joins repeated headers with ","; frameworks upper-case the value.
        let named = OVERRIDE_METHODS
            .iter()
            .find(|m| m.eq_ignore_ascii_case(value.trim()));
        found = match (found, named) {
            (_, None) => return MethodOverride::Ambiguous,
            (MethodOverride::None, Some(m)) => MethodOverride::To(m),
            (MethodOverride::To(before), Some(m)) if before == *m => MethodOverride::To(m),
            _ => return MethodOverride::Ambiguous,
        };
    }
    found
}

/// Whether a request body of this `Content-Type` is a form, in which Rack, Spring and Symfony also
/// read `_method` (on a `POST`). Any mention counts: Envoy joins repeated headers with `,`.
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| {
        let value = value.to_ascii_lowercase();
        value.contains("application/x-www-form-urlencoded") || value.contains("multipart/form-data")
    })
}

/// Whether a form body names a `_method` field: as a URL-encoded pair, or as a multipart part's
/// `name=` (both looked for in either kind of form, so a mislabelled body cannot hide one).
pub fn form_overrides_method(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let encoded = text
        .split(['&', '\r', '\n'])
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .any(|name| param_key(name) == OVERRIDE_PARAMETER);
    if encoded {
        return true;
    }
    let lower = text.to_ascii_lowercase();
    lower.match_indices("name=").any(|(at, _)| {
        let rest = lower.get(at + 5..).unwrap_or("");
        let name = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or(""),
            None => rest.split([';', '\r', '\n', ' ']).next().unwrap_or(""),
        };
        param_key(name) == OVERRIDE_PARAMETER
    })
}

/// Headers finguard vouches for or consumes, folded with [`header_key`]: claim and API-key
/// identity headers, the API-key header, `Authorization` when it is stripped.
#[derive(Debug, Default)]
pub struct ProtectedHeaders {
    /// Sorted, deduplicated.
    names: Vec<String>,
}

impl ProtectedHeaders {
    pub fn new(names: impl IntoIterator<Item = String>) -> ProtectedHeaders {
        let mut names: Vec<String> = names
            .into_iter()
            .map(|n| header_key(&n).into_owned())
            .collect();
        names.sort();
        names.dedup();
        ProtectedHeaders { names }
    }

    /// The request's header names (exact spellings, for removal) that fold to a protected one.
    pub fn present_in<'r>(&'r self, request: &'r RequestView) -> impl Iterator<Item = &'r str> {
        request.headers().filter_map(|(name, _)| {
            let folded = header_key(name);
            let protected = !name.starts_with(':')
                && self
                    .names
                    .binary_search_by(|n| n.as_str().cmp(&folded))
                    .is_ok();
            protected.then_some(name)
        })
    }
}

/// Where a backend may take a token from, compiled once from the token sources: every
/// `Authorization` and `Proxy-Authorization` header, each configured token header, and cookies
/// and query parameters named like a configured source or RFC 6750's `access_token` (names
/// folded with [`param_key`]).
#[derive(Debug, Default)]
pub struct CredentialPlaces {
    headers: Vec<String>,
    cookies: Vec<String>,
    params: Vec<String>,
}

impl CredentialPlaces {
    pub fn new(sources: &[TokenSource]) -> CredentialPlaces {
        let mut places = CredentialPlaces {
            headers: vec!["authorization".into(), "proxy-authorization".into()],
            cookies: vec![RFC6750_QUERY_PARAMETER.into()],
            params: vec![RFC6750_QUERY_PARAMETER.into()],
        };
        for source in sources {
            match source {
                TokenSource::Header { name, .. } => places.headers.push(name.clone()),
                TokenSource::Cookie { name } => places.cookies.push(param_key(name)),
                TokenSource::Query { name } => places.params.push(param_key(name)),
            }
        }
        for list in [&mut places.headers, &mut places.cookies, &mut places.params] {
            list.sort_unstable();
            list.dedup();
        }
        places
    }

    /// How many credentials the request carries in these places, plus the API-key header
    /// (`api_key_header`: when the route accepts keys; otherwise it is always removed). A
    /// request finguard authenticated must carry exactly one: the one it verified.
    pub fn count(&self, api_key_header: Option<&str>, request: &RequestView) -> usize {
        let in_headers: usize = self
            .headers
            .iter()
            .map(String::as_str)
            .chain(api_key_header.filter(|h| !self.headers.iter().any(|n| n == h)))
            .map(|name| request.headers_named(name).count())
            .sum();
        let in_cookies = request
            .headers_named("cookie")
            .flat_map(cookie_pairs)
            .filter(|(name, _)| self.cookies.contains(&param_key(name)))
            .count();
        let in_query = query_pairs(request.query())
            .filter(|(name, _)| self.params.contains(&param_key(name)))
            .count();
        in_headers + in_cookies + in_query
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn view(path: &str, headers: &[(&str, &str)]) -> RequestView {
        let mut all = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), path.to_string()),
        ];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        RequestView::new(all)
    }

    #[test]
    fn override_signals_in_every_spelling() {
        for (path, headers) in [
            ("/x", vec![("x-http-method-override", "DELETE")]),
            ("/x", vec![("x_http_method_override", "delete")]),
            ("/x", vec![("X-HTTP-Method-Override", "Delete")]),
            ("/x", vec![("x-method-override", "DELETE")]),
            ("/x", vec![("x-http-method", " DELETE ")]),
            ("/x", vec![("x_http_method", "DELETE")]),
            ("/x?_method=DELETE", vec![]),
            ("/x?a=1&_method=delete", vec![]),
            ("/x?%5Fmethod=DELETE", vec![]),
            ("/x?_METHOD=DELETE", vec![]),
            ("/x?_method[]=DELETE", vec![]),
            ("/x?.method=DELETE", vec![]),
            ("/x?_method=%44ELETE", vec![]),
            (
                "/x?_method=DELETE",
                vec![("x-http-method-override", "DELETE")],
            ),
        ] {
            assert_eq!(
                method_override(&view(path, &headers)),
                MethodOverride::To("DELETE"),
                "{path} {headers:?}"
            );
        }
    }

    #[test]
    fn ambiguous_overrides() {
        for (path, headers) in [
            ("/x", vec![("x-http-method-override", "DELETE,PUT")]),
            ("/x", vec![("x-http-method-override", "")]),
            ("/x", vec![("x-http-method-override", "CONNECT")]),
            ("/x", vec![("x-http-method-override", "DELE TE")]),
            ("/x?_method=PUT", vec![("x-http-method", "DELETE")]),
            ("/x?_method=", vec![]),
            ("/x?_method", vec![]),
        ] {
            assert_eq!(
                method_override(&view(path, &headers)),
                MethodOverride::Ambiguous,
                "{path} {headers:?}"
            );
        }
        assert_eq!(
            method_override(&view(
                "/x?method=DELETE&x_method=1",
                &[("x-method", "DELETE")]
            )),
            MethodOverride::None
        );
    }

    #[test]
    fn method_fields_in_form_bodies() {
        for body in [
            "_method=DELETE",
            "amount=1&_method=DELETE",
            "amount=1&%5Fmethod=DELETE",
            "_METHOD=delete",
            "_method[]=DELETE",
            "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--",
            "--b\r\ncontent-disposition: form-data; NAME=_method\r\n\r\nDELETE\r\n--b--",
            "--b\r\nContent-Disposition: form-data; name=\"%5Fmethod\"\r\n\r\nDELETE\r\n--b--",
        ] {
            assert!(form_overrides_method(body.as_bytes()), "{body}");
        }
        for body in [
            "amount=1&method=DELETE",
            "--b\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n1\r\n--b--",
            "",
        ] {
            assert!(!form_overrides_method(body.as_bytes()), "{body}");
        }
        assert!(is_form(Some(
            "application/x-www-form-urlencoded; charset=utf-8"
        )));
        assert!(is_form(Some("Multipart/Form-Data; boundary=b")));
        assert!(is_form(Some(
            "application/json,application/x-www-form-urlencoded"
        )));
        assert!(!is_form(Some("application/json")) && !is_form(None));
    }

    #[test]
    fn look_alike_headers_are_found_by_their_exact_names() {
        let protected = ProtectedHeaders::new(["x-auth-subject".to_string(), "X-Api-Key".into()]);
        let request = view(
            "/x",
            &[
                ("x-auth-subject", "a"),
                ("x_auth_subject", "b"),
                ("x-auth_subject", "c"),
                ("x_api_key", "k"),
                ("x-auth-subjects", "no"),
                ("x-other", "no"),
            ],
        );
        let found: Vec<&str> = protected.present_in(&request).collect();
        assert_eq!(
            found,
            [
                "x-auth-subject",
                "x_auth_subject",
                "x-auth_subject",
                "x_api_key"
            ]
        );
    }

    #[test]
    fn credential_carriers_are_counted_in_every_place() {
        let sources = vec![TokenSource::Header {
            name: "authorization".into(),
            scheme: Some("Bearer".into()),
        }];
        let places = CredentialPlaces::new(&sources);
        let count = |path: &str, headers: &[(&str, &str)]| {
            places.count(Some("x-api-key"), &view(path, headers))
        };
        assert_eq!(count("/x", &[("x-api-key", "k")]), 1);
        assert_eq!(count("/x", &[("authorization", "Bearer t")]), 1);
        for extra in [
            ("authorization", "Token t"),
            ("authorization", "JWT t"),
            ("authorization", "eyJhbGciOi.x.y"),
            ("authorization", "Bearer\tt"),
            ("authorization", "Basic dTpw"),
            ("proxy-authorization", "Bearer t"),
            ("cookie", "session=1; access_token=t"),
            ("cookie", "Access.Token=t"),
        ] {
            assert_eq!(count("/x", &[("x-api-key", "k"), extra]), 2, "{extra:?}");
        }
        for query in [
            "/x?access_token=t",
            "/x?access%5Ftoken=t",
            "/x?%61ccess_token=t",
            "/x?access.token=t",
            "/x?access_token[]=t",
        ] {
            assert_eq!(count(query, &[("authorization", "Bearer t")]), 2, "{query}");
        }
        assert_eq!(count("/x?token=t&access=1", &[("x-api-key", "k")]), 1);
        assert_eq!(count("/x", &[("cookie", "session=1; theme=dark")]), 0);
    }
}
