//! Who is calling, once authenticated: a verified token or a configured API key (by index).
//! Owned, so it can travel from the headers phase to the body phase and into the audit record.

use crate::authn::verify::VerifiedToken;
use std::rc::Rc;

/// The authenticated caller, owned, for the body phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Token(Rc<VerifiedToken>),
    ApiKey(usize),
}
