//! JSON structure limits, checked on the raw bytes before anything parses them: nesting depth,
//! members per object, items per array, string and number length, total number of values.
//!
//! The scanner is a single loop over the bytes with an explicit stack bounded by `max_depth`, so
//! a hostile shape (100 000 nested arrays, a million-member object) costs one pass and a few
//! bytes of memory, and cannot exhaust the Wasm stack. It tokenises just enough to count; it is
//! not a validator: grammar errors it does not need to see are left to the strict parser that
//! runs after it (`json::parse_strict`).

use crate::swar;
use serde::Deserialize;

/// Limits as configured (`routes[i].request.limits`); absent fields take the defaults below.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    max_depth: Option<usize>,
    max_members: Option<usize>,
    max_array_items: Option<usize>,
    max_string_bytes: Option<usize>,
    max_number_chars: Option<usize>,
    max_values: Option<usize>,
}

/// Compiled limits. The defaults admit any realistic payment or banking payload and refuse
/// shapes that only an attacker or a broken client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nesting of arrays and objects; the top-level value is depth 1 if it is a container.
    pub max_depth: usize,
    /// Members of one object.
    pub max_members: usize,
    /// Items of one array.
    pub max_array_items: usize,
    /// Bytes of one string (member names included) as sent, escapes counted as written.
    pub max_string_bytes: usize,
    /// Characters of one number as written (sign, digits, fraction, exponent).
    pub max_number_chars: usize,
    /// Values in the whole document (every scalar, array and object counts one).
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 32,
            max_members: 256,
            max_array_items: 1024,
            max_string_bytes: 8192,
            max_number_chars: 40,
            max_values: 10_000,
        }
    }
}

