//! JSON Schema glue: compiles a schema once (configuration time) with the `jsonschema` crate and
//! turns its errors into [`Violation`]s a client may see.
//!
//! Compiling: draft 2020-12 unless `$schema` names draft-07; `format` is asserted, not only
//! annotated, and an unknown format refuses the configuration (a typo must not switch a check
//! off); finguard's fintech formats and the `decimal` keyword are registered (see `formats`).
//! Nothing is fetched: the crate is built without its HTTP and file resolvers, so a `$ref` to
//! another document refuses the configuration. `pattern` uses the linear-time `regex` engine.
//!
//! Reporting: a violation is a JSON pointer and the schema keyword, never the value and never
//! the crate's message (it quotes the value). Pointer segments that are member names the schema
//! does not declare (under `additionalProperties`, `patternProperties`, ...) are replaced by `*`,
//! so the problem body cannot carry client-chosen text.

use super::formats::{self, Decimal};
use crate::problem::{Violation, MAX_VIOLATIONS};
use jsonschema::json::{Array, Json, Node, Object, SerdeJson};
use jsonschema::{Draft, Keyword, ValidationError, Validator};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Which JSON Schema dialect a schema is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Draft202012,
    Draft7,
}

impl Dialect {
    /// The dialect a schema declares with `$schema` (2020-12 when absent); `Err` for any other.
    pub fn of(schema: &Value) -> Result<Dialect, String> {
        match schema.get("$schema").map(Value::as_str) {
            None => Ok(Dialect::Draft202012),
            Some(Some(uri)) => {
                let uri = uri.trim_end_matches('#');
                if uri == "https://json-schema.org/draft/2020-12/schema" {
                    Ok(Dialect::Draft202012)
                } else if uri == "http://json-schema.org/draft-07/schema" {
                    Ok(Dialect::Draft7)
                } else {
                    Err("$schema: only draft 2020-12 and draft-07 are supported".into())
                }
            }
            Some(None) => Err("$schema must be a string".into()),
        }
    }
}

/// A compiled schema and the member names it declares anywhere, for instances in the
/// representation `F` (see [`Schema`] and [`BodySchema`]).
pub struct CompiledSchema<F: Json> {
    validator: Validator<F>,
    declared: BTreeSet<String>,
}

/// A schema over `serde_json::Value` instances (parameters, tests).
pub type Schema = CompiledSchema<SerdeJson>;

/// A schema over request bodies parsed onto a [`crate::tape::Tape`]: judging a body builds no
/// `serde_json::Value`.
pub type BodySchema = CompiledSchema<crate::tape::TapeJson>;

impl<F: Json> std::fmt::Debug for CompiledSchema<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("declared", &self.declared)
            .finish_non_exhaustive()
    }
}

/// The `decimal` keyword, compiled.
struct DecimalKeyword(Decimal);

impl<'i, F: Json> Keyword<'i, F> for DecimalKeyword {
    fn validate(&self, instance: F::Node<'i>) -> Result<(), ValidationError<'i>> {
        if self.0.check_node::<F>(&instance) {
            Ok(())
        } else {
            Err(ValidationError::custom("decimal"))
        }
    }
    fn is_valid(&self, instance: F::Node<'i>) -> bool {
        self.0.check_node::<F>(&instance)
    }
}

impl<F: Json> CompiledSchema<F> {
    /// Compiles `schema` as `dialect`. The error is a message for the configuration path; it
    /// quotes the schema (configuration), never request data.
    pub fn compile(schema: &Value, dialect: Dialect) -> Result<CompiledSchema<F>, String> {
        let draft = match dialect {
            Dialect::Draft202012 => Draft::Draft202012,
            Dialect::Draft7 => Draft::Draft7,
        };
        let validator = jsonschema::options_for::<F>()
            .with_draft(draft)
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            // `pattern` runs on the `regex` crate's engine: linear time in the input, so a
            // client string cannot make a pattern backtrack for seconds (ReDoS). Patterns that
            // need lookaround or backreferences refuse the configuration instead.
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .with_format("iban", formats::iban)
            .with_format("bic", formats::bic)
            .with_format("iso4217", formats::iso4217)
            .with_format("decimal-amount", formats::decimal_amount)
            .with_format("e164", formats::e164)
            .with_keyword("decimal", |_, value, _| {
                let rule = Decimal::parse(value).ok_or_else(|| {
                    ValidationError::schema(
                        "decimal: {\"precision\": 1..38, \"scale\": 0..precision}",
                    )
                })?;
                Ok(Box::new(DecimalKeyword(rule)) as Box<dyn for<'i> Keyword<'i, F>>)
            })
            .build(schema)
            .map_err(|e| e.to_string())?;
        let mut declared = BTreeSet::new();
        collect_declared(schema, &mut declared);
        Ok(CompiledSchema {
            validator,
            declared,
        })
    }

