//! Authorization: what an authenticated caller may do on a route. Least privilege, deny by
//! default: a route states its requirements and every one must hold.
//!
//! - scopes (all-of / any-of), 403 `insufficient_scope`;
//! - claim rules (equals / one-of / contains, roles as a special case), 403;
//! - object level (OWASP API1): a path parameter or body field must be bound to the caller's
//!   token (equal to a claim, or a member of an array claim), 403 without saying whether the
//!   object exists;
//! - step-up (RFC 9470): `acr`, `amr` and `auth_time` requirements, always or only above an
//!   amount, 401 `insufficient_user_authentication`.
//!
//! Rules that need the body run in the body phase ([`AuthPolicy::check_body`]); the rest before
//! the request is held ([`AuthPolicy::check_headers`]).

pub mod decimal;

use crate::authn::apikey::ApiKey;
use crate::authn::verify::{numeric_date_value, Rounding, VerifiedToken};
use crate::config_error::ConfigError;
use crate::json;
use crate::reason::Reason;
use crate::spellings::{decode_component, param_key, query_pairs};
use crate::validation::formats::iso4217;
use decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

// ---- configuration ----------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    credentials: Option<Vec<Credential>>,
    providers: Option<Vec<String>>,
    #[serde(default)]
    scopes: RawScopes,
    #[serde(default)]
    claims: Vec<RawClaimRule>,
    roles: Option<RawRoles>,
    #[serde(default)]
    owner: Vec<RawOwnerRule>,
    step_up: Option<RawStepUp>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    Jwt,
    ApiKey,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    #[serde(default)]
    all: Vec<String>,
    #[serde(default)]
    any: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimRule {
    claim: String,
    equals: Option<Value>,
    one_of: Option<Vec<Value>>,
    contains: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    claim: String,
    #[serde(default)]
    any: Vec<String>,
    #[serde(default)]
    all: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOwnerRule {
    param: Option<String>,
    body: Option<String>,
    claim: String,
    #[serde(default)]
    copies: Copies,
}

/// What a path-bound rule asks of other copies of its parameter: a query parameter named like it
/// (`?customer_id=`, in any spelling PHP or Rack decodes to it) and, where the body is judged, a
/// top-level JSON member named like it (case-folded). Laravel's `input()`, PHP's `$_REQUEST` and
/// Rails' `params` read such a copy instead of the path.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Copies {
    /// Every copy must carry the path's value, else 403 as for the path itself.
    #[default]
    MustMatch,
    /// Copies are not looked at (the backend reads the id from the path only).
    Ignore,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStepUp {
    #[serde(default)]
    acr: Vec<String>,
    #[serde(default)]
    amr_any: Vec<String>,
    max_age_seconds: Option<i64>,
    when: Option<RawAmountCondition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmountCondition {
    amount: String,
    gt: Option<String>,
    currency: Option<String>,
    #[serde(default)]
    gt_by_currency: BTreeMap<String, String>,
}

// ---- compiled policy --------------------------------------------------------------------

#[derive(Debug)]
pub struct AuthPolicy {
    pub jwt: bool,
    pub api_key: bool,
    /// Provider indexes accepted; `None`: any configured provider.
    pub providers: Option<Vec<usize>>,
    pub scopes: ScopeRule,
    claims: Vec<ClaimRule>,
    owner: Vec<OwnerRule>,
    pub step_up: Option<StepUp>,
}

/// Scopes the caller must hold: every one of `all`, and at least one of `any` (if non-empty).
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
enum ClaimTest {
    Equals(Value),
    OneOf(Vec<Value>),
    /// An array claim containing the value, or a string claim equal to it or listing it
    /// space-separated (as `scope` does).
    Contains(Value),
    /// Contains at least one of these (roles' `any`).
    ContainsAny(Vec<Value>),
}

#[derive(Debug)]
struct ClaimRule {
    pointer: String,
    test: ClaimTest,
}

#[derive(Debug)]
enum OwnerSource {
    Param(String),
    Body(String),
}

#[derive(Debug)]
struct OwnerRule {
    source: OwnerSource,
    claim: String,
    copies: Copies,
}

#[derive(Debug)]
pub struct StepUp {
    pub acr: Vec<String>,
    amr_any: Vec<String>,
    pub max_age_seconds: Option<i64>,
    when: Option<AmountCondition>,
}

#[derive(Debug)]
struct AmountCondition {
    amount: String,
    gt: Option<Decimal>,
    currency: Option<String>,
    gt_by_currency: Vec<(String, Decimal)>,
}

/// A claim name (`sub`) or JSON pointer (`/realm/roles`) as a JSON pointer.
pub fn claim_pointer(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{}", name.replace('~', "~0").replace('/', "~1"))
    }
}

impl AuthPolicy {
    /// Compiles a route's `auth`; `path` names it in errors, `params` are the template's names.
    pub fn compile(
        raw: RawAuth,
        path: &str,
        params: &[String],
        providers: &[&str],
    ) -> Result<AuthPolicy, ConfigError> {
        let fail = |field: &str, message: &str| ConfigError {
            path: format!("{path}{field}"),
            message: message.to_string(),
        };
        let credentials = raw.credentials.unwrap_or_else(|| vec![Credential::Jwt]);
        if credentials.is_empty() {
            return Err(fail(".credentials", "at least one of \"jwt\", \"api_key\""));
        }
        let jwt = credentials.contains(&Credential::Jwt);
        let api_key = credentials.contains(&Credential::ApiKey);

        let provider_indexes = match raw.providers {
            None => None,
            Some(names) => {
                let mut indexes = Vec::with_capacity(names.len());
                for (j, name) in names.iter().enumerate() {
                    let index = providers.iter().position(|p| p == name).ok_or_else(|| {
                        fail(&format!(".providers[{j}]"), "no provider of that name")
                    })?;
                    indexes.push(index);
                }
                Some(indexes)
            }
        };

        let mut claims = Vec::new();
        for (j, rule) in raw.claims.into_iter().enumerate() {
            let test = match (rule.equals, rule.one_of, rule.contains) {
                (Some(v), None, None) => ClaimTest::Equals(v),
                (None, Some(vs), None) if !vs.is_empty() => ClaimTest::OneOf(vs),
                (None, None, Some(v)) => ClaimTest::Contains(v),
                _ => {
                    return Err(fail(
                        &format!(".claims[{j}]"),
                        "exactly one of \"equals\", \"one_of\" (non-empty), \"contains\"",
                    ))
                }
            };
            claims.push(ClaimRule {
                pointer: claim_pointer(&rule.claim),
                test,
            });
        }
        if let Some(roles) = raw.roles {
            if roles.any.is_empty() && roles.all.is_empty() {
                return Err(fail(".roles", "name roles in \"any\" or \"all\""));
            }
            let pointer = claim_pointer(&roles.claim);
            for role in roles.all {
                claims.push(ClaimRule {
                    pointer: pointer.clone(),
                    test: ClaimTest::Contains(Value::String(role)),
                });
            }
            if !roles.any.is_empty() {
                let any = roles.any.into_iter().map(Value::String).collect();
                claims.push(ClaimRule {
                    pointer,
                    test: ClaimTest::ContainsAny(any),
                });
            }
        }

        let mut owner = Vec::new();
        for (j, rule) in raw.owner.into_iter().enumerate() {
            let source = match (rule.param, rule.body) {
                (Some(param), None) if params.contains(&param) => OwnerSource::Param(param),
                (Some(_), None) => {
                    return Err(fail(
                        &format!(".owner[{j}].param"),
                        "not a parameter of the route's path template",
                    ))
                }
                (None, Some(pointer)) if pointer.starts_with('/') => OwnerSource::Body(pointer),
                _ => {
                    return Err(fail(
                        &format!(".owner[{j}]"),
                        "exactly one of \"param\" or \"body\" (a JSON pointer)",
                    ))
                }
            };
            owner.push(OwnerRule {
                source,
                claim: claim_pointer(&rule.claim),
                copies: rule.copies,
            });
        }

        let step_up = match raw.step_up {
            None => None,
            Some(s) => {
                if s.acr.is_empty() && s.amr_any.is_empty() && s.max_age_seconds.is_none() {
                    return Err(fail(
                        ".step_up",
                        "state at least one of \"acr\", \"amr_any\", \"max_age_seconds\"",
                    ));
                }
                if s.max_age_seconds.is_some_and(|m| m < 0) {
                    return Err(fail(".step_up.max_age_seconds", "must be >= 0"));
                }
                let when = match s.when {
                    None => None,
                    Some(w) => {
                        let decimal = |field: String, text: &str| {
                            Decimal::parse(text).ok_or_else(|| {
                                fail(
                                    &format!(".step_up.when.{field}"),
                                    "not a plain decimal (e.g. \"1000.00\")",
                                )
                            })
                        };
                        if !w.amount.starts_with('/')
                            || w.currency.as_ref().is_some_and(|c| !c.starts_with('/'))
                        {
                            return Err(fail(
                                ".step_up.when",
                                "\"amount\" and \"currency\" are JSON pointers",
                            ));
                        }
                        if w.gt.is_none() && w.gt_by_currency.is_empty() {
                            return Err(fail(
                                ".step_up.when",
                                "state \"gt\" and/or \"gt_by_currency\"",
                            ));
                        }
                        if !w.gt_by_currency.is_empty() && w.currency.is_none() {
                            return Err(fail(
                                ".step_up.when",
                                "\"gt_by_currency\" needs \"currency\"",
                            ));
                        }
                        let gt =
                            w.gt.as_deref()
                                .map(|t| decimal("gt".into(), t))
                                .transpose()?;
                        let mut by_currency = Vec::with_capacity(w.gt_by_currency.len());
                        for (currency, text) in &w.gt_by_currency {
                            // Only codes a body can match (see `AmountCondition::holds`).
                            if !iso4217(currency) {
                                return Err(fail(
                                    &format!(".step_up.when.gt_by_currency.{currency}"),
                                    "not an ISO 4217 currency code in use (three upper-case letters, see formats::iso4217)",
                                ));
                            }
                            by_currency.push((
                                currency.clone(),
                                decimal(format!("gt_by_currency.{currency}"), text)?,
                            ));
                        }
                        Some(AmountCondition {
                            amount: w.amount,
                            gt,
                            currency: w.currency,
                            gt_by_currency: by_currency,
                        })
                    }
                };
                Some(StepUp {
                    acr: s.acr,
                    amr_any: s.amr_any,
                    max_age_seconds: s.max_age_seconds,
                    when,
                })
            }
        };

        if api_key && (!claims.is_empty() || !owner.is_empty() || step_up.is_some()) {
            return Err(fail(
                ".credentials",
                "claims, roles, owner and step_up rules need a token's claims: API keys cannot satisfy them (use [\"jwt\"])",
            ));
        }

        Ok(AuthPolicy {
            jwt,
            api_key,
            providers: provider_indexes,
            scopes: ScopeRule {
                all: raw.scopes.all,
                any: raw.scopes.any,
            },
            claims,
            owner,
            step_up,
        })
    }

    /// True when some rule reads the request body.
    pub fn needs_body(&self) -> bool {
        self.owner
            .iter()
            .any(|r| matches!(r.source, OwnerSource::Body(_)))
            || self.step_up.as_ref().is_some_and(|s| s.when.is_some())
    }

    /// Headers-phase rules: scopes, claims, path-bound objects, unconditional step-up.
    pub fn check_headers<'p>(
        &self,
        principal: Principal<'_>,
        params: impl Fn(&str) -> Option<&'p str>,
        now: i64,
    ) -> Result<(), Reason> {
        check_scopes(&self.scopes, principal.scopes())?;
        let Principal::Token(token) = principal else {
            return Ok(()); // API-key routes carry no claim rules (refused at configuration).
        };
        for rule in &self.claims {
            if !rule.holds(&token.claims) {
                return Err(Reason::ClaimRequirementUnmet);
            }
        }
        for rule in &self.owner {
            if let OwnerSource::Param(name) = &rule.source {
                let bound = params(name)
                    .and_then(percent_decode)
                    .is_some_and(|value| claim_binds(token.claims.pointer(&rule.claim), &value));
                if !bound {
                    return Err(Reason::ObjectAccessDenied);
                }
            }
        }
        match &self.step_up {
            Some(step_up) if step_up.when.is_none() && !step_up.satisfied_by(token, now) => {
                Err(Reason::StepUpRequired)
            }
            _ => Ok(()),
        }
    }

    /// Copies of path-bound parameters in the query: each must carry the path's value (see
    /// [`Copies`]). Values are compared after percent-decoding, as the backend reads them.
    pub fn check_query_copies<'p>(
        &self,
        params: impl Fn(&str) -> Option<&'p str>,
        query: Option<&str>,
    ) -> Result<(), Reason> {
        if query.is_none() {
            return Ok(());
        }
        for (name, path_value) in self.bound_params(params) {
            let differs = query_pairs(query)
                .filter(|(n, _)| param_key(n) == name)
                .any(|(_, v)| decode_component(v) != path_value.as_str());
            if differs {
                return Err(Reason::ObjectAccessDenied);
            }
        }
        Ok(())
    }

    /// The path-bound parameters whose copies must match, as (folded name, decoded path value),
    /// kept for the body phase. A parameter whose value cannot be decoded was already refused.
    pub fn bound_params<'p>(
        &self,
        params: impl Fn(&str) -> Option<&'p str>,
    ) -> Vec<(String, String)> {
        self.owner
            .iter()
            .filter(|rule| rule.copies == Copies::MustMatch)
            .filter_map(|rule| match &rule.source {
                OwnerSource::Param(name) => Some((param_key(name), params(name)?)),
                OwnerSource::Body(_) => None,
            })
            .filter_map(|(name, raw)| Some((name, percent_decode(raw)?)))
            .collect()
    }

    /// Body-phase rules: body-bound objects and amount-conditional step-up. `body` is strict JSON
    /// already parsed by the caller; `raw` is its text (for exact amounts).
    pub fn check_body(
        &self,
        principal: Principal<'_>,
        body: &Value,
        raw: &[u8],
        now: i64,
    ) -> Result<(), Reason> {
        let Principal::Token(token) = principal else {
            return Ok(());
        };
        for rule in &self.owner {
            if let OwnerSource::Body(pointer) = &rule.source {
                let bound = body_id(body, raw, pointer)
                    .is_some_and(|value| claim_binds(token.claims.pointer(&rule.claim), &value));
                if !bound {
                    return Err(Reason::ObjectAccessDenied);
                }
            }
        }
        if let Some(step_up) = &self.step_up {
            if let Some(when) = &step_up.when {
                if when.holds(body, raw) && !step_up.satisfied_by(token, now) {
                    return Err(Reason::StepUpRequired);
                }
            }
        }
        Ok(())
    }
}

