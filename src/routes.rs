//! Routes: method + path template -> the policy for that operation. Deny by default: a path no
//! route matches is refused (404), a matching path with another method too (405).
//!
//! Path templates use `matchit` (the radix-tree router behind axum): `{name}` matches one segment,
//! `{*name}` the rest of the path. Conflicting templates are configuration errors, not silent
//! precedence rules. Paths arrive normalised by Envoy (`normalize_path`, `merge_slashes`, escaped
//! slashes rejected: see envoy/envoy.yaml).

use crate::config::ConfigError;
use crate::decision::Reason;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    id: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    auth: RawAuth,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    methods: Vec<String>,
    path: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    anonymous: bool,
    providers: Option<Vec<String>>,
    #[serde(default)]
    scopes: RawScopes,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    #[serde(default)]
    all: Vec<String>,
    #[serde(default)]
    any: Vec<String>,
}

#[derive(Debug)]
pub struct RoutePolicy {
    pub id: String,
    /// Uppercase; empty means every method.
    pub methods: Vec<String>,
    pub auth: RouteAuth,
}

#[derive(Debug)]
pub enum RouteAuth {
    /// No credential required (health checks, public metadata).
    Anonymous,
    Jwt {
        /// Provider indexes accepted; `None`: any configured provider.
        providers: Option<Vec<usize>>,
        scopes: ScopeRule,
    },
}

/// Scopes the token must carry: every one of `all`, and at least one of `any` (if non-empty).
#[derive(Debug, Default)]
pub struct ScopeRule {
    pub all: Vec<String>,
    pub any: Vec<String>,
}

impl ScopeRule {
    /// Scopes to name in an `insufficient_scope` challenge.
    pub fn named(&self) -> Vec<String> {
        self.all.iter().chain(self.any.iter()).cloned().collect()
    }
}

#[derive(Debug)]
pub struct RouteTable {
    router: matchit::Router<usize>,
    /// For each distinct path template, the routes (indexes into `routes`) sharing it.
    templates: Vec<Vec<usize>>,
    routes: Vec<RoutePolicy>,
}

pub struct RouteMatch<'t, 'p> {
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

impl RouteTable {
    pub fn compile(
        specs: Vec<RouteSpec>,
        provider_names: &[&str],
    ) -> Result<RouteTable, ConfigError> {
        let mut router = matchit::Router::new();
        let mut templates: Vec<Vec<usize>> = Vec::new();
        let mut template_text: Vec<String> = Vec::new();
        let mut routes = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let path = format!("routes[{i}]");
            let fail = |field: &str, message: String| ConfigError {
                path: format!("{path}{field}"),
                message,
            };
            if spec.id.is_empty() || routes.iter().any(|r: &RoutePolicy| r.id == spec.id) {
                return Err(fail(".id", "must be non-empty and unique".into()));
            }
            let mut methods = Vec::with_capacity(spec.matcher.methods.len());
            for (j, m) in spec.matcher.methods.iter().enumerate() {
                let upper = m.to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    return Err(fail(
                        &format!(".match.methods[{j}]"),
                        "not an HTTP method".into(),
                    ));
                }
                methods.push(upper);
            }
            let template = &spec.matcher.path;
            if !template.starts_with('/') || template.contains('?') {
                return Err(fail(
                    ".match.path",
                    "must start with / and contain no query".into(),
                ));
            }
            let auth = if spec.auth.anonymous {
                if spec.auth.providers.is_some()
                    || !spec.auth.scopes.all.is_empty()
                    || !spec.auth.scopes.any.is_empty()
                {
                    return Err(fail(
                        ".auth",
                        "an anonymous route cannot require providers or scopes".into(),
                    ));
                }
                RouteAuth::Anonymous
            } else {
                let providers = match spec.auth.providers {
                    None => None,
                    Some(names) => {
                        let mut indexes = Vec::with_capacity(names.len());
                        for (j, name) in names.iter().enumerate() {
                            let Some(index) = provider_names.iter().position(|p| p == name) else {
                                return Err(fail(
                                    &format!(".auth.providers[{j}]"),
                                    "no provider of that name".into(),
                                ));
                            };
                            indexes.push(index);
                        }
                        Some(indexes)
                    }
                };
                RouteAuth::Jwt {
                    providers,
                    scopes: ScopeRule {
                        all: spec.auth.scopes.all,
                        any: spec.auth.scopes.any,
                    },
                }
            };

