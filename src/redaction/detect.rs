//! Detectors: where card numbers, IBANs and e-mail addresses sit inside a string.
//!
//! Each detector returns byte ranges of the text it recognises. They are deliberately strict
//! about validity, so that ordinary identifiers are left alone:
//! - a card number (PAN) is a maximal run of 13–19 digits, optionally grouped by single spaces or
//!   dashes (one kind per number), that passes the Luhn check; a longer digit run (an order id)
//!   is not a card number, and neither is a shorter one;
//! - an IBAN is a country code, two check digits and up to 30 letters or digits (optionally in
//!   space-separated groups), 15–34 characters, that passes the ISO 13616 mod-97 check;
//! - an e-mail address is `local@domain` with a dotted domain whose last label is alphabetic.

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

/// Luhn (mod 10) check over ASCII digits.
pub fn luhn_valid(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.rev().enumerate() {
        let mut v = u32::from(d - b'0');
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

/// Card numbers in `text`: maximal digit runs with optional single-space or single-dash grouping.
pub fn find_pans(text: &str, out: &mut Vec<(Range<usize>, Kind)>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        let mut digits = 0usize;
        let mut separator: Option<u8> = None;
        let mut j = i;
        while j < bytes.len() {
            let b = bytes[j];
            if b.is_ascii_digit() {
                digits += 1;
                j += 1;
                end = j;
            } else if (b == b' ' || b == b'-')
                && separator.is_none_or(|s| s == b)
                && bytes.get(j + 1).is_some_and(u8::is_ascii_digit)
                && j > start
            {
                separator = Some(b);
                j += 1;
            } else {
                break;
            }
        }
        if PAN_DIGITS.contains(&digits) {
            let run = bytes[start..end].iter().copied().filter(u8::is_ascii_digit);
            if luhn_valid(run) {
                out.push((start..end, Kind::Pan));
            }
        }
        i = end.max(i + 1);
    }
}

/// ISO 13616 check (letters in either case): length 15 to 34, mod 97-10 equal to 1.
pub fn iban_valid(compact: &[u8]) -> bool {
    (15..=34).contains(&compact.len()) && crate::validation::formats::iban_mod97(compact) == Some(1)
}

/// IBANs in `text`, compact (`DE89370400440532013000`) or in print form (`DE89 3704 ...`).
pub fn find_ibans(text: &str, out: &mut Vec<(Range<usize>, Kind)>) {
    let bytes = text.as_bytes();
    // The candidate's letters and digits, and the byte offset after each counted from the
    // candidate's start (at most 34 characters and 33 single spaces: fits a byte). On the stack,
    // and small: this runs for many strings of every response.
    let mut compact = [0u8; 34];
    let mut ends = [0u8; 34];
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
                    ends[len] = (j + 1 - i) as u8;
                    len += 1;
                    j += 1;
                } else if b == b' ' && bytes.get(j + 1).is_some_and(u8::is_ascii_alphanumeric) {
                    j += 1;
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

/// E-mail addresses in `text`.
pub fn find_emails(text: &str, out: &mut Vec<(Range<usize>, Kind)>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = text.get(from..).and_then(|rest| rest.find('@')) {
        let at = from + offset;
        from = at + 1;
        let mut start = at;
        while start > 0 && is_local_char(bytes[start - 1]) {
            start -= 1;
        }
        // A local part does not start with a dot.
        while start < at && bytes[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_domain_char(bytes[end]) {
            end += 1;
        }
        // Trailing dots and dashes belong to the sentence, not the address.
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if start == at || end <= at + 1 {
            continue;
        }
        let domain = &text[at + 1..end];
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
        // Mixed separators are not one number; double spaces end the run.
        assert!(spans("4111 1111-1111 1111").is_empty());
        assert!(spans("2024-01-15").is_empty());
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
}
