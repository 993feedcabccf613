//! What a refused configuration says: the path of the offending field and what is wrong, e.g.
//! `providers[0].jwks.remote.cluster: must not be empty`. Every capability's compile step
//! returns these; none echoes a secret or an input value beyond configuration names.

use std::fmt;

/// A configuration error: the path of the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

pub(crate) fn err<T>(
    path: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        message: message.into(),
    })
}

impl ConfigError {
    /// The error at `path` (a field path such as `routes[2].auth.scopes`).
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// serde's messages may quote input values; keep the kind of error and the expected shape only
/// for data errors, which quote the offending field name (configuration, not secrets).
pub(crate) fn describe_serde_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let message = e.to_string();
            // "unknown field `x`, expected one of ..." and "missing field `x`" are useful as-is,
            // but strip serde's " at line L column C" suffix.
            message
                .split(" at line ")
                .next()
                .unwrap_or("invalid value")
                .to_string()
        }
        Category::Syntax => format!("invalid JSON at line {} column {}", e.line(), e.column()),
        Category::Eof => "truncated JSON".into(),
        Category::Io => "unreadable".into(),
    }
}
