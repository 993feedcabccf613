//! A compiled identity provider: who issues tokens, for whom, with which algorithms, and what
//! finguard forwards from them. Built once by `config`, read on every request.

use crate::mode::Mode;
use jsonwebtoken::Algorithm;

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub clock_skew_seconds: i64,
    pub max_lifetime_seconds: Option<i64>,
    /// Accepted `typ` header values, lowercased and without an `application/` prefix.
    pub typ: Option<Vec<String>>,
    /// Claim holding the scopes; `None`: `scope`, else `scp`.
    pub scope_claim: Option<String>,
    pub forward_claims: Vec<ClaimHeader>,
    pub mode: Mode,
}

/// One claim forwarded to the upstream as a header.
#[derive(Debug)]
pub struct ClaimHeader {
    /// JSON pointer into the claims (`sub` in the configuration becomes `/sub`).
    pub pointer: String,
    /// Lowercased header name.
    pub header: String,
}

impl Provider {
    pub fn accepts_typ(&self, typ: Option<&str>) -> bool {
        let Some(allowed) = &self.typ else {
            return true;
        };
        let Some(typ) = typ else {
            return false;
        };
        // RFC 7515 section 4.1.9: "application/" may be omitted; media types are case-insensitive.
        let typ = typ.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        allowed.iter().any(|a| a == typ)
    }
}
