//! Whether a refusal is sent or only logged: a route's or provider's `mode`.

use serde::Deserialize;

/// A route's (or provider's) enforcement mode; monitor on either side wins (see `pipeline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refusals are sent.
    #[default]
    Enforce,
    /// Refusals are logged and the request is forwarded (for rolling out a new policy).
    Monitor,
}
