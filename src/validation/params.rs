//! Query parameters, selected headers and path parameters, checked in the headers phase.
//!
//! Each group is declared as a JSON Schema for an object whose members are the parameters, all
//! strings (query values are percent-decoded, `+` is a space; path parameters are the decoded
//! matchit segments; header names are lower case):
//!
//! ```json
//! "query":   {"properties": {"limit": {"pattern": "^[0-9]{1,3}$"}}, "additionalProperties": false},
//! "headers": {"properties": {"idempotency-key": {"format": "uuid"}}, "required": ["idempotency-key"]},
//! "path":    {"properties": {"customer_id": {"pattern": "^cust-[A-Za-z0-9]{1,32}$"}}}
//! ```
//!
//! Only the headers the schema names are looked at (`properties` and `required`). A query
//! parameter sent twice, an escape that is not `%XX`, or a value that is not UTF-8 is refused
//! before the schema (keyword `duplicate` / `encoding`). Violations point at
//! `/query/<name>`, `/headers/<name>` or `/path/<name>` (undeclared names: `*`).

use super::schema::{escape, BodySchema, Dialect};
use crate::problem::Violation;
use crate::tape::Tape;
use serde_json::{Map, Value};

/// Compiles one group's schema. `params`: for `path`, the template's parameter names (a
/// declared name the template lacks is a configuration error).
pub fn compile_group(
    schema: &Value,
    group: &str,
    template_params: &[String],
) -> Result<BodySchema, String> {
    let dialect = Dialect::of(schema)?;
    let compiled = BodySchema::compile(schema, dialect)?;
    if group == "path" {
        if let Some(Value::Object(props)) = schema.get("properties") {
            if let Some(name) = props.keys().find(|n| !template_params.contains(n)) {
                return Err(format!(
                    "properties.{name}: not a parameter of the path template"
                ));
            }
        }
    }
    Ok(compiled)
}

/// Header names a header schema selects (`properties` keys and `required` entries), which
/// must be lower case (Envoy lowercases names).
pub fn selected_headers(schema: &Value) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(Value::Object(props)) = schema.get("properties") {
        names.extend(props.keys().cloned());
    }
    if let Some(Value::Array(required)) = schema.get("required") {
        names.extend(required.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(format!("properties.{bad}: header names are lower case"));
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// Percent-decodes a query component (`+` is a space). `None` for a bad escape or non-UTF-8.
pub fn decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query string as an object of decoded strings. `Err`: the violation that refuses it.
pub fn query_object(query: Option<&str>, schema: &BodySchema) -> Result<Value, Violation> {
    let mut map = Map::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |keyword: &str, name: Option<&str>| Violation {
            pointer: match name.filter(|n| schema.declares(n)) {
                Some(n) => format!("/query/{}", escape(n)),
                None => "/query/*".into(),
            },
            keyword: keyword.into(),
        };
        let name = decode(name, true).ok_or_else(|| bad("encoding", None))?;
        let value = decode(value, true).ok_or_else(|| bad("encoding", Some(&name)))?;
        if map.contains_key(&name) {
            return Err(bad("duplicate", Some(&name)));
        }
        map.insert(name, Value::String(value));
    }
    Ok(Value::Object(map))
}

/// Validates one group's object; violations are prefixed with `/<group>`.
///
/// The object is written out and read back as a tape, the representation request bodies are
/// validated in: one representation keeps one copy of jsonschema's validators in the module
/// (each representation is a separate instantiation, about 0.9 MB of Wasm). Parameters are few
/// and short, so the round trip costs little.
pub fn check(schema: &BodySchema, object: &Value, group: &str) -> Vec<Violation> {
    let text = serde_json::to_vec(object).unwrap_or_default();
    let Ok(tape) = Tape::parse(&text) else {
        // Not reachable for an object of strings; fail closed all the same.
        return vec![Violation {
            pointer: format!("/{group}"),
            keyword: "type".into(),
        }];
    };
    if schema.is_valid(tape.root()) {
        return Vec::new();
    }
    schema.violations(tape.root(), &format!("/{group}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn query_strings_decode_strictly() {
        let s = compile_group(&json!({"properties": {"q": {}}}), "query", &[]).unwrap();
        assert_eq!(
            query_object(Some("q=a+b%20c&x="), &s).unwrap(),
            json!({"q": "a b c", "x": ""})
        );
        let dup = query_object(Some("q=1&q=2"), &s).unwrap_err();
        assert_eq!(
            (dup.pointer.as_str(), dup.keyword.as_str()),
            ("/query/q", "duplicate")
        );
        let dup = query_object(Some("secret=1&secret=2"), &s).unwrap_err();
        assert_eq!(dup.pointer, "/query/*");
        for bad in ["q=%zz", "q=%2", "q=%ff", "%ff=1"] {
            assert_eq!(
                query_object(Some(bad), &s).unwrap_err().keyword,
                "encoding",
                "{bad}"
            );
        }
        assert_eq!(query_object(None, &s).unwrap(), json!({}));
    }

    #[test]
    fn groups_report_prefixed_pointers() {
        let s = compile_group(
            &json!({"properties": {"limit": {"pattern": "^[0-9]{1,3}$"}}, "additionalProperties": false}),
            "query",
            &[],
        )
        .unwrap();
        assert!(check(&s, &json!({"limit": "10"}), "query").is_empty());
        let v = check(&s, &json!({"limit": "1000"}), "query");
        assert_eq!(
            (v[0].pointer.as_str(), v[0].keyword.as_str()),
            ("/query/limit", "pattern")
        );
        let v = check(&s, &json!({"evil<x>": "1"}), "query");
        assert_eq!(
            (v[0].pointer.as_str(), v[0].keyword.as_str()),
            ("/query", "additionalProperties")
        );
    }

    #[test]
    fn configuration_checks_names() {
        let err = compile_group(&json!({"properties": {"nope": {}}}), "path", &["id".into()])
            .unwrap_err();
        assert!(err.contains("nope"));
        assert!(selected_headers(&json!({"properties": {"X-Key": {}}})).is_err());
        assert_eq!(
            selected_headers(&json!({"properties": {"a": {}}, "required": ["b", "a"]})).unwrap(),
            ["a", "b"]
        );
    }
}