/// Who is calling: a verified token or an API key.
#[derive(Clone, Copy)]
pub enum Principal<'a> {
    Token(&'a VerifiedToken),
    ApiKey(&'a ApiKey),
}

impl Principal<'_> {
    /// The scopes the caller holds (token `scope`/`scp` as verified, or the API key's).
    pub fn scopes(&self) -> &[String] {
        match self {
            Principal::Token(t) => &t.scopes,
            Principal::ApiKey(k) => &k.scopes,
        }
    }
}

pub fn check_scopes(rule: &ScopeRule, held: &[String]) -> Result<(), Reason> {
    let has = |scope: &String| held.iter().any(|s| s == scope);
    let all_present = rule.all.iter().all(has);
    let any_present = rule.any.is_empty() || rule.any.iter().any(has);
    if all_present && any_present {
        Ok(())
    } else {
        Err(Reason::ScopeInsufficient)
    }
}

impl ClaimRule {
    fn holds(&self, claims: &Value) -> bool {
        let Some(value) = claims.pointer(&self.pointer) else {
            return false;
        };
        match &self.test {
            ClaimTest::Equals(expected) => value == expected,
            ClaimTest::OneOf(options) => options.contains(value),
            ClaimTest::Contains(expected) => contains(value, expected),
            ClaimTest::ContainsAny(any_of) => any_of.iter().any(|v| contains(value, v)),
        }
    }
}

