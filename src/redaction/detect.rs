//! Detectors: where card numbers, IBANs and e-mail addresses sit inside a string.
//!
//! Each detector returns byte ranges of the text it recognises. They normalise the spellings a
//! backend really writes (grouping characters, digit forms, encoded `@`), and stay strict about
//! validity (length, Luhn, mod-97), so that ordinary identifiers are left alone:
//! - a card number (PAN) is 13–19 digits, optionally grouped: between two digit groups a run of
//!   one to [`MAX_SEPARATORS`] grouping characters, mixed freely ([`separator_at`]: spaces of
//!   every kind, tab, no-break and narrow no-break space, thin and figure space, `-`, hyphens,
//!   en and em dash, minus sign, `.`, `_`, `/`, zero-width space, word joiner, soft hyphen);
//!   digits are ASCII, full-width (U+FF10–FF19), Arabic-Indic (U+0660–0669) or Extended
//!   Arabic-Indic (U+06F0–06F9) ([`digit_at`]), mixed freely; every group has at least
//!   [`MIN_GROUP`] digits (so dates, times and amounts are never joined). Within a maximal run of
//!   grouped digits, a card number is the longest run of whole groups, from the first group on
//!   (else from the next), that has 13–19 digits and passes the Luhn check (`4111 1111 1111 1111 2029` holds one; so does
//!   `4111111111111111.00`); an ungrouped run of more than 19 digits (an order id) holds none;
//! - a card number sent as a JSON number ([`number_pan`]): the number's value (sign dropped,
//!   fraction and exponent applied) is an integer of 13–19 digits that passes the Luhn check
//!   (`4111111111111111.0`, `4.111111111111111e15`, `-4111111111111111`); a value with a
//!   fraction left (`12345.67`) or too few digits (`1e3`) is not one;
//! - an IBAN is a country code, two check digits and up to 30 letters or digits, optionally in
//!   groups separated as card numbers are (`DE89 3704…`, `DE89-3704…`, `DE89.3704…`), 15–34
//!   characters, that passes the ISO 13616 mod-97 check;
//! - an e-mail address is `local@domain` with a dotted domain whose last label is alphabetic, or
//!   an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`); the local part may be quoted
//!   (`"jane doe"@…`); the `@` may be written `%40` (a URL) or `&#64;` / `&#x40;` (HTML).

use std::ops::Range;

/// Which detector found a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pan,
    Iban,
    Email,
}

/// Card numbers have 13 to 19 digits (ISO/IEC 7812).
const PAN_DIGITS: Range<usize> = 13..20;

/// Every group of a grouped card number has at least this many digits (card numbers are
/// printed 4-4-4-4(-3), 4-6-5 or 4-6-4).
pub const MIN_GROUP: usize = 3;

/// At most this many grouping characters between two groups of a card number or an IBAN
/// (`4111 - 1111` has three).
pub const MAX_SEPARATORS: usize = 3;

/// Luhn (mod 10) check over ASCII digits.
pub fn luhn_valid(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0') % 10);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// The digit at byte `i` of `bytes` (UTF-8) and its length in bytes: ASCII, full-width
/// (U+FF10–FF19), Arabic-Indic (U+0660–0669) or Extended Arabic-Indic (U+06F0–06F9). A lead
/// byte is never a continuation byte, so a match is always at a character boundary.
#[inline]
pub fn digit_at(bytes: &[u8], i: usize) -> Option<(u8, usize)> {
    match *bytes.get(i)? {
        d @ b'0'..=b'9' => Some((d - b'0', 1)),
        0xEF => match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(0xBC), Some(&c @ 0x90..=0x99)) => Some((c - 0x90, 3)),
            _ => None,
        },
        0xD9 => match bytes.get(i + 1) {
            Some(&c @ 0xA0..=0xA9) => Some((c - 0xA0, 2)),
            _ => None,
        },
        0xDB => match bytes.get(i + 1) {
            Some(&c @ 0xB0..=0xB9) => Some((c - 0xB0, 2)),
            _ => None,
        },
        _ => None,
    }
}

