//! Routes: host + method + path -> the policy for that operation. Deny by default: a path no
//! route matches is refused (404, or 403 if configured), a matching path with another method too
//! (405).
//!
//! Path templates use `matchit` (the radix-tree router behind axum; no allocation on lookup, no
//! regex, builds for Wasm): `{name}` matches one segment, `{*name}` the rest; `prefix` routes are
//! a template ending in a catch-all. Static segments beat parameters, parameters beat catch-alls,
//! so the most specific route wins; templates that would be ambiguous are configuration errors.
//!
//! Matching cannot be bypassed by spelling: Envoy normalises the path first (`normalize_path`,
//! `merge_slashes`, escaped slashes rejected: see envoy/envoy.yaml), and [`check_path`] refuses
//! (400) anything that would still let one path reach a route as another: `;` parameters,
//! encoded `/`, `\` or `.`, NUL, `.`/`..` segments, `//`. Case and trailing slashes are
//! significant: `/V1/accounts` and `/v1/accounts/` are different paths, which match no route
//! unless one is configured for them.

use crate::authz::{AuthPolicy, RawAuth};
use crate::config_error::ConfigError;
use crate::mode::Mode;
use crate::ratelimit::concurrency::{self, ConcurrencyLimit, RawConcurrency};
use crate::ratelimit::{compile_limits, Limit, RawLimit};
use crate::reason::Reason;
use crate::redaction::{RawResponse, ResponseDefaults, ResponsePolicy};
use crate::validation::{RawRequest, RequestPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    id: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    public: bool,
    mode: Option<Mode>,
    #[serde(default)]
    request: RawRequest,
    auth: Option<RawAuth>,
    #[serde(default)]
    rate_limit: Vec<RawLimit>,
    #[serde(default)]
    concurrency: Vec<RawConcurrency>,
    response: Option<RawResponse>,
    #[serde(default)]
    allow_method_override: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    methods: Vec<String>,
    path: Option<String>,
    prefix: Option<String>,
    host: Option<String>,
}

#[derive(Debug)]
pub struct RoutePolicy {
    pub id: String,
    /// Uppercase; empty means every method.
    pub methods: Vec<String>,
    /// `None`: the global mode.
    pub mode: Option<Mode>,
    /// Parameters and body the route accepts (`validation`), `max_body_bytes` included.
    pub request: RequestPolicy,
    /// `None`: public, no credentials required.
    pub auth: Option<AuthPolicy>,
    pub rate_limits: Vec<Limit>,
    pub concurrency: Vec<ConcurrencyLimit>,
    /// Response protection (the route's block merged with the global one), if any.
    pub response: Option<Rc<ResponsePolicy>>,
    /// A POST may name another method in an override header or `_method` (see `ambiguity`): the
    /// route is matched and authorized with that method. Off: any override is refused (400).
    pub allow_method_override: bool,
}

#[derive(Debug, Default)]
struct Router {
    paths: matchit::Router<usize>,
    /// For each distinct template, the routes (indexes into `RouteTable::routes`) sharing it.
    templates: Vec<Vec<usize>>,
    template_text: Vec<String>,
}

#[derive(Debug)]
pub struct RouteTable {
    /// Routes without a host.
    any_host: Router,
    /// Routes for one host (lowercased, without port); tried before `any_host`.
    by_host: BTreeMap<String, Router>,
    routes: Vec<RoutePolicy>,
    unmatched: Reason,
}

pub struct RouteMatch<'t, 'p> {
    pub index: usize,
    pub route: &'t RoutePolicy,
    pub params: matchit::Params<'t, 'p>,
}

/// Why no route was found, with what a 405 must list in `Allow`.
#[derive(Debug, PartialEq, Eq)]
pub struct NoRoute {
    pub reason: Reason,
    pub allowed_methods: Vec<String>,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// Refuses paths whose spelling could make one resource look like another (see module docs).
pub fn check_path(path: &str) -> Result<(), Reason> {
    let bytes = path.as_bytes();
    if !path.starts_with('/') || path.contains("//") || path.contains(';') {
        return Err(Reason::PathInvalid);
    }
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
        return Err(Reason::PathInvalid);
    }
    let mut i = 0;
    while let Some(offset) = path[i..].find('%') {
        let at = i + offset;
        let hex = path.get(at + 1..at + 3).ok_or(Reason::PathInvalid)?;
        let byte = u8::from_str_radix(hex, 16).map_err(|_| Reason::PathInvalid)?;
        if matches!(byte, b'/' | b'\\' | b'.' | 0) || byte < 0x20 {
            return Err(Reason::PathInvalid);
        }
        i = at + 3;
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(Reason::PathInvalid);
    }
    Ok(())
}

