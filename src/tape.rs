//! A request body as a flat, borrowed "tape": one `Vec` of nodes in document order, strings
//! borrowed from the body (escaped strings decoded once into a side buffer), numbers as
//! `serde_json::Number` (exactly what a `serde_json::Value` of the body would hold). The JSON
//! Schema validator reads it through `jsonschema`'s custom-representation traits ([`TapeJson`]),
//! so judging a body builds no `serde_json::Value` (one allocation or three instead of one per
//! string, array and object).
//!
//! The tape is built by serde_json's own parser (a `DeserializeSeed`): same grammar, same
//! UTF-8 checks, same number conversions and the same recursion limit (128) as
//! [`crate::json::parse_strict`], and, like it, an object with a duplicate member name is an
//! error; by default ([`MemberNames::UniqueIgnoringCase`]) so is one whose names are equal under
//! Unicode case folding (`amount` / `AMOUNT`, `kind` / `\u212Aind`), which case-insensitive
//! binders (Go's `encoding/json`, Jackson, ASP.NET Core) read as one member. Layout: a container is followed by its content; an object's content is, per member,
//! a string node (the name) then the value's nodes. A container records its member or item
//! count and the index one past its last node, so a sibling is one step away.

use jsonschema::json::{cmp, Array, Json, Node, NodeIdentity, Object};
use jsonschema::JsonType;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;

/// One node of a [`Tape`].
#[derive(Debug, Clone, PartialEq)]
enum Slot<'a> {
    Null,
    Bool(bool),
    Number(Number),
    /// A string without escapes, borrowed from the body.
    Str(&'a str),
    /// A string that had escapes: decoded into [`Tape::escaped`] at `start..start + len`.
    Escaped {
        start: usize,
        len: usize,
    },
    Array {
        len: usize,
        end: usize,
    },
    Object {
        len: usize,
        end: usize,
    },
}

/// A parsed JSON document; see the module docs.
#[derive(Debug, Default)]
pub struct Tape<'a> {
    nodes: Vec<Slot<'a>>,
    escaped: String,
    names: MemberNames,
}

/// Which member names of one object count as the same name (`routes[].request.member_names`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberNames {
    /// Names equal after unescaping are duplicates (RFC 8259 §4's "should be unique").
    UniqueExact,
    /// Also names equal under case folding ([`fold`]): what a binder that matches member names
    /// case-insensitively reads as one. No Unicode normalisation: no JSON binder normalises
    /// names, so `caf\u00e9` and `cafe\u0301` are two names to every backend.
    #[default]
    UniqueIgnoringCase,
}

/// A character's case-folding key: its simple (one-character) upper-case mapping, then that
/// one's simple lower-case mapping. Two characters joined by an upper- or lower-case mapping
/// get the same key (checked over every code point in the tests), so the key covers Go's
/// `encoding/json` (simple folding orbits: `k`, `K`, U+212A Kelvin; `s`, `S`, U+017F long s),
/// .NET's `OrdinalIgnoreCase` (upper-case mapping: `ı` U+0131 and `i`) and Java's
/// `equalsIgnoreCase`. Multi-character mappings (`ß` -> `SS`) are no binder's member match and
/// are not applied.
pub fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    fn single(mut mapped: impl Iterator<Item = char>, c: char) -> char {
        match (mapped.next(), mapped.next()) {
            (Some(one), None) => one,
            _ => c,
        }
    }
    let upper = single(c.to_uppercase(), c);
    single(upper.to_lowercase(), upper)
}

/// A member name and whether it is all ASCII (checked once per name, not once per pair).
#[derive(Clone, Copy)]
struct Name<'n> {
    text: &'n str,
    ascii: bool,
}

