//! The user documentation checked against the code, natively (no Envoy, no `FINGUARD_WASM`).
//!
//! - `docs/reasons.md` has exactly one row per [`Reason::ALL`] entry, with the reason's slug,
//!   status, `WWW-Authenticate` challenge and title.
//! - `docs/configuration.md` names exactly the configuration fields the parser accepts. The
//!   fields are not listed by hand: the test asks [`Config::compile`] for them. Every raw
//!   configuration struct refuses unknown fields, and serde's refusal lists the expected names
//!   ("unknown field `__probe`, expected one of ..."), so probing each position with an unknown
//!   member walks the whole tree of structs. Unknown enum variants list the accepted values the
//!   same way, and each must appear in its field's row.
//! - Every object key of the repository's example policies (`envoy/demo-config.json`, the
//!   finguard ones of `bench/configs/finguard/`, the e2e tests' `testkit::config::base()` and the
//!   README's policy) is such a field, or lies inside a field that holds free-form JSON (a JSON
//!   Schema, a JWKS, a claim-to-header map). The README's policy and the demo's compile.
//!
//! Not covered: the type and default columns, and the values of fields that are checked only
//! after parsing (e.g. the `action` strings of response rules).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use finguard::config::Config;
use finguard::reason::{Challenge, Reason};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cells of every table row whose first cell is a code span, e.g. "| `slug` | 401 | ...".
fn code_rows(markdown: &str) -> Vec<Vec<String>> {
    markdown
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect()
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

// ---- reasons ----------------------------------------------------------------------------------

fn challenge_text(challenge: Challenge) -> &'static str {
    match challenge {
        Challenge::None => "—",
        Challenge::Bare => "`Bearer realm=\"…\"`",
        Challenge::ApiKey => "`ApiKey realm=\"…\"`",
        Challenge::InvalidRequest => "`error=\"invalid_request\"`",
        Challenge::InvalidToken => "`error=\"invalid_token\"`",
        Challenge::InsufficientScope => "`error=\"insufficient_scope\"`",
        Challenge::InsufficientUserAuthentication => "`error=\"insufficient_user_authentication\"`",
    }
}

#[test]
fn reasons_doc_has_one_row_per_reason_matching_the_code() {
    let rows = code_rows(&read("docs/reasons.md"));
    let mut by_slug: BTreeMap<&str, &Vec<String>> = BTreeMap::new();
    for row in &rows {
        assert!(row.len() >= 4, "short row: {row:?}");
        let slug = unquote(&row[0]);
        assert!(by_slug.insert(slug, row).is_none(), "{slug} listed twice");
    }
    for reason in Reason::ALL {
        let slug = reason.slug();
        let row = by_slug
            .remove(slug)
            .unwrap_or_else(|| panic!("docs/reasons.md has no row for {slug}"));
        assert_eq!(row[1], reason.status().to_string(), "{slug}: status");
        assert_eq!(
            row[2],
            challenge_text(reason.challenge()),
            "{slug}: challenge"
        );
        assert_eq!(row[3], reason.title(), "{slug}: title");
    }
    assert!(
        by_slug.is_empty(),
        "rows for no reason: {:?}",
        by_slug.keys().collect::<Vec<_>>()
    );
}

// ---- configuration: what the parser accepts ---------------------------------------------------

const PROBE: &str = "__probe";

#[derive(Clone)]
enum Seg {
    Key(String),
    Index,
}

fn with(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut out = path.to_vec();
    out.push(seg);
    out
}

/// The path as configuration errors write it (`routes[0].auth`) or, with `index` "[]", as the
/// reference writes it (`routes[].auth`).
fn text(path: &[Seg], index: &str) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index => out.push_str(index),
        }
    }
    out
}

/// What the parser says about a position when handed `{"__probe": 1}` there.
enum Shape {
    /// A struct: its field names.
    Struct(Vec<String>),
    /// An enum: its variant names.
    Enum(Vec<String>),
    /// A list is expected.
    Sequence,
    /// A unit variant (a value, not a key).
    Unit,
    /// Anything else: a scalar, a map of the user's own keys, free-form JSON.
    Other,
}