            let index = routes.len();
            if let Some(t) = template_text.iter().position(|t| t == template) {
                // Same template, other methods: overlapping methods would be ambiguous.
                let overlaps = templates[t].iter().any(|&other| {
                    let other: &RoutePolicy = &routes[other];
                    other.methods.is_empty()
                        || methods.is_empty()
                        || other.methods.iter().any(|m| methods.contains(m))
                });
                if overlaps {
                    return Err(fail(
                        ".match",
                        "another route has the same path and an overlapping method".into(),
                    ));
                }
                templates[t].push(index);
            } else {
                router
                    .insert(template.clone(), templates.len())
                    .map_err(|e| {
                        fail(
                            ".match.path",
                            format!("invalid or conflicting template: {e}"),
                        )
                    })?;
                templates.push(vec![index]);
                template_text.push(template.clone());
            }
            routes.push(RoutePolicy {
                id: spec.id,
                methods,
                auth,
            });
        }
        Ok(RouteTable {
            router,
            templates,
            routes,
        })
    }

    pub fn requires_tokens(&self) -> bool {
        self.routes
            .iter()
            .any(|r| matches!(r.auth, RouteAuth::Jwt { .. }))
    }

    pub fn routes(&self) -> &[RoutePolicy] {
        &self.routes
    }

    pub fn lookup<'t, 'p>(
        &'t self,
        method: &str,
        path: &'p str,
    ) -> Result<RouteMatch<'t, 'p>, NoRoute> {
        let Ok(matched) = self.router.at(path) else {
            return Err(NoRoute {
                reason: Reason::RouteNotFound,
                allowed_methods: Vec::new(),
            });
        };
        let candidates = self
            .templates
            .get(*matched.value)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for &index in candidates {
            if let Some(route) = self.routes.get(index) {
                if route.methods.is_empty() || route.methods.iter().any(|m| m == method) {
                    return Ok(RouteMatch {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn table(routes: serde_json::Value) -> Result<RouteTable, ConfigError> {
        let specs: Vec<RouteSpec> = serde_json::from_value(routes).unwrap();
        RouteTable::compile(specs, &["idp", "partner"])
    }

    #[test]
    fn matches_templates_methods_and_params() {
        let t = table(json!([
            {"id": "get", "match": {"methods": ["GET"], "path": "/v1/accounts/{account_id}"}},
            {"id": "del", "match": {"methods": ["delete"], "path": "/v1/accounts/{account_id}"}, "auth": {"providers": ["partner"]}},
            {"id": "pay", "match": {"methods": ["POST"], "path": "/v1/customers/{customer_id}/payments"}},
            {"id": "files", "match": {"path": "/files/{*rest}"}, "auth": {"anonymous": true}}
        ]))
        .unwrap();
        let m = t.lookup("GET", "/v1/accounts/acc-1").unwrap();
        assert_eq!(m.route.id, "get");
        assert_eq!(m.params.get("account_id"), Some("acc-1"));
        assert_eq!(
            t.lookup("DELETE", "/v1/accounts/acc-1").unwrap().route.id,
            "del"
        );
        assert!(
            matches!(t.lookup("DELETE", "/v1/accounts/x").unwrap().route.auth, RouteAuth::Jwt { providers: Some(ref p), .. } if p == &[1])
        );
        assert_eq!(t.lookup("PUT", "/files/a/b/c").unwrap().route.id, "files");
        let no = t.lookup("PUT", "/v1/accounts/acc-1").err().unwrap();
        assert_eq!(no.reason, Reason::MethodNotAllowed);
        assert_eq!(no.allowed_methods, ["DELETE", "GET"]);
        assert_eq!(
            t.lookup("GET", "/v1/accounts").err().unwrap().reason,
            Reason::RouteNotFound
        );
        assert_eq!(
            t.lookup("GET", "/v1/accounts/a/b").err().unwrap().reason,
            Reason::RouteNotFound
        );
    }

    #[test]
    fn configuration_errors_name_the_route() {
        let e = table(
            json!([{"id": "a", "match": {"path": "/x"}}, {"id": "a", "match": {"path": "/y"}}]),
        )
        .unwrap_err();
        assert_eq!(e.path, "routes[1].id");
        let e = table(json!([{"id": "a", "match": {"path": "/x/{a}"}}, {"id": "b", "match": {"path": "/x/{b}"}}])).unwrap_err();
        assert_eq!(e.path, "routes[1].match.path");
        let e = table(json!([{"id": "a", "match": {"path": "/x"}}, {"id": "b", "match": {"path": "/x", "methods": ["GET"]}}])).unwrap_err();
        assert_eq!(e.path, "routes[1].match");
        let e =
            table(json!([{"id": "a", "match": {"path": "/x", "methods": ["FETCH"]}}])).unwrap_err();
        assert_eq!(e.path, "routes[0].match.methods[0]");
        let e =
            table(json!([{"id": "a", "match": {"path": "/x"}, "auth": {"providers": ["nope"]}}]))
                .unwrap_err();
        assert_eq!(e.path, "routes[0].auth.providers[0]");
        let e = table(json!([{"id": "a", "match": {"path": "x"}}])).unwrap_err();
        assert_eq!(e.path, "routes[0].match.path");
        let e = table(json!([{"id": "a", "match": {"path": "/x"}, "auth": {"anonymous": true, "scopes": {"all": ["s"]}}}])).unwrap_err();
        assert_eq!(e.path, "routes[0].auth");
    }
}
