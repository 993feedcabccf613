//! The JSON Schema Test Suite (draft 2020-12 and draft-07) through finguard's own schema entry
//! points (`validation::schema::Schema::compile`, `is_valid`, `violations`): the same options
//! the configuration compiles route schemas with (formats asserted, unknown formats refused,
//! fintech formats, nothing fetched). Native only, no Envoy needed.
//!
//! The suite lives beside the repository (`../shared/conformance/json-schema-test-suite`). Each
//! test case counts once; a group whose schema does not compile fails all its cases. The test
//! prints the counts per draft and per part (required, optional, optional/format) and the failing
//! files, and fails if a count drops below the floor measured when this file was written.
//!
//! Known failures (by design, see docs/validation.md): `refRemote` and other remote
//! references (nothing is fetched: the crate is built without resolvers), unknown formats and
//! keywords that the suite expects to be ignored (finguard refuses an unknown `format` so a
//! typo cannot switch a check off), and format cases where finguard is stricter or laxer than
//! the optional suite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use finguard::tape::Tape;
use finguard::validation::schema::{BodySchema, Dialect, Schema};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn suite() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance/json-schema-test-suite/tests"
    ))
}

#[derive(Default, Debug, Clone, Copy)]
struct Count {
    passed: usize,
    total: usize,
    /// Cases where the body path (the instance on a `Tape`, a `BodySchema`) answered
    /// differently from the `Value` path.
    tape_differs: usize,
}

/// Runs every file under `dir` (not recursing into `optional` unless `dir` is it), returning
/// the count and the failures per file.
fn run_dir(dir: &Path, dialect: Dialect, failures: &mut BTreeMap<String, usize>) -> Count {
    let mut count = Count::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        let groups: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let name = file.strip_prefix(suite()).unwrap().display().to_string();
        for group in groups.as_array().unwrap() {
            let cases = group["tests"].as_array().unwrap();
            let compiled = Schema::compile(&group["schema"], dialect);
            let body_compiled = BodySchema::compile(&group["schema"], dialect);
            for case in cases {
                count.total += 1;
                let expected = case["valid"].as_bool().unwrap();
                let ok = match &compiled {
                    Ok(schema) => {
                        let valid = schema.is_valid(&case["data"]);
                        // The two entry points agree: no violations exactly when valid.
                        let listed = schema.violations(&case["data"], "").is_empty();
                        valid == expected && listed == valid
                    }
                    Err(_) => false,
                };
                // The same case as a request body: serialized, parsed onto a tape, validated
                // with the body schema (the path `judge_body` takes).
                let text = serde_json::to_vec(&case["data"]).unwrap();
                let tape_ok = match (&body_compiled, Tape::parse(&text)) {
                    (Ok(schema), Ok(tape)) => {
                        let valid = schema.is_valid(tape.root());
                        let listed = schema.violations(tape.root(), "").is_empty();
                        valid == expected && listed == valid
                    }
                    _ => false,
                };
                if tape_ok != ok {
                    count.tape_differs += 1;
                    println!("  tape differs: {name}: {}", case["description"]);
                }
                if ok {
                    count.passed += 1;
                } else {
                    *failures.entry(name.clone()).or_default() += 1;
                }
            }
        }
    }
    count
}

#[test]
fn json_schema_test_suite_pass_counts_do_not_drop() {
    let root = suite();
    if !root.is_dir() {
        panic!(
            "the JSON Schema Test Suite is missing at {} (../shared/conformance)",
            root.display()
        );
    }
    // (draft, part, floor): the pass counts measured with jsonschema 0.61.
    let parts: [(&str, Dialect, &str, usize); 6] = [
        ("draft2020-12", Dialect::Draft202012, "", FLOOR[0]),
        ("draft2020-12", Dialect::Draft202012, "optional", FLOOR[1]),
        (
            "draft2020-12",
            Dialect::Draft202012,
            "optional/format",
            FLOOR[2],
        ),
        ("draft7", Dialect::Draft7, "", FLOOR[3]),
        ("draft7", Dialect::Draft7, "optional", FLOOR[4]),
        ("draft7", Dialect::Draft7, "optional/format", FLOOR[5]),
    ];
    let mut dropped = Vec::new();
    for (draft, dialect, part, floor) in parts {
        let dir = root.join(draft).join(part);
        let mut failures = BTreeMap::new();
        let count = run_dir(&dir, dialect, &mut failures);
        println!(
            "{draft} {}: {}/{} passed (floor {floor}), tape path differs on {}",
            if part.is_empty() { "required" } else { part },
            count.passed,
            count.total,
            count.tape_differs
        );
        for (file, failed) in &failures {
            println!("  failing: {file}: {failed}");
        }
        if count.passed < floor {
            dropped.push(format!("{draft}/{part}: {} < {floor}", count.passed));
        }
        if count.tape_differs > 0 {
            dropped.push(format!(
                "{draft}/{part}: tape path differs on {}",
                count.tape_differs
            ));
        }
    }
    assert!(dropped.is_empty(), "pass counts dropped: {dropped:?}");
}

/// Measured pass counts (see the module docs); raise them when finguard gets better.
const FLOOR: [usize; 6] = [1223, 161, 649, 892, 116, 562];