/// The value of a digit character as [`digit_at`] folds it.
pub fn digit_value(c: char) -> Option<u8> {
    let mut buf = [0u8; 4];
    let encoded = c.encode_utf8(&mut buf);
    digit_at(encoded.as_bytes(), 0).map(|(d, _)| d)
}

/// The grouping character at byte `i` of `bytes`, by its length in bytes: space, tab, `-`, `.`,
/// `_`, `/`, no-break space (U+00A0), soft hyphen (U+00AD), the spaces U+2000–200A, zero-width
/// space and joiners (U+200B–200D), hyphens and dashes U+2010–2015, narrow no-break space
/// (U+202F), word joiner (U+2060), minus sign (U+2212), ideographic space (U+3000), zero-width
/// no-break space (U+FEFF), full-width hyphen-minus (U+FF0D).
#[inline]
pub fn separator_at(bytes: &[u8], i: usize) -> Option<usize> {
    let next = |k: usize| bytes.get(i + k).copied();
    match *bytes.get(i)? {
        b' ' | b'\t' | b'-' | b'.' | b'_' | b'/' => Some(1),
        0xC2 => matches!(next(1), Some(0xA0 | 0xAD)).then_some(2),
        0xE2 => match (next(1), next(2)) {
            (Some(0x80), Some(0x80..=0x8D | 0x90..=0x95 | 0xAF)) => Some(3),
            (Some(0x81), Some(0xA0)) | (Some(0x88), Some(0x92)) => Some(3),
            _ => None,
        },
        0xE3 => (next(1) == Some(0x80) && next(2) == Some(0x80)).then_some(3),
        0xEF => matches!(
            (next(1), next(2)),
            (Some(0xBB), Some(0xBF)) | (Some(0xBC), Some(0x8D))
        )
        .then_some(3),
        _ => None,
    }
}

/// From a separator at `i`: where the digit after a run of at most [`MAX_SEPARATORS`]
/// grouping characters starts, if one does.
#[inline]
fn after_separators(bytes: &[u8], mut i: usize, is_next: impl Fn(usize) -> bool) -> Option<usize> {
    for _ in 0..MAX_SEPARATORS {
        i += separator_at(bytes, i)?;
        if is_next(i) {
            return Some(i);
        }
    }
    None
}

/// Luhn sums over digits added left to right: `sums[0]` doubles the digits at even positions
/// (from the left), `sums[1]` those at odd ones; which applies depends on the final length.
#[derive(Default, Clone, Copy)]
struct Luhn {
    sums: [u32; 2],
    n: usize,
}

impl Luhn {
    #[inline]
    fn push(&mut self, d: u8) {
        let d = u32::from(d);
        let doubled = if d * 2 > 9 { d * 2 - 9 } else { d * 2 };
        let k = self.n % 2;
        self.sums[k] += doubled;
        self.sums[1 - k] += d;
        self.n += 1;
    }

    /// The rightmost digit is never doubled: the doubled ones have the other parity.
    fn valid(&self) -> bool {
        let last = (self.n + 1) % 2;
        self.sums[1 - last].is_multiple_of(10)
    }
}