impl RouteTable {
    pub fn compile(
        specs: Vec<RouteSpec>,
        provider_names: &[&str],
        unmatched: Reason,
        responses: &ResponseDefaults,
    ) -> Result<RouteTable, ConfigError> {
        let mut table = RouteTable {
            any_host: Router::default(),
            by_host: BTreeMap::new(),
            routes: Vec::with_capacity(specs.len()),
            unmatched,
        };
        for (i, spec) in specs.into_iter().enumerate() {
            let path = format!("routes[{i}]");
            let fail = |field: &str, message: &str| ConfigError {
                path: format!("{path}{field}"),
                message: message.to_string(),
            };
            if spec.id.is_empty() || table.routes.iter().any(|r| r.id == spec.id) {
                return Err(fail(".id", "must be non-empty and unique"));
            }
            let mut methods = Vec::with_capacity(spec.matcher.methods.len());
            for (j, m) in spec.matcher.methods.iter().enumerate() {
                let upper = m.to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    return Err(fail(&format!(".match.methods[{j}]"), "not an HTTP method"));
                }
                methods.push(upper);
            }
            let template = match (&spec.matcher.path, &spec.matcher.prefix) {
                (Some(p), None) => p.clone(),
                (None, Some(prefix)) if prefix.ends_with('/') && !prefix.contains('{') => {
                    format!("{prefix}{{*finguard_rest}}")
                }
                (None, Some(_)) => {
                    return Err(fail(
                        ".match.prefix",
                        "must end with / and contain no parameters",
                    ))
                }
                _ => return Err(fail(".match", "exactly one of \"path\" or \"prefix\"")),
            };
            if !template.starts_with('/')
                || template.contains('?')
                || check_path(&template.replace(['{', '}', '*'], "")).is_err()
            {
                return Err(fail(".match.path", "must start with / and be a normalised path (no query, //, ., .., ;, %-escapes of / \\ .)"));
            }
            let params = template_params(&template);
            let auth = match (spec.public, spec.auth) {
                (true, Some(_)) => {
                    return Err(fail(".auth", "a public route has no auth requirements"))
                }
                (true, None) => None,
                (false, auth) => Some(AuthPolicy::compile(
                    auth.unwrap_or_default(),
                    &format!("{path}.auth"),
                    &params,
                    provider_names,
                )?),
            };
            let request =
                RequestPolicy::compile(spec.request, &format!("{path}.request"), &params)?;

            let rate_limits =
                compile_limits(spec.rate_limit, &format!("{path}.rate_limit"), &spec.id)?;
            let in_flight =
                concurrency::compile(spec.concurrency, &format!("{path}.concurrency"), &spec.id)?;
            let response = responses.for_route(spec.response, &format!("{path}.response"))?;
            let index = table.routes.len();
            let router = match &spec.matcher.host {
                None => &mut table.any_host,
                Some(host) if !host.is_empty() && !host.contains(':') => {
                    table.by_host.entry(host.to_ascii_lowercase()).or_default()
                }
                Some(_) => return Err(fail(".match.host", "a host name without port")),
            };
            if let Some(t) = router.template_text.iter().position(|t| *t == template) {
                // Same template, other methods: overlapping methods would be ambiguous.
                let overlaps = router.templates[t].iter().any(|&other| {
                    let other: &RoutePolicy = &table.routes[other];
                    other.methods.is_empty()
                        || methods.is_empty()
                        || other.methods.iter().any(|m| methods.contains(m))
                });
                if overlaps {
                    return Err(fail(
                        ".match",
                        "another route has the same host, path and an overlapping method",
                    ));
                }
                router.templates[t].push(index);
            } else {
                router
                    .paths
                    .insert(template.clone(), router.templates.len())
                    .map_err(|e| {
                        fail(
                            ".match.path",
                            &format!("invalid or conflicting template: {e}"),
                        )
                    })?;
                router.templates.push(vec![index]);
                router.template_text.push(template);
            }
            table.routes.push(RoutePolicy {
                id: spec.id,
                methods,
                mode: spec.mode,
                request,
                auth,
                rate_limits,
                concurrency: in_flight,
                response,
                allow_method_override: spec.allow_method_override,
            });
        }
        Ok(table)
    }

    pub fn requires_tokens(&self) -> bool {
        self.routes
            .iter()
            .any(|r| r.auth.as_ref().is_some_and(|a| a.jwt))
    }

    pub fn requires_api_keys(&self) -> bool {
        self.routes
            .iter()
            .any(|r| r.auth.as_ref().is_some_and(|a| a.api_key))
    }

    pub fn routes(&self) -> &[RoutePolicy] {
        &self.routes
    }

    /// Finds the route for a request. `host` is the `:authority` (port ignored).
    pub fn lookup<'t, 'p>(
        &'t self,
        host: &str,
        method: &str,
        path: &'p str,
    ) -> Result<RouteMatch<'t, 'p>, NoRoute> {
        let host = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        // "partner.example." is the same host as "partner.example" (absolute DNS name).
        let host = host.strip_suffix('.').unwrap_or(host);
        let host_router = self
            .by_host
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
            .map(|(_, r)| r);
        if let Some(router) = host_router {
            if let Ok(found) = self.lookup_in(router, method, path) {
                return Ok(found);
            }
        }
        self.lookup_in(&self.any_host, method, path)
    }

    fn lookup_in<'t, 'p>(
        &'t self,
        router: &'t Router,
        method: &str,
        path: &'p str,
    ) -> Result<RouteMatch<'t, 'p>, NoRoute> {
        let Ok(matched) = router.paths.at(path) else {
            return Err(NoRoute {
                reason: self.unmatched,
                allowed_methods: Vec::new(),
            });
        };
        let candidates = router
            .templates
            .get(*matched.value)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for &index in candidates {
            if let Some(route) = self.routes.get(index) {
                if route.methods.is_empty() || route.methods.iter().any(|m| m == method) {
                    return Ok(RouteMatch {
                        index,
                        route,
                        params: matched.params,
                    });
                }
            }
        }
        let mut allowed: Vec<String> = candidates
            .iter()
            .filter_map(|&i| self.routes.get(i))
            .flat_map(|r| r.methods.iter().cloned())
            .collect();
        allowed.sort_unstable();
        allowed.dedup();
        Err(NoRoute {
            reason: Reason::MethodNotAllowed,
            allowed_methods: allowed,
        })
    }
}