impl<'n> Name<'n> {
    fn new(text: &'n str) -> Name<'n> {
        Name {
            text,
            ascii: text.is_ascii(),
        }
    }
}

/// Whether two member names are the same under `names`.
fn same_name(names: MemberNames, a: Name<'_>, b: Name<'_>) -> bool {
    match names {
        MemberNames::UniqueExact => a.text == b.text,
        MemberNames::UniqueIgnoringCase if a.ascii && b.ascii => {
            a.text.eq_ignore_ascii_case(b.text)
        }
        MemberNames::UniqueIgnoringCase => a.text.chars().map(fold).eq(b.text.chars().map(fold)),
    }
}

/// Above this many members, duplicate names are found by sorting instead of pairwise.
const PAIRWISE_MEMBERS: usize = 12;

impl<'a> Tape<'a> {
    /// Parses `bytes` as one JSON value, refusing duplicate member names at any depth (the same
    /// documents as [`crate::json::parse_strict`] accepts). The error never quotes the input.
    pub fn parse(bytes: &'a [u8]) -> Result<Tape<'a>, serde_json::Error> {
        Tape::parse_with(bytes, MemberNames::UniqueExact)
    }

    /// As [`Tape::parse`], with `names` saying which member names are duplicates.
    pub fn parse_with(bytes: &'a [u8], names: MemberNames) -> Result<Tape<'a>, serde_json::Error> {
        let mut tape = Tape {
            // About one node per 10 to 12 bytes of an ordinary document (names, short values);
            // capped, so that a large body does not reserve for a worst case it may not have.
            nodes: Vec::with_capacity((bytes.len() / 10).clamp(8, 2048)),
            escaped: String::new(),
            names,
        };
        // UTF-8 is checked once for the whole body (a word at a time over ASCII), so that the
        // parser can read it as `str`: from bytes, serde_json validates every string on its own,
        // which cost about a tenth of the parse of a 1 KB payment. The accepted documents are the
        // same: JSON text is UTF-8, and serde_json refuses non-ASCII bytes outside strings.
        let text = std::str::from_utf8(bytes)
            .map_err(|_| <serde_json::Error as serde::de::Error>::custom("invalid UTF-8"))?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        NodeSeed(&mut tape).deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(tape)
    }

    /// The root node (`null` for an empty tape, which [`Tape::parse`] never returns).
    pub fn root(&self) -> TapeNode<'_> {
        TapeNode {
            tape: self,
            index: 0,
        }
    }

    /// The document as a `serde_json::Value` (what [`crate::json::parse_strict`] returns).
    pub fn to_value(&self) -> Value {
        self.root().to_value().into_owned()
    }

    fn slot(&self, index: usize) -> &Slot<'a> {
        self.nodes.get(index).unwrap_or(&Slot::Null)
    }

    /// The index one past the last node of the subtree at `index`.
    fn end_of(&self, index: usize) -> usize {
        match self.slot(index) {
            Slot::Array { end, .. } | Slot::Object { end, .. } => *end,
            _ => index + 1,
        }
    }

    /// The text of a string node (`None`: not a string).
    fn text(&self, index: usize) -> Option<&str> {
        match self.slot(index) {
            Slot::Str(text) => Some(text),
            Slot::Escaped { start, len } => Some(self.escaped.get(*start..*start + *len)?),
            _ => None,
        }
    }

    fn push_str(&mut self, text: &str) {
        let start = self.escaped.len();
        self.escaped.push_str(text);
        self.nodes.push(Slot::Escaped {
            start,
            len: text.len(),
        });
    }

    /// Whether the object whose member names start at `first` (`len` members, content ending
    /// at `end`) names a member twice (under the tape's [`MemberNames`]).
    fn has_duplicate(&self, first: usize, len: usize) -> bool {
        let names = MemberIndexes {
            tape: self,
            next: first,
            left: len,
        };
        let mode = self.names;
        if len <= PAIRWISE_MEMBERS {
            let mut seen = [Name::new(""); PAIRWISE_MEMBERS];
            for (count, name) in names.enumerate() {
                let name = Name::new(self.text(name).unwrap_or(""));
                if seen
                    .get(..count)
                    .is_some_and(|s| s.iter().any(|earlier| same_name(mode, *earlier, name)))
                {
                    return true;
                }
                if let Some(slot) = seen.get_mut(count) {
                    *slot = name;
                }
            }
            false
        } else {
            let mut sorted: Vec<Name<'_>> = names
                .map(|i| Name::new(self.text(i).unwrap_or("")))
                .collect();
            match mode {
                MemberNames::UniqueExact => sorted.sort_unstable_by(|a, b| a.text.cmp(b.text)),
                // Sorted by folded characters, so that names equal under folding are adjacent
                // (bytes lowered for ASCII names: the same key, cheaper).
                MemberNames::UniqueIgnoringCase if sorted.iter().all(|n| n.ascii) => sorted
                    .sort_unstable_by(|a, b| {
                        let lower = u8::to_ascii_lowercase;
                        a.text
                            .bytes()
                            .map(|c| lower(&c))
                            .cmp(b.text.bytes().map(|c| lower(&c)))
                    }),
                MemberNames::UniqueIgnoringCase => sorted.sort_unstable_by(|a, b| {
                    a.text.chars().map(fold).cmp(b.text.chars().map(fold))
                }),
            }
            sorted.windows(2).any(|pair| match pair {
                [a, b] => same_name(mode, *a, *b),
                _ => false,
            })
        }
    }
}

/// The indexes of an object's member names.
struct MemberIndexes<'t, 'a> {
    tape: &'t Tape<'a>,
    next: usize,
    left: usize,
}

impl Iterator for MemberIndexes<'_, '_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name = self.next;
        self.next = self.tape.end_of(name + 1);
        Some(name)
    }
}