/// Card numbers in `text`: see the module docs.
pub fn find_pans(text: &str, out: &mut Vec<(Range<usize>, Kind)>) {
    let bytes = text.as_bytes();
    let is_digit = |i: usize| digit_at(bytes, i).is_some();
    let mut i = 0;
    while i < bytes.len() {
        if !is_digit(i) {
            i += 1;
            continue;
        }
        // `i` starts a group; the longest window of whole groups from here with 13–19 digits
        // that passes the check, else the same from the next group.
        let mut luhn = Luhn::default();
        let mut p = i;
        let mut found: Option<usize> = None;
        let mut next_group: Option<usize> = None;
        loop {
            let group_start = luhn.n;
            while let Some((d, len)) = digit_at(bytes, p) {
                luhn.push(d);
                p += len;
                if luhn.n >= PAN_DIGITS.end {
                    break;
                }
            }
            if luhn.n >= PAN_DIGITS.end {
                break;
            }
            // No group of a grouped card number is shorter than three digits: dates
            // (`2024-01-15/2024-12-31`), times and amounts (`55746000161.08`) are never
            // joined into one.
            let short = luhn.n - group_start < MIN_GROUP;
            if PAN_DIGITS.contains(&luhn.n) && luhn.valid() && (!short || group_start == 0) {
                found = Some(p);
            }
            match after_separators(bytes, p, is_digit) {
                Some(start) => {
                    next_group.get_or_insert(start);
                    if short {
                        break;
                    }
                    p = start;
                }
                None => break,
            }
        }
        match found {
            Some(end) => {
                out.push((i..end, Kind::Pan));
                i = end;
            }
            None => match next_group {
                Some(start) => i = start,
                None => {
                    // The whole run is looked at: skip its digits (a longer run is no card
                    // number, nor is any part of it).
                    while let Some((_, len)) = digit_at(bytes, i) {
                        i += len;
                    }
                }
            },
        }
    }
}

/// The ASCII digits of the integer a JSON number token holds, when that integer is a card
/// number (13–19 digits, Luhn-valid): the sign is dropped, fraction and exponent applied;
/// a value with a fraction left is none. `raw` is a valid JSON number.
pub fn number_pan(raw: &[u8]) -> Option<([u8; 19], usize)> {
    let unsigned = raw.strip_prefix(b"-").unwrap_or(raw);
    let (mantissa, exponent) = match unsigned.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => {
            let exp = unsigned.get(at + 1..)?;
            let (negative, digits) = match exp.split_first() {
                Some((b'-', rest)) => (true, rest),
                Some((b'+', rest)) => (false, rest),
                _ => (false, exp),
            };
            let first = digits
                .iter()
                .position(|&b| b != b'0')
                .unwrap_or(digits.len());
            let significant = digits.get(first..)?;
            if significant.len() > 4 {
                return None;
            }
            let value = significant
                .iter()
                .fold(0i64, |v, &b| v * 10 + i64::from(b - b'0'));
            (unsigned.get(..at)?, if negative { -value } else { value })
        }
        None => (unsigned, 0),
    };
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (mantissa.get(..at)?, mantissa.get(at + 1..)?),
        None => (mantissa, &[][..]),
    };
    // The value is digits(int ++ frac) * 10^(exponent - frac.len()); trailing zeros of the
    // fraction change nothing.
    let frac = frac.get(..frac.iter().rposition(|&b| b != b'0').map_or(0, |p| p + 1))?;
    let shift = exponent - frac.len() as i64;
    // The digits without leading zeros, at most 64 (more is no card number).
    let mut digits = [0u8; 64];
    let mut len = 0;
    for &d in int.iter().chain(frac) {
        if len == 0 && d == b'0' {
            continue;
        }
        *digits.get_mut(len)? = d;
        len += 1;
    }
    let n = len as i64 + shift;
    if !(13..=19).contains(&n) {
        return None;
    }
    let n = n as usize;
    let mut out = [b'0'; 19];
    // A negative shift drops digits, which must be zeros (else a fraction is left); a positive
    // one appends zeros (already in `out`).
    if digits.get(n.min(len)..len)?.iter().any(|&d| d != b'0') {
        return None;
    }
    let kept = n.min(len);
    out.get_mut(..kept)?.copy_from_slice(digits.get(..kept)?);
    luhn_valid(out.get(..n)?.iter().copied()).then_some((out, n))
}

/// ISO 13616 check (letters in either case): length 15 to 34, mod 97-10 equal to 1.
pub fn iban_valid(compact: &[u8]) -> bool {
    (15..=34).contains(&compact.len()) && crate::validation::formats::iban_mod97(compact) == Some(1)
}

