//! Assertions on finguard's refusals: RFC 9457 problem+json bodies and RFC 6750 challenges.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::http::Response;

/// The prefix of every problem `type`.
pub const TYPE_PREFIX: &str = "https://finguard.dev/problems/";

/// The slug of a problem+json response (`type` without [`TYPE_PREFIX`]), if it is one.
pub fn slug(response: &Response) -> Option<String> {
    let body: Value = serde_json::from_slice(&response.body).ok()?;
    body.get("type")?
        .as_str()?
        .strip_prefix(TYPE_PREFIX)
        .map(str::to_owned)
}

/// Asserts a well-formed refusal: `status`, `application/problem+json`, `cache-control: no-store`,
/// and a body `{"type": <prefix><slug>, "title", "status", "request_id"}`.
pub fn assert_problem(response: &Response, status: u16, expected_slug: &str) {
    assert_eq!(
        response.status, status,
        "expected {status} {expected_slug}, got:\n{response:?}"
    );
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content-type {content_type:?} is not application/problem+json:\n{response:?}"
    );
    assert!(
        response
            .header("cache-control")
            .is_some_and(|cc| cc.contains("no-store")),
        "refusal without cache-control: no-store:\n{response:?}"
    );
    let body = response.json();
    assert_eq!(
        body["type"],
        format!("{TYPE_PREFIX}{expected_slug}"),
        "wrong problem type:\n{response:?}"
    );
    assert_eq!(
        body["status"], status,
        "problem status differs from HTTP status:\n{response:?}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "problem without a title:\n{response:?}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "problem without a request_id:\n{response:?}"
    );
}

/// Asserts a 401 `invalid_token` refusal with `slug`, the challenge carrying
/// `error="invalid_token"` and an `error_description`, and no trace of `token` in the response.
pub fn assert_invalid_token(response: &Response, expected_slug: &str, token: &str) {
    assert_problem(response, 401, expected_slug);
    let challenge = challenge(response);
    assert_eq!(
        challenge.get("error").map(String::as_str),
        Some("invalid_token"),
        "challenge {:?}:\n{response:?}",
        response.header("www-authenticate")
    );
    assert!(
        challenge.contains_key("error_description"),
        "invalid_token challenge without error_description:\n{response:?}"
    );
    assert_no_token(response, token);
}

/// Asserts a 401 `invalid_request` refusal (token-multiple, token-in-query).
pub fn assert_invalid_request(response: &Response, expected_slug: &str, token: &str) {
    assert_problem(response, 401, expected_slug);
    assert_eq!(
        challenge(response).get("error").map(String::as_str),
        Some("invalid_request"),
        "challenge {:?}:\n{response:?}",
        response.header("www-authenticate")
    );
    assert_no_token(response, token);
}

/// The `WWW-Authenticate` challenge as `{"scheme": "Bearer", param: value, ...}`; asserts the
/// scheme is Bearer and `realm="finguard"`.
pub fn challenge(response: &Response) -> BTreeMap<String, String> {
    let header = response
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate header:\n{response:?}"));
    let params = parse_challenge(header)
        .unwrap_or_else(|| panic!("unparseable WWW-Authenticate {header:?}"));
    assert_eq!(
        params.get("scheme").map(String::as_str),
        Some("Bearer"),
        "{header:?}"
    );
    assert_eq!(
        params.get("realm").map(String::as_str),
        Some("finguard"),
        "{header:?}"
    );
    params
}

/// Parses `Scheme k="v", k2=token` (RFC 9110 §11.6.1, one challenge). The scheme is returned
/// under the key `scheme`.
pub fn parse_challenge(header: &str) -> Option<BTreeMap<String, String>> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::from([("scheme".to_owned(), scheme.to_owned())]);
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            return Some(params);
        }
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => value.push(chars.next()?.1),
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            params.insert(name, value);
            rest = &quoted[end + 1..];
        } else {
            let end = after.find(',').unwrap_or(after.len());
            params.insert(name, after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
}

/// Asserts that neither the token nor its payload or signature appear in the response body or
/// headers (finguard must never echo a credential).
pub fn assert_no_token(response: &Response, token: &str) {
    let body = response.text();
    let headers: String = response
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\n"))
        .collect();
    let mut needles = vec![token];
    // Header segments are short and shared by many tokens; payload and signature identify it.
    needles.extend(token.split('.').skip(1).filter(|part| part.len() >= 16));
    for needle in needles {
        assert!(
            !body.contains(needle) && !headers.contains(needle),
            "the response echoes (part of) the token:\n{response:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let p = parse_challenge(
            r#"Bearer realm="finguard", error="insufficient_scope", scope="a b", error_description="say \"hi\"""#,
        )
        .unwrap();
        assert_eq!(p["scheme"], "Bearer");
        assert_eq!(p["realm"], "finguard");
        assert_eq!(p["scope"], "a b");
        assert_eq!(p["error_description"], "say \"hi\"");
        let bare = parse_challenge(r#"Bearer realm="finguard""#).unwrap();
        assert_eq!(bare.len(), 2);
    }
}