/// Parses one value onto the tape.
struct NodeSeed<'t, 'a>(&'t mut Tape<'a>);

/// Parses one member name onto the tape.
struct NameSeed<'t, 'a>(&'t mut Tape<'a>);

impl<'de, 't> DeserializeSeed<'de> for NodeSeed<'t, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 't> DeserializeSeed<'de> for NameSeed<'t, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(NodeSeed(self.0))
    }
}

impl<'de, 't> Visitor<'de> for NodeSeed<'t, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.nodes.push(Slot::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.nodes.push(Slot::Number(Number::from(v)));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.nodes.push(Slot::Number(Number::from(v)));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // As `parse_strict`: a non-finite number (which serde_json does not produce) is `null`.
        self.0
            .nodes
            .push(Number::from_f64(v).map_or(Slot::Null, Slot::Number));
        Ok(())
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.0.nodes.push(Slot::Str(v));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.nodes.push(Slot::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let tape = self.0;
        let index = tape.nodes.len();
        tape.nodes.push(Slot::Array { len: 0, end: 0 });
        let mut len = 0;
        while seq.next_element_seed(NodeSeed(tape))?.is_some() {
            len += 1;
        }
        let end = tape.nodes.len();
        if let Some(slot) = tape.nodes.get_mut(index) {
            *slot = Slot::Array { len, end };
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let tape = self.0;
        let index = tape.nodes.len();
        tape.nodes.push(Slot::Object { len: 0, end: 0 });
        let mut len = 0;
        while access.next_key_seed(NameSeed(tape))?.is_some() {
            access.next_value_seed(NodeSeed(tape))?;
            len += 1;
        }
        let end = tape.nodes.len();
        if let Some(slot) = tape.nodes.get_mut(index) {
            *slot = Slot::Object { len, end };
        }
        if len > 1 && tape.has_duplicate(index + 1, len) {
            // The name is not echoed: error messages may end up in logs.
            return Err(de::Error::custom("duplicate member name"));
        }
        Ok(())
    }
}

/// [`Tape`] as a `jsonschema` instance representation: build validators with
/// `jsonschema::options_for::<TapeJson>()` and validate [`Tape::root`].
pub struct TapeJson;

impl Json for TapeJson {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = Box<str>;
    /// A one-string tape (names under `propertyNames`).
    type StringBuffer = Tape<'static>;

    /// A lookup is a scan of the member names, so a members pass wins early.
    const KEYS_PER_LOOKUP: usize = 16;
    /// Nodes are indexes into one tape, built bottom-up by a parser: no node contains itself.
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>(
        buffer: &mut Tape<'static>,
        string: &str,
        f: impl FnOnce(TapeNode<'_>) -> T,
    ) -> T {
        buffer.nodes.clear();
        buffer.escaped.clear();
        buffer.push_str(string);
        f(buffer.root())
    }
}

/// A node of a [`Tape`]: the tape and an index into it.
#[derive(Clone, Copy)]
pub struct TapeNode<'a> {
    tape: &'a Tape<'a>,
    index: usize,
}

impl fmt::Debug for TapeNode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Kind only: a node may hold client data, and debug output may reach a log.
        write!(f, "TapeNode({}@{})", self.json_type(), self.index)
    }
}