/// IBANs in `text`, compact (`DE89370400440532013000`) or in groups (`DE89 3704 ...`,
/// `DE89-3704-...`, `DE89.3704...`: the grouping characters of card numbers).
pub fn find_ibans(text: &str, out: &mut Vec<(Range<usize>, Kind)>) {
    let bytes = text.as_bytes();
    // The candidate's letters and digits, and the byte offset after each counted from the
    // candidate's start (at most 34 characters and 33 runs of grouping characters: fits a
    // u16). On the stack, and small: this runs for many strings of every response.
    let mut compact = [0u8; 34];
    let mut ends = [0u16; 34];
    let alnum = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_alphanumeric);
    let mut i = 0;
    while i + 4 <= bytes.len() {
        // Candidates start at a word start: the loop visits word starts only.
        if !bytes[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let starts_here = bytes[i].is_ascii_alphabetic()
            && bytes[i + 1].is_ascii_alphabetic()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit();
        if starts_here {
            let mut len = 0;
            let mut j = i;
            while j < bytes.len() && len < 34 {
                let b = bytes[j];
                if b.is_ascii_alphanumeric() {
                    compact[len] = b;
                    ends[len] = (j + 1 - i) as u16;
                    len += 1;
                    j += 1;
                } else if let Some(next) = after_separators(bytes, j, alnum) {
                    j = next;
                } else {
                    break;
                }
            }
            // The longest prefix ending at a boundary that passes the check.
            let found = (15..=len).rev().find(|&n| {
                let end = i + usize::from(ends[n - 1]);
                let at_boundary = bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
                at_boundary && iban_valid(&compact[..n])
            });
            if let Some(n) = found {
                let end = i + usize::from(ends[n - 1]);
                out.push((i..end, Kind::Iban));
                i = end;
                continue;
            }
        }
        // Skip the rest of this word.
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
    }
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-!#$&'*/=?^`{|}~".contains(&b)
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// Whether an `@` may be spelled at this byte: `@`, or the first byte of `%40` or `&#64;`.
#[inline]
pub fn may_spell_at(b: u8) -> bool {
    matches!(b, b'@' | b'%' | b'&')
}

/// The length of the `@` spelled at byte `i`: `@`, `%40` (a URL), `&#64;` or `&#x40;` (HTML).
fn at_sign_at(bytes: &[u8], i: usize) -> Option<usize> {
    let rest = bytes.get(i..)?;
    let starts = |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
    match rest.first()? {
        b'@' => Some(1),
        b'%' if starts(b"%40") => Some(3),
        b'&' if starts(b"&#64;") => Some(5),
        b'&' if starts(b"&#x40;") => Some(6),
        _ => None,
    }
}

/// The last `@` (in any spelling [`find_emails`] reads) of an address it found: the domain
/// holds none.
pub fn last_at_sign(address: &str) -> Option<Range<usize>> {
    let bytes = address.as_bytes();
    (0..bytes.len())
        .rev()
        .find_map(|i| at_sign_at(bytes, i).map(|len| i..i + len))
}

/// The start of a quoted local part (`"jane doe"`) ending just before `at`, if there is one:
/// printable ASCII inside, `\` escaping the next character, at most 64 bytes.
fn quoted_local_start(bytes: &[u8], at: usize) -> Option<usize> {
    let close = at.checked_sub(1)?;
    if bytes.get(close) != Some(&b'"') {
        return None;
    }
    let from = close.saturating_sub(65);
    let open = (from..close)
        .rev()
        .find(|&k| bytes[k] == b'"' && (k == 0 || bytes[k - 1] != b'\\'))?;
    let inside = bytes.get(open + 1..close)?;
    (!inside.is_empty() && inside.iter().all(|b| (0x20..0x7f).contains(b))).then_some(open)
}

/// The end of an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) starting at `i`.
fn literal_domain_end(bytes: &[u8], i: usize) -> Option<usize> {
    if bytes.get(i) != Some(&b'[') {
        return None;
    }
    let close = (i + 1..bytes.len().min(i + 64)).find(|&k| bytes[k] == b']')?;
    let inside = bytes.get(i + 1..close)?;
    let body = match inside.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case(b"IPv6:") => &inside[5..],
        _ => inside,
    };
    let ok = !body.is_empty()
        && body
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b".:".contains(b))
        && body.iter().any(|b| b".:".contains(b));
    ok.then_some(close + 1)
}

