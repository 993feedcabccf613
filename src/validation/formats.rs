//! Fintech string formats finguard adds to JSON Schema's `format` (asserted, like the built-in
//! ones): `iban`, `bic`, `iso4217`, `decimal-amount`, `e164`; and the `decimal` keyword, which
//! bounds the precision and scale of an amount written as a string or a number.
//!
//! Each check is a plain function over the text, no allocation, no regex.

use jsonschema::json::{Json, JsonNumber, Node};
use serde_json::Value;

/// IBAN: ISO 13616 machine form (no spaces, upper case), a registered country with its length
/// (SWIFT IBAN registry), check digits verified with ISO 7064 mod 97-10.
pub fn iban(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (Some(country), Some(check)) = (text.get(0..2), bytes.get(2..4)) else {
        return false;
    };
    if !country.bytes().all(|b| b.is_ascii_uppercase()) || !check.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if iban_length(country) != Some(bytes.len()) {
        return false;
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return false;
    }
    iban_mod97(bytes) == Some(1)
}

/// ISO 7064 mod 97-10 of an IBAN's letters and digits (either case): the first four moved to
/// the end, letters read as 10..35. `None` for any other byte or fewer than four. An IBAN is
/// valid when this is 1.
///
/// This runs for every IBAN a body or a response carries, so it avoids a remainder per
/// character: taken per character, each step waits for the one before (multiply, add,
/// remainder), a chain of about twelve cycles. Here the decimal digits are gathered into
/// chunks of at most eight (below 2^27), and the remainder takes one chunk at a time. All in
/// `u32`, which LLVM reduces by a constant with a multiply (on wasm32 a 64-bit remainder stays a
/// division).
pub fn iban_mod97(compact: &[u8]) -> Option<u32> {
    /// 10^k mod 97.
    const POW10: [u32; 10] = [1, 10, 3, 30, 9, 90, 27, 76, 81, 34];
    let (head, tail) = compact.split_at_checked(4)?;
    let (mut remainder, mut chunk, mut digits) = (0u32, 0u32, 0usize);
    for part in [tail, head] {
        for &c in part {
            let (value, scale, width) = match c {
                b'0'..=b'9' => (c - b'0', 10, 1),
                b'A'..=b'Z' => (c - b'A' + 10, 100, 2),
                b'a'..=b'z' => (c - b'a' + 10, 100, 2),
                _ => return None,
            };
            chunk = chunk * scale + u32::from(value);
            digits += width;
            if digits >= 7 {
                remainder = (remainder * POW10[digits] + chunk % 97) % 97;
                (chunk, digits) = (0, 0);
            }
        }
    }
    Some((remainder * POW10[digits] + chunk % 97) % 97)
}

/// IBAN lengths by country, sorted by country (a unit test checks it: the lookup is a binary
/// search).
const IBAN_LENGTHS: [(&str, usize); 89] = [
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// IBAN length per country (SWIFT IBAN registry). A country not listed has no IBAN.
fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS
        .binary_search_by(|(c, _)| (*c).cmp(country))
        .ok()
        .and_then(|i| IBAN_LENGTHS.get(i))
        .map(|&(_, len)| len)
}

/// BIC (ISO 9362): 4 letters (institution), 2 letters (country), 2 letters or digits
/// (location), optionally 3 letters or digits (branch). Upper case only.
pub fn bic(text: &str) -> bool {
    let b = text.as_bytes();
    let alnum = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    (b.len() == 8 || b.len() == 11)
        && b[..6].iter().all(u8::is_ascii_uppercase)
        && b[6..].iter().all(alnum)
}

/// ISO 4217 alphabetic codes of currencies and funds in use (list of 2025). Left out on
/// purpose: withdrawn codes (HRK, CUC, ANG, SLL, VEF, ZWL, ...), precious metals and bond units
/// (XAU, XAG, XPD, XPT, XBA-XBD, XDR, XSU, XUA), and XTS/XXX (testing, no currency): a payment
/// API has no use for them. Routes that take fewer currencies say so with `enum`.
pub fn iso4217(text: &str) -> bool {
    match text.as_bytes() {
        &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => {
            let index = currency_index(a, b, c);
            CURRENCIES[index / 32] >> (index % 32) & 1 == 1
        }
        _ => false,
    }
}

const CURRENCY_CODES: &str = "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND \
    BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF \
    DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS \
    INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD \
    MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN \
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC \
    SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV \
    WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// One bit per possible code (26³), set for the codes above: built at compile time, so a check
