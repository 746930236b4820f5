//! Strict argument parsers, one per argument kind, used by every command.
//!
//! They parse as Redis does: no spaces, no trailing garbage, no hex, no
//! `nan`/`inf`, no empty strings; out-of-range values are errors, never
//! clamped. Every error names the argument.

use std::cell::RefCell;

use throttle_core::Micros;
use throttle_core::decimal::{self, DecimalError, Fixed};
use throttle_core::rate::{LimitLion, MAX_BURST_NANO, MAX_WINDOW_NS, Policy, Rps};
use throttle_core::throttle::MAX_KNOBS_TTL;
use throttle_core::time::{HORIZON, MAX_WAIT};

use super::error::{Error, Range, Result};
use super::ffi::{Args, RStr};

/// A decimal with at most `digits` fractional digits, exactly; a value too
/// large to hold is out of `range`.
pub fn decimal(bytes: &[u8], arg: &'static str, digits: u32, range: Range) -> Result<Fixed> {
    decimal::parse(bytes, digits).map_err(|e| match e {
        DecimalError::Invalid => Error::NotANumber {
            arg,
            kind: "decimal number",
        },
        DecimalError::TooPrecise => Error::TooPrecise { arg, digits },
        DecimalError::OutOfRange => Error::OutOfRange { arg, range },
    })
}

/// An integer in `min..=max`, written as Redis writes integers.
pub fn integer(bytes: &[u8], arg: &'static str, min: i64, max: i64, range: Range) -> Result<i64> {
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
    let leading_zero = digits.len() > 1 && digits.first() == Some(&b'0');
    if digits.is_empty() || leading_zero || (negative && digits == b"0") {
        return Err(not_int);
    }
    // One pass: each byte checked and added. Up to 19 digits fit a u64
    // without a check for overflow (10^19 − 1 < 2^64); longer ones are
    // checked.
    let magnitude = if digits.len() <= 19 {
        let mut m = 0u64;
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Err(not_int);
            }
            m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        }
        Some(m)
    } else {
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(not_int);
        }
        digits.iter().try_fold(0u64, |m, &b| {
            m.checked_mul(10)?
                .checked_add(u64::from(b.wrapping_sub(b'0')))
        })
    };
    let v = match magnitude {
        Some(m) if negative => 0i64.checked_sub_unsigned(m),
        Some(m) => i64::try_from(m).ok(),
        None => None,
    }
    .ok_or(Error::OutOfRange { arg, range })?;
    if v < min || v > max {
        return Err(Error::OutOfRange { arg, range });
    }
    Ok(v)
}

/// A non-negative integer count.
pub fn count(bytes: &[u8], arg: &'static str) -> Result<u64> {
    let v = integer(bytes, arg, 0, i64::MAX, Range::Count)?;
    Ok(v.unsigned_abs())
}

/// A timeout in whole milliseconds, `0..=MAX_WAIT` (one year).
pub fn timeout_ms(bytes: &[u8], arg: &'static str) -> Result<Micros> {
    let max = i64::try_from(MAX_WAIT.as_millis_floor()).unwrap_or(i64::MAX);
    let ms = integer(bytes, arg, 0, max, Range::Timeout)?;
    Ok(Micros::from_millis(ms.unsigned_abs()))
}

/// `rps`: tokens per second, > 0 with up to 9 decimals, or 0 / -1.
pub fn rps(bytes: &[u8]) -> Result<Rps> {
    let f = decimal(bytes, "rps", 9, Range::Rps)?;
    Ok(Rps::from_nano(f.negative, f.units)?)
}

/// A positive decimal in billionths, at most `max` (`burst`, `window`).
pub fn positive_nano(bytes: &[u8], arg: &'static str, max: u64, range: Range) -> Result<u64> {
    let f = decimal(bytes, arg, 9, range)?;
    match u64::try_from(f.units) {
        Ok(n) if !f.negative && n > 0 && n <= max => Ok(n),
        _ => Err(Error::OutOfRange { arg, range }),
    }
}

