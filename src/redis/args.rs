//! Strict argument parsers, one per argument kind, used by every command.
//!
//! They parse as Redis does: no spaces, no trailing garbage, no hex, no
//! `nan`/`inf`, no empty strings; out-of-range values are errors, never
//! clamped. Every error names the argument.

use throttle_core::Micros;
use throttle_core::decimal::{self, DecimalError, Fixed};
use throttle_core::quota::{Limit, QuotaError, Rate};

use super::error::{Error, Result};

/// A decimal with at most `digits` fractional digits, exactly.
pub fn decimal(bytes: &[u8], arg: &'static str, digits: u32) -> Result<Fixed> {
    decimal::parse(bytes, digits).map_err(|e| match e {
        DecimalError::Invalid => Error::NotANumber {
            arg,
            kind: "decimal number",
        },
        DecimalError::TooPrecise => Error::TooPrecise { arg, digits },
        DecimalError::OutOfRange => Error::OutOfRange {
            arg,
            range: "a smaller number",
        },
    })
}

/// An integer in `min..=max`, written as Redis writes integers.
pub fn integer(
    bytes: &[u8],
    arg: &'static str,
    min: i64,
    max: i64,
    range: &'static str,
) -> Result<i64> {
    let not_int = Error::NotANumber {
        arg,
        kind: "integer",
    };
    // Redis's string2ll: optional '-', digits, no '+', no leading zeros,
    // no "-0". Read byte by byte (this runs on every call's `tokens` or
    // `max_waiting`): a value that does not fit is out of range, but only
    // once the whole text is known to be an integer.
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') || (negative && digits == b"0")
    {
        return Err(not_int);
    }
    let mut magnitude: Option<u64> = Some(0);
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(not_int);
        }
        magnitude = magnitude
            .and_then(|m| m.checked_mul(10))
            .and_then(|m| m.checked_add(u64::from(b - b'0')));
    }
    let v = magnitude
        .map(i128::from)
        .map(|m| if negative { -m } else { m })
        .and_then(|m| i64::try_from(m).ok())
        .ok_or(Error::OutOfRange { arg, range })?;
    if v < min || v > max {
        return Err(Error::OutOfRange { arg, range });
    }
    Ok(v)
}

/// A non-negative integer count.
pub fn count(bytes: &[u8], arg: &'static str) -> Result<u64> {
    let v = integer(bytes, arg, 0, i64::MAX, "an integer >= 0")?;
    Ok(v.unsigned_abs())
}

/// Longest a caller may be held (WAIT / BLOCK): one year.
pub const MAX_TIMEOUT_MS: i64 = 366 * 24 * 3600 * 1000;

/// A timeout in whole milliseconds, `0..=MAX_TIMEOUT_MS`.
pub fn timeout_ms(bytes: &[u8], arg: &'static str) -> Result<Micros> {
    let ms = integer(
        bytes,
        arg,
        0,
        MAX_TIMEOUT_MS,
        "an integer >= 0 and <= 31622400000 (one year)",
    )?;
    Ok(Micros::from_millis(ms.unsigned_abs()))
}

/// `rps`: tokens per second, > 0 with up to 9 decimals, or 0 / -1.
pub fn rate(bytes: &[u8]) -> Result<Rate> {
    let f = decimal(bytes, "rps", 9)?;
    Rate::from_nano(f.negative, f.units).map_err(|_| Error::OutOfRange {
        arg: "rps",
        range: "> 0 and <= 1e10 (or 0 to deny all, -1 to allow all)",
    })
}

/// A positive decimal in billionths (`burst`, `window` in seconds).
pub fn positive_nano(bytes: &[u8], arg: &'static str, range: &'static str) -> Result<u128> {
    let f = decimal(bytes, arg, 9)?;
    if f.negative || f.units == 0 {
        return Err(Error::OutOfRange { arg, range });
    }
    Ok(f.units)
}

const BURST_RANGE: &str = "> 0 and <= 1e9";
const WINDOW_RANGE: &str = "> 0 and <= 1e9 seconds";

/// Maps a quota error to the argument it is about.
pub fn quota_error(e: QuotaError) -> Error {
    match e {
        QuotaError::Rps => Error::OutOfRange {
            arg: "rps",
            range: "> 0 and <= 1e10 (or 0 to deny all, -1 to allow all)",
        },
        QuotaError::Burst => Error::OutOfRange {
            arg: "burst",
            range: BURST_RANGE,
        },
        QuotaError::Window => Error::OutOfRange {
            arg: "window",
            range: WINDOW_RANGE,
        },
        QuotaError::Capacity => {
            Error::Invalid("rps*burst*window is too large (the limit must be at most 1e15 tokens)")
        }
    }
}