/// is one load instead of a walk through the list (which cost a validated payment ~2,500
/// instructions per currency field).
const CURRENCIES: [u32; 26 * 26 * 26 / 32 + 1] = {
    let codes = CURRENCY_CODES.as_bytes();
    let mut table = [0u32; 26 * 26 * 26 / 32 + 1];
    let mut i = 0;
    while i + 3 <= codes.len() {
        let (a, b, c) = (codes[i], codes[i + 1], codes[i + 2]);
        if a.is_ascii_uppercase() && b.is_ascii_uppercase() && c.is_ascii_uppercase() {
            let index = currency_index(a, b, c);
            table[index / 32] |= 1 << (index % 32);
            i += 3;
        } else {
            i += 1;
        }
    }
    table
};

const fn currency_index(a: u8, b: u8, c: u8) -> usize {
    ((a - b'A') as usize * 26 + (b - b'A') as usize) * 26 + (c - b'A') as usize
}

/// E.164 telephone number: `+`, a country code not starting with 0, at most 15 digits in all.
pub fn e164(text: &str) -> bool {
    let Some(digits) = text.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// `decimal-amount`: a decimal string with at most 18 significant digits and 2 decimals.
pub fn decimal_amount(text: &str) -> bool {
    decimal_text(
        text,
        Decimal {
            precision: 18,
            scale: 2,
        },
    )
}

/// Precision (digits in all) and scale (digits after the point) of the `decimal` keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub precision: u32,
    pub scale: u32,
}

impl Decimal {
    /// `{"precision": p, "scale": s}`, 1 ≤ p ≤ 38, s ≤ p.
    pub fn parse(schema: &Value) -> Option<Decimal> {
        let object = schema.as_object()?;
        if object.keys().any(|k| k != "precision" && k != "scale") {
            return None;
        }
        let get = |name| u32::try_from(object.get(name)?.as_u64()?).ok();
        let (precision, scale) = (get("precision")?, get("scale")?);
        ((1..=38).contains(&precision) && scale <= precision)
            .then_some(Decimal { precision, scale })
    }

    /// A string must be written `-?(0|[1-9][0-9]*)(\.[0-9]+)?` (no exponent, no `+`, no
    /// leading or trailing point); a number is judged by its value, written in full. Other
    /// types are not amounts and pass (combine with `type`).
    pub fn check(self, value: &Value) -> bool {
        self.check_node::<jsonschema::json::SerdeJson>(&value)
    }

    /// [`Decimal::check`] on a node of any instance representation (the body tape, a `Value`).
    pub fn check_node<'a, F: Json>(self, node: &F::Node<'a>) -> bool {
        if let Some(text) = node.as_string() {
            decimal_text(&text, self)
        } else if let Some(n) = node.as_number() {
            if let Some(i) = n.as_i64() {
                decimal_text(&i.to_string(), self)
            } else if let Some(u) = n.as_u64() {
                decimal_text(&u.to_string(), self)
            } else {
                // Rust prints an f64 in full (never with an exponent), shortest round trip.
                let text = n.as_f64().map(|f| f.to_string()).unwrap_or_default();
                let text = text.strip_suffix(".0").unwrap_or(&text);
                decimal_text(text, self)
            }
        } else {
            true
        }
    }
}

