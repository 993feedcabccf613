//! Exact comparison of decimal amounts, as payment APIs send them ("1000.00", 1000.5, "12"). No
//! floating point: `1000.000000000000000001` is above 1000 here, though an f64 says it is equal.
//! Only plain decimals are accepted (optional '-', digits, optional '.' and digits); exponents,
//! signs like '+', spaces and anything else are not amounts.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// Integer digits without leading zeros.
    integer: String,
    /// Fraction digits without trailing zeros.
    fraction: String,
}

impl Decimal {
    pub fn parse(text: &str) -> Option<Decimal> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if integer.is_empty()
            || !all_digits(integer)
            || !all_digits(fraction)
            || (digits.contains('.') && fraction.is_empty())
        {
            return None;
        }
        if integer.len() + fraction.len() > 64 {
            return None;
        }
        let integer = integer.trim_start_matches('0').to_string();
        let fraction = fraction.trim_end_matches('0').to_string();
        // "-0" and "0" are the same amount.
        let negative = negative && !(integer.is_empty() && fraction.is_empty());
        Some(Decimal {
            negative,
            integer,
            fraction,
        })
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        self.integer
            .len()
            .cmp(&other.integer.len())
            .then_with(|| self.integer.cmp(&other.integer))
            .then_with(|| self.fraction.cmp(&other.fraction))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn compares_exactly() {
        assert!(d("1000.000000000000000001") > d("1000"));
        assert_eq!(d("1000.00"), d("1000"));
        assert_eq!(d("0001000.5"), d("1000.50"));
        assert!(d("999.99") < d("1000"));
        assert!(d("10000") > d("9999.999"));
        assert!(d("-5") < d("0"));
        assert!(d("-5") < d("-4.5"));
        assert_eq!(d("-0"), d("0.000"));
        assert!(d("0.1") > d("0.09"));
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for bad in [
            "", "-", ".5", "5.", "1e3", "+1", " 1", "1,000", "0x10", "1.2.3", "١٢",
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
        assert!(Decimal::parse(&"9".repeat(65)).is_none());
    }
}