/// `rps burst window` as a validated limit.
///
/// Callers send the same few parameter strings again and again, so the
/// last [`LIMIT_CACHE_SLOTS`] distinct ones are remembered by their exact
/// bytes with the limit they parse to: a hit skips three exact decimal
/// parses and the capacity arithmetic (about 1,700 of THROTTLE's 14,500
/// instructions per call; see BENCHMARKS.md). Only valid limits are
/// remembered: a bad argument is parsed, and reported, every time.
pub fn limit(rps: &[u8], burst: &[u8], window: &[u8]) -> Result<Limit> {
    let args = [rps, burst, window];
    if let Some(hit) = LIMITS.with(|c| c.borrow().get(&args)) {
        return Ok(hit);
    }
    let parsed = parse_limit(rps, burst, window)?;
    LIMITS.with(|c| c.borrow_mut().put(&args, parsed));
    Ok(parsed)
}

fn parse_limit(rps: &[u8], burst: &[u8], window: &[u8]) -> Result<Limit> {
    let rate = rate(rps)?;
    let burst = positive_nano(burst, "burst", BURST_RANGE)?;
    let window = positive_nano(window, "window", WINDOW_RANGE)?;
    Limit::new(rate, burst, window).map_err(quota_error)
}

/// Distinct `rps burst window` strings remembered by [`limit`].
pub const LIMIT_CACHE_SLOTS: usize = 8;
/// Longest `rps` + `burst` + `window` (bytes together) that is remembered.
const LIMIT_CACHE_TEXT: usize = 48;

#[derive(Clone, Copy)]
struct CachedLimit {
    /// The three arguments' bytes, one after the other.
    text: [u8; LIMIT_CACHE_TEXT],
    lens: [u8; 3],
    limit: Limit,
}

impl CachedLimit {
    fn matches(&self, args: &[&[u8]; 3]) -> bool {
        let mut at = 0;
        for (arg, &len) in args.iter().zip(&self.lens) {
            let len = usize::from(len);
            if arg.len() != len || self.text.get(at..at + len) != Some(*arg) {
                return false;
            }
            at += len;
        }
        true
    }
}

/// A few recently parsed limits; replaced round-robin.
struct LimitCache {
    slots: [Option<CachedLimit>; LIMIT_CACHE_SLOTS],
    next: usize,
}

impl LimitCache {
    const fn new() -> LimitCache {
        LimitCache {
            slots: [None; LIMIT_CACHE_SLOTS],
            next: 0,
        }
    }

    fn get(&self, args: &[&[u8]; 3]) -> Option<Limit> {
        self.slots
            .iter()
            .flatten()
            .find(|c| c.matches(args))
            .map(|c| c.limit)
    }

    fn put(&mut self, args: &[&[u8]; 3], limit: Limit) {
        if args.iter().map(|a| a.len()).sum::<usize>() > LIMIT_CACHE_TEXT {
            return;
        }
        let mut entry = CachedLimit {
            text: [0; LIMIT_CACHE_TEXT],
            lens: [0; 3],
            limit,
        };
        let mut at = 0;
        for (i, arg) in args.iter().enumerate() {
            entry.text[at..at + arg.len()].copy_from_slice(arg);
            entry.lens[i] = arg.len() as u8; // ≤ LIMIT_CACHE_TEXT < 256
            at += arg.len();
        }
        self.slots[self.next] = Some(entry);
        self.next = (self.next + 1) % LIMIT_CACHE_SLOTS;
    }
}

thread_local! {
    // Commands run on Redis's main thread: one cache, never contended.
    static LIMITS: std::cell::RefCell<LimitCache> = const { std::cell::RefCell::new(LimitCache::new()) };
}

/// `interval_ms`: > 0, in whole microseconds (at most 3 decimals).
pub fn interval_ms(bytes: &[u8]) -> Result<Micros> {
    let f = decimal(bytes, "interval_ms", 3)?;
    let range = "> 0 and <= 1e12 ms";
    if f.negative || f.units == 0 || f.units > 1_000_000_000_000_000 {
        return Err(Error::OutOfRange {
            arg: "interval_ms",
            range,
        });
    }
    Ok(Micros(u64::try_from(f.units).map_err(|_| {
        Error::OutOfRange {
            arg: "interval_ms",
            range,
        }
    })?))
}