    /// Whether `instance` matches (fast path: no error is built).
    pub fn is_valid(&self, instance: F::Node<'_>) -> bool {
        self.validator.is_valid(instance)
    }

    /// The violations of `instance` (empty: valid), at most [`MAX_VIOLATIONS`], deduplicated.
    /// `prefix` is prepended to every pointer (parameters: `/query`, `/headers`, `/path`).
    pub fn violations<'i>(&'i self, instance: F::Node<'i>, prefix: &str) -> Vec<Violation> {
        let mut out: Vec<Violation> = Vec::new();
        for error in self.validator.iter_errors(instance.clone()) {
            let mut pointer = String::from(prefix);
            pointer.push_str(&self.safe_pointer(instance.clone(), error.instance_path().as_str()));
            let keyword = error.kind().keyword();
            if let jsonschema::error::ValidationErrorKind::Required { property } = error.kind() {
                // The missing member's name comes from the schema: point at it.
                if let Some(name) = property.as_str().filter(|n| self.declared.contains(*n)) {
                    pointer.push('/');
                    pointer.push_str(&escape(name));
                }
            }
            let violation = Violation {
                pointer,
                keyword: keyword.to_string(),
            };
            if !out.contains(&violation) {
                out.push(violation);
            }
            if out.len() >= MAX_VIOLATIONS {
                break;
            }
        }
        out
    }

    /// Rewrites an instance path so that it names only array indexes and declared members.
    /// The instance is walked to tell an index from a member whose name is digits.
    pub fn safe_pointer(&self, instance: F::Node<'_>, path: &str) -> String {
        let mut out = String::new();
        let mut current = Some(instance);
        for raw in path.split('/').skip(1) {
            let name = raw.replace("~1", "/").replace("~0", "~");
            out.push('/');
            let (array, object) = match &current {
                Some(node) => (node.as_array(), node.as_object()),
                None => (None, None),
            };
            if let Some(items) = array {
                let item = name
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.elements().nth(i));
                if item.is_some() {
                    out.push_str(&name);
                } else {
                    out.push('*');
                }
                current = item;
            } else if let Some(members) = object {
                current = members.get(&F::prepare_key(&name));
                if self.declared.contains(&name) {
                    out.push_str(&escape(&name));
                } else {
                    out.push('*');
                }
            } else {
                out.push('*');
                current = None;
            }
        }
        out
    }

    /// Whether the schema declares this member name somewhere.
    pub fn declares(&self, name: &str) -> bool {
        self.declared.contains(name)
    }
}