impl Limits {
    /// Applies the configured overrides; zero is refused (it would refuse every body).
    pub fn compile(raw: &RawLimits) -> Result<Limits, (&'static str, &'static str)> {
        let d = Limits::default();
        let pick = |value: Option<usize>, default: usize, name: &'static str| match value {
            Some(0) => Err((name, "must be at least 1")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        Ok(Limits {
            // serde_json's own recursion limit is 128: a deeper document never parses anyway.
            max_depth: match pick(raw.max_depth, d.max_depth, "max_depth")? {
                v if v > 128 => return Err(("max_depth", "must be at most 128")),
                v => v,
            },
            max_members: pick(raw.max_members, d.max_members, "max_members")?,
            max_array_items: pick(raw.max_array_items, d.max_array_items, "max_array_items")?,
            max_string_bytes: pick(raw.max_string_bytes, d.max_string_bytes, "max_string_bytes")?,
            max_number_chars: pick(raw.max_number_chars, d.max_number_chars, "max_number_chars")?,
            max_values: pick(raw.max_values, d.max_values, "max_values")?,
        })
    }
}

/// Why a document was refused by the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitError {
    /// A limit was exceeded; the name is the configuration field (`max_depth`, ...).
    Exceeded(&'static str),
    /// Brackets that do not balance, a string that does not end: not JSON at all.
    Malformed,
}

#[derive(Clone, Copy)]
struct Frame {
    object: bool,
    /// Members (object) or items (array) seen so far.
    count: usize,
}

/// Scans `bytes` against `limits`. `Ok` means no limit is exceeded, not that the JSON is valid.
pub fn scan(bytes: &[u8], limits: &Limits) -> Result<(), LimitError> {
    use LimitError::{Exceeded, Malformed};
    let mut stack: Vec<Frame> = Vec::with_capacity(limits.max_depth.min(32));
    // In an object: the next string is a member name (after `{` or `,`), not a value.
    let mut expect_key = false;
    let mut values = 0usize;
    let mut i = 0usize;
    // Counts one more value in the current container (or at the top level).
    let mut count_value = |stack: &mut Vec<Frame>, is_key: bool| -> Result<(), LimitError> {
        // A member counts once in its object, at its name; an item once in its array.
        if let Some(frame) = stack.last_mut().filter(|f| f.object == is_key) {
            frame.count += 1;
            let (limit, name) = if frame.object {
                (limits.max_members, "max_members")
            } else {
                (limits.max_array_items, "max_array_items")
            };
            if frame.count > limit {
                return Err(Exceeded(name));
            }
        }
        if !is_key {
            values += 1;
            if values > limits.max_values {
                return Err(Exceeded("max_values"));
            }
        }
        Ok(())
    };
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b':' => i += 1,
            b',' => {
                expect_key = stack.last().is_some_and(|f| f.object);
                i += 1;
            }
            b'{' | b'[' => {
                count_value(&mut stack, false)?;
                if stack.len() >= limits.max_depth {
                    return Err(Exceeded("max_depth"));
                }
                let object = byte == b'{';
                stack.push(Frame { object, count: 0 });
                expect_key = object;
                i += 1;
            }
            b'}' | b']' => {
                let frame = stack.pop().ok_or(Malformed)?;
                if frame.object != (byte == b'}') {
                    return Err(Malformed);
                }
                expect_key = false;
                i += 1;
            }
            b'"' => {
                let is_key = expect_key;
                count_value(&mut stack, is_key)?;
                expect_key = false;
                let start = i;
                i += 1;
                // Strings are most of a payload's bytes: jump between quotes and escapes,
                // eight bytes at a time, instead of stepping byte by byte.
                loop {
                    i = swar::find_quote_or_backslash(bytes, i).ok_or(Malformed)?;
                    if bytes.get(i) == Some(&b'"') {
                        break;
                    }
                    i += 2;
                }
                // Content between the quotes, as written.
                if i - start - 1 > limits.max_string_bytes {
                    return Err(Exceeded("max_string_bytes"));
                }
                i += 1;
            }
            _ => {
                // A number or a literal (true, false, null): one run of non-delimiters.
                count_value(&mut stack, false)?;
                expect_key = false;
                let start = i;
                while bytes.get(i).is_some_and(|b| {
                    !matches!(
                        b,
                        b' ' | b'\t'
                            | b'\n'
                            | b'\r'
                            | b','
                            | b']'
                            | b'}'
                            | b':'
                            | b'"'
                            | b'['
                            | b'{'
                    )
                }) {
                    i += 1;
                }
                if (byte == b'-' || byte.is_ascii_digit()) && i - start > limits.max_number_chars {
                    return Err(Exceeded("max_number_chars"));
                }
            }
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn limits() -> Limits {
        Limits {
            max_depth: 3,
            max_members: 2,
            max_array_items: 3,
            max_string_bytes: 5,
            max_number_chars: 4,
            max_values: 12,
        }
    }

    #[test]
    fn admits_documents_within_every_limit() {
        let l = limits();
        for ok in [
            r#"{"a": [1, 2, {"b": "12345"}], "c": null}"#,
            r#"[true, false, -1.5]"#,
            r#""hello""#,
            "1234",
            r#"{"a\"b": "x\"y"}"#,
            "",
        ] {
            assert_eq!(scan(ok.as_bytes(), &l), Ok(()), "{ok}");
        }
    }

    #[test]
    fn names_the_limit_exceeded() {
        let l = limits();
        let cases = [
            ("[[[[1]]]]", "max_depth"),
            (r#"{"a": 1, "b": 2, "c": 3}"#, "max_members"),
            ("[1, 2, 3, 4]", "max_array_items"),
            (r#"["123456"]"#, "max_string_bytes"),
            (r#"{"123456": 1}"#, "max_string_bytes"),
            ("[12345]", "max_number_chars"),
            ("[1e100]", "max_number_chars"),
            (r#"[[1],[1],[1],[1]]"#, "max_array_items"),
            (r#"[[1,2,3],[1,2,3],[1,2,3]]"#, "max_values"),
        ];
        for (doc, limit) in cases {
            assert_eq!(
                scan(doc.as_bytes(), &l),
                Err(LimitError::Exceeded(limit)),
                "{doc}"
            );
        }
    }

    #[test]
    fn unbalanced_input_is_malformed() {
        let l = Limits::default();
        for bad in ["[1", "]", "{]", r#"{"a": "unterminated"#, r#""\"#] {
            assert_eq!(
                scan(bad.as_bytes(), &l),
                Err(LimitError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn hostile_depth_costs_one_pass_and_no_stack() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            scan(deep.as_bytes(), &Limits::default()),
            Err(LimitError::Exceeded("max_depth"))
        );
        let wide = format!("[{}1]", "1,".repeat(100_000));
        assert_eq!(
            scan(wide.as_bytes(), &Limits::default()),
            Err(LimitError::Exceeded("max_array_items"))
        );
        // The default depth is reachable exactly.
        let d = Limits::default().max_depth;
        let at_limit = format!("{}{}", "[".repeat(d), "]".repeat(d));
        assert_eq!(scan(at_limit.as_bytes(), &Limits::default()), Ok(()));
    }

    #[test]
    fn configuration_refuses_zero_and_depth_over_serde_limit() {
        let raw: RawLimits = serde_json::from_str(r#"{"max_depth": 0}"#).unwrap();
        assert_eq!(Limits::compile(&raw).unwrap_err().0, "max_depth");
        let raw: RawLimits = serde_json::from_str(r#"{"max_depth": 129}"#).unwrap();
        assert!(Limits::compile(&raw).is_err());
        let raw: RawLimits = serde_json::from_str(r#"{"max_members": 9}"#).unwrap();
        assert_eq!(Limits::compile(&raw).unwrap().max_members, 9);
    }
}
