//! A header map as Envoy hands it over: every header of a request or response in one buffer,
//! read without an allocation per header.
//!
//! Envoy serialises a map (proxy-wasm ABI `proxy_get_header_map_pairs`) as: the pair count (u32
//! LE), a (name size, value size) u32 LE pair per header, then each name and each value followed
//! by a NUL. [`HeaderMap::from_serialized`] keeps that buffer (the size table cut off) and
//! remembers where each name and value sits. Reading the map this way instead of as a vector of
//! owned strings saves two allocations per header on every request.
//!
//! HTTP allows header values that are not UTF-8 (obs-text). Such values are kept lossily
//! (U+FFFD): they can never be a valid token, key or identifier, so nothing that decides is
//! affected, and no header can make reading the map fail. Names are tokens (Envoy enforces it).

use std::ops::Range;

#[derive(Debug, Clone, Default)]
pub struct HeaderMap {
    text: String,
    /// (name, value) byte ranges in `text`, in the order Envoy gave them.
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderMap {
    /// From (name, value) pairs (tests, and maps built by hand).
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> HeaderMap {
        let mut map = HeaderMap::default();
        for (name, value) in pairs {
            map.push(name.as_ref(), value.as_ref());
        }
        map
    }

    fn push(&mut self, name: &str, value: &str) {
        let name_start = self.text.len();
        self.text.push_str(name);
        let value_start = self.text.len();
        self.text.push_str(value);
        self.spans
            .push((name_start..value_start, value_start..self.text.len()));
    }

    /// Parses the host's serialisation; `None` if it is malformed (sizes that overrun the
    /// buffer, a missing NUL).
    pub fn from_serialized(mut bytes: Vec<u8>) -> Option<HeaderMap> {
        if bytes.is_empty() {
            return Some(HeaderMap::default());
        }
        let word = |at: usize| -> Option<usize> {
            let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(raw)).ok()
        };
        let count = word(0)?;
        let table_end = count.checked_mul(8)?.checked_add(4)?;
        if table_end > bytes.len() {
            return None;
        }
        // Spans relative to the end of the size table (which is cut off below).
        let mut spans = Vec::with_capacity(count);
        let mut at = 0usize;
        for i in 0..count {
            let name_len = word(4 + i * 8)?;
            let value_len = word(8 + i * 8)?;
            let name_end = at.checked_add(name_len)?;
            let value_start = name_end.checked_add(1)?;
            let value_end = value_start.checked_add(value_len)?;
            let name_nul = table_end.checked_add(name_end)?;
            let value_nul = table_end.checked_add(value_end)?;
            if bytes.get(name_nul) != Some(&0) || bytes.get(value_nul) != Some(&0) {
                return None;
            }
            spans.push((at..name_end, value_start..value_end));
            at = value_end.checked_add(1)?;
        }
        bytes.drain(..table_end);
        match String::from_utf8(bytes) {
            Ok(text) => Some(HeaderMap { text, spans }),
            Err(not_utf8) => {
                let bytes = not_utf8.into_bytes();
                let mut map = HeaderMap::default();
                for (name, value) in &spans {
                    let text = |range: &Range<usize>| {
                        String::from_utf8_lossy(bytes.get(range.clone()).unwrap_or_default())
                    };
                    map.push(&text(name), &text(value));
                }
                Some(map)
            }
        }
    }

    /// Every (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|(name, value)| {
            (
                self.text.get(name.clone()).unwrap_or_default(),
                self.text.get(value.clone()).unwrap_or_default(),
            )
        })
    }

    /// The first value of `name` (lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    /// Every value of `name`, in order (a header may repeat).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|(n, _)| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The host's serialisation of `pairs`.
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            out.extend((name.len() as u32).to_le_bytes());
            out.extend((value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend(*name);
            out.push(0);
            out.extend(*value);
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_the_hosts_serialisation() {
        // A long value, so that the size table holds bytes that are not UTF-8 (0xA8).
        let token = "a".repeat(680);
        let bytes = serialize(&[
            (b":path", b"/v1/a"),
            (b"authorization", token.as_bytes()),
            (b"cookie", b"a=1"),
            (b"cookie", b""),
        ]);
        let map = HeaderMap::from_serialized(bytes).unwrap();
        assert_eq!(map.get(":path"), Some("/v1/a"));
        assert_eq!(map.get("authorization"), Some(token.as_str()));
        assert_eq!(map.all("cookie").collect::<Vec<_>>(), ["a=1", ""]);
        assert!(map.contains("cookie") && !map.contains("host"));
        assert_eq!(map.iter().count(), 4);
        assert_eq!(
            HeaderMap::from_serialized(Vec::new())
                .unwrap()
                .iter()
                .count(),
            0
        );
    }

    #[test]
    fn keeps_values_that_are_not_utf8_lossily() {
        let bytes = serialize(&[(b"x-name", b"caf\xe9"), (b":method", b"GET")]);
        let map = HeaderMap::from_serialized(bytes).unwrap();
        assert_eq!(map.get("x-name"), Some("caf\u{fffd}"));
        assert_eq!(map.get(":method"), Some("GET"));
    }

    #[test]
    fn refuses_malformed_maps() {
        let good = serialize(&[(b"a", b"bc")]);
        for cut in 1..good.len() {
            assert!(
                HeaderMap::from_serialized(good[..cut].to_vec()).is_none(),
                "cut {cut}"
            );
        }
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert!(HeaderMap::from_serialized(no_nul).is_none());
        // A count or sizes that would overflow.
        let mut huge = good;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::from_serialized(huge).is_none());
        let sizes = [
            1u32.to_le_bytes(),
            u32::MAX.to_le_bytes(),
            u32::MAX.to_le_bytes(),
        ]
        .concat();
        assert!(HeaderMap::from_serialized(sizes).is_none());
    }
}
