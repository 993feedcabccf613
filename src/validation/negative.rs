//! The negative model: detectors for SQL injection, command injection and path traversal in
//! string values (body string values and query parameter values; member names are the
//! schema's business: `additionalProperties: false`). It runs after the positive model (the
//! schema), as a second net for free-text fields a schema cannot constrain.
//!
//! The rules look for the *structure* of an attack, not for words, so that names such as
//! "O'Brien", "Drop Shipping Ltd", "Marks & Spencer" or "Select Fund Services" pass. Matching
//! is case-insensitive. A value is flagged when it contains:
//!
//! - `sql-injection`: a quote closing a literal and then `OR`/`AND` with a comparison
//!   (`' or '1'='1`, `x' AND 1>0`); `OR|AND <n>=<n>`; `UNION [ALL|DISTINCT] SELECT`; a `;`
//!   followed by a statement keyword (`; DROP`, `; DELETE`, `; EXEC`, ...); a quote followed by
//!   a comment (`'--`, `'#`, `'/*`); time or file functions (`SLEEP(`, `BENCHMARK(`,
//!   `PG_SLEEP(`, `WAITFOR DELAY`, `LOAD_FILE(`, `INTO OUTFILE`); `xp_cmdshell`,
//!   `information_schema`.
//! - `command-injection`: a shell separator (`;`, `|`, `||`, `&&`, a newline, `` ` ``, `$(`)
//!   followed by a common command (`cat`, `ls`, `id`, `whoami`, `curl`, `wget`, `nc`, `sh`,
//!   `bash`, `rm`, `python`, `powershell`, `cmd`, ...); `${IFS}`; `/bin/sh`, `/bin/bash`;
//!   `cmd /c`. A single `&` is not a separator here (company names use it).
//! - `path-traversal`: a `..` path segment (`../`, `..\`, a trailing `/..`); `..` or `.` with
//!   encoded separators (`%2e%2e%2f`, `..%2f`, `%252e`, overlong `%c0%ae`); a NUL byte or
//!   `%00`; `/etc/passwd`, `/etc/shadow`, `C:\Windows\`.
//!
//! `mode: monitor` logs a match (the request is forwarded); `enforce` refuses it with 400
//! `input-suspicious`. The refusal names the pointer and the detector, never the value.

use crate::decision::Violation;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    SqlInjection,
    CommandInjection,
    PathTraversal,
}