fn contains(claim: &Value, expected: &Value) -> bool {
    match (claim, expected) {
        (Value::Array(items), _) => items.contains(expected),
        (Value::String(s), Value::String(e)) => s == e || s.split(' ').any(|part| part == e),
        _ => false,
    }
}

/// Strings as they are, integers as their decimal text; anything else cannot identify an
/// object. A number `serde_json` holds as a float (a fraction, an exponent, or an integer beyond
/// 64 bits) was rounded, so it identifies nothing: `123456789012345678901` and
/// `123456789012345678999` are the same float.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The id at `pointer` in the body: a string as it is, a number as the exact text the client
/// sent (never rounded through a float); anything else identifies nothing.
fn body_id(body: &Value, raw: &[u8], pointer: &str) -> Option<String> {
    match body.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) => json::raw_at_pointer(raw, pointer),
        _ => None,
    }
}

/// Copies of path-bound parameters among the body's top-level members (names case-folded, as
/// Go's `encoding/json` and Jackson's case-insensitive mode bind them): each must carry the
/// path's value (`bound` from [`AuthPolicy::bound_params`]), numbers compared as the exact text sent.
pub fn check_body_copies(
    bound: &[(String, String)],
    body: &Value,
    raw: &[u8],
) -> Result<(), Reason> {
    let Value::Object(members) = body else {
        return Ok(());
    };
    for (member, value) in members {
        let folded = member.to_lowercase();
        for (name, path_value) in bound {
            if folded != *name {
                continue;
            }
            let pointer = format!("/{}", member.replace('~', "~0").replace('/', "~1"));
            let copy = match value {
                Value::String(s) => Some(s.clone()),
                Value::Number(_) => json::raw_at_pointer(raw, &pointer),
                _ => None,
            };
            if copy.as_deref() != Some(path_value.as_str()) {
                return Err(Reason::ObjectAccessDenied);
            }
        }
    }
    Ok(())
}