/// An object node's members.
#[derive(Clone, Copy)]
pub struct TapeObject<'a> {
    tape: &'a Tape<'a>,
    first: usize,
    len: usize,
}

/// An array node's items.
#[derive(Clone, Copy)]
pub struct TapeArray<'a> {
    tape: &'a Tape<'a>,
    first: usize,
    len: usize,
}

impl<'a> TapeNode<'a> {
    fn slot(&self) -> &'a Slot<'a> {
        self.tape.slot(self.index)
    }
}

impl<'a> Node<'a, TapeJson> for TapeNode<'a> {
    type Object = TapeObject<'a>;
    type Array = TapeArray<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<TapeObject<'a>> {
        match self.slot() {
            Slot::Object { len, .. } => Some(TapeObject {
                tape: self.tape,
                first: self.index + 1,
                len: *len,
            }),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<TapeArray<'a>> {
        match self.slot() {
            Slot::Array { len, .. } => Some(TapeArray {
                tape: self.tape,
                first: self.index + 1,
                len: *len,
            }),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        self.tape.text(self.index).map(Cow::Borrowed)
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self.slot() {
            Slot::Number(number) => Some(number),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.slot() {
            Slot::Bool(value) => Some(*value),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.slot(), Slot::Null)
    }

    fn is_number(&self) -> bool {
        matches!(self.slot(), Slot::Number(_))
    }

    fn is_string(&self) -> bool {
        matches!(self.slot(), Slot::Str(_) | Slot::Escaped { .. })
    }

    fn json_type(&self) -> JsonType {
        match self.slot() {
            Slot::Null => JsonType::Null,
            Slot::Bool(_) => JsonType::Boolean,
            Slot::Number(_) => JsonType::Number,
            Slot::Str(_) | Slot::Escaped { .. } => JsonType::String,
            Slot::Array { .. } => JsonType::Array,
            Slot::Object { .. } => JsonType::Object,
        }
    }

    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        let text = self.tape.text(self.index)?;
        // A code point takes one to four bytes: the count lies in `ceil(bytes / 4)..=bytes`.
        let bytes = text.len() as u64;
        let fewest = bytes.div_ceil(4);
        if bytes < min || fewest > max {
            return Some(false);
        }
        if min <= fewest && bytes <= max {
            return Some(true);
        }
        Some((min..=max).contains(&(text.chars().count() as u64)))
    }

    fn equals_value(&self, expected: &Value) -> bool {
        match (self.slot(), expected) {
            (Slot::Null, _) => expected.is_null(),
            (Slot::Bool(value), _) => expected.as_bool() == Some(*value),
            (Slot::Str(_) | Slot::Escaped { .. }, _) => {
                expected.as_str().is_some() && expected.as_str() == self.tape.text(self.index)
            }
            (Slot::Number(number), Value::Number(other)) => cmp::equal_numbers(number, other),
            (Slot::Number(_), _) => false,
            (Slot::Array { .. }, Value::Array(_)) | (Slot::Object { .. }, Value::Object(_)) => {
                cmp::equal(&self.to_value(), expected)
            }
            _ => false,
        }
    }

    /// Cold paths only (error instances, `uniqueItems`, `const`/`enum` on containers). The
    /// recursion is bounded: the parser refused documents nested deeper than 128.
    fn to_value(&self) -> Cow<'a, Value> {
        let tape = self.tape;
        Cow::Owned(match self.slot() {
            Slot::Null => Value::Null,
            Slot::Bool(value) => Value::Bool(*value),
            Slot::Number(number) => Value::Number(number.clone()),
            Slot::Str(_) | Slot::Escaped { .. } => {
                Value::String(tape.text(self.index).unwrap_or("").to_owned())
            }
            Slot::Array { .. } => Value::Array(
                self.as_array()
                    .map(|items| {
                        items
                            .elements()
                            .map(|item| item.to_value().into_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Slot::Object { .. } => {
                let mut map = Map::new();
                if let Some(object) = self.as_object() {
                    for (name, value) in object.members() {
                        map.insert(name.to_owned(), value.to_value().into_owned());
                    }
                }
                Value::Object(map)
            }
        })
    }

    fn identity(&self) -> Option<NodeIdentity> {
        // The tape's address and the node's index: unique among live nodes, stable per node.
        Some(NodeIdentity::tagged(
            std::ptr::from_ref::<Tape<'a>>(self.tape) as usize,
            u32::try_from(self.index).ok()?,
        ))
    }
}

/// Iterates an object's members.
pub struct TapeMembers<'a> {
    tape: &'a Tape<'a>,
    next: usize,
    left: usize,
}

impl<'a> Iterator for TapeMembers<'a> {
    type Item = (&'a str, TapeNode<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name = self.next;
        let value = name + 1;
        self.next = self.tape.end_of(value);
        Some((
            self.tape.text(name).unwrap_or(""),
            TapeNode {
                tape: self.tape,
                index: value,
            },
        ))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a> Object<'a, TapeJson> for TapeObject<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = TapeMembers<'a>;

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, key: &Box<str>) -> Option<TapeNode<'a>> {
        let key: &str = key;
        self.members()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    fn members(&self) -> TapeMembers<'a> {
        TapeMembers {
            tape: self.tape,
            next: self.first,
            left: self.len,
        }
    }
}

/// Iterates an array's items.
pub struct TapeItems<'a> {
    tape: &'a Tape<'a>,
    next: usize,
    left: usize,
}