impl Detector {
    pub fn keyword(self) -> &'static str {
        match self {
            Detector::SqlInjection => "sql-injection",
            Detector::CommandInjection => "command-injection",
            Detector::PathTraversal => "path-traversal",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Detector::SqlInjection => concat!(
                r"(?i)'\s*\)?\s*\b(?:or|and)\s+[\w'(]+\s*(?:=|<|>|\blike\b|\bis\b|\bin\s*\()",
                r"|\b(?:or|and)\s+\d+\s*=\s*\d+\b",
                r"|\bunion\s+(?:all\s+|distinct\s+)?select\b",
                r"|;\s*(?:drop|delete|insert|update|alter|create|truncate|exec|execute|shutdown|declare|grant)\b",
                r"|'\s*(?:--|#|/\*)",
                r"|\b(?:sleep|benchmark|pg_sleep|load_file)\s*\(|\bwaitfor\s+delay\b|\binto\s+(?:out|dump)file\b",
                r"|\bxp_cmdshell\b|\binformation_schema\b",
            ),
            Detector::CommandInjection => concat!(
                r"(?i)(?:;|\|\|?|&&|\n|`|\$\()\s*(?:cat|ls|id|whoami|uname|wget|curl|nc|ncat|netcat|bash|sh|zsh|python[23]?|perl|php|ruby|rm|chmod|chown|powershell|cmd|ping|nslookup|sleep|echo|env)\b",
                r"|\$\{IFS\}|/bin/(?:ba)?sh\b|\bcmd(?:\.exe)?\s+/c\b",
            ),
            Detector::PathTraversal => concat!(
                r"(?i)(?:^|[/\\])\.\.(?:[/\\]|$)",
                r"|(?:%2e|\.)(?:%2e|\.)(?:%2f|%5c)|%2e%2e[/\\]|%252e|%c0%ae|%c0%af|%00|\x00",
                r"|/etc/(?:passwd|shadow)\b|\b[a-z]:\\windows\\",
            ),
        }
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum NegativeMode {
    /// Log a match, forward the request.
    Monitor,
    /// Refuse a match with 400 `input-suspicious`.
    #[default]
    Enforce,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawNegative {
    #[serde(default)]
    mode: NegativeMode,
    detectors: Vec<Detector>,
}

#[derive(Debug)]
pub struct Negative {
    pub mode: NegativeMode,
    detectors: Vec<(Detector, Regex)>,
}

impl Negative {
    pub fn compile(raw: RawNegative) -> Result<Negative, String> {
        if raw.detectors.is_empty() {
            return Err("detectors: name at least one".into());
        }
        let mut detectors = Vec::with_capacity(raw.detectors.len());
        for detector in raw.detectors {
            if detectors.iter().any(|(d, _)| *d == detector) {
                return Err("detectors: listed twice".into());
            }
            let regex = Regex::new(detector.pattern()).map_err(|e| e.to_string())?;
            detectors.push((detector, regex));
        }
        Ok(Negative {
            mode: raw.mode,
            detectors,
        })
    }

    /// The first detector that matches `text`.
    pub fn check_text(&self, text: &str) -> Option<Detector> {
        self.detectors
            .iter()
            .find(|(_, regex)| regex.is_match(text))
            .map(|(d, _)| *d)
    }

    /// The first string value of `document` a detector matches, walked without recursion.
    /// `declared` says which member names may appear in the pointer (others become `*`).
    pub fn check_document(
        &self,
        document: &Value,
        declared: &dyn Fn(&str) -> bool,
    ) -> Option<Violation> {
        let mut stack: Vec<(&Value, String)> = vec![(document, String::new())];
        while let Some((value, pointer)) = stack.pop() {
            match value {
                Value::String(text) => {
                    if let Some(detector) = self.check_text(text) {
                        return Some(Violation {
                            pointer,
                            keyword: detector.keyword().into(),
                        });
                    }
                }
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push((item, format!("{pointer}/{i}")));
                    }
                }
                Value::Object(members) => {
                    for (name, item) in members.iter().rev() {
                        let segment = if declared(name) {
                            super::schema::escape(name)
                        } else {
                            "*".into()
                        };
                        stack.push((item, format!("{pointer}/{segment}")));
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn all() -> Negative {
        Negative::compile(RawNegative {
            mode: NegativeMode::Enforce,
            detectors: vec![
                Detector::SqlInjection,
                Detector::CommandInjection,
                Detector::PathTraversal,
            ],
        })
        .unwrap()
    }

    #[test]
    fn attacks_are_flagged_by_the_right_detector() {
        let n = all();
        let cases = [
            ("' OR '1'='1", Detector::SqlInjection),
            ("admin' --", Detector::SqlInjection),
            ("x' and 1>0", Detector::SqlInjection),
            ("1 OR 1=1", Detector::SqlInjection),
            (
                "a' UNION ALL SELECT card FROM cards",
                Detector::SqlInjection,
            ),
            ("1; DROP TABLE payments", Detector::SqlInjection),
            ("1) or sleep(5)", Detector::SqlInjection),
            ("'; exec xp_cmdshell 'dir'", Detector::SqlInjection),
            ("x | cat /etc/hosts", Detector::CommandInjection),
            ("a && whoami", Detector::CommandInjection),
            ("$(curl evil.example)", Detector::CommandInjection),
            ("`id`", Detector::CommandInjection),
            ("a${IFS}b", Detector::CommandInjection),
            ("../../etc/hosts", Detector::PathTraversal),
            ("..\\..\\boot.ini", Detector::PathTraversal),
            ("%2e%2e%2fsecret", Detector::PathTraversal),
            ("..%2f..%2f", Detector::PathTraversal),
            ("file.txt%00.pdf", Detector::PathTraversal),
            ("/etc/passwd", Detector::PathTraversal),
            ("C:\\Windows\\system32", Detector::PathTraversal),
        ];
        for (text, detector) in cases {
            assert_eq!(n.check_text(text), Some(detector), "{text}");
        }
    }

    #[test]
    fn ordinary_names_and_texts_pass() {
        let n = all();
        for text in [
            "O'Brien",
            "Drop Shipping Ltd",
            "Marks & Spencer",
            "Select Fund Services",
            "D'Angelo and Sons",
            "Invoice 2024-001; thanks",
            "Rock 'n' roll",
            "Union Bank of Switzerland",
            "Payment for order #1234 -- urgent",
            "Wait... is it paid?",
            "cat food supplies",
            "R&D department",
            "1.5 or 2 units",
            "Q3 update: deliver 10 or more",
            "v1.2/docs",
            "Ben & Jerry's",
            "it's 'or' else",
        ] {
            assert_eq!(n.check_text(text), None, "{text}");
        }
    }

    #[test]
    fn documents_are_walked_and_pointers_hide_undeclared_names() {
        let n = all();
        let doc = json!({"memo": "fine", "meta": {"x-note": ["ok", "1; DROP TABLE t"]}});
        let declared = |name: &str| matches!(name, "memo" | "meta");
        let v = n.check_document(&doc, &declared).unwrap();
        assert_eq!(
            (v.pointer.as_str(), v.keyword.as_str()),
            ("/meta/*/1", "sql-injection")
        );
        assert!(n
            .check_document(&json!({"a": ["b", 1, null]}), &declared)
            .is_none());
        let deep = (0..500).fold(json!("../x"), |v, _| json!([v]));
        assert!(n.check_document(&deep, &declared).is_some());
    }
}