/// E-mail addresses in `text`.
pub fn find_emails(text: &str, out: &mut Vec<(Range<usize>, Kind)>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| may_spell_at(b)))
    {
        let at = from + offset;
        from = at + 1;
        let Some(at_len) = at_sign_at(bytes, at) else {
            continue;
        };
        let start = match quoted_local_start(bytes, at) {
            Some(open) => open,
            None => {
                let mut start = at;
                while start > 0 && is_local_char(bytes[start - 1]) {
                    start -= 1;
                }
                // A local part does not start with a dot.
                while start < at && bytes[start] == b'.' {
                    start += 1;
                }
                start
            }
        };
        if start == at {
            continue;
        }
        let domain_start = at + at_len;
        if let Some(end) = literal_domain_end(bytes, domain_start) {
            out.push((start..end, Kind::Email));
            from = end;
            continue;
        }
        let mut end = domain_start;
        while end < bytes.len() && is_domain_char(bytes[end]) {
            end += 1;
        }
        // Trailing dots and dashes belong to the sentence, not the address.
        while end > domain_start && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if end <= domain_start {
            continue;
        }
        let domain = &text[domain_start..end];
        let labels_ok = domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
        let tld_ok = domain
            .rsplit_once('.')
            .is_some_and(|(_, tld)| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
        if labels_ok && tld_ok {
            out.push((start..end, Kind::Email));
            from = end;
        }
    }
}

/// The matches of the enabled detectors in `text`, sorted, without overlaps (the earlier match
/// wins; card numbers are looked for first). The caller enables only detectors that can match
/// (see `rewrite`: digit and `@` counts taken while scanning).
pub fn find_all(text: &str, pan: bool, iban: bool, email: bool) -> Vec<(Range<usize>, Kind)> {
    let mut found = Vec::new();
    find_all_into(text, pan, iban, email, &mut found);
    found
}

