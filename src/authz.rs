//! Authorization: what a verified token may do on a route. Least privilege: a route names the
//! scopes it needs, and a token without them is refused with 403 `insufficient_scope`.

use crate::authn::verify::VerifiedToken;
use crate::decision::Reason;
use crate::routes::ScopeRule;

pub fn check_scopes(rule: &ScopeRule, token: &VerifiedToken) -> Result<(), Reason> {
    let has = |scope: &String| token.scopes.iter().any(|s| s == scope);
    let all_present = rule.all.iter().all(has);
    let any_present = rule.any.is_empty() || rule.any.iter().any(has);
    if all_present && any_present {
        Ok(())
    } else {
        Err(Reason::ScopeInsufficient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn token(scopes: &[&str]) -> VerifiedToken {
        VerifiedToken {
            provider: 0,
            exp: 0,
            nbf: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            forward_headers: vec![],
            claims: Default::default(),
        }
    }

    fn rule(all: &[&str], any: &[&str]) -> ScopeRule {
        ScopeRule {
            all: all.iter().map(|s| s.to_string()).collect(),
            any: any.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn all_and_any() {
        assert!(check_scopes(&rule(&[], &[]), &token(&[])).is_ok());
        assert!(check_scopes(&rule(&["a", "b"], &[]), &token(&["b", "a", "c"])).is_ok());
        assert_eq!(
            check_scopes(&rule(&["a", "b"], &[]), &token(&["a"])),
            Err(Reason::ScopeInsufficient)
        );
        assert!(check_scopes(&rule(&["a"], &["x", "y"]), &token(&["a", "y"])).is_ok());
        assert_eq!(
            check_scopes(&rule(&["a"], &["x", "y"]), &token(&["a"])),
            Err(Reason::ScopeInsufficient)
        );
        // Scope names match exactly: no prefix or case games.
        assert_eq!(
            check_scopes(
                &rule(&["payments:write"], &[]),
                &token(&["payments:write:all", "PAYMENTS:WRITE"])
            ),
            Err(Reason::ScopeInsufficient)
        );
    }
}