/// Parameter names of a template (`{name}` and `{*name}`).
fn template_params(template: &str) -> Vec<String> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn table(routes: serde_json::Value) -> Result<RouteTable, ConfigError> {
        let specs: Vec<RouteSpec> = serde_json::from_value(routes).unwrap();
        RouteTable::compile(
            specs,
            &["idp", "partner"],
            Reason::RouteNotFound,
            &Default::default(),
        )
    }

    #[test]
    fn matches_templates_methods_hosts_and_params() {
        let t = table(json!([
            {"id": "get", "match": {"methods": ["GET"], "path": "/v1/accounts/{account_id}"}},
            {"id": "del", "match": {"methods": ["delete"], "path": "/v1/accounts/{account_id}"}, "auth": {"providers": ["partner"]}},
            {"id": "mine", "match": {"methods": ["GET"], "path": "/v1/accounts/mine"}},
            {"id": "admin", "match": {"prefix": "/v1/admin/"}},
            {"id": "files", "match": {"path": "/files/{*rest}"}, "public": true},
            {"id": "partner-get", "match": {"methods": ["GET"], "path": "/v1/accounts/{account_id}", "host": "Partner.Example"}}
        ]))
        .unwrap();
        let m = t
            .lookup("api.example", "GET", "/v1/accounts/acc-1")
            .unwrap();
        assert_eq!((m.route.id.as_str(), m.index), ("get", 0));
        assert_eq!(m.params.get("account_id"), Some("acc-1"));
        assert_eq!(
            t.lookup("", "GET", "/v1/accounts/mine").unwrap().route.id,
            "mine"
        );
        assert_eq!(
            t.lookup("", "DELETE", "/v1/accounts/acc-1")
                .unwrap()
                .route
                .id,
            "del"
        );
        assert_eq!(
            t.lookup("", "POST", "/v1/admin/users/1").unwrap().route.id,
            "admin"
        );
        assert!(t.lookup("", "POST", "/v1/admin").is_err());
        assert_eq!(
            t.lookup("", "PUT", "/files/a/b/c").unwrap().route.id,
            "files"
        );
        assert!(t
            .lookup("", "PUT", "/files/a")
            .unwrap()
            .route
            .auth
            .is_none());
        assert_eq!(
            t.lookup("partner.example:8443", "GET", "/v1/accounts/a")
                .unwrap()
                .route
                .id,
            "partner-get"
        );
        // A host-specific table falls back to host-less routes for what it lacks.
        assert_eq!(
            t.lookup("partner.example", "DELETE", "/v1/accounts/a")
                .unwrap()
                .route
                .id,
            "del"
        );
        let no = t.lookup("", "PUT", "/v1/accounts/acc-1").err().unwrap();
        assert_eq!(no.reason, Reason::MethodNotAllowed);
        assert_eq!(no.allowed_methods, ["DELETE", "GET"]);
        for path in [
            "/v1/accounts",
            "/v1/accounts/a/b",
            "/V1/accounts/a",
            "/v1/accounts/a/",
        ] {
            assert_eq!(
                t.lookup("", "GET", path).err().unwrap().reason,
                Reason::RouteNotFound,
                "{path}"
            );
        }
    }

    #[test]
    fn unmatched_routes_can_be_forbidden() {
        let specs: Vec<RouteSpec> =
            serde_json::from_value(json!([{"id": "a", "match": {"path": "/a"}}])).unwrap();
        let t =
            RouteTable::compile(specs, &[], Reason::RouteForbidden, &Default::default()).unwrap();
        assert_eq!(
            t.lookup("", "GET", "/b").err().unwrap().reason,
            Reason::RouteForbidden
        );
    }

    #[test]
    fn ambiguous_spellings_of_a_path_are_refused() {
        for bad in [
            "/v1/customers/../admin",
            "/v1/customers/./x",
            "/v1//customers",
            "/v1/customers/a;jsessionid=1",
            "/v1/customers/a%2Fb",
            "/v1/customers/a%2fb",
            "/v1/customers/%2e%2e/admin",
            "/v1/customers/a%5Cb",
            "/v1/customers/a%00",
            "/v1/customers/a%zz",
            "/v1/customers/a%2",
            "/v1/customers/a\\b",
            "v1/customers",
        ] {
            assert_eq!(check_path(bad), Err(Reason::PathInvalid), "{bad}");
        }
        for good in [
            "/",
            "/v1/customers/cust-1/payments",
            "/v1/customers/J%C3%BCrgen",
            "/v1/a.b/c..d",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn configuration_errors_name_the_route() {
        let cases = [
            (
                json!([{"id": "a", "match": {"path": "/x"}}, {"id": "a", "match": {"path": "/y"}}]),
                "routes[1].id",
            ),
            (
                json!([{"id": "a", "match": {"path": "/x/{a}"}}, {"id": "b", "match": {"path": "/x/{b}"}}]),
                "routes[1].match.path",
            ),
            (
                json!([{"id": "a", "match": {"path": "/x"}}, {"id": "b", "match": {"path": "/x", "methods": ["GET"]}}]),
                "routes[1].match",
            ),
            (
                json!([{"id": "a", "match": {"path": "/x", "methods": ["FETCH"]}}]),
                "routes[0].match.methods[0]",
            ),
            (
                json!([{"id": "a", "match": {"path": "/x"}, "auth": {"providers": ["nope"]}}]),
                "routes[0].auth.providers[0]",
            ),
            (
                json!([{"id": "a", "match": {"path": "x"}}]),
                "routes[0].match.path",
            ),
            (
                json!([{"id": "a", "match": {"path": "/a/../b"}}]),
                "routes[0].match.path",
            ),
            (
                json!([{"id": "a", "match": {"path": "/x", "prefix": "/x/"}}]),
                "routes[0].match",
            ),
            (
                json!([{"id": "a", "match": {"prefix": "/x"}}]),
                "routes[0].match.prefix",
            ),
            (
                json!([{"id": "a", "match": {"path": "/x"}, "public": true, "auth": {}}]),
                "routes[0].auth",
            ),
            (
                json!([{"id": "a", "match": {"path": "/x", "host": "a:80"}}]),
                "routes[0].match.host",
            ),
            (
                json!([{"id": "a", "match": {"path": "/x"}, "request": {"max_body_bytes": 0}}]),
                "routes[0].request.max_body_bytes",
            ),
        ];
        for (routes, path) in cases {
            assert_eq!(table(routes.clone()).unwrap_err().path, path, "{routes}");
        }
    }
}
