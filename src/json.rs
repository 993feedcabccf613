//! Strict JSON: like `serde_json::from_slice::<Value>`, but an object with a duplicate member name
//! is an error. Parsers disagree on which duplicate wins ("first" vs "last"), which is how
//! parser-differential attacks slip a second `alg` or `sub` past one component and into another;
//! finguard refuses such documents outright. Nesting depth is bounded by serde_json's recursion
//! limit (128), so hostile input cannot exhaust the stack.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};
use std::fmt;

/// Parses `bytes` as one JSON value, refusing duplicate member names at any depth.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|strict| strict.0)
}

/// Parses `bytes` as a JSON object, refusing duplicate member names at any depth.
pub fn parse_strict_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match parse_strict(bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The raw JSON text of the value at `pointer` (RFC 6901) in `bytes`, exactly as sent: numbers
/// keep every digit (a `Value` would round them through f64). `bytes` must already have passed
/// [`parse_strict`], so member names are unique and the walk is unambiguous.
pub fn raw_at_pointer(bytes: &[u8], pointer: &str) -> Option<String> {
    use serde_json::value::RawValue;
    let mut current: &RawValue = serde_json::from_slice(bytes).ok()?;
    if pointer.is_empty() {
        return Some(current.get().to_string());
    }
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = current.get();
        current = if text.starts_with('{') {
            let members: std::collections::HashMap<String, &RawValue> =
                serde_json::from_str(text).ok()?;
            members.get(&token).copied()?
        } else if text.starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            let index: usize = token
                .parse()
                .ok()
                .filter(|_| token == "0" || !token.starts_with('0'))?;
            items.get(index).copied()?
        } else {
            return None;
        };
    }
    Some(current.get().to_string())
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            // One lookup finds the slot or the duplicate.
            match map.entry(key) {
                Entry::Occupied(_) => {
                    // The name is not echoed: error messages may end up in logs.
                    return Err(de::Error::custom("duplicate member name"));
                }
                Entry::Vacant(slot) => {
                    let Strict(value) = access.next_value()?;
                    slot.insert(value);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn accepts_ordinary_json() {
        let v = parse_strict(br#"{"a":[1,2,{"b":null}],"c":"x","d":1.5,"e":-3}"#).unwrap();
        assert_eq!(v["a"][2]["b"], Value::Null);
        assert_eq!(v["e"], -3);
    }

    #[test]
    fn refuses_duplicate_names_at_any_depth() {
        assert!(parse_strict(br#"{"alg":"RS256","alg":"none"}"#).is_err());
        assert!(parse_strict(br#"{"a":[{"x":1,"x":2}]}"#).is_err());
        assert!(parse_strict(br#"{"a":{"x":1},"b":{"x":2}}"#).is_ok());
    }

    #[test]
    fn refuses_trailing_garbage_and_deep_nesting_without_overflow() {
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
        let deep = "[".repeat(100_000);
        assert!(parse_strict(deep.as_bytes()).is_err());
    }

    #[test]
    fn raw_values_keep_their_digits() {
        let doc = br#"{"amount": 1000.000000000000000001, "a/b": {"list": [1, "x"]}, "s": "1.50"}"#;
        assert_eq!(
            raw_at_pointer(doc, "/amount").unwrap(),
            "1000.000000000000000001"
        );
        assert_eq!(raw_at_pointer(doc, "/a~1b/list/1").unwrap(), "\"x\"");
        assert_eq!(raw_at_pointer(doc, "/s").unwrap(), "\"1.50\"");
        assert!(raw_at_pointer(doc, "/a~1b/list/01").is_none());
        assert!(raw_at_pointer(doc, "/missing").is_none());
        assert!(raw_at_pointer(doc, "amount").is_none());
    }

    #[test]
    fn object_helper_rejects_non_objects() {
        assert!(parse_strict_object(b"[1]").is_none());
        assert!(parse_strict_object(b"{}").is_some());
    }
}
