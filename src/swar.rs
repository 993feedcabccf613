//! Eight bytes at a time: byte classes of a `u64` word (SWAR), for the scanners that walk JSON
//! text (the redaction rewriter, the structure-limit scanner). Wasm has 64-bit integer
//! arithmetic but, without the SIMD proposal enabled for the whole module, no vector search:
//! these loops are what keep a scan from stepping byte by byte.
//!
//! Byte classes: each function sets the high bit of every byte of the result whose byte in `w`
//! is in the class, and nothing else. Exact per byte: no carry crosses a byte (every sum below
//! stays under 0x100 within its byte), so `trailing_zeros() / 8` is the first byte of a class.

/// Eight bytes of `bytes` from `at`, little-endian (byte `k` in bits `8k..8k+8`).
#[inline]
pub fn word(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// Bytes equal to zero.
#[inline]
fn zero(w: u64) -> u64 {
    !(((w & LOW7) + LOW7) | w | LOW7)
}

#[inline]
pub fn bytes_equal(w: u64, b: u8) -> u64 {
    zero(w ^ (ONES * u64::from(b)))
}

/// Bytes that end a run of plain string contents: `"`, `\` and controls (below 0x20).
#[inline]
pub fn stops(w: u64) -> u64 {
    let control = !(((w & LOW7) + ONES * 0x60) | w) & HIGH;
    bytes_equal(w, b'"') | bytes_equal(w, b'\\') | control
}

/// How many bytes a class mask marks (a multiply sums the bytes into the top one; no
/// popcount instruction needed natively).
#[inline]
pub fn count(mask: u64) -> usize {
    ((mask >> 7).wrapping_mul(ONES) >> 56) as usize
}

/// ASCII digits.
#[inline]
pub fn digits(w: u64) -> u64 {
    let low = w & LOW7;
    // High bit set: at least 0x30, at least 0x3a; `!w` drops bytes of 0x80 and above.
    let from_0 = low + ONES * (0x80 - 0x30);
    let past_9 = low + ONES * (0x80 - 0x3a);
    from_0 & !past_9 & !w & HIGH
}

/// Index of the first `"` or `\\` in `bytes` at or after `from`.
pub fn find_quote_or_backslash(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(w) = word(bytes, i) {
        let found = bytes_equal(w, b'"') | bytes_equal(w, b'\\');
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = bytes.get(i..)?;
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|k| i + k)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn finds_the_first_quote_or_backslash_at_every_offset() {
        for len in 0..20 {
            for at in 0..=len {
                for stop in [b'"', b'\\'] {
                    let mut bytes = vec![b'a'; len];
                    if at < len {
                        bytes[at] = stop;
                    }
                    // High bytes and near misses around it must not match.
                    for (k, b) in bytes.iter_mut().enumerate() {
                        if k != at && k % 3 == 0 {
                            *b = [0xa2, 0xdc, b'#', b']'][k % 4];
                        }
                    }
                    let expected = (at < len).then_some(at);
                    for from in 0..=at.min(len) {
                        assert_eq!(
                            find_quote_or_backslash(&bytes, from),
                            expected,
                            "{len} {at} {from}"
                        );
                    }
                }
            }
        }
        assert_eq!(find_quote_or_backslash(b"ab", 5), None);
    }
}
