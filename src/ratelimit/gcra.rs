//! Token-bucket arithmetic as GCRA (the generic cell rate algorithm): a bucket is one number, the
//! theoretical arrival time (TAT) of the next request, so one compare-and-swap updates it. A
//! limit of `rate` requests per `period` with `burst` allows `burst` requests at once and then one
//! every `period / rate`.

/// A limit's parameters in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time one request "costs": period / rate.
    pub interval_us: i64,
    /// How far ahead of now the TAT may run: interval * (burst - 1).
    pub tolerance_us: i64,
    pub burst: u32,
}

impl Rate {
    pub fn new(requests: u32, period_seconds: u32, burst: u32) -> Option<Rate> {
        if requests == 0 || period_seconds == 0 || burst == 0 {
            return None;
        }
        let interval_us = i64::from(period_seconds) * 1_000_000 / i64::from(requests);
        if interval_us == 0 {
            return None;
        }
        Some(Rate {
            interval_us,
            tolerance_us: interval_us.checked_mul(i64::from(burst) - 1)?,
            burst,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// The TAT to store (unchanged when refused).
    pub new_tat_us: i64,
    /// Requests left right now (after this one, if allowed).
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_seconds: u64,
    /// Seconds until a request would be allowed (refusals only).
    pub retry_after_seconds: u64,
}

fn ceil_seconds(us: i64) -> u64 {
    u64::try_from(us.max(0)).unwrap_or(0).div_ceil(1_000_000)
}

/// Decides one request at `now_us` against a bucket whose stored TAT is `tat_us` (0: fresh).
pub fn decide(rate: Rate, tat_us: i64, now_us: i64) -> Outcome {
    let tat = tat_us.max(now_us);
    if tat - now_us > rate.tolerance_us {
        let wait = tat - now_us - rate.tolerance_us;
        return Outcome {
            allowed: false,
            new_tat_us: tat_us,
            remaining: 0,
            reset_seconds: ceil_seconds(tat - now_us),
            retry_after_seconds: ceil_seconds(wait).max(1),
        };
    }
    let new_tat = tat + rate.interval_us;
    let used = (new_tat - now_us + rate.interval_us - 1) / rate.interval_us;
    let remaining = i64::from(rate.burst).saturating_sub(used).max(0);
    Outcome {
        allowed: true,
        new_tat_us: new_tat,
        remaining: u32::try_from(remaining).unwrap_or(0),
        reset_seconds: ceil_seconds(new_tat - now_us),
        retry_after_seconds: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn burst_then_steady_rate() {
        let rate = Rate::new(5, 1, 10).unwrap(); // 5/s, burst 10
        let mut tat = 0;
        let now = 1_000_000_000;
        for i in 0..10 {
            let o = decide(rate, tat, now);
            assert!(o.allowed, "request {i}");
            assert_eq!(o.remaining, 9 - i);
            tat = o.new_tat_us;
        }
        let refused = decide(rate, tat, now);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_seconds, 1);
        assert_eq!(refused.new_tat_us, tat);
        // 200 ms later one token is back, not two.
        let later = decide(rate, tat, now + 200_000);
        assert!(later.allowed);
        assert!(!decide(rate, later.new_tat_us, now + 200_000).allowed);
        // After 2 s idle the bucket is full again.
        assert_eq!(decide(rate, tat, now + 2_000_000).remaining, 9);
    }

    #[test]
    fn hourly_limits_and_invalid_rates() {
        let rate = Rate::new(1000, 3600, 1000).unwrap();
        let o = decide(rate, 0, 5);
        assert!(o.allowed && o.remaining == 999);
        assert!(Rate::new(0, 1, 1).is_none());
        assert!(Rate::new(1, 1, 0).is_none());
        assert!(Rate::new(2_000_000, 1, 1).is_none());
    }
}