/// True when `arg` equals the option name `name` (ASCII case-insensitive).
pub fn is_option(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_redis_does() {
        assert_eq!(count(b"0", "tokens").unwrap(), 0);
        assert_eq!(count(b"42", "tokens").unwrap(), 42);
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b"1.0",
            b" 1",
            b"1 ",
            b"0x1",
            b"-0",
            b"1e3",
            b"abc",
        ] {
            assert!(
                matches!(count(bad, "tokens"), Err(Error::NotANumber { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            count(b"-1", "tokens"),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            count(b"99999999999999999999", "tokens"),
            Err(Error::OutOfRange { .. })
        ));
    }

    /// The parser before it read bytes directly: `str::parse` after the
    /// same syntax checks.
    fn integer_by_str(bytes: &[u8]) -> std::result::Result<i64, &'static str> {
        let s = std::str::from_utf8(bytes).map_err(|_| "nan")?;
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
            || s == "-0"
        {
            return Err("nan");
        }
        s.parse().map_err(|_| "range")
    }

    #[test]
    fn integers_match_the_str_parser() {
        let mut cases: Vec<Vec<u8>> = [
            "0",
            "1",
            "-1",
            "9",
            "10",
            "42",
            "-42",
            "007",
            "-0",
            "-00",
            "00",
            "-",
            "",
            "+1",
            "1-",
            "--1",
            "1.0",
            "1e3",
            " 1",
            "1 ",
            "0x1f",
            "\u{0}",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "99999999999999999999x",
            "-99999999999999999999",
            "١",
            "1\u{0}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        cases.push(vec![0xff, b'1']);
        cases.push(vec![b'1', 0xc3]);
        for c in &cases {
            let new = integer(c, "n", i64::MIN, i64::MAX, "any");
            match (integer_by_str(c), new) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{c:?}"),
                (Err("nan"), Err(Error::NotANumber { .. })) => {}
                (Err("range"), Err(Error::OutOfRange { .. })) => {}
                (old, new) => panic!("{c:?}: {old:?} vs {new:?}"),
            }
        }
        assert!(matches!(
            integer(b"5", "n", 6, 9, "6..9"),
            Err(Error::OutOfRange { .. })
        ));
        assert_eq!(integer(b"-5", "n", -5, 9, "-5..9").unwrap(), -5);
    }

    #[test]
    fn limits_validate_each_argument() {
        assert_eq!(limit(b"5", b"2", b"8").unwrap().capacity, 80);
        assert!(matches!(
            limit(b"-2", b"2", b"8"),
            Err(Error::OutOfRange { arg: "rps", .. })
        ));
        assert!(matches!(
            limit(b"nan", b"2", b"8"),
            Err(Error::NotANumber { arg: "rps", .. })
        ));
        assert!(matches!(
            limit(b"5", b"0", b"8"),
            Err(Error::OutOfRange { arg: "burst", .. })
        ));
        assert!(matches!(
            limit(b"5", b"2", b"-8"),
            Err(Error::OutOfRange { arg: "window", .. })
        ));
        assert!(matches!(
            limit(b"5", b"inf", b"8"),
            Err(Error::NotANumber { arg: "burst", .. })
        ));
        assert!(matches!(
            limit(b"1e10", b"1e9", b"1e9"),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn cached_limits_are_the_limits_parsed() {
        // More distinct limits than slots, each asked for twice in a row
        // and again later (after eviction): always the freshly parsed value.
        let texts: Vec<(String, String, String)> = (1..=3 * LIMIT_CACHE_SLOTS)
            .map(|i| (format!("{i}"), format!("0.{i}"), format!("{}", i * 7)))
            .collect();
        for _ in 0..2 {
            for (r, b, w) in &texts {
                let fresh = parse_limit(r.as_bytes(), b.as_bytes(), w.as_bytes()).unwrap();
                for _ in 0..2 {
                    assert_eq!(
                        limit(r.as_bytes(), b.as_bytes(), w.as_bytes()).unwrap(),
                        fresh
                    );
                }
            }
        }
        // The same bytes split differently are a different limit.
        assert_eq!(limit(b"12", b"3", b"4").unwrap().capacity, 144);
        assert_eq!(limit(b"1", b"23", b"4").unwrap().capacity, 92);
        assert_eq!(limit(b"1", b"2", b"34").unwrap().capacity, 68);
        // Errors are never cached: a bad argument fails every time.
        for _ in 0..2 {
            assert!(matches!(
                limit(b"5", b"0", b"8"),
                Err(Error::OutOfRange { arg: "burst", .. })
            ));
        }
        // Arguments too long to remember still parse.
        let long = format!("1.{}", "0".repeat(60));
        assert_eq!(limit(long.as_bytes(), b"2", b"8").unwrap().capacity, 16);
        assert_eq!(limit(long.as_bytes(), b"2", b"8").unwrap().capacity, 16);
    }

    #[test]
    fn intervals_are_whole_microseconds() {
        assert_eq!(interval_ms(b"0.25").unwrap(), Micros(250));
        assert_eq!(interval_ms(b"3000").unwrap(), Micros(3_000_000));
        assert!(matches!(
            interval_ms(b"0.0001"),
            Err(Error::TooPrecise { .. })
        ));
        assert!(matches!(interval_ms(b"0"), Err(Error::OutOfRange { .. })));
    }
}