/// [`find_all`] into a cleared `found` (the rewriter reuses one vector for every string).
pub fn find_all_into(
    text: &str,
    pan: bool,
    iban: bool,
    email: bool,
    found: &mut Vec<(Range<usize>, Kind)>,
) {
    found.clear();
    if pan {
        find_pans(text, found);
    }
    if iban {
        find_ibans(text, found);
    }
    if email {
        find_emails(text, found);
    }
    if found.len() > 1 {
        found.sort_unstable_by_key(|(r, _)| (r.start, r.end));
        // Drop overlaps in place: the earlier match wins.
        let mut kept = 0;
        for i in 0..found.len() {
            let overlaps = kept > 0
                && found
                    .get(i)
                    .zip(found.get(kept - 1))
                    .is_some_and(|(m, last)| m.0.start < last.0.end);
            if !overlaps {
                found.swap(kept, i);
                kept += 1;
            }
        }
        found.truncate(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn spans(text: &str) -> Vec<&str> {
        find_all(text, true, true, true)
            .into_iter()
            .map(|(r, _)| &text[r])
            .collect()
    }

    #[test]
    fn card_numbers_only_when_luhn_valid_and_13_to_19_digits() {
        assert_eq!(spans("4111111111111111"), ["4111111111111111"]);
        assert_eq!(
            spans("card 4111 1111 1111 1111 ok"),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(spans("x4111-1111-1111-1111."), ["4111-1111-1111-1111"]);
        // Amex (15) and a 19-digit PAN.
        assert_eq!(spans("378282246310005"), ["378282246310005"]);
        assert_eq!(spans("6011000990139424"), ["6011000990139424"]);
        // Luhn-invalid: an order id.
        assert!(spans("4111111111111112").is_empty());
        // Too long (20 digits) even though a 16-digit prefix is valid; too short.
        assert!(spans("41111111111111110000").is_empty());
        assert!(spans("411111111111").is_empty());
        // Grouping characters mix; a date or a phone number has too few digits.
        assert_eq!(spans("4111 1111-1111 1111"), ["4111 1111-1111 1111"]);
        assert!(spans("2024-01-15").is_empty());
        assert!(spans("+44 20 7946 0958").is_empty());
        // More than three grouping characters, or others (`,`, `:`), separate numbers.
        assert!(spans("4111    1111 1111 1111").is_empty());
        assert!(spans("4111,1111,1111,1111").is_empty());
        assert!(spans("4111:1111:1111:1111").is_empty());
    }

    #[test]
    fn card_numbers_in_every_spelling() {
        for text in [
            "4111 1111-1111 1111",
            "4111-1111 1111-1111",
            "4111.1111.1111.1111",
            "4111_1111_1111_1111",
            "4111/1111/1111/1111",
            "4111\t1111\t1111\t1111",
            "4111  1111  1111  1111",
            "4111 - 1111 - 1111 - 1111",
            "4111\u{a0}1111\u{a0}1111\u{a0}1111",
            "4111\u{202f}1111\u{202f}1111\u{202f}1111",
            "4111\u{2009}1111\u{2009}1111\u{2009}1111",
            "4111\u{2013}1111\u{2013}1111\u{2013}1111",
            "4111\u{2014}1111\u{2014}1111\u{2014}1111",
            "4111\u{200b}1111\u{200b}1111\u{200b}1111",
            "4111\u{ad}1111\u{ad}1111\u{ad}1111",
            "\u{ff14}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}1111 1111",
            "\u{664}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}",
            "\u{6f4}\u{6f1}\u{6f1}\u{6f1}-1111-1111-1111",
        ] {
            assert_eq!(spans(text), [text], "{text:?}");
        }
        // Groups after the number (an expiry), a fraction, a date before it.
        assert_eq!(
            spans("card 4111 1111 1111 1111 2029"),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(spans("4111111111111111.00"), ["4111111111111111"]);
        assert_eq!(spans("4111111111111111.50"), ["4111111111111111"]);
        assert_eq!(spans("2024-01-15 4111111111111111"), ["4111111111111111"]);
        // A separator run at either end is not part of the number.
        assert_eq!(spans("-4111111111111111-"), ["4111111111111111"]);
    }

    #[test]
    fn json_numbers_holding_card_numbers() {
        let pan = |raw: &str| {
            number_pan(raw.as_bytes()).map(|(d, n)| String::from_utf8(d[..n].to_vec()).unwrap())
        };
        for raw in [
            "4111111111111111",
            "4111111111111111.0",
            "4111111111111111.000",
            "4.111111111111111e15",
            "4.111111111111111E+15",
            "0.4111111111111111e16",
            "41111111111111110e-1",
            "411111111111111100000E-5",
            "-4111111111111111",
            "-4.111111111111111e15",
            "4111111111111111e0",
            "4.111111111111111e015",
        ] {
            assert_eq!(pan(raw).as_deref(), Some("4111111111111111"), "{raw}");
        }
        assert_eq!(
            pan("3.78282246310005e14").as_deref(),
            Some("378282246310005")
        );
        for raw in [
            "12345.67",
            "1e3",
            "4111111111111112",
            "4111111111111111.5",
            "4.1111111111111115e15",
            "4111111111111111e3",
            "0",
            "-0.0",
            "1e99999999",
            "4.111111111111111e-15",
            "0.0000000000000000000000000000000000000000000000000000000000000000000001",
        ] {
            assert_eq!(pan(raw), None, "{raw}");
        }
    }

    #[test]
    fn ibans_need_a_valid_checksum() {
        assert_eq!(spans("DE89370400440532013000"), ["DE89370400440532013000"]);
        assert_eq!(
            spans("pay to GB82 WEST 1234 5698 7654 32 today"),
            ["GB82 WEST 1234 5698 7654 32"]
        );
        assert_eq!(spans("de89370400440532013000"), ["de89370400440532013000"]);
        assert!(spans("DE89370400440532013001").is_empty());
        assert!(spans("XDE89370400440532013000").is_empty());
        for text in [
            "DE89-3704-0044-0532-0130-00",
            "DE89.3704.0044.0532.0130.00",
            "DE89_3704_0044_0532_0130_00",
            "DE89 - 3704 - 0044 - 0532 - 0130 - 00",
            "DE89\u{a0}3704\u{a0}0044\u{a0}0532\u{a0}0130\u{a0}00",
            "GB82-WEST-1234-5698-7654-32",
        ] {
            assert_eq!(spans(text), [text], "{text:?}");
        }
        assert_eq!(
            spans("to DE89-3704-0044-0532-0130-00."),
            ["DE89-3704-0044-0532-0130-00"]
        );
    }

    #[test]
    fn email_addresses() {
        assert_eq!(
            spans("mail jane.doe+x@bank.example.com."),
            ["jane.doe+x@bank.example.com"]
        );
        assert!(spans("user@localhost").is_empty());
        assert!(spans("@example.com").is_empty());
        assert!(spans("a@b.c1").is_empty());
        assert_eq!(spans("a@b.de,c@d.fr"), ["a@b.de", "c@d.fr"]);
    }

    #[test]
    fn email_addresses_in_every_spelling() {
        for (text, address) in [
            ("\"jane doe\"@bank.example", "\"jane doe\"@bank.example"),
            ("to \"j\\\"d\"@bank.example.", "\"j\\\"d\"@bank.example"),
            ("jane@[192.0.2.17]", "jane@[192.0.2.17]"),
            ("jane@[IPv6:2001:db8::1]!", "jane@[IPv6:2001:db8::1]"),
            (
                "?email=jane.doe%40bank.example&x=1",
                "?email=jane.doe%40bank.example",
            ),
            ("jane%40bank.example", "jane%40bank.example"),
            ("mailto:jane&#64;bank.example\">", "jane&#64;bank.example"),
            ("jane&#x40;bank.example", "jane&#x40;bank.example"),
            ("jane&#X40;bank.example", "jane&#X40;bank.example"),
        ] {
            assert_eq!(spans(text), [address], "{text:?}");
            assert!(last_at_sign(address).is_some(), "{address}");
        }
        for text in [
            "50%40 off",
            "AT&T and Marks & Spencer",
            "100%25",
            "jane@[not an ip]",
            "\"\"@bank.example",
            "jane&#65;bank.example",
        ] {
            assert!(spans(text).is_empty(), "{text:?}");
        }
        assert_eq!(last_at_sign("\"a@b\"@c.de"), Some(5..6));
        assert_eq!(last_at_sign("a%40c.de"), Some(1..4));
    }
}

/// Property tests: every spelling of a card number is found whole, and ordinary amounts,
/// dates and ids never are.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const PANS: [&str; 5] = [
        "4111111111111111",
        "5500000000000004",
        "378282246310005",
        "6011000990139424",
        "4222222222222",
    ];
    const SEPARATORS: [&str; 22] = [
        " ", "\t", "-", ".", "_", "/", "\u{a0}", "\u{ad}", "\u{2002}", "\u{2007}", "\u{2009}",
        "\u{200a}", "\u{200b}", "\u{2010}", "\u{2011}", "\u{2013}", "\u{2014}", "\u{202f}",
        "\u{2060}", "\u{2212}", "\u{3000}", "\u{ff0d}",
    ];

    fn spell_digit(d: u8, set: u8) -> char {
        let base = match set {
            0 => 0x30,
            1 => 0xff10,
            2 => 0x660,
            _ => 0x6f0,
        };
        char::from_u32(base + u32::from(d - b'0')).unwrap_or('?')
    }

    /// A spelling of `pan`: groups of 3–6 digits (the last one takes what is left, at least 3), each digit in one of the folded sets, runs of
    /// 1–3 grouping characters between groups.
    fn spelling() -> impl Strategy<Value = (usize, String)> {
        (
            0..PANS.len(),
            prop::collection::vec(
                (3usize..7, prop::collection::vec(0..SEPARATORS.len(), 1..4)),
                19,
            ),
            prop::collection::vec(0u8..4, 19),
            any::<bool>(),
        )
            .prop_map(|(which, groups, sets, one_set)| {
                let pan = PANS[which].as_bytes();
                let mut text = String::new();
                let mut k = 0;
                let mut g = 0;
                while k < pan.len() {
                    let (size, seps) = &groups[g];
                    let left = pan.len() - k;
                    let size = if left < size + MIN_GROUP { left } else { *size };
                    for _ in 0..size {
                        if k == pan.len() {
                            break;
                        }
                        let set = if one_set { sets[0] } else { sets[k] };
                        text.push(spell_digit(pan[k], set));
                        k += 1;
                    }
                    if k < pan.len() {
                        for &s in seps {
                            text.push_str(SEPARATORS[s]);
                        }
                    }
                    g += 1;
                }
                (which, text)
            })
    }

    fn folded_digits(text: &str) -> String {
        text.chars()
            .filter_map(digit_value)
            .map(|d| char::from(b'0' + d))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn every_spelling_of_a_card_number_is_found_whole(
            (which, pan) in spelling(), before in "[a-z :,]{0,8}", after in "[a-z :,]{0,8}",
        ) {
            let text = format!("{before}{pan}{after}");
            let found = find_all(&text, true, false, false);
            prop_assert_eq!(found.len(), 1, "{:?}", text);
            let (range, kind) = &found[0];
            prop_assert_eq!(*kind, Kind::Pan);
            prop_assert_eq!(&text[range.clone()], pan.as_str());
            prop_assert_eq!(folded_digits(&text[range.clone()]), PANS[which]);
        }

        #[test]
        fn every_json_number_form_of_a_card_number_is_found(
            which in 0..PANS.len(), point in 0usize..20, zeros in 0usize..4, upper in any::<bool>(),
            plus in any::<bool>(), negative in any::<bool>(),
        ) {
            // digits with the point moved `point` places left and the exponent making up for it.
            let pan = PANS[which];
            let point = point.min(pan.len() - 1);
            let (int, frac) = pan.split_at(pan.len() - point);
            let mut raw = String::new();
            if negative { raw.push('-'); }
            raw.push_str(int);
            if !frac.is_empty() || zeros > 0 {
                raw.push('.');
                raw.push_str(frac);
                raw.push_str(&"0".repeat(zeros));
            }
            if point > 0 {
                raw.push(if upper { 'E' } else { 'e' });
                if plus { raw.push('+'); }
                raw.push_str(&point.to_string());
            }
            let found = number_pan(raw.as_bytes()).map(|(d, n)| String::from_utf8(d[..n].to_vec()).unwrap());
            prop_assert_eq!(found.as_deref(), Some(pan), "{}", raw);
        }

        #[test]
        fn amounts_dates_and_short_numbers_are_never_card_numbers(
            int in 0u64..100_000_000_000, cents in 0u32..100, exp in 0u32..9,
            y in 1990u32..2100, m in 1u32..13, d in 1u32..29,
        ) {
            let amount = format!("{int}.{cents:02}");
            prop_assert!(number_pan(amount.as_bytes()).is_none());
            prop_assert!(find_all(&amount, true, true, true).is_empty());
            let scientific = format!("{}e{exp}", int % 1000);
            prop_assert!(number_pan(scientific.as_bytes()).is_none());
            for date in [
                format!("{y}-{m:02}-{d:02} {y}/{m:02}/{d:02}"),
                format!("{y}-{m:02}-{d:02}/{y}-{m:02}-{d:02}"),
                format!("{d:02}.{m:02}.{y} - {d:02}.{m:02}.{y}"),
                format!("{y}-{m:02}-{d:02} {d:02}:{m:02} {y}-{m:02}-{d:02}"),
            ] {
                prop_assert!(find_all(&date, true, true, true).is_empty(), "{}", date);
            }
        }
    }
}