fn decimal_text(text: &str, rule: Decimal) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) if !frac.is_empty() => (int, frac),
        Some(_) => return false,
        None => (unsigned, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (int.len() > 1 && int.starts_with('0')) {
        return false;
    }
    let significant = if int == "0" { 0 } else { int.len() } + frac.len();
    significant <= rule.precision as usize && frac.len() <= rule.scale as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn iban_checks_country_length_and_mod_97() {
        for good in [
            "DE89370400440532013000",
            "GB29NWBK60161331926819",
            "FR1420041010050500013M02606",
            "NO9386011117947",
            "CH9300762011623852957",
        ] {
            assert!(iban(good), "{good}");
        }
        for bad in [
            "DE89370400440532013001", // check digits
            "DE8937040044053201300",  // length for DE
            "de89370400440532013000", // lower case
            "DE89 3704 0044 0532 0130 00",
            "ZZ89370400440532013000", // no such country
            "DE",
            "",
            "DEXX370400440532013000",
            "GB29NWBK6016133192681é",
        ] {
            assert!(!iban(bad), "{bad}");
        }
    }

    #[test]
    fn iban_lengths_are_sorted_for_the_binary_search() {
        for country in ["AD", "DE", "GB", "NO", "YE", "XK"] {
            assert!(iban_length(country).is_some(), "{country}");
        }
        assert!(IBAN_LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(iban_length("ZZ"), None);
        assert_eq!(iban_length("A"), None);
    }

    /// The remainder taken one decimal digit at a time (letters as two digits).
    fn by_digits(text: &[u8]) -> u32 {
        let mut remainder = 0u32;
        for c in text[4..].iter().chain(&text[..4]) {
            let c = c.to_ascii_uppercase();
            let digits = if c.is_ascii_digit() {
                vec![u32::from(c - b'0')]
            } else {
                let v = u32::from(c - b'A') + 10;
                vec![v / 10, v % 10]
            };
            for d in digits {
                remainder = (remainder * 10 + d) % 97;
            }
        }
        remainder
    }

    #[test]
    fn mod97_matches_a_digit_by_digit_remainder() {
        // A 34-character IBAN-shaped value of letters (two digits each) against a direct
        // big-number remainder, taken digit by digit.
        let long = b"GB00ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ";
        assert_eq!(iban_mod97(long), Some(by_digits(long)));
        // Pseudo-random letters and digits of every length up to 34, both cases.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 4..=34 {
            for _ in 0..50 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                            [(state % 62) as usize]
                    })
                    .collect();
                assert_eq!(iban_mod97(&text), Some(by_digits(&text)), "{text:?}");
            }
        }
        assert_eq!(iban_mod97(b"DE89370400440532013000"), Some(1));
        assert_eq!(iban_mod97(b"de89370400440532013000"), Some(1));
        assert_eq!(iban_mod97(b"DE8"), None);
        assert_eq!(iban_mod97(b"DE89 3704"), None);
    }

    #[test]
    fn bic_currency_and_phone() {
        assert!(bic("DEUTDEFF") && bic("DEUTDEFF500") && bic("NWBKGB2L"));
        for bad in [
            "DEUTDEF",
            "deutdeff",
            "DEUT1EFF",
            "DEUTDEFF5",
            "DEUTDEFF50é",
        ] {
            assert!(!bic(bad), "{bad}");
        }
        assert!(iso4217("EUR") && iso4217("JPY") && iso4217("CHF"));
        // Every listed code, and nothing else: the table holds exactly the list.
        let listed: Vec<&str> = CURRENCY_CODES.split_ascii_whitespace().collect();
        assert!(listed.iter().all(|code| iso4217(code)));
        let all = (b'A'..=b'Z')
            .flat_map(|a| (b'A'..=b'Z').flat_map(move |b| (b'A'..=b'Z').map(move |c| [a, b, c])));
        let accepted = all
            .filter(|code| iso4217(std::str::from_utf8(code).unwrap_or("")))
            .count();
        assert_eq!(accepted, listed.len());
        for bad in ["eur", "EURO", "XXX", "XTS", "HRK", "ABC", ""] {
            assert!(!iso4217(bad), "{bad}");
        }
        assert!(e164("+4930123456") && e164("+14155552671"));
        for bad in [
            "4930123456",
            "+0301234",
            "+1",
            "+1234567890123456",
            "+49 30 123",
        ] {
            assert!(!e164(bad), "{bad}");
        }
    }

    #[test]
    fn decimals_bound_precision_and_scale_without_exponents() {
        for good in ["0", "0.5", "10.00", "-12.34", "999999999999999999"] {
            assert!(decimal_amount(good), "{good}");
        }
        for bad in [
            "10.005",
            "1e3",
            "1E3",
            "+1",
            ".5",
            "5.",
            "01",
            "1,00",
            "",
            "-",
            "0x10",
            "9999999999999999999",
            " 1",
        ] {
            assert!(!decimal_amount(bad), "{bad}");
        }
        let rule = Decimal::parse(&json!({"precision": 6, "scale": 3})).unwrap();
        assert!(rule.check(&json!(123.456)) && rule.check(&json!(-5)) && rule.check(&json!(1e3)));
        assert!(!rule.check(&json!(1.0005)) && !rule.check(&json!(1234567)));
        assert!(rule.check(&json!("0.001")) && !rule.check(&json!("0.0001")));
        assert!(rule.check(&json!(null)));
        assert!(Decimal::parse(&json!({"precision": 0, "scale": 0})).is_none());
        assert!(Decimal::parse(&json!({"precision": 4, "scale": 5})).is_none());
        assert!(Decimal::parse(&json!({"precision": 4})).is_none());
        assert!(Decimal::parse(&json!({"precision": 4, "scale": 2, "x": 1})).is_none());
    }
}