/// RFC 6901 escaping of one reference token.
pub fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Member names the schema declares: keys of `properties`, `dependentRequired`,
/// `dependentSchemas`, `dependencies`, and names listed in `required`, at any depth. Walked
/// with an explicit stack (the schema is configuration, but it is no reason to recurse).
fn collect_declared(schema: &Value, declared: &mut BTreeSet<String>) {
    let mut stack = vec![schema];
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(map) => {
                declare_names(map, declared);
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}

fn declare_names(map: &Map<String, Value>, declared: &mut BTreeSet<String>) {
    for keyword in [
        "properties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
    ] {
        if let Some(Value::Object(members)) = map.get(keyword) {
            declared.extend(members.keys().cloned());
        }
    }
    if let Some(Value::Array(names)) = map.get("required") {
        declared.extend(names.iter().filter_map(Value::as_str).map(str::to_owned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn payment() -> Schema {
        Schema::compile(
            &json!({
                "type": "object",
                "required": ["amount", "currency", "creditor"],
                "additionalProperties": false,
                "properties": {
                    "amount": {"type": "string", "format": "decimal-amount"},
                    "currency": {"type": "string", "format": "iso4217"},
                    "creditor": {
                        "type": "object", "required": ["iban"],
                        "properties": {"iban": {"type": "string", "format": "iban"}},
                        "additionalProperties": {"type": "string", "maxLength": 3}
                    },
                    "lines": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
                    "tags": {"type": "object", "patternProperties": {"^t": {"type": "integer"}}}
                }
            }),
            Dialect::Draft202012,
        )
        .unwrap()
    }

    fn found(schema: &Schema, doc: Value) -> Vec<(String, String)> {
        schema
            .violations(&doc, "")
            .into_iter()
            .map(|v| (v.pointer, v.keyword))
            .collect()
    }

    #[test]
    fn valid_payment_passes() {
        let s = payment();
        let doc = json!({"amount": "10.50", "currency": "EUR", "creditor": {"iban": "DE89370400440532013000"}});
        assert!(s.is_valid(&doc));
        assert!(s.violations(&doc, "").is_empty());
    }

    #[test]
    fn violations_name_pointer_and_keyword_never_the_value() {
        let s = payment();
        let v = found(
            &s,
            json!({"amount": 10, "currency": "EURO", "creditor": {"iban": "DE00370400440532013000"}}),
        );
        assert!(v.contains(&("/amount".into(), "type".into())), "{v:?}");
        assert!(v.contains(&("/currency".into(), "format".into())), "{v:?}");
        assert!(
            v.contains(&("/creditor/iban".into(), "format".into())),
            "{v:?}"
        );
        let v = found(&s, json!({"amount": "10.005", "currency": "EUR"}));
        assert!(v.contains(&("/amount".into(), "format".into())), "{v:?}");
        assert!(
            v.contains(&("/creditor".into(), "required".into())),
            "{v:?}"
        );
    }

    #[test]
    fn undeclared_member_names_never_reach_the_pointer() {
        let s = payment();
        let doc = json!({"amount": "1", "currency": "EUR", "creditor": {"iban": "DE89370400440532013000", "<script>": "long"},
            "is_admin": true, "lines": [{"n": "x"}], "tags": {"t<b>": "x"}});
        let v = found(&s, doc);
        assert!(
            v.contains(&("".into(), "additionalProperties".into())),
            "{v:?}"
        );
        assert!(
            v.contains(&("/creditor/*".into(), "maxLength".into())),
            "{v:?}"
        );
        assert!(v.contains(&("/lines/0/n".into(), "type".into())), "{v:?}");
        assert!(v.contains(&("/tags/*".into(), "type".into())), "{v:?}");
        let text = format!("{v:?}");
        assert!(!text.contains("script") && !text.contains("is_admin") && !text.contains("t<b>"));
        // A member whose name is digits is a member, not an index.
        let s = Schema::compile(
            &json!({"additionalProperties": {"type": "integer"}}),
            Dialect::Draft7,
        )
        .unwrap();
        assert_eq!(
            found(&s, json!({"12345": "x"})),
            [("/*".into(), "type".into())]
        );
    }

    #[test]
    fn decimal_keyword_and_dialects() {
        let s = Schema::compile(
            &json!({"decimal": {"precision": 10, "scale": 2}}),
            Dialect::Draft202012,
        )
        .unwrap();
        assert!(s.is_valid(&json!(10.25)) && s.is_valid(&json!("10.25")));
        assert_eq!(found(&s, json!(10.255)), [("".into(), "decimal".into())]);
        assert!(
            Schema::compile(&json!({"decimal": {"precision": 0}}), Dialect::Draft202012).is_err()
        );
        assert_eq!(Dialect::of(&json!({})), Ok(Dialect::Draft202012));
        assert_eq!(
            Dialect::of(&json!({"$schema": "http://json-schema.org/draft-07/schema#"})),
            Ok(Dialect::Draft7)
        );
        assert!(
            Dialect::of(&json!({"$schema": "http://json-schema.org/draft-04/schema#"})).is_err()
        );
    }

    #[test]
    fn formats_assert_and_unknown_formats_or_remote_refs_refuse_the_schema() {
        let s = Schema::compile(&json!({"format": "date"}), Dialect::Draft202012).unwrap();
        assert!(!s.is_valid(&json!("2024-02-30")) && s.is_valid(&json!("2024-02-29")));
        let s = Schema::compile(&json!({"format": "uuid"}), Dialect::Draft202012).unwrap();
        assert!(!s.is_valid(&json!("not-a-uuid")));
        assert!(Schema::compile(&json!({"format": "ibna"}), Dialect::Draft202012).is_err());
        assert!(Schema::compile(
            &json!({"$ref": "https://example.com/s.json"}),
            Dialect::Draft202012
        )
        .is_err());
        assert!(Schema::compile(&json!({"type": 12}), Dialect::Draft202012).is_err());
        // Backtracking constructs are refused; catastrophic-looking patterns run in linear time.
        assert!(Schema::compile(&json!({"pattern": "^(?=a)a$"}), Dialect::Draft202012).is_err());
        let s = Schema::compile(&json!({"pattern": "^(a+)+$"}), Dialect::Draft202012).unwrap();
        let hostile = format!("{}!", "a".repeat(50_000));
        assert!(!s.is_valid(&json!(hostile)));
    }
}