/// `burst`, in billionths.
pub fn burst(bytes: &[u8]) -> Result<u64> {
    positive_nano(bytes, "burst", MAX_BURST_NANO, Range::Burst)
}

/// `window` (seconds), in nanoseconds.
pub fn window(bytes: &[u8]) -> Result<u64> {
    positive_nano(bytes, "window", MAX_WINDOW_NS, Range::Window)
}

/// `rps burst window` as a validated policy.
///
/// Callers send the same few parameter strings again and again, so the
/// last [`LIMIT_CACHE_SLOTS`] distinct ones are remembered by their exact
/// bytes with the policy they parse to: a hit skips three exact decimal
/// parses and the capacity arithmetic (see BENCHMARKS.md). Only valid
/// limits are remembered: a bad argument is parsed, and reported, every time.
pub fn limitlion(rps_text: &[u8], burst_text: &[u8], window_text: &[u8]) -> Result<Policy> {
    let args = [rps_text, burst_text, window_text];
    if let Some(hit) = LIMITS.with(|c| c.borrow().get(&args)) {
        return Ok(hit);
    }
    let parsed = parse_limitlion(rps_text, burst_text, window_text)?;
    LIMITS.with(|c| c.borrow_mut().put(&args, parsed));
    Ok(parsed)
}

fn parse_limitlion(rps_text: &[u8], burst_text: &[u8], window_text: &[u8]) -> Result<Policy> {
    let args = LimitLion {
        rps: rps(rps_text)?,
        burst_nano: burst(burst_text)?,
        window_ns: window(window_text)?,
    };
    Ok(args.policy()?)
}

/// Distinct `rps burst window` strings remembered by [`limitlion`].
pub const LIMIT_CACHE_SLOTS: usize = 8;
/// Longest `rps` + `burst` + `window` (bytes together) that is remembered.
const LIMIT_CACHE_TEXT: usize = 48;

#[derive(Clone, Copy)]
struct CachedLimit {
    /// The three arguments' bytes, one after the other.
    text: [u8; LIMIT_CACHE_TEXT],
    lens: [u8; 3],
    policy: Policy,
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

    fn get(&self, args: &[&[u8]; 3]) -> Option<Policy> {
        self.slots
            .iter()
            .flatten()
            .find(|c| c.matches(args))
            .map(|c| c.policy)
    }

    fn put(&mut self, args: &[&[u8]; 3], policy: Policy) {
        if args.iter().map(|a| a.len()).sum::<usize>() > LIMIT_CACHE_TEXT {
            return;
        }
        let mut entry = CachedLimit {
            text: [0; LIMIT_CACHE_TEXT],
            lens: [0; 3],
            policy,
        };
        let mut at = 0;
        for (len, arg) in entry.lens.iter_mut().zip(args) {
            if let Some(dst) = entry.text.get_mut(at..at + arg.len()) {
                dst.copy_from_slice(arg);
            }
            *len = u8::try_from(arg.len()).unwrap_or(u8::MAX);
            at += arg.len();
        }
        if let Some(slot) = self.slots.get_mut(self.next) {
            *slot = Some(entry);
        }
        self.next = (self.next + 1) % LIMIT_CACHE_SLOTS;
    }
}

thread_local! {
    // Commands run on Redis's main thread: one cache, never contended.
    static LIMITS: RefCell<LimitCache> = const { RefCell::new(LimitCache::new()) };
}

/// `interval_ms`: > 0 and at most the horizon, in whole microseconds (at
/// most 3 decimals).
pub fn interval_ms(bytes: &[u8]) -> Result<Micros> {
    let range = Range::Interval;
    let f = decimal(bytes, "interval_ms", 3, range)?;
    match u64::try_from(f.units) {
        Ok(us) if !f.negative && us > 0 && us <= HORIZON.0 => Ok(Micros(us)),
        _ => Err(Error::OutOfRange {
            arg: "interval_ms",
            range,
        }),
    }
}