/// The names in backquotes after the probe's own, in a serde "expected ..." message.
fn expected_names(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn shape(path: &[Seg]) -> Shape {
    let mut value = json!({ PROBE: 1 });
    for seg in path.iter().rev() {
        value = match seg {
            Seg::Key(k) => json!({ k.clone(): value }),
            Seg::Index => json!([value]),
        };
    }
    // `routes` is required: an empty list unless the probe is inside it.
    if let Value::Object(map) = &mut value {
        map.entry("routes").or_insert(json!([]));
    }
    let text_path = text(path, "[0]");
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    let Err(e) = Config::compile(&bytes) else {
        return Shape::Other;
    };
    let probe_path = if text_path.is_empty() {
        PROBE.to_string()
    } else {
        format!("{text_path}.{PROBE}")
    };
    if e.path != text_path && e.path != probe_path {
        return Shape::Other;
    }
    if e.message.starts_with(&format!("unknown field `{PROBE}`")) {
        Shape::Struct(expected_names(&e.message))
    } else if e.message.starts_with(&format!("unknown variant `{PROBE}`")) {
        Shape::Enum(expected_names(&e.message))
    } else if e.message.contains("expected a sequence") {
        Shape::Sequence
    } else if e.message.contains("expected unit") {
        Shape::Unit
    } else {
        Shape::Other
    }
}

#[derive(Default, Debug)]
struct Fields {
    /// Every field path a user can write, e.g. `routes[].auth.scopes.all`.
    keys: BTreeSet<String>,
    /// Fields that hold something other than a struct (their insides are not fields).
    leaves: BTreeSet<String>,
    /// Accepted enum values per field.
    values: BTreeMap<String, BTreeSet<String>>,
}

impl Fields {
    fn discover() -> Fields {
        let mut fields = Fields::default();
        match shape(&[]) {
            Shape::Struct(names) => fields.walk_struct(&[], names),
            _ => panic!("the top level did not list its fields"),
        }
        fields
    }

    fn walk_struct(&mut self, path: &[Seg], names: Vec<String>) {
        assert!(path.len() < 16, "runaway probe at {}", text(path, "[]"));
        for name in names {
            let field = with(path, Seg::Key(name));
            self.keys.insert(text(&field, "[]"));
            self.walk_value(&field);
        }
    }

    fn walk_value(&mut self, field: &[Seg]) {
        match shape(field) {
            Shape::Struct(names) => self.walk_struct(field, names),
            Shape::Enum(variants) => self.walk_enum(field, field, variants),
            Shape::Sequence => {
                let element = with(field, Seg::Index);
                match shape(&element) {
                    Shape::Struct(names) => self.walk_struct(&element, names),
                    Shape::Enum(variants) => self.walk_enum(field, &element, variants),
                    _ => {
                        self.leaves.insert(text(field, "[]"));
                    }
                }
            }
            Shape::Unit | Shape::Other => {
                self.leaves.insert(text(field, "[]"));
            }
        }
    }

    /// Unit variants are values of `field`; other variants are keys (`jwks.remote`).
    fn walk_enum(&mut self, field: &[Seg], at: &[Seg], variants: Vec<String>) {
        for variant in variants {
            let key = with(at, Seg::Key(variant.clone()));
            match shape(&key) {
                Shape::Unit => {
                    self.values
                        .entry(text(field, "[]"))
                        .or_default()
                        .insert(variant);
                }
                Shape::Struct(names) => {
                    self.keys.insert(text(&key, "[]"));
                    self.walk_struct(&key, names);
                }
                _ => {
                    self.keys.insert(text(&key, "[]"));
                    self.leaves.insert(text(&key, "[]"));
                }
            }
        }
    }

    /// Whether an example's key path is a field or lies inside a free-form field.
    fn covers(&self, key: &str) -> bool {
        self.keys.contains(key)
            || self.leaves.iter().any(|leaf| {
                key.strip_prefix(leaf.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"))
            })
    }
}

/// The reference's rows: field path (trailing `[]` dropped) → the row's text, and the aliases
/// stated as "same fields as `X`".
struct Reference {
    rows: BTreeMap<String, String>,
    aliases: Vec<(String, String)>,
}

fn normal(path: &str) -> String {
    path.trim_end_matches("[]").to_string()
}

impl Reference {
    fn load() -> Reference {
        let markdown = read("docs/configuration.md");
        let mut rows = BTreeMap::new();
        let mut aliases = Vec::new();
        for line in markdown.lines().filter(|l| l.starts_with("| `")) {
            let first = line.split('|').nth(1).unwrap_or_default().trim();
            let path = normal(unquote(first));
            if let Some((_, after)) = line.split_once("same fields as `") {
                let target = after.split('`').next().unwrap_or_default();
                aliases.push((path.clone(), normal(target)));
            }
            assert!(
                rows.insert(path.clone(), line.to_string()).is_none(),
                "{path} documented twice"
            );
        }
        Reference { rows, aliases }
    }

    /// The row documenting a field, directly or through an alias.
    fn row(&self, field: &str) -> Option<&String> {
        let field = normal(field);
        self.rows.get(&field).or_else(|| {
            self.aliases.iter().find_map(|(from, to)| {
                let rest = field.strip_prefix(from.as_str())?;
                (rest.starts_with('.') || rest.starts_with("[]"))
                    .then(|| self.rows.get(&normal(&format!("{to}{rest}"))))
                    .flatten()
            })
        })
    }
}

#[test]
fn configuration_doc_names_exactly_the_fields_the_parser_accepts() {
    let fields = Fields::discover();
    // The walk must have reached deep structs, or it proves nothing.
    for deep in [
        "providers[].jwks.remote.min_refetch_seconds",
        "routes[].auth.step_up.when.gt_by_currency",
        "response.detect[].unmask_scope",
        "routes[].request.limits.max_values",
    ] {
        assert!(fields.keys.contains(deep), "probe did not reach {deep}");
    }
    let reference = Reference::load();

    let undocumented: Vec<&String> = fields
        .keys
        .iter()
        .filter(|k| reference.row(k).is_none())
        .collect();
    assert!(
        undocumented.is_empty(),
        "fields missing from docs/configuration.md: {undocumented:?}"
    );

    let normal_keys: BTreeSet<String> = fields.keys.iter().map(|k| normal(k)).collect();
    let unknown: Vec<&String> = reference
        .rows
        .keys()
        .filter(|path| !normal_keys.contains(*path))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents fields the parser refuses: {unknown:?}"
    );

    for (field, values) in &fields.values {
        let row = reference
            .row(field)
            .unwrap_or_else(|| panic!("{field} undocumented"));
        for value in values {
            assert!(
                row.contains(&format!("\"{value}\"")) || row.contains(&format!("`{value}`")),
                "docs/configuration.md, {field}: value {value:?} not named"
            );
        }
    }
}

// ---- configuration: the example policies -------------------------------------------------------

fn key_paths(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.insert(p.clone());
                key_paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                key_paths(child, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first ```json block after the README's "A policy" heading.
fn readme_policy() -> Value {
    let readme = read("README.md");
    let (_, section) = readme
        .split_once("## A policy")
        .unwrap_or_else(|| panic!("README.md has no \"## A policy\" section"));
    let (_, block) = section
        .split_once("```json\n")
        .unwrap_or_else(|| panic!("README.md's policy is not a json block"));
    let (text, _) = block.split_once("```").unwrap_or_default();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("README.md's policy: {e}"))
}

/// The `bench/configs/finguard/` files given to scenarios that run another module than
/// `finguard.wasm` (the W baselines of `bench/baseline`): not finguard policies.
fn other_modules_configs() -> BTreeSet<String> {
    let scenarios = read("bench/scenarios.toml");
    scenarios
        .split("[[scenarios]]")
        .filter(|block| {
            block
                .lines()
                .any(|l| l.trim_start().starts_with("wasm =") && !l.contains("/finguard.wasm"))
        })
        .filter_map(|block| {
            let line = block
                .lines()
                .find(|l| l.trim_start().starts_with("finguard_config ="))?;
            Some(line.split('"').nth(1)?.to_string())
        })
        .collect()
}

#[test]
fn example_policies_use_documented_fields_only() {
    let mut examples: Vec<(String, Value)> = vec![
        (
            "envoy/demo-config.json".into(),
            json_file(&repo().join("envoy/demo-config.json")),
        ),
        ("testkit::config::base()".into(), testkit::config::base()),
        ("README.md".into(), readme_policy()),
    ];
    let bench = repo().join("bench/configs/finguard");
    let mut bench_files: Vec<PathBuf> = std::fs::read_dir(&bench)
        .unwrap_or_else(|e| panic!("{}: {e}", bench.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    let skipped = other_modules_configs();
    assert!(
        skipped.contains("w0.json"),
        "the W0 baseline was not recognised"
    );
    bench_files.retain(|p| {
        p.file_name()
            .is_some_and(|n| !skipped.contains(&n.to_string_lossy().into_owned()))
    });
    bench_files.sort();
    assert!(!bench_files.is_empty(), "no bench configurations found");
    for path in bench_files {
        let name = path.display().to_string();
        examples.push((name, json_file(&path)));
    }

    let fields = Fields::discover();
    for (name, policy) in &examples {
        let mut keys = BTreeSet::new();
        key_paths(policy, "", &mut keys);
        let strays: Vec<&String> = keys.iter().filter(|k| !fields.covers(k)).collect();
        assert!(
            strays.is_empty(),
            "{name}: keys that are no field: {strays:?}"
        );
    }

    for (name, policy) in [
        ("README.md", readme_policy()),
        (
            "envoy/demo-config.json",
            json_file(&repo().join("envoy/demo-config.json")),
        ),
    ] {
        let bytes = serde_json::to_vec(&policy).unwrap_or_default();
        if let Err(e) = Config::compile(&bytes) {
            panic!("{name} does not compile: {e}");
        }
    }
}