impl<'a> Iterator for TapeItems<'a> {
    type Item = TapeNode<'a>;
    fn next(&mut self) -> Option<TapeNode<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let index = self.next;
        self.next = self.tape.end_of(index);
        Some(TapeNode {
            tape: self.tape,
            index,
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a> Array<'a, TapeJson> for TapeArray<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = TapeItems<'a>;

    fn len(&self) -> usize {
        self.len
    }

    fn elements(&self) -> TapeItems<'a> {
        TapeItems {
            tape: self.tape,
            next: self.first,
            left: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_strict;
    use jsonschema::json::JsonNumber;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The tape accepts exactly what `parse_strict` accepts, and reads back as the same `Value`.
    fn same_as_strict(doc: &[u8]) {
        match (Tape::parse(doc), parse_strict(doc)) {
            (Ok(tape), Ok(value)) => assert_eq!(tape.to_value(), value, "{doc:?}"),
            (Err(_), Err(_)) => {}
            (tape, value) => panic!("{doc:?}: tape {tape:?}, strict {value:?}"),
        }
    }

    #[test]
    fn reads_back_what_parse_strict_reads() {
        for doc in [
            &br#"{"a":[1,2,{"b":null}],"c":"x","d":1.5,"e":-3,"f":true,"g":[],"h":{}}"#[..],
            br#"[[[]],[{}],{"a":{"b":[1,[2,[3]]]}},"z"]"#,
            br#"  "just a string"  "#,
            b"0",
            b"-0",
            b"null",
            br#"{"a":"esc\"aped\n\u00e9\ud83d\ude00","b\u0041":"plain","c":"\\"}"#,
            // Numbers: the conversions serde_json makes for a `Value`.
            br#"[18446744073709551615, 18446744073709551616, -9223372036854775808,
                -9223372036854775809, 1000.000000000000000001, 1e308, 1E-5, 0.1, 12345678901234567890123]"#,
            b"1e400",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"",
            b"[1] [2]",
            b"{\"a\":1} x",
            // Not UTF-8: in a string, in a name, outside strings; a lone surrogate escape.
            b"[\"\xff\"]",
            b"{\"\xc3\":1}",
            b"[1,\xff]",
            br#"["\ud800"]"#,
            b"\xef\xbb\xbf{}",
        ] {
            same_as_strict(doc);
        }
    }

    #[test]
    fn refuses_duplicate_names_at_any_depth_and_however_written() {
        for doc in [
            &br#"{"alg":"RS256","alg":"none"}"#[..],
            br#"{"a":[{"x":1,"x":2}]}"#,
            br#"{"a":{"b":{"c":{"k":1,"j":2,"k":3}}}}"#,
            br#"{"alg":1,"\u0061lg":2}"#,
            br#"{"\u0061":1,"\u0061":2}"#,
        ] {
            assert!(Tape::parse(doc).is_err(), "{doc:?}");
            assert!(parse_strict(doc).is_err());
        }
        assert!(Tape::parse(br#"{"a":{"x":1},"b":{"x":2},"x":[{"x":3}]}"#).is_ok());
        // Past the pairwise bound, names are sorted: the same answers.
        for n in [PAIRWISE_MEMBERS, PAIRWISE_MEMBERS + 1, 200] {
            let members: Vec<String> = (0..n)
                .map(|i| format!("\"m{i}\":{{\"v\":[{i}]}}"))
                .collect();
            let doc = format!("{{{}}}", members.join(","));
            assert!(Tape::parse(doc.as_bytes()).is_ok(), "{n}");
            let doc = format!("{{{},\"m{}\":0}}", members.join(","), n / 2);
            assert!(Tape::parse(doc.as_bytes()).is_err(), "{n}");
            same_as_strict(doc.as_bytes());
        }
    }

    #[test]
    fn refuses_names_equal_under_case_folding_unless_told_exact() {
        fn folded(doc: &[u8]) -> Result<Tape<'_>, serde_json::Error> {
            Tape::parse_with(doc, MemberNames::UniqueIgnoringCase)
        }
        for doc in [
            &br#"{"amount":1,"AMOUNT":5000}"#[..],
            br#"{"debtor_account":"A","DEBTOR_ACCOUNT":"B"}"#,
            br#"{"a":[{"x":1},{"Id":1,"iD":2}]}"#,
            br#"{"a":{"b":{"c":{"k":1,"j":2,"K":3}}}}"#,
            br#"{"amount":1,"\u0041MOUNT":2}"#,
            br#"{"kind":1,"\u212Aind":2}"#,
            "{\"KIND\":1,\"\u{212A}ind\":2}".as_bytes(),
            br#"{"status":1,"\u017Ftatus":2}"#,
            br#"{"iban":1,"\u0131ban":2}"#,
            br#"{"\u03a3":1,"\u03c2":2}"#,
            br#"{"\u00df":1,"\u1e9e":2}"#,
            br#"{"\u01c4":1,"\u01c5":2}"#,
        ] {
            assert!(folded(doc).is_err(), "{}", String::from_utf8_lossy(doc));
            assert!(Tape::parse(doc).is_ok(), "{doc:?}");
        }
        for doc in [
            &br#"{"amount":1,"amount_minor":2,"a":{"x":1},"b":{"X":2}}"#[..],
            br#"{"items":[{"id":1},{"ID":2}]}"#,
            // No normalisation: NFC and NFD, fullwidth, and `ss` vs sharp s stay distinct.
            br#"{"caf\u00e9":1,"cafe\u0301":2,"\uff41":3,"a":4,"strasse":5,"stra\u00dfe":6}"#,
        ] {
            let tape = folded(doc).unwrap();
            assert_eq!(tape.to_value(), parse_strict(doc).unwrap());
        }
        // Past the pairwise bound (sorted by folded names): the same answers.
        for n in [PAIRWISE_MEMBERS, PAIRWISE_MEMBERS + 1, 200] {
            let members: Vec<String> = (0..n).map(|i| format!("\"name_{i}\":{i}")).collect();
            let doc = format!("{{{}}}", members.join(","));
            assert!(folded(doc.as_bytes()).is_ok(), "{n}");
            for twin in [format!("NAME_{}", n / 2), format!("name_{}", n - 1)] {
                let doc = format!("{{{},\"{twin}\":0}}", members.join(","));
                assert!(folded(doc.as_bytes()).is_err(), "{n} {twin}");
            }
            let kelvin = format!("{{{},\"\\u212Aey\":0,\"KEY\":1}}", members.join(","));
            assert!(folded(kelvin.as_bytes()).is_err(), "{n}");
        }
    }

    #[test]
    fn the_folding_key_is_one_per_case_mapping_class() {
        // Every code point gets the key of its simple upper- and lower-case mappings, so the key
        // is constant on each class those mappings join (Go's folding orbits among them).
        let mut checked = 0u32;
        for c in (0u32..0x11_0000).filter_map(char::from_u32) {
            for mapped in [
                c.to_uppercase().collect::<Vec<_>>(),
                c.to_lowercase().collect(),
            ] {
                if let [one] = mapped[..] {
                    assert_eq!(
                        fold(c),
                        fold(one),
                        "U+{:04X} U+{:04X}",
                        c as u32,
                        one as u32
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 2_000_000);
        assert_eq!(fold('\u{212A}'), 'k');
        assert_eq!(fold('\u{17F}'), 's');
        assert_eq!(fold('\u{131}'), 'i');
        assert_eq!(fold('\u{1E9E}'), fold('\u{DF}'));
        assert_ne!(fold('\u{FF21}'), 'a');
    }

    #[test]
    fn escaped_strings_are_decoded_once_and_plain_ones_borrowed() {
        let body = br#"{"plain":"abc","esc\/aped":"line\nbreak","list":["\u00e9",""]}"#;
        let tape = Tape::parse(body).unwrap();
        let root = tape.root();
        let object = root.as_object().unwrap();
        let names: Vec<&str> = object.members().map(|(name, _)| name).collect();
        assert_eq!(names, ["plain", "esc/aped", "list"]);
        let plain = object.get(&"plain".into()).unwrap();
        assert!(matches!(plain.slot(), Slot::Str("abc")));
        let value = object.get(&"esc/aped".into()).unwrap();
        assert_eq!(value.as_string().as_deref(), Some("line\nbreak"));
        let list = object.get(&"list".into()).unwrap().as_array().unwrap();
        let items: Vec<String> = list
            .elements()
            .map(|item| item.as_string().unwrap().into_owned())
            .collect();
        assert_eq!(items, ["é", ""]);
        assert_eq!(tape.escaped, "esc/apedline\nbreaké");
        assert!(object.get(&"missing".into()).is_none());
        // Code points, not bytes.
        let e = list.elements().next().unwrap();
        assert_eq!(e.string_length(), Some(1));
        assert_eq!(e.string_length_within(1, 1), Some(true));
        assert_eq!(e.string_length_within(2, 9), Some(false));
    }

    #[test]
    fn numbers_keep_the_value_semantics() {
        let tape =
            Tape::parse(br#"[18446744073709551615, -9223372036854775808, 1.5, 1e2, 10]"#).unwrap();
        let items: Vec<TapeNode<'_>> = tape.root().as_array().unwrap().elements().collect();
        let number = |i: usize| items[i].as_number().unwrap();
        assert_eq!(number(0).as_u64(), Some(u64::MAX));
        assert_eq!(number(1).as_i64(), Some(i64::MIN));
        assert_eq!(number(2).as_f64(), Some(1.5));
        assert!(!number(2).is_integer() && number(3).is_integer() && number(4).is_integer());
        assert!(items[4].equals_value(&serde_json::json!(10.0)));
        assert!(!items[4].equals_value(&serde_json::json!("10")));
    }

    #[test]
    fn deep_nesting_is_an_error_not_an_overflow() {
        for open in ["[", "{\"a\":"] {
            let deep = open.repeat(100_000);
            assert!(Tape::parse(deep.as_bytes()).is_err());
        }
        // Within serde_json's limit (128), depth is fine and `to_value` recursion is bounded.
        let doc = format!("{}1{}", "[".repeat(120), "]".repeat(120));
        same_as_strict(doc.as_bytes());
    }

    #[test]
    fn identities_are_distinct_and_stable() {
        let tape = Tape::parse(br#"{"a":{"b":1},"c":[{"b":1}]}"#).unwrap();
        let root = tape.root();
        let a = root.as_object().unwrap().get(&"a".into()).unwrap();
        let again = root.as_object().unwrap().get(&"a".into()).unwrap();
        assert_eq!(a.identity(), again.identity());
        assert_ne!(a.identity(), root.identity());
        let unique = |doc: &[u8]| {
            Tape::parse(doc)
                .unwrap()
                .root()
                .as_array()
                .unwrap()
                .is_unique()
        };
        assert!(!unique(br#"[{"b":1},{"b":1.0}]"#));
        assert!(unique(br#"[{"b":1},{"b":2},"x"]"#));
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn meets_the_validators_accessor_contract() {
        let text = serde_json::to_vec(&jsonschema::json::conformance::document()).unwrap();
        let tape = Tape::parse(&text).unwrap();
        jsonschema::json::conformance::assert_conformance::<TapeJson>(&tape.root());
    }
}
