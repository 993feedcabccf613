//! Pointer patterns: JSON pointers (RFC 6901, `~0` / `~1` escapes) whose segments may be `*`,
//! matching any member of an object or any element of an array. A segment that is a decimal
//! index also matches that element of an array, as in RFC 6901.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Any,
    Name(String),
}

impl Segment {
    /// Whether this segment selects a member named `name`.
    pub fn matches_member(&self, name: &str) -> bool {
        match self {
            Segment::Any => true,
            Segment::Name(n) => n == name,
        }
    }

    /// Whether this segment selects array element `index`.
    pub fn matches_index(&self, index: usize) -> bool {
        match self {
            Segment::Any => true,
            Segment::Name(n) => {
                n.parse::<usize>().ok() == Some(index) && (n == "0" || !n.starts_with('0'))
            }
        }
    }
}

/// Parses a pattern such as `/accounts/*/account_number`. The whole document (`""`) cannot be a
/// target: a rule names a value inside it.
pub fn parse(text: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = text.strip_prefix('/') else {
        return Err("must start with / (a JSON pointer; * matches any member or element)".into());
    };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        if raw == "*" {
            segments.push(Segment::Any);
            continue;
        }
        let mut name = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => name.push('~'),
                    Some('1') => name.push('/'),
                    _ => return Err("~ must be followed by 0 or 1 (RFC 6901)".into()),
                }
            } else {
                name.push(c);
            }
        }
        segments.push(Segment::Name(name));
    }
    if segments.len() > 64 {
        return Err("at most 64 segments".into());
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn patterns_parse_with_wildcards_and_escapes() {
        assert_eq!(
            parse("/accounts/*/a~1b~0c").unwrap(),
            [
                Segment::Name("accounts".into()),
                Segment::Any,
                Segment::Name("a/b~c".into())
            ]
        );
        assert!(parse("").is_err());
        assert!(parse("accounts").is_err());
        assert!(parse("/a~2").is_err());
        assert!(Segment::Name("2".into()).matches_index(2));
        assert!(!Segment::Name("02".into()).matches_index(2));
        assert!(Segment::Any.matches_index(7));
    }
}