/// Whether `value` is the claim or one of its members.
fn claim_binds(claim: Option<&Value>, value: &str) -> bool {
    match claim {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(scalar_text)
            .any(|item| item == value),
        Some(other) => scalar_text(other).is_some_and(|c| c == value),
        None => false,
    }
}

/// Percent-decodes a path parameter; `None` for bad escapes or non-UTF-8 results.
fn percent_decode(raw: &str) -> Option<String> {
    if !raw.contains('%') {
        return Some(raw.to_string());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl StepUp {
    fn satisfied_by(&self, token: &VerifiedToken, now: i64) -> bool {
        let claims = &token.claims;
        let acr_ok = self.acr.is_empty()
            || claims
                .get("acr")
                .and_then(Value::as_str)
                .is_some_and(|acr| self.acr.iter().any(|a| a == acr));
        let amr_ok = self.amr_any.is_empty()
            || claims
                .get("amr")
                .and_then(Value::as_array)
                .is_some_and(|amr| {
                    amr.iter()
                        .filter_map(Value::as_str)
                        .any(|m| self.amr_any.iter().any(|a| a == m))
                });
        let age_ok = match self.max_age_seconds {
            None => true,
            Some(max) => claims
                .get("auth_time")
                .and_then(|at| numeric_date_value(at, Rounding::Down))
                .is_some_and(|at| at <= now && now - at <= max),
        };
        acr_ok && amr_ok && age_ok
    }
}

impl AmountCondition {
    /// Whether the amount is above its threshold. Fail closed: a missing or unreadable amount,
    /// a currency without a threshold, and, on a rule that names a currency, a currency that is
    /// not exactly an ISO 4217 code in use (missing, not a string, `kwd`, `" KWD"`, `KWD\0`,
    /// Cyrillic `К`, fullwidth letters: a backend may still read `KWD` in it) count as above,
    /// whatever the route's schema says.
    fn holds(&self, body: &Value, raw: &[u8]) -> bool {
        let threshold = match &self.currency {
            Some(pointer) => {
                let Some(currency) = body
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .filter(|c| iso4217(c))
                else {
                    return true;
                };
                self.gt_by_currency
                    .iter()
                    .find(|(k, _)| k == currency)
                    .map(|(_, t)| t)
                    .or(self.gt.as_ref())
            }
            None => self.gt.as_ref(),
        };
        let Some(threshold) = threshold else {
            return true;
        };
        match json::raw_at_pointer(raw, &self.amount)
            .as_deref()
            .and_then(amount_text)
            .and_then(Decimal::parse)
        {
            Some(amount) => amount > *threshold,
            None => true,
        }
    }
}

/// The digits of a raw JSON number, or the contents of a JSON string holding one.
fn amount_text(raw: &str) -> Option<&str> {
    match raw.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: i64 = 1_800_000_000;

    fn policy(auth: Value) -> AuthPolicy {
        let raw: RawAuth = serde_json::from_value(auth).unwrap();
        AuthPolicy::compile(
            raw,
            "routes[0].auth",
            &["customer_id".to_string(), "account_id".to_string()],
            &["idp"],
        )
        .unwrap()
    }

    fn compile_error(auth: Value) -> ConfigError {
        let raw: RawAuth = serde_json::from_value(auth).unwrap();
        AuthPolicy::compile(
            raw,
            "routes[0].auth",
            &["customer_id".to_string()],
            &["idp"],
        )
        .unwrap_err()
    }

    fn token(claims: Value) -> VerifiedToken {
        let scopes = claims["scope"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        VerifiedToken {
            provider: 0,
            exp: NOW + 60,
            nbf: None,
            scopes,
            forward_headers: vec![],
            claims,
        }
    }

    fn params<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn body_check(p: &AuthPolicy, t: &VerifiedToken, body: &str) -> Result<(), Reason> {
        let value = json::parse_strict(body.as_bytes()).unwrap();
        p.check_body(Principal::Token(t), &value, body.as_bytes(), NOW)
    }

    #[test]
    fn scopes_all_and_any_match_exactly() {
        let rule = ScopeRule {
            all: vec!["a".into(), "b".into()],
            any: vec![],
        };
        assert!(check_scopes(&rule, &["b".into(), "a".into()]).is_ok());
        assert_eq!(
            check_scopes(&rule, &["a".into()]),
            Err(Reason::ScopeInsufficient)
        );
        let rule = ScopeRule {
            all: vec!["payments:write".into()],
            any: vec!["x".into(), "y".into()],
        };
        assert!(check_scopes(&rule, &["payments:write".into(), "y".into()]).is_ok());
        assert_eq!(
            check_scopes(
                &rule,
                &[
                    "payments:write:all".into(),
                    "PAYMENTS:WRITE".into(),
                    "x".into()
                ]
            ),
            Err(Reason::ScopeInsufficient)
        );
    }

    #[test]
    fn claim_rules_and_roles() {
        let p = policy(json!({
            "claims": [{"claim": "tenant", "equals": "acme"}, {"claim": "/country", "one_of": ["DE", "FR"]}, {"claim": "groups", "contains": "payments"}],
            "roles": {"claim": "/realm/roles", "any": ["teller", "supervisor"], "all": ["staff"]}
        }));
        let good = json!({"tenant": "acme", "country": "FR", "groups": ["payments", "x"], "realm": {"roles": ["staff", "teller"]}});
        assert!(p
            .check_headers(Principal::Token(&token(good.clone())), params(&[]), NOW)
            .is_ok());
        for (pointer, bad) in [
            ("/tenant", json!("evil")),
            ("/country", json!("US")),
            ("/groups", json!(["x"])),
            ("/realm", json!({"roles": ["teller"]})),
            ("/realm", json!({"roles": ["staff"]})),
        ] {
            let mut claims = good.clone();
            *claims.pointer_mut(pointer).unwrap() = bad;
            assert_eq!(
                p.check_headers(Principal::Token(&token(claims)), params(&[]), NOW),
                Err(Reason::ClaimRequirementUnmet),
                "{pointer}"
            );
        }
        let mut missing = good;
        missing.as_object_mut().unwrap().remove("tenant");
        assert_eq!(
            p.check_headers(Principal::Token(&token(missing)), params(&[]), NOW),
            Err(Reason::ClaimRequirementUnmet)
        );
    }

    #[test]
    fn object_level_binding_to_path_and_body() {
        let p = policy(
            json!({"owner": [{"param": "customer_id", "claim": "sub"}, {"body": "/debtor_account", "claim": "accounts"}]}),
        );
        let alice = token(json!({"sub": "cust-A", "accounts": ["acc-1", "acc-2", 77]}));
        assert!(p.needs_body());
        assert!(p
            .check_headers(
                Principal::Token(&alice),
                params(&[("customer_id", "cust-A")]),
                NOW
            )
            .is_ok());
        assert!(p
            .check_headers(
                Principal::Token(&alice),
                params(&[("customer_id", "cust%2DA")]),
                NOW
            )
            .is_ok());
        assert_eq!(
            p.check_headers(
                Principal::Token(&alice),
                params(&[("customer_id", "cust-B")]),
                NOW
            ),
            Err(Reason::ObjectAccessDenied)
        );
        assert_eq!(
            p.check_headers(
                Principal::Token(&alice),
                params(&[("customer_id", "cust-%ZZ")]),
                NOW
            ),
            Err(Reason::ObjectAccessDenied)
        );
        assert!(body_check(&p, &alice, r#"{"debtor_account": "acc-2"}"#).is_ok());
        assert!(body_check(&p, &alice, r#"{"debtor_account": 77}"#).is_ok());
        assert_eq!(
            body_check(&p, &alice, r#"{"debtor_account": "acc-9"}"#),
            Err(Reason::ObjectAccessDenied)
        );
        assert_eq!(
            body_check(&p, &alice, r#"{"debtor_account": ["acc-1"]}"#),
            Err(Reason::ObjectAccessDenied)
        );
        assert_eq!(
            body_check(&p, &alice, r#"{}"#),
            Err(Reason::ObjectAccessDenied)
        );
    }

    #[test]
    fn step_up_above_an_amount() {
        let p = policy(
            json!({"step_up": {"amr_any": ["mfa", "hwk"], "acr": ["gold"], "max_age_seconds": 300,
            "when": {"amount": "/amount", "gt": "1000", "currency": "/currency", "gt_by_currency": {"JPY": "150000"}}}}),
        );
        let weak = token(json!({"amr": ["pwd"], "acr": "gold", "auth_time": NOW - 10}));
        let strong = token(json!({"amr": ["pwd", "mfa"], "acr": "gold", "auth_time": NOW - 10}));
        let stale = token(json!({"amr": ["mfa"], "acr": "gold", "auth_time": NOW - 301}));
        let wrong_acr = token(json!({"amr": ["mfa"], "acr": "silver", "auth_time": NOW - 10}));
        // No step-up without the body condition; headers phase lets it through.
        assert!(p
            .check_headers(Principal::Token(&weak), params(&[]), NOW)
            .is_ok());
        for (body, needs) in [
            (r#"{"amount": 999.99, "currency": "EUR"}"#, false),
            (r#"{"amount": "1000.00", "currency": "EUR"}"#, false),
            (
                r#"{"amount": 1000.000000000000000001, "currency": "EUR"}"#,
                true,
            ),
            (r#"{"amount": "1500.00", "currency": "EUR"}"#, true),
            (r#"{"amount": 100000, "currency": "JPY"}"#, false),
            (r#"{"amount": 150001, "currency": "JPY"}"#, true),
            (r#"{"amount": "1e9", "currency": "EUR"}"#, true),
            (r#"{"amount": 1e2, "currency": "EUR"}"#, true),
            (r#"{"currency": "EUR"}"#, true),
        ] {
            let expected = if needs {
                Err(Reason::StepUpRequired)
            } else {
                Ok(())
            };
            assert_eq!(body_check(&p, &weak, body), expected, "{body}");
            assert!(body_check(&p, &strong, body).is_ok(), "{body}");
        }
        let big = r#"{"amount": 5000, "currency": "EUR"}"#;
        assert_eq!(body_check(&p, &stale, big), Err(Reason::StepUpRequired));
        assert_eq!(body_check(&p, &wrong_acr, big), Err(Reason::StepUpRequired));
    }

    #[test]
    fn step_up_currency_that_is_not_an_iso_4217_code_fails_closed() {
        let p = policy(
            json!({"step_up": {"amr_any": ["mfa"], "when": {"amount": "/amount",
            "gt": "1000", "currency": "/currency", "gt_by_currency": {"KWD": "300"}}}}),
        );
        let weak = token(json!({"amr": ["pwd"]}));
        let strong = token(json!({"amr": ["mfa"]}));
        let with = |currency: &str| format!(r#"{{"amount": 500, "currency": {currency}}}"#);
        assert_eq!(
            body_check(&p, &weak, &with(r#""KWD""#)),
            Err(Reason::StepUpRequired)
        );
        for fine in [r#""EUR""#, r#""\u004bWD""#] {
            let body = with(fine).replace("500", "250");
            assert!(body_check(&p, &weak, &body).is_ok(), "{body}");
        }
        assert!(body_check(&p, &weak, &with(r#""EUR""#)).is_ok());
        for currency in [
            r#""kwd""#,
            r#""Kwd""#,
            r#"" KWD""#,
            r#""KWD ""#,
            r#""KWD\u0000""#,
            r#""\u041aWD""#,
            r#""\uff2b\uff37\uff24""#,
            r#""KWDD""#,
            r#""KW""#,
            r#""""#,
            r#""KWX""#,
            "414",
            "null",
            "true",
            r#"["KWD"]"#,
            r#"{"code": "KWD"}"#,
        ] {
            let body = with(currency);
            assert_eq!(
                body_check(&p, &weak, &body),
                Err(Reason::StepUpRequired),
                "{body}"
            );
            assert!(body_check(&p, &strong, &body).is_ok(), "{body}");
        }
        assert_eq!(
            body_check(&p, &weak, r#"{"amount": 5}"#),
            Err(Reason::StepUpRequired)
        );
        // Amounts a backend might read but finguard cannot: above, too.
        for amount in [
            r#""+5""#,
            "5e0",
            r#""5e0""#,
            r#"" 5""#,
            r#""5 ""#,
            r#""1,5""#,
            r#""\u0035""#,
            "true",
            "[5]",
        ] {
            let body = format!(r#"{{"amount": {amount}, "currency": "EUR"}}"#);
            assert_eq!(
                body_check(&p, &weak, &body),
                Err(Reason::StepUpRequired),
                "{body}"
            );
        }
        let huge = format!(r#"{{"amount": {}, "currency": "EUR"}}"#, "9".repeat(65));
        assert_eq!(body_check(&p, &weak, &huge), Err(Reason::StepUpRequired));
        for amount in ["-0", r#""0005""#, r#""5.00""#] {
            let body = format!(r#"{{"amount": {amount}, "currency": "EUR"}}"#);
            assert!(body_check(&p, &weak, &body).is_ok(), "{body}");
        }
        // A threshold for something that is not a currency code could never match.
        for key in ["kwd", "KWX", " KWD", "\u{41a}WD"] {
            let error = compile_error(json!({"step_up": {"amr_any": ["mfa"], "when": {
                "amount": "/amount", "gt": "1000", "currency": "/currency",
                "gt_by_currency": {key: "300"}}}}));
            assert!(
                error
                    .path
                    .starts_with("routes[0].auth.step_up.when.gt_by_currency"),
                "{key}: {error:?}"
            );
        }
    }

    #[test]
    fn unconditional_step_up_runs_in_the_headers_phase() {
        let p = policy(json!({"step_up": {"amr_any": ["mfa"]}}));
        assert!(!p.needs_body());
        assert_eq!(
            p.check_headers(Principal::Token(&token(json!({}))), params(&[]), NOW),
            Err(Reason::StepUpRequired)
        );
        assert!(p
            .check_headers(
                Principal::Token(&token(json!({"amr": ["mfa"]}))),
                params(&[]),
                NOW
            )
            .is_ok());
    }

    #[test]
    fn configuration_errors() {
        assert_eq!(
            compile_error(json!({"owner": [{"param": "nope", "claim": "sub"}]})).path,
            "routes[0].auth.owner[0].param"
        );
        assert_eq!(
            compile_error(json!({"claims": [{"claim": "a", "equals": 1, "contains": 2}]})).path,
            "routes[0].auth.claims[0]"
        );
        assert_eq!(
            compile_error(
                json!({"step_up": {"amr_any": ["mfa"], "when": {"amount": "/a", "gt": "1e3"}}})
            )
            .path,
            "routes[0].auth.step_up.when.gt"
        );
        assert_eq!(
            compile_error(json!({"credentials": ["api_key"], "step_up": {"amr_any": ["mfa"]}}))
                .path,
            "routes[0].auth.credentials"
        );
        assert_eq!(
            compile_error(json!({"providers": ["x"]})).path,
            "routes[0].auth.providers[0]"
        );
        assert_eq!(
            compile_error(json!({"credentials": []})).path,
            "routes[0].auth.credentials"
        );
    }
}