/// True when `arg` equals the option name `name` (ASCII case-insensitive).
#[inline]
pub fn is_option(arg: &[u8], name: &str) -> bool {
    // The length, then the first byte: a number of the option's length (a
    // burst of `1000` against `WAIT`) stops there.
    let name = name.as_bytes();
    arg.len() == name.len()
        && arg.first().map(u8::to_ascii_uppercase) == name.first().map(u8::to_ascii_uppercase)
        && arg.eq_ignore_ascii_case(name)
}

/// Walks a command's arguments after the fixed ones: options given once
/// each, as `NAME value` pairs.
pub struct Options<'a> {
    args: Args<'a>,
    at: usize,
}

impl<'a> Options<'a> {
    /// Options start at argument `from`.
    pub fn new(args: Args<'a>, from: usize) -> Options<'a> {
        Options { args, at: from }
    }

    /// The next `NAME value` pair, or `None` at the end. A name without a
    /// value is a syntax error.
    pub fn next_pair(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let Some(name) = self.args.get(self.at) else {
            return Ok(None);
        };
        let value = self.args.get(self.at + 1).ok_or(Error::Syntax)?;
        self.at += 2;
        Ok(Some((name.bytes(), value.bytes())))
    }
}

/// Fills `slot` with `parse(value)` the first time an option is given; a
/// repeated option is a syntax error.
pub fn once<T>(
    slot: &mut Option<T>,
    value: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<()> {
    if slot.is_some() {
        return Err(Error::Syntax);
    }
    *slot = Some(parse(value)?);
    Ok(())
}

/// A named option and what takes its value.
pub type Setter<'s> = (&'static str, &'s mut dyn FnMut(&[u8]) -> Result<()>);

/// The `NAME value` pairs from argument 2 on (THROTTLE.SET, PERMIT.SET),
/// each given to the setter of its name (case-insensitive); an unknown
/// name is a syntax error.
pub fn settings(args: &Args<'_>, command: &'static str, setters: &mut [Setter<'_>]) -> Result<()> {
    if args.len() < 2 {
        return Err(Error::Arity(command));
    }
    settings_from(args, 2, setters)
}

/// The `NAME value` pairs from argument `from` on, as [`settings`].
pub fn settings_from(args: &Args<'_>, from: usize, setters: &mut [Setter<'_>]) -> Result<()> {
    let mut options = Options::new(*args, from);
    while let Some((name, value)) = options.next_pair()? {
        let (_, set) = setters
            .iter_mut()
            .find(|(n, _)| is_option(name, n))
            .ok_or(Error::Syntax)?;
        set(value)?;
    }
    Ok(())
}

/// A settings TTL (knobs, PERMIT settings): whole seconds, `1..=` ten years.
pub fn settings_ttl(bytes: &[u8]) -> Result<Micros> {
    let max = i64::try_from(MAX_KNOBS_TTL.as_secs_floor()).unwrap_or(i64::MAX);
    let s = integer(bytes, "TTL", 1, max, Range::KnobsTtl)?;
    Ok(Micros::from_secs(s.unsigned_abs()))
}

/// The key of a command that takes a key and nothing else.
pub fn only_key<'a>(args: &Args<'a>, command: &'static str) -> Result<RStr<'a>> {
    if args.len() != 2 {
        return Err(Error::Arity(command));
    }
    arg(args, 1, command)
}

/// Argument `i` (the caller checked the arity).
pub fn arg<'a>(args: &Args<'a>, i: usize, command: &'static str) -> Result<RStr<'a>> {
    args.get(i).ok_or(Error::Arity(command))
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
            let new = integer(c, "n", i64::MIN, i64::MAX, Range::Count);
            match (integer_by_str(c), new) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{c:?}"),
                (Err("nan"), Err(Error::NotANumber { .. })) => {}
                (Err("range"), Err(Error::OutOfRange { .. })) => {}
                (old, new) => panic!("{c:?}: {old:?} vs {new:?}"),
            }
        }
        assert!(matches!(
            integer(b"5", "n", 6, 9, Range::Count),
            Err(Error::OutOfRange { .. })
        ));
        assert_eq!(integer(b"-5", "n", -5, 9, Range::Count).unwrap(), -5);
    }

    fn capacity(p: Policy) -> u64 {
        match p {
            Policy::Bucket(l) => l.capacity(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_validate_each_argument() {
        assert_eq!(capacity(limitlion(b"5", b"2", b"8").unwrap()), 80);
        assert!(matches!(
            limitlion(b"0e99999", b"1", b"1"),
            Ok(Policy::Deny { .. })
        ));
        // Each bad argument, and the start of the error that names it.
        #[rustfmt::skip]
        let cases: &[([&[u8]; 3], &str)] = &[
            ([b"-2", b"2", b"8"], "ERR rps must be"), ([b"nan", b"2", b"8"], "ERR rps is not a valid decimal"),
            ([b"5", b"0", b"8"], "ERR burst must be"), ([b"5", b"2", b"-8"], "ERR window must be"),
            ([b"5", b"inf", b"8"], "ERR burst is not a valid decimal"), ([b"1e9", b"1e9", b"1e9"], "ERR rps*burst*window is too large"),
            ([b"1e99999", b"1", b"1"], "ERR rps must be"), ([b"1.0000000001", b"1", b"1"], "ERR rps has too many decimal places"),
            ([b"1234567.891", b"1", b"1"], "ERR rps has too many significant digits"),
        ];
        for ([r, b, w], want) in cases {
            let e = limitlion(r, b, w).expect_err("refused").to_string();
            assert!(e.starts_with(want), "{r:?} {b:?} {w:?}: {e}");
        }
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
                let fresh = parse_limitlion(r.as_bytes(), b.as_bytes(), w.as_bytes()).unwrap();
                for _ in 0..2 {
                    assert_eq!(
                        limitlion(r.as_bytes(), b.as_bytes(), w.as_bytes()).unwrap(),
                        fresh
                    );
                }
            }
        }
        // The same bytes split differently are a different limit.
        assert_eq!(capacity(limitlion(b"12", b"3", b"4").unwrap()), 144);
        assert_eq!(capacity(limitlion(b"1", b"23", b"4").unwrap()), 92);
        assert_eq!(capacity(limitlion(b"1", b"2", b"34").unwrap()), 68);
        // Errors are never cached: a bad argument fails every time.
        for _ in 0..2 {
            assert!(matches!(
                limitlion(b"5", b"0", b"8"),
                Err(Error::OutOfRange { arg: "burst", .. })
            ));
        }
        // Arguments too long to remember still parse.
        let long = format!("1.{}", "0".repeat(60));
        assert_eq!(
            capacity(limitlion(long.as_bytes(), b"2", b"8").unwrap()),
            16
        );
        assert_eq!(
            capacity(limitlion(long.as_bytes(), b"2", b"8").unwrap()),
            16
        );
    }

    #[test]
    fn intervals_are_whole_microseconds_within_the_horizon() {
        assert_eq!(interval_ms(b"0.25").unwrap(), Micros(250));
        assert_eq!(interval_ms(b"3000").unwrap(), Micros(3_000_000));
        assert_eq!(interval_ms(b"1e12").unwrap(), HORIZON);
        assert!(matches!(
            interval_ms(b"0.0001"),
            Err(Error::TooPrecise { .. })
        ));
        assert!(matches!(interval_ms(b"0"), Err(Error::OutOfRange { .. })));
        assert!(matches!(
            interval_ms(b"1000000000001"),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn timeouts_are_at_most_a_year() {
        assert_eq!(timeout_ms(b"31622400000", "t").unwrap(), MAX_WAIT);
        assert!(matches!(
            timeout_ms(b"31622400001", "t"),
            Err(Error::OutOfRange { .. })
        ));
    }
}
