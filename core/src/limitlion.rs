//! LimitLion 1.1's `throttle.lua`, reply for reply and byte for byte.
//!
//! LimitLion keeps a throttle in two hashes: the bucket `throttle:<name>`
//! (`tokens`, `refreshed`) and its knobs `throttle:<name>:knobs` (`rps`,
//! `burst`, `window`, hand-editable). Its script computes in Lua numbers
//! (IEEE doubles); this module computes the same operations, in the same
//! order, on `f64`, so that the reply and every string it writes are the
//! ones the script produces. Nothing here touches Redis or reads a clock:
//! the caller passes what the script would read and applies what
//! [`Outcome`] says, in its order.
//!
//! # The algorithm (throttle.lua)
//!
//! 1. Knobs: when the knobs hash has an `rps` field, `rps`, `burst` and
//!    `window` come from the hash (each through `tonumber`, so a missing or
//!    non-numeric field is nil) and, if `knobs_ttl > 0`, the knobs get
//!    `EXPIRE knobs_ttl`; otherwise they come from the call's arguments.
//! 2. Clock: `now` is the server's `TIME` second (in testing mode, the
//!    `frozen_second` / `frozen_microsecond` keys when `frozen_second`
//!    exists).
//! 3. `ttl = floor(burst × window × 2)`.
//! 4. `rps == 0`: denied, 0 tokens, sleep `window`. `rps == -1`: allowed,
//!    1 token, sleep 0. Nothing else is read or written.
//! 5. Otherwise, with `capacity = ceil(rps × burst × window)` and the bucket
//!    (`tokens`, else `capacity`; `refreshed`, else 0):
//!    `elapsed = floor(max(0, now − refreshed) / window)` whole windows add
//!    `ceil(elapsed × rps × window)` tokens, capped at `capacity`; the call
//!    is allowed when those tokens cover `requested_tokens`, which are then
//!    taken (never below 0). When tokens were added, `refreshed` moves to
//!    `now` (a new bucket) or by the whole windows elapsed (windows stay on
//!    the grid of the bucket's first refill). The bucket gets `HMSET tokens
//!    … refreshed …` and `EXPIRE ttl` (a ttl ≤ 0 deletes it).
//!    `sleep = (window − max(0, now − refreshed) − 1) + (10⁶ − µs) / 10⁶`:
//!    the time to the end of the current window.
//! 6. Reply `[allowed, tokens, string.format("%.6f", sleep)]`.
//!
//! # How it differs from THROTTLE
//!
//! | | LimitLion (this module) | THROTTLE |
//! |---|---|---|
//! | refill | `ceil(rps × window)` per whole window, on a grid anchored at first use | continuous, exact rationals |
//! | arithmetic | IEEE doubles, as Lua | exact integers, no rounding drift |
//! | sleep | to the end of the window, even when allowed | to the next token (0 when allowed) |
//! | state | two hashes, strings anyone can edit | one typed key (knobs inside) |
//! | bad knobs | whatever Lua makes of them (`nan`, `inf`, errors after writes) | refused up front |
//!
//! # Exactness
//!
//! Every conversion the script goes through is reproduced, and checked
//! against the servers' Lua in `tests/limitlion_lua.rs`:
//!
//! - `tonumber(string)` is Lua 5.1's `luaO_str2d`: C `strtod` (glibc: leading
//!   whitespace, sign, decimal with exponent, hex `0x…` with binary `p`
//!   exponent, `inf`/`infinity`/`nan`/`nan(…)` in any case, correctly
//!   rounded, overflow to ±inf) over the bytes up to the first NUL, then
//!   nothing but trailing whitespace ([`tonumber`]).
//! - A Lua number passed to `redis.call` becomes text one of two ways
//!   ([`NumberText`]): Redis 7.0 and older print `%.17g`; Redis 7.2+ and
//!   Valkey print integers in ±2⁶² as integers, everything else with fpconv
//!   (Grisu2, reproduced digit for digit).
//! - `EXPIRE`'s argument is then parsed as Redis does (`string2ll`: no `+`,
//!   no spaces, no leading zeros, no `-0`) and range-checked.
//! - A Lua number in the reply becomes `(long long)` of the double: on
//!   x86-64, truncation, and `i64::MIN` for NaN and out-of-range values
//!   ([`reply_integer`]).
//! - `string.format("%.6f")` is C's `printf`: exact decimal expansion, ties
//!   to even, `inf`, `nan` and `-nan` ([`sleep_text`]).
//! - NaN signs follow the x86-64 SSE rules the servers' Lua runs on (an
//!   operation returns its first NaN operand, else its second, else the
//!   negative "default NaN"), since `%.17g` prints `nan` and `-nan`
//!   differently. `math.max`/`math.min` are Lua 5.1's loops (`max(0, nan)`
//!   is 0, `min(c, nan)` is `c`).

use crate::time::Timestamp;

/// The suffix of the knobs hash: `knobs_key = bucket_key .. ":knobs"`.
pub const KNOBS_SUFFIX: &str = ":knobs";

/// How the server's Lua bridge turns a Lua number argument of
/// `redis.call` into a string (see each server's `script_lua.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberText {
    /// Redis 7.0 and older: `snprintf("%.17g")`.
    Printf17g,
    /// Redis 7.2 and later, and Valkey: an integer in `[-2⁶², 2⁶²]` as
    /// an integer (`double2ll` + `ll2string`, so `-0` is `0`), anything
    /// else with fpconv's `fpconv_dtoa` (Grisu2).
    IntegerOrGrisu,
}

impl NumberText {
    /// The conversion a server uses, from its `INFO server` fields: Valkey
    /// (any version) and Redis 7.2 or later use [`NumberText::IntegerOrGrisu`].
    pub fn for_server(valkey: bool, redis_major: u32, redis_minor: u32) -> NumberText {
        if valkey || (redis_major, redis_minor) >= (7, 2) {
            NumberText::IntegerOrGrisu
        } else {
            NumberText::Printf17g
        }
    }

    /// The string the server passes to the command for the Lua number `x`.
    pub fn format(self, x: f64) -> String {
        match self {
            NumberText::Printf17g => printf_g17(x),
            NumberText::IntegerOrGrisu => match double2ll(x) {
                Some(i) => i.to_string(),
                None => fpconv_dtoa(x),
            },
        }
    }
}

/// The knobs hash's fields as `HMGET knobs_key rps burst window` returns
/// them (`None`: no such field, or no hash).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Knobs<'a> {
    pub rps: Option<&'a [u8]>,
    pub burst: Option<&'a [u8]>,
    pub window: Option<&'a [u8]>,
}

/// The call's arguments, as the script's `ARGV[2..6]` strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Args<'a> {
    pub rps: &'a [u8],
    pub burst: &'a [u8],
    pub window: &'a [u8],
    pub requested_tokens: &'a [u8],
    pub knobs_ttl: &'a [u8],
}

/// The bucket hash, as the script's two `HGET`s see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket<'a> {
    /// A hash, or no key (both fields `None`).
    Hash {
        tokens: Option<&'a [u8]>,
        refreshed: Option<&'a [u8]>,
    },
    /// The key holds another type: the script's `HGET` fails (only when it
    /// gets that far: rps neither 0 nor -1, and after the knobs' EXPIRE).
    WrongType,
}

/// Where the script's time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock<'a> {
    /// The server clock ([`Call::now`], as `TIME` gives it).
    Server,
    /// Testing mode with `frozen_second` existing: the `MGET frozen_second
    /// frozen_microsecond` values (`None` for a missing key, or one that
    /// holds no string).
    Keys {
        second: Option<&'a [u8]>,
        microsecond: Option<&'a [u8]>,
    },
}

/// Everything one script run reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call<'a> {
    pub knobs: Knobs<'a>,
    pub args: Args<'a>,
    pub bucket: Bucket<'a>,
    pub clock: Clock<'a>,
    /// The server's real clock, read once for the call: the script's time
    /// under [`Clock::Server`], and `EXPIRE`'s base time (whole
    /// milliseconds) whatever `clock` says.
    pub now: Timestamp,
    pub number_text: NumberText,
}

/// What an `EXPIRE key seconds` the script runs does to an existing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// The key expires `seconds` (≥ 1) after the server's base time.
    Seconds(i64),
    /// `seconds ≤ 0`: the key is deleted.
    Delete,
}

impl Ttl {
    /// The absolute expiry in Unix milliseconds (for `PEXPIREAT`), from the
    /// call's [`Call::now`]; `None` for [`Ttl::Delete`]. [`expire`] has
    /// checked that it fits, as Redis does.
    pub fn expire_at_ms(self, now: Timestamp) -> Option<i64> {
        match self {
            Ttl::Seconds(s) => s.checked_mul(1000)?.checked_add(base_ms(now)),
            Ttl::Delete => None,
        }
    }
}

/// EXPIRE's base time: the clock in whole milliseconds.
fn base_ms(now: Timestamp) -> i64 {
    i64::try_from(now.0 / 1000).unwrap_or(i64::MAX)
}

/// The bucket write: `HMSET bucket tokens <tokens> refreshed <refreshed>`,
/// then `EXPIRE bucket <ttl>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketWrite {
    pub tokens: String,
    pub refreshed: String,
    /// `None`: the EXPIRE failed (the reply is its error; the HMSET stays).
    pub ttl: Option<Ttl>,
}

/// The script's reply, `[allowed, tokens, sleep]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub allowed: bool,
    /// The integer Redis makes of the Lua number (see [`reply_integer`]).
    pub tokens: i64,
    /// `string.format("%.6f", seconds_left)`.
    pub sleep: String,
}

/// What one run does, in the script's order: the knobs' EXPIRE, then the
/// bucket write, then the reply. When the reply is an error, the steps
/// before it that are `Some` still happened (a Lua script is not rolled
/// back), and none after it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `EXPIRE knobs_key knobs_ttl` (knobs with an `rps` field and
    /// `knobs_ttl > 0` only).
    pub knobs_ttl: Option<Ttl>,
    pub bucket: Option<BucketWrite>,
    pub reply: Result<Reply, ScriptError>,
}

/// A value the script needed as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Rps,
    Burst,
    Window,
    RequestedTokens,
    KnobsTtl,
    /// The clock's seconds (`frozen_second`).
    Second,
    /// The clock's microseconds (`frozen_microsecond`).
    Microsecond,
}

impl Operand {
    fn name(self) -> &'static str {
        match self {
            Operand::Rps => "rps",
            Operand::Burst => "burst",
            Operand::Window => "window",
            Operand::RequestedTokens => "requested_tokens",
            Operand::KnobsTtl => "knobs_ttl",
            Operand::Second => "the clock's second",
            Operand::Microsecond => "the clock's microsecond",
        }
    }
}

/// Where the script raises an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptError {
    /// Lua: "attempt to perform arithmetic on a nil value" (a value that
    /// `tonumber` refused).
    Arithmetic(Operand),
    /// Lua: "attempt to compare nil with number".
    Compare(Operand),
    /// `HGET` on a bucket key of another type.
    WrongType,
    /// EXPIRE: "value is not an integer or out of range" (its argument
    /// printed as `1e+17`, `0.5`, `nan`, `-0`, …).
    NotAnInteger,
    /// EXPIRE: "invalid expire time in 'expire' command" (overflow).
    InvalidExpireTime,
}

impl ScriptError {
    /// The error reply (Redis's own text where Redis raises it).
    pub fn message(self) -> String {
        match self {
            ScriptError::Arithmetic(op) => format!(
                "ERR {} is not a number: LimitLion's script fails here (attempt to perform arithmetic on a nil value)",
                op.name()
            ),
            ScriptError::Compare(op) => format!(
                "ERR {} is not a number: LimitLion's script fails here (attempt to compare nil with number)",
                op.name()
            ),
            ScriptError::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value".to_string()
            }
            ScriptError::NotAnInteger => "ERR value is not an integer or out of range".to_string(),
            ScriptError::InvalidExpireTime => {
                "ERR invalid expire time in 'expire' command".to_string()
            }
        }
    }
}

/// One run of LimitLion's script.
pub fn throttle(call: &Call<'_>) -> Outcome {
    let mut outcome = Outcome {
        knobs_ttl: None,
        bucket: None,
        reply: Err(ScriptError::WrongType),
    };
    outcome.reply = run(call, &mut outcome);
    outcome
}

fn num(x: Option<f64>, op: Operand) -> Result<f64, ScriptError> {
    x.ok_or(ScriptError::Arithmetic(op))
}

fn run(c: &Call<'_>, out: &mut Outcome) -> Result<Reply, ScriptError> {
    let requested_tokens = tonumber(c.args.requested_tokens);
    let knobs_ttl = tonumber(c.args.knobs_ttl);
    let (rps, burst, window) = match c.knobs.rps {
        None => (
            tonumber(c.args.rps),
            tonumber(c.args.burst),
            tonumber(c.args.window),
        ),
        Some(rps) => {
            let knobs = (
                tonumber(rps),
                c.knobs.burst.and_then(tonumber),
                c.knobs.window.and_then(tonumber),
            );
            // `if knobs_ttl > 0`: Lua's `0 < knobs_ttl`.
            let ttl = knobs_ttl.ok_or(ScriptError::Compare(Operand::KnobsTtl))?;
            if 0.0 < ttl {
                out.knobs_ttl = Some(expire(&c.number_text.format(ttl), c.now)?);
            }
            knobs
        }
    };
    let (now, microsecond) = match c.clock {
        // TIME's two integers, read by tonumber: exact below 2^53
        Clock::Server => (
            Some((c.now.0 / 1_000_000) as f64),
            Some((c.now.0 % 1_000_000) as f64),
        ),
        Clock::Keys {
            second,
            microsecond,
        } => (second.and_then(tonumber), microsecond.and_then(tonumber)),
    };
    let ttl = floor(mul(
        mul(num(burst, Operand::Burst)?, num(window, Operand::Window)?),
        2.0,
    ));
    // `rps == 0` / `rps == -1` are false for nil.
    if rps == Some(0.0) {
        let window = num(window, Operand::Window)?;
        return Ok(Reply {
            allowed: false,
            tokens: 0,
            sleep: sleep_text(window),
        });
    }
    if rps == Some(-1.0) {
        return Ok(Reply {
            allowed: true,
            tokens: 1,
            sleep: sleep_text(0.0),
        });
    }
    let rate = num(rps, Operand::Rps)?;
    let burst = num(burst, Operand::Burst)?;
    let window = num(window, Operand::Window)?;

    // check_bucket
    let capacity = ceil(mul(mul(rate, burst), window));
    let (tokens, refreshed) = match c.bucket {
        Bucket::Hash { tokens, refreshed } => (tokens, refreshed),
        Bucket::WrongType => return Err(ScriptError::WrongType),
    };
    let last_tokens = tokens.and_then(tonumber).unwrap_or(capacity);
    let last_refreshed = refreshed.and_then(tonumber).unwrap_or(0.0);
    let now = num(now, Operand::Second)?;
    let age = max0(sub(now, last_refreshed));
    let elapsed_windows = floor(div(age, window));
    let add_tokens = ceil(mul(mul(elapsed_windows, rate), window));
    let filled_tokens = min(capacity, add(last_tokens, add_tokens));
    let requested = requested_tokens.ok_or(ScriptError::Compare(Operand::RequestedTokens))?;
    let allowed = requested <= filled_tokens;
    let refreshed = if add_tokens > 0.0 && last_refreshed == 0.0 {
        now
    } else if add_tokens > 0.0 && last_refreshed != 0.0 {
        add(last_refreshed, mul(elapsed_windows, window))
    } else {
        last_refreshed
    };

    // update_bucket
    let new_tokens = if allowed {
        max0(sub(filled_tokens, requested))
    } else {
        filled_tokens
    };
    let write = out.bucket.insert(BucketWrite {
        tokens: c.number_text.format(new_tokens),
        refreshed: c.number_text.format(refreshed),
        ttl: None,
    });
    write.ttl = Some(expire(&c.number_text.format(ttl), c.now)?);

    let diff = max0(sub(now, refreshed));
    let microsecond = num(microsecond, Operand::Microsecond)?;
    let seconds_left = add(
        sub(sub(window, diff), 1.0),
        div(sub(1_000_000.0, microsecond), 1_000_000.0),
    );
    Ok(Reply {
        allowed,
        tokens: reply_integer(new_tokens),
        sleep: sleep_text(seconds_left),
    })
}

/// `EXPIRE key <text>` on an existing key, as Redis runs it at `now`.
pub fn expire(text: &str, now: Timestamp) -> Result<Ttl, ScriptError> {
    let seconds = string2ll(text.as_bytes()).ok_or(ScriptError::NotAnInteger)?;
    let ms = seconds
        .checked_mul(1000)
        .ok_or(ScriptError::InvalidExpireTime)?;
    if ms > i64::MAX.saturating_sub(base_ms(now)) {
        return Err(ScriptError::InvalidExpireTime);
    }
    Ok(if seconds <= 0 {
        Ttl::Delete
    } else {
        Ttl::Seconds(seconds)
    })
}

/// Redis's `string2ll`: an optional `-`, then `0` alone or a digit 1-9 and
/// digits, nothing else, in `i64`'s range and shorter than 21 bytes.
pub fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v
            .checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))?;
    }
    if negative {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

// ---------------------------------------------------------------------------
// Lua 5.1 numbers on x86-64.

/// The NaN an invalid operation produces: x86's "real indefinite" has the
/// sign bit set (printed `-nan`); other targets' default NaN is positive.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
const DEFAULT_NAN: f64 = f64::from_bits(0xFFF8_0000_0000_0000);
#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
const DEFAULT_NAN: f64 = f64::from_bits(0x7FF8_0000_0000_0000);

const QUIET_BIT: u64 = 0x0008_0000_0000_0000;

/// The result of `a op b` as SSE computes it: the first NaN operand
/// (quieted), else the second, else a new NaN is the default NaN.
fn ieee(a: f64, b: f64, result: f64) -> f64 {
    if a.is_nan() {
        f64::from_bits(a.to_bits() | QUIET_BIT)
    } else if b.is_nan() {
        f64::from_bits(b.to_bits() | QUIET_BIT)
    } else if result.is_nan() {
        DEFAULT_NAN
    } else {
        result
    }
}

fn add(a: f64, b: f64) -> f64 {
    ieee(a, b, a + b)
}
fn sub(a: f64, b: f64) -> f64 {
    ieee(a, b, a - b)
}
fn mul(a: f64, b: f64) -> f64 {
    ieee(a, b, a * b)
}
fn div(a: f64, b: f64) -> f64 {
    ieee(a, b, a / b)
}
/// `math.floor` (C `floor`: a NaN passes through, sign kept).
fn floor(x: f64) -> f64 {
    if x.is_nan() { x } else { x.floor() }
}
/// `math.ceil`.
fn ceil(x: f64) -> f64 {
    if x.is_nan() { x } else { x.ceil() }
}
/// `math.max(0, x)`: Lua 5.1 keeps the first argument unless a later one
/// is greater.
fn max0(x: f64) -> f64 {
    if x > 0.0 { x } else { 0.0 }
}
/// `math.min(a, b)`.
fn min(a: f64, b: f64) -> f64 {
    if b < a { b } else { a }
}

/// The integer Redis replies for a Lua number: C's `(long long)` cast. On
/// x86-64 (`cvttsd2si`) that truncates toward zero, and NaN or a value
/// outside `[-2⁶³, 2⁶³)` gives `i64::MIN`; other targets saturate.
pub fn reply_integer(x: f64) -> i64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if cfg!(any(target_arch = "x86", target_arch = "x86_64"))
        && (x.is_nan() || !(-TWO_63..TWO_63).contains(&x))
    {
        return i64::MIN;
    }
    x as i64
}

/// Lua 5.1's `tonumber(s)` for a string: C `strtod` over the bytes before
/// the first NUL, accepted when only whitespace follows the number.
pub fn tonumber(s: &[u8]) -> Option<f64> {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    let s = s.get(..end)?;
    let (value, used) = strtod(s)?;
    let rest = s.get(used..)?;
    // luaO_str2d retries an `x` right after the number with strtoul(…, 16);
    // after glibc's strtod (which reads hex itself) that never reaches the
    // end of the string, so such a string is not a number.
    if rest.iter().all(|&b| is_c_space(b)) {
        Some(value)
    } else {
        None
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_digits(s: &[u8], from: usize, hex: bool) -> usize {
    let mut i = from;
    while let Some(&b) = s.get(i) {
        let ok = if hex {
            b.is_ascii_hexdigit()
        } else {
            b.is_ascii_digit()
        };
        if !ok {
            break;
        }
        i = i.saturating_add(1);
    }
    i
}

fn starts_with_ci(s: &[u8], from: usize, word: &[u8]) -> bool {
    s.get(from..from.saturating_add(word.len()))
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// glibc's `strtod` in the "C" locale: the value and the bytes used, or
/// `None` when no number starts the string.
fn strtod(s: &[u8]) -> Option<(f64, usize)> {
    let mut i = 0usize;
    while s.get(i).is_some_and(|&b| is_c_space(b)) {
        i = i.saturating_add(1);
    }
    let negative = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i = i.saturating_add(1);
    }
    let signed = |x: f64| if negative { -x } else { x };
    if starts_with_ci(s, i, b"infinity") {
        return Some((signed(f64::INFINITY), i.saturating_add(8)));
    }
    if starts_with_ci(s, i, b"inf") {
        return Some((signed(f64::INFINITY), i.saturating_add(3)));
    }
    if starts_with_ci(s, i, b"nan") {
        let mut end = i.saturating_add(3);
        if s.get(end) == Some(&b'(') {
            let mut j = end.saturating_add(1);
            while s
                .get(j)
                .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
            {
                j = j.saturating_add(1);
            }
            if s.get(j) == Some(&b')') {
                end = j.saturating_add(1);
            }
        }
        // glibc: a quiet NaN, negated by a '-' sign (the payload of
        // `nan(…)` only changes bits no conversion here prints).
        return Some((signed(f64::NAN), end));
    }
    if s.get(i) == Some(&b'0') && matches!(s.get(i.saturating_add(1)), Some(b'x' | b'X')) {
        if let Some((value, end)) = hex_float(s, i.saturating_add(2)) {
            return Some((signed(value), end));
        }
        // "0x" without hex digits: the number is the "0".
        return Some((signed(0.0), i.saturating_add(1)));
    }
    let int_end = skip_digits(s, i, false);
    let mut end = int_end;
    let mut frac_digits = 0usize;
    if s.get(end) == Some(&b'.') {
        let frac_end = skip_digits(s, end.saturating_add(1), false);
        frac_digits = frac_end.saturating_sub(end.saturating_add(1));
        end = frac_end;
    }
    if int_end == i && frac_digits == 0 {
        return None;
    }
    let mantissa_end = end;
    let mut exponent: i64 = 0;
    if matches!(s.get(end), Some(b'e' | b'E')) {
        let mut j = end.saturating_add(1);
        let exp_negative = s.get(j) == Some(&b'-');
        if matches!(s.get(j), Some(b'-' | b'+')) {
            j = j.saturating_add(1);
        }
        let digits_end = skip_digits(s, j, false);
        if digits_end > j {
            for &d in s.get(j..digits_end).unwrap_or_default() {
                exponent = exponent
                    .saturating_mul(10)
                    .saturating_add(i64::from(d.wrapping_sub(b'0')));
            }
            if exp_negative {
                exponent = exponent.saturating_neg();
            }
            end = digits_end;
        }
    }
    let value = decimal(s.get(i..mantissa_end).unwrap_or_default(), exponent);
    Some((signed(value), end))
}

/// A decimal mantissa (`digits[.digits]`, no sign) times `10^exponent`,
/// correctly rounded (Rust's parser, on a rewritten string whose exponent
/// it cannot saturate).
fn decimal(mantissa: &[u8], exponent: i64) -> f64 {
    let mut digits: Vec<u8> = Vec::with_capacity(mantissa.len());
    let mut point: i64 = 0; // digits before the decimal point
    let mut seen_point = false;
    for &b in mantissa {
        if b == b'.' {
            seen_point = true;
            continue;
        }
        if digits.is_empty() && b == b'0' {
            // a leading zero: shifts the point if after it
            if seen_point {
                point = point.saturating_sub(1);
            }
            continue;
        }
        digits.push(b);
        if !seen_point {
            point = point.saturating_add(1);
        }
    }
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        return 0.0;
    }
    // value = 0.DIGITS × 10^(point + exponent)
    let e = point.saturating_add(exponent);
    if e > 400 {
        return f64::INFINITY;
    }
    if e < -400 {
        return 0.0;
    }
    let mut text = String::with_capacity(digits.len().saturating_add(8));
    text.push_str("0.");
    text.extend(digits.iter().map(|&d| char::from(d)));
    text.push('e');
    text.push_str(&e.to_string());
    text.parse::<f64>().unwrap_or(f64::NAN)
}

/// glibc's hex float after `0x`: hex digits with an optional point and an
/// optional `p` binary exponent, correctly rounded (to nearest, ties to
/// even), or `None` without a hex digit.
fn hex_float(s: &[u8], from: usize) -> Option<(f64, usize)> {
    let int_end = skip_digits(s, from, true);
    let mut end = int_end;
    let mut frac_start = end;
    if s.get(end) == Some(&b'.') {
        frac_start = end.saturating_add(1);
        end = skip_digits(s, frac_start, true);
    }
    let frac_len = end.saturating_sub(frac_start);
    if int_end == from && frac_len == 0 {
        return None;
    }
    // The first 64 significant bits, and whether any later bit is set.
    let mut mantissa: u64 = 0;
    let mut exp2: i64 = 0;
    let mut sticky = false;
    let int_digits = s.get(from..int_end).unwrap_or_default();
    let frac_digits = s.get(frac_start..end).unwrap_or_default();
    for (k, &d) in int_digits.iter().chain(frac_digits).enumerate() {
        let v = u64::from(hex_value(d));
        let fractional = k >= int_digits.len();
        if mantissa >> 60 == 0 {
            mantissa = (mantissa << 4) | v;
            if fractional {
                exp2 = exp2.saturating_sub(4);
            }
        } else {
            sticky |= v != 0;
            if !fractional {
                exp2 = exp2.saturating_add(4);
            }
        }
    }
    if matches!(s.get(end), Some(b'p' | b'P')) {
        let mut j = end.saturating_add(1);
        let negative = s.get(j) == Some(&b'-');
        if matches!(s.get(j), Some(b'-' | b'+')) {
            j = j.saturating_add(1);
        }
        let digits_end = skip_digits(s, j, false);
        if digits_end > j {
            let mut e: i64 = 0;
            for &d in s.get(j..digits_end).unwrap_or_default() {
                e = e
                    .saturating_mul(10)
                    .saturating_add(i64::from(d.wrapping_sub(b'0')));
            }
            exp2 = if negative {
                exp2.saturating_sub(e)
            } else {
                exp2.saturating_add(e)
            };
            end = digits_end;
        }
    }
    Some((compose(mantissa, exp2, sticky), end))
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d.wrapping_sub(b'0'),
        b'a'..=b'f' => d.wrapping_sub(b'a').wrapping_add(10),
        b'A'..=b'F' => d.wrapping_sub(b'A').wrapping_add(10),
        _ => 0,
    }
}

/// `mantissa × 2^exp2` (plus less than one unit when `sticky`), rounded to
/// the nearest double, ties to even.
fn compose(mantissa: u64, exp2: i64, sticky: bool) -> f64 {
    if mantissa == 0 {
        return 0.0;
    }
    let lz = mantissa.leading_zeros();
    let m = mantissa << lz;
    // value = m × 2^(e - 63), m in [2^63, 2^64)
    let e = exp2.saturating_sub(i64::from(lz)).saturating_add(63);
    if e > 1023 {
        return f64::INFINITY;
    }
    // Bits to drop: 11 for a normal double, more below 2^-1022.
    let shift: i64 = if e >= -1022 {
        11
    } else {
        11i64.saturating_add((-1022i64).saturating_sub(e))
    };
    if shift > 64 {
        return 0.0;
    }
    let Ok(shift) = u32::try_from(shift) else {
        return 0.0;
    };
    let (q, rem_above_half, rem_is_half) = if shift == 64 {
        (0u64, m > (1u64 << 63) || sticky, m == 1u64 << 63 && !sticky)
    } else {
        let q = m >> shift;
        let rem = m & ((1u64 << shift).wrapping_sub(1));
        let half = 1u64 << shift.saturating_sub(1);
        (
            q,
            rem > half || (rem == half && sticky),
            rem == half && !sticky,
        )
    };
    let round_up = rem_above_half || (rem_is_half && q & 1 == 1);
    let mut q = q.wrapping_add(u64::from(round_up));
    let mut e = e;
    if e >= -1022 {
        if q == 1u64 << 53 {
            q = 1u64 << 52;
            e = e.saturating_add(1);
            if e > 1023 {
                return f64::INFINITY;
            }
        }
        let biased = u64::try_from(e.saturating_add(1023)).unwrap_or(0);
        f64::from_bits((biased << 52) | (q & ((1u64 << 52).wrapping_sub(1))))
    } else {
        // subnormal (q == 2^52 is exactly the smallest normal's bits)
        f64::from_bits(q)
    }
}

// ---------------------------------------------------------------------------
// C printf.

fn nan_or_inf(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some(if x.is_sign_negative() { "-nan" } else { "nan" })
    } else if x.is_infinite() {
        Some(if x < 0.0 { "-inf" } else { "inf" })
    } else {
        None
    }
}

/// C's `%.6f` (glibc): the exact value rounded to 6 decimals, ties to
/// even; `-0.000000` for a negative value that rounds to zero.
pub fn sleep_text(x: f64) -> String {
    match nan_or_inf(x) {
        Some(s) => s.to_string(),
        None => format!("{x:.6}"),
    }
}

fn strip_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// C's `%.17g` (glibc).
pub fn printf_g17(x: f64) -> String {
    if let Some(s) = nan_or_inf(x) {
        return s.to_string();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    let a = x.abs();
    // The common case, an integer below 2^53: at most 16 digits, so %.17g
    // prints it whole, as an integer.
    if a < 9_007_199_254_740_992.0 && a.fract() == 0.0 {
        return format!("{sign}{}", a as u64);
    }
    // %e with 16 decimals gives the decimal exponent after rounding to 17
    // significant digits.
    let sci = format!("{a:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..17).contains(&exp) {
        let decimals = usize::try_from(16i32.saturating_sub(exp)).unwrap_or(0);
        let fixed = format!("{a:.decimals$}");
        format!("{sign}{}", strip_fraction_zeros(&fixed))
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{sign}{}e{exp_sign}{:02}",
            strip_fraction_zeros(mantissa),
            exp.unsigned_abs()
        )
    }
}

/// Redis's `double2ll`: `Some` when `x` is an integer in `[-2⁶², 2⁶²]`.
fn double2ll(x: f64) -> Option<i64> {
    const TWO_62: f64 = 4_611_686_018_427_387_904.0;
    if x.is_nan() || !(-TWO_62..=TWO_62).contains(&x) {
        return None;
    }
    let i = x as i64;
    (i as f64 == x).then_some(i)
}

// ---------------------------------------------------------------------------
// fpconv_dtoa: Grisu2 (Loitsch, "Printing floating-point numbers quickly and
// accurately with integers", 2010) with fpconv's digit generation, rounding
// and layout, which Redis 7.2+ and Valkey use. Integer arithmetic wraps as
// C's unsigned arithmetic does.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fp {
    frac: u64,
    exp: i32,
}

const FRAC_MASK: u64 = 0x000F_FFFF_FFFF_FFFF;
const EXP_MASK: u64 = 0x7FF0_0000_0000_0000;
const HIDDEN_BIT: u64 = 0x0010_0000_0000_0000;
const EXP_BIAS: i32 = 1023 + 52;

const TENS: [u64; 20] = [
    10_000_000_000_000_000_000,
    1_000_000_000_000_000_000,
    100_000_000_000_000_000,
    10_000_000_000_000_000,
    1_000_000_000_000_000,
    100_000_000_000_000,
    10_000_000_000_000,
    1_000_000_000_000,
    100_000_000_000,
    10_000_000_000,
    1_000_000_000,
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

/// `10^k` for `k = -348, -340, …, 340`: the 64-bit mantissa rounded to
/// nearest and the binary exponent (checked from first principles in the
/// tests).
#[rustfmt::skip]
const POWERS_OF_TEN: [Fp; 87] = [
    Fp { frac: 0xfa8fd5a0081c0288, exp: -1220 }, // 10^-348
    Fp { frac: 0xbaaee17fa23ebf76, exp: -1193 }, // 10^-340
    Fp { frac: 0x8b16fb203055ac76, exp: -1166 }, // 10^-332
    Fp { frac: 0xcf42894a5dce35ea, exp: -1140 }, // 10^-324
    Fp { frac: 0x9a6bb0aa55653b2d, exp: -1113 }, // 10^-316
    Fp { frac: 0xe61acf033d1a45df, exp: -1087 }, // 10^-308
    Fp { frac: 0xab70fe17c79ac6ca, exp: -1060 }, // 10^-300
    Fp { frac: 0xff77b1fcbebcdc4f, exp: -1034 }, // 10^-292
    Fp { frac: 0xbe5691ef416bd60c, exp: -1007 }, // 10^-284
    Fp { frac: 0x8dd01fad907ffc3c, exp: -980 }, // 10^-276
    Fp { frac: 0xd3515c2831559a83, exp: -954 }, // 10^-268
    Fp { frac: 0x9d71ac8fada6c9b5, exp: -927 }, // 10^-260
    Fp { frac: 0xea9c227723ee8bcb, exp: -901 }, // 10^-252
    Fp { frac: 0xaecc49914078536d, exp: -874 }, // 10^-244
    Fp { frac: 0x823c12795db6ce57, exp: -847 }, // 10^-236
    Fp { frac: 0xc21094364dfb5637, exp: -821 }, // 10^-228
    Fp { frac: 0x9096ea6f3848984f, exp: -794 }, // 10^-220
    Fp { frac: 0xd77485cb25823ac7, exp: -768 }, // 10^-212
    Fp { frac: 0xa086cfcd97bf97f4, exp: -741 }, // 10^-204
    Fp { frac: 0xef340a98172aace5, exp: -715 }, // 10^-196
    Fp { frac: 0xb23867fb2a35b28e, exp: -688 }, // 10^-188
    Fp { frac: 0x84c8d4dfd2c63f3b, exp: -661 }, // 10^-180
    Fp { frac: 0xc5dd44271ad3cdba, exp: -635 }, // 10^-172
    Fp { frac: 0x936b9fcebb25c996, exp: -608 }, // 10^-164
    Fp { frac: 0xdbac6c247d62a584, exp: -582 }, // 10^-156
    Fp { frac: 0xa3ab66580d5fdaf6, exp: -555 }, // 10^-148
    Fp { frac: 0xf3e2f893dec3f126, exp: -529 }, // 10^-140
    Fp { frac: 0xb5b5ada8aaff80b8, exp: -502 }, // 10^-132
    Fp { frac: 0x87625f056c7c4a8b, exp: -475 }, // 10^-124
    Fp { frac: 0xc9bcff6034c13053, exp: -449 }, // 10^-116
    Fp { frac: 0x964e858c91ba2655, exp: -422 }, // 10^-108
    Fp { frac: 0xdff9772470297ebd, exp: -396 }, // 10^-100
    Fp { frac: 0xa6dfbd9fb8e5b88f, exp: -369 }, // 10^-92
    Fp { frac: 0xf8a95fcf88747d94, exp: -343 }, // 10^-84
    Fp { frac: 0xb94470938fa89bcf, exp: -316 }, // 10^-76
    Fp { frac: 0x8a08f0f8bf0f156b, exp: -289 }, // 10^-68
    Fp { frac: 0xcdb02555653131b6, exp: -263 }, // 10^-60
    Fp { frac: 0x993fe2c6d07b7fac, exp: -236 }, // 10^-52
    Fp { frac: 0xe45c10c42a2b3b06, exp: -210 }, // 10^-44
    Fp { frac: 0xaa242499697392d3, exp: -183 }, // 10^-36
    Fp { frac: 0xfd87b5f28300ca0e, exp: -157 }, // 10^-28
    Fp { frac: 0xbce5086492111aeb, exp: -130 }, // 10^-20
    Fp { frac: 0x8cbccc096f5088cc, exp: -103 }, // 10^-12
    Fp { frac: 0xd1b71758e219652c, exp: -77 }, // 10^-4
    Fp { frac: 0x9c40000000000000, exp: -50 }, // 10^4
    Fp { frac: 0xe8d4a51000000000, exp: -24 }, // 10^12
    Fp { frac: 0xad78ebc5ac620000, exp: 3 }, // 10^20
    Fp { frac: 0x813f3978f8940984, exp: 30 }, // 10^28
    Fp { frac: 0xc097ce7bc90715b3, exp: 56 }, // 10^36
    Fp { frac: 0x8f7e32ce7bea5c70, exp: 83 }, // 10^44
    Fp { frac: 0xd5d238a4abe98068, exp: 109 }, // 10^52
    Fp { frac: 0x9f4f2726179a2245, exp: 136 }, // 10^60
    Fp { frac: 0xed63a231d4c4fb27, exp: 162 }, // 10^68
    Fp { frac: 0xb0de65388cc8ada8, exp: 189 }, // 10^76
    Fp { frac: 0x83c7088e1aab65db, exp: 216 }, // 10^84
    Fp { frac: 0xc45d1df942711d9a, exp: 242 }, // 10^92
    Fp { frac: 0x924d692ca61be758, exp: 269 }, // 10^100
    Fp { frac: 0xda01ee641a708dea, exp: 295 }, // 10^108
    Fp { frac: 0xa26da3999aef774a, exp: 322 }, // 10^116
    Fp { frac: 0xf209787bb47d6b85, exp: 348 }, // 10^124
    Fp { frac: 0xb454e4a179dd1877, exp: 375 }, // 10^132
    Fp { frac: 0x865b86925b9bc5c2, exp: 402 }, // 10^140
    Fp { frac: 0xc83553c5c8965d3d, exp: 428 }, // 10^148
    Fp { frac: 0x952ab45cfa97a0b3, exp: 455 }, // 10^156
    Fp { frac: 0xde469fbd99a05fe3, exp: 481 }, // 10^164
    Fp { frac: 0xa59bc234db398c25, exp: 508 }, // 10^172
    Fp { frac: 0xf6c69a72a3989f5c, exp: 534 }, // 10^180
    Fp { frac: 0xb7dcbf5354e9bece, exp: 561 }, // 10^188
    Fp { frac: 0x88fcf317f22241e2, exp: 588 }, // 10^196
    Fp { frac: 0xcc20ce9bd35c78a5, exp: 614 }, // 10^204
    Fp { frac: 0x98165af37b2153df, exp: 641 }, // 10^212
    Fp { frac: 0xe2a0b5dc971f303a, exp: 667 }, // 10^220
    Fp { frac: 0xa8d9d1535ce3b396, exp: 694 }, // 10^228
    Fp { frac: 0xfb9b7cd9a4a7443c, exp: 720 }, // 10^236
    Fp { frac: 0xbb764c4ca7a44410, exp: 747 }, // 10^244
    Fp { frac: 0x8bab8eefb6409c1a, exp: 774 }, // 10^252
    Fp { frac: 0xd01fef10a657842c, exp: 800 }, // 10^260
    Fp { frac: 0x9b10a4e5e9913129, exp: 827 }, // 10^268
    Fp { frac: 0xe7109bfba19c0c9d, exp: 853 }, // 10^276
    Fp { frac: 0xac2820d9623bf429, exp: 880 }, // 10^284
    Fp { frac: 0x80444b5e7aa7cf85, exp: 907 }, // 10^292
    Fp { frac: 0xbf21e44003acdd2d, exp: 933 }, // 10^300
    Fp { frac: 0x8e679c2f5e44ff8f, exp: 960 }, // 10^308
    Fp { frac: 0xd433179d9c8cb841, exp: 986 }, // 10^316
    Fp { frac: 0x9e19db92b4e31ba9, exp: 1013 }, // 10^324
    Fp { frac: 0xeb96bf6ebadf77d9, exp: 1039 }, // 10^332
    Fp { frac: 0xaf87023b9bf0ee6b, exp: 1066 }, // 10^340
];

fn build_fp(d: f64) -> Fp {
    let bits = d.to_bits();
    let frac = bits & FRAC_MASK;
    let exp = i32::try_from((bits & EXP_MASK) >> 52).unwrap_or(0);
    if exp != 0 {
        Fp {
            frac: frac.wrapping_add(HIDDEN_BIT),
            exp: exp.wrapping_sub(EXP_BIAS),
        }
    } else {
        Fp {
            frac,
            exp: 1i32.wrapping_sub(EXP_BIAS),
        }
    }
}

fn shl(x: u64, by: i32) -> u64 {
    u32::try_from(by)
        .ok()
        .and_then(|by| x.checked_shl(by))
        .unwrap_or(0)
}

fn shr(x: u64, by: i32) -> u64 {
    u32::try_from(by)
        .ok()
        .and_then(|by| x.checked_shr(by))
        .unwrap_or(0)
}

fn normalize(mut fp: Fp) -> Fp {
    while fp.frac != 0 && fp.frac & HIDDEN_BIT == 0 {
        fp.frac <<= 1;
        fp.exp = fp.exp.wrapping_sub(1);
    }
    Fp {
        frac: shl(fp.frac, 11),
        exp: fp.exp.wrapping_sub(11),
    }
}

/// The normalized upper and lower boundaries of `fp` (not yet normalized).
fn boundaries(fp: Fp) -> (Fp, Fp) {
    let mut upper = Fp {
        frac: (fp.frac << 1).wrapping_add(1),
        exp: fp.exp.wrapping_sub(1),
    };
    while upper.frac != 0 && upper.frac & (HIDDEN_BIT << 1) == 0 {
        upper.frac <<= 1;
        upper.exp = upper.exp.wrapping_sub(1);
    }
    upper.frac = shl(upper.frac, 10);
    upper.exp = upper.exp.wrapping_sub(10);
    let l_shift = if fp.frac == HIDDEN_BIT { 2 } else { 1 };
    let mut lower = Fp {
        frac: shl(fp.frac, l_shift).wrapping_sub(1),
        exp: fp.exp.wrapping_sub(l_shift),
    };
    lower.frac = shl(lower.frac, lower.exp.wrapping_sub(upper.exp));
    lower.exp = upper.exp;
    (lower, upper)
}

fn multiply(a: Fp, b: Fp) -> Fp {
    const LO: u64 = 0xFFFF_FFFF;
    let ah_bl = (a.frac >> 32).wrapping_mul(b.frac & LO);
    let al_bh = (a.frac & LO).wrapping_mul(b.frac >> 32);
    let al_bl = (a.frac & LO).wrapping_mul(b.frac & LO);
    let ah_bh = (a.frac >> 32).wrapping_mul(b.frac >> 32);
    let tmp = (ah_bl & LO)
        .wrapping_add(al_bh & LO)
        .wrapping_add(al_bl >> 32)
        .wrapping_add(1u64 << 31); // round up
    Fp {
        frac: ah_bh
            .wrapping_add(ah_bl >> 32)
            .wrapping_add(al_bh >> 32)
            .wrapping_add(tmp >> 32),
        exp: a.exp.wrapping_add(b.exp).wrapping_add(64),
    }
}

/// The cached power of ten bringing `exp` into [-60, -32], searched from
/// fpconv's first guess (where two fit, the guess decides which), and its
/// decimal exponent.
fn cached_power(exp: i32) -> Option<(Fp, i32)> {
    const ONE_LOG_TEN: f64 = 0.301_029_995_663_981_14;
    let approx = (-(f64::from(exp) + 87.0) * ONE_LOG_TEN) as i32;
    let mut idx = approx.wrapping_add(348).checked_div(8)?;
    for _ in 0..POWERS_OF_TEN.len() {
        let p = *POWERS_OF_TEN.get(usize::try_from(idx).ok()?)?;
        let current = exp.wrapping_add(p.exp).wrapping_add(64);
        if current < -60 {
            idx = idx.wrapping_add(1);
        } else if current > -32 {
            idx = idx.wrapping_sub(1);
        } else {
            return Some((p, idx.wrapping_mul(8).wrapping_sub(348)));
        }
    }
    None
}

fn round_digit(digits: &mut [u8], delta: u64, mut rem: u64, kappa: u64, frac: u64) {
    while rem < frac
        && delta.wrapping_sub(rem) >= kappa
        && (rem.wrapping_add(kappa) < frac
            || frac.wrapping_sub(rem) > rem.wrapping_add(kappa).wrapping_sub(frac))
    {
        if let Some(last) = digits.last_mut() {
            *last = last.wrapping_sub(1);
        }
        rem = rem.wrapping_add(kappa);
    }
}

fn generate_digits(w: Fp, upper: Fp, lower: Fp, k: &mut i32) -> Vec<u8> {
    let mut digits = Vec::with_capacity(18);
    let wfrac = upper.frac.wrapping_sub(w.frac);
    let mut delta = upper.frac.wrapping_sub(lower.frac);
    let shift = upper.exp.wrapping_neg();
    let one = shl(1, shift);
    let mut part1 = shr(upper.frac, shift);
    let mut part2 = upper.frac & one.wrapping_sub(1);
    let mut kappa: i32 = 10;
    for &div in TENS.get(10..).unwrap_or_default() {
        let digit = part1.checked_div(div).unwrap_or(0);
        if digit != 0 || !digits.is_empty() {
            digits.push(b'0'.wrapping_add(u8::try_from(digit).unwrap_or(0)));
        }
        part1 = part1.wrapping_sub(digit.wrapping_mul(div));
        kappa = kappa.wrapping_sub(1);
        let tmp = shl(part1, shift).wrapping_add(part2);
        if tmp <= delta {
            *k = k.wrapping_add(kappa);
            round_digit(&mut digits, delta, tmp, shl(div, shift), wfrac);
            return digits;
        }
    }
    let mut unit = 18usize;
    loop {
        part2 = part2.wrapping_mul(10);
        delta = delta.wrapping_mul(10);
        kappa = kappa.wrapping_sub(1);
        let digit = shr(part2, shift);
        if digit != 0 || !digits.is_empty() {
            digits.push(b'0'.wrapping_add(u8::try_from(digit).unwrap_or(0)));
        }
        part2 &= one.wrapping_sub(1);
        if part2 < delta {
            *k = k.wrapping_add(kappa);
            let scale = TENS.get(unit).copied().unwrap_or(1);
            round_digit(&mut digits, delta, part2, one, wfrac.wrapping_mul(scale));
            return digits;
        }
        if unit == 0 || digits.len() > 40 {
            // cannot happen for a finite double; stops a runaway loop
            return digits;
        }
        unit = unit.wrapping_sub(1);
    }
}

/// Grisu2: the digits and the decimal exponent `k` (value = digits × 10^k)
/// of a finite, non-zero `d`.
fn grisu2(d: f64) -> Option<(Vec<u8>, i32)> {
    let w = build_fp(d);
    let (lower, upper) = boundaries(w);
    let w = normalize(w);
    let (cp, k) = cached_power(upper.exp)?;
    let w = multiply(w, cp);
    let mut upper = multiply(upper, cp);
    let mut lower = multiply(lower, cp);
    lower.frac = lower.frac.wrapping_add(1);
    upper.frac = upper.frac.wrapping_sub(1);
    let mut big_k = k.wrapping_neg();
    let digits = generate_digits(w, upper, lower, &mut big_k);
    Some((digits, big_k))
}

fn emit_digits(digits: &[u8], k: i32, negative: bool) -> String {
    let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let mut exp = k.wrapping_add(n).wrapping_sub(1).wrapping_abs();
    let text = |d: &[u8]| d.iter().map(|&b| char::from(b)).collect::<String>();
    // a plain integer
    if k >= 0 && exp < n.wrapping_add(7) {
        let zeros = usize::try_from(k).unwrap_or(0);
        return format!("{}{}", text(digits), "0".repeat(zeros));
    }
    // a decimal without exponent
    if k < 0 && (k > -7 || exp < 4) {
        let offset = n.wrapping_sub(k.wrapping_abs());
        if offset <= 0 {
            let zeros = usize::try_from(offset.wrapping_neg()).unwrap_or(0);
            return format!("0.{}{}", "0".repeat(zeros), text(digits));
        }
        let split = usize::try_from(offset).unwrap_or(0);
        let (int, frac) = digits.split_at(split.min(digits.len()));
        return format!("{}.{}", text(int), text(frac));
    }
    // scientific: at most 18 digits (17 when negative), cut, not rounded
    let n = n.min(18i32.wrapping_sub(i32::from(negative)));
    let kept = digits
        .get(..usize::try_from(n).unwrap_or(0))
        .unwrap_or(digits);
    let mut out = String::new();
    if let Some((first, rest)) = kept.split_first() {
        out.push(char::from(*first));
        if !rest.is_empty() {
            out.push('.');
            out.push_str(&text(rest));
        }
    }
    out.push('e');
    out.push(if k.wrapping_add(n).wrapping_sub(1) < 0 {
        '-'
    } else {
        '+'
    });
    let mut cent = 0;
    if exp > 99 {
        cent = exp / 100;
        out.push(digit_char(cent));
        exp = exp.wrapping_sub(cent.wrapping_mul(100));
    }
    if exp > 9 {
        let dec = exp / 10;
        out.push(digit_char(dec));
        exp = exp.wrapping_sub(dec.wrapping_mul(10));
    } else if cent != 0 {
        out.push('0');
    }
    out.push(digit_char(exp % 10));
    out
}

fn digit_char(d: i32) -> char {
    char::from_digit(u32::try_from(d).unwrap_or(0), 10).unwrap_or('?')
}

/// fpconv's `fpconv_dtoa`.
fn fpconv_dtoa(d: f64) -> String {
    let negative = d.is_sign_negative();
    let sign = if negative { "-" } else { "" };
    let bits = d.to_bits();
    if d == 0.0 {
        return format!("{sign}0");
    }
    if bits & EXP_MASK == EXP_MASK {
        let word = if bits & FRAC_MASK != 0 { "nan" } else { "inf" };
        return format!("{sign}{word}");
    }
    match grisu2(d) {
        Some((digits, k)) => format!("{sign}{}", emit_digits(&digits, k, negative)),
        // not reached for a finite double (the tests cover every exponent)
        None => printf_g17(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<f64> {
        tonumber(s.as_bytes())
    }

    #[test]
    fn tonumber_follows_strtod() {
        assert_eq!(t("5"), Some(5.0));
        assert_eq!(t(" \t\n\x0b\x0c\r5 \t\n\x0b\x0c\r"), Some(5.0));
        assert_eq!(t("+5"), Some(5.0));
        assert_eq!(t("-2.5e1"), Some(-25.0));
        assert_eq!(t("1."), Some(1.0));
        assert_eq!(t(".5"), Some(0.5));
        assert_eq!(t("1e"), None); // "e" without digits is left over
        assert_eq!(t("1e+"), None);
        assert_eq!(t("."), None);
        assert_eq!(t(""), None);
        assert_eq!(t(" "), None);
        assert_eq!(t("abc"), None);
        assert_eq!(t("5 x"), None);
        assert_eq!(t("5\0garbage"), Some(5.0)); // C string: stops at the NUL
        assert_eq!(t("\0 5"), None);
        assert_eq!(t("0x10"), Some(16.0));
        assert_eq!(t("-0X1p-2"), Some(-0.25));
        assert_eq!(t("0x.8"), Some(0.5));
        assert_eq!(t("0x1.8p1"), Some(3.0));
        assert_eq!(t("0x"), None); // strtod reads "0", then "x" is left
        assert_eq!(t("0x1p"), None);
        assert_eq!(t("1x"), None);
        assert_eq!(t("inf"), Some(f64::INFINITY));
        assert_eq!(t("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(t("infinit"), None); // "inf" then "init"
        assert_eq!(t("1e999"), Some(f64::INFINITY));
        assert_eq!(t("-1e-999"), Some(-0.0));
        assert!(t("-1e-999").is_some_and(|x| x.is_sign_negative()));
        assert!(t("nan").is_some_and(|x| x.is_nan() && x.is_sign_positive()));
        assert!(t("-NaN").is_some_and(|x| x.is_nan() && x.is_sign_negative()));
        assert!(t("nan(123abc_)").is_some_and(f64::is_nan));
        assert_eq!(t("nan(1"), None);
        assert_eq!(t("0.1"), Some(0.1));
        assert_eq!(t("1_000"), None);
    }

    #[test]
    fn tonumber_long_and_extreme_decimals() {
        let many = format!("1{}e-5000", "0".repeat(5000));
        assert_eq!(tonumber(many.as_bytes()), Some(1.0));
        let tiny = format!("0.{}1e5001", "0".repeat(5000));
        assert_eq!(tonumber(tiny.as_bytes()), Some(1.0));
        assert_eq!(t("0e99999999999999999999999"), Some(0.0));
        assert_eq!(t("4.9406564584124654e-324"), Some(f64::from_bits(1)));
        assert_eq!(t("2.4703282292062328e-324"), Some(f64::from_bits(1)));
        assert_eq!(t("2.4703282292062327e-324"), Some(0.0));
        assert_eq!(t("1.7976931348623158e308"), Some(f64::MAX));
        assert_eq!(t("1.7976931348623159e308"), Some(f64::INFINITY));
    }

    #[test]
    fn hex_floats_round_to_nearest_even() {
        // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: even wins.
        assert_eq!(t("0x20000000000001"), Some(9_007_199_254_740_992.0));
        assert_eq!(t("0x20000000000003"), Some(9_007_199_254_740_996.0));
        // past 16 hex digits, the rest is sticky: a tie plus a little
        // rounds up, a tie alone to even
        assert_eq!(
            t("0x20000000000001001"),
            Some(f64::from_bits(0x4400_0000_0000_0001))
        );
        assert_eq!(
            t("0x20000000000001000"),
            Some(f64::from_bits(0x4400_0000_0000_0000))
        );
        assert_eq!(
            t("0x1.0000000000000800000000000001p0"),
            Some(f64::from_bits(0x3ff0_0000_0000_0001))
        );
        assert_eq!(
            t("0x200000000000010000000001"),
            Some(f64::from_bits(0x45c0_0000_0000_0001))
        );
        assert_eq!(t("0x1p1024"), Some(f64::INFINITY));
        assert_eq!(t("0x1.fffffffffffffp1023"), Some(f64::MAX));
        assert_eq!(t("0x1.fffffffffffff8p1023"), Some(f64::INFINITY));
        assert_eq!(t("0x1p-1074"), Some(f64::from_bits(1)));
        assert_eq!(t("0x1p-1075"), Some(0.0)); // a tie with 0: even
        assert_eq!(t("0x1.0000001p-1075"), Some(f64::from_bits(1)));
        assert_eq!(t("0x3p-1075"), Some(f64::from_bits(2)));
        assert_eq!(t("0x1p-1022"), Some(f64::MIN_POSITIVE));
        assert_eq!(t("0x0.fffffffffffff8p-1022"), Some(f64::MIN_POSITIVE));
        assert_eq!(t("0x000000000000000000000001"), Some(1.0));
        assert_eq!(t("0x1p99999999999999999999"), Some(f64::INFINITY));
    }

    #[test]
    fn printf_g17_matches_c() {
        for (x, s) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (0.1, "0.10000000000000001"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (1e-300, "1e-300"),
            (1.5e-300, "1.5000000000000001e-300"),
            (1_700_000_000.0 + 1.0 / 256.0, "1700000000.0039062"), // a tie: even
            (23.5, "23.5"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (-f64::NAN, "-nan"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "4.9406564584124654e-324"),
        ] {
            assert_eq!(printf_g17(x), s, "{x:e}");
        }
    }

    #[test]
    fn integer_or_grisu_matches_redis_7_2() {
        let f = |x| NumberText::IntegerOrGrisu.format(x);
        assert_eq!(f(-0.0), "0");
        assert_eq!(f(4_611_686_018_427_387_904.0), "4611686018427387904");
        assert_eq!(f(-4_611_686_018_427_387_904.0), "-4611686018427387904");
        assert_eq!(f(9_223_372_036_854_775_808.0), "9223372036854776000");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1e22), "1e+22");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(0.09999999999999964), "0.09999999999999964");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(0.000001), "0.000001");
        assert_eq!(f(1.5e-5), "0.000015");
        assert_eq!(f(1e300), "1e+300");
        assert_eq!(f(-1.5), "-1.5");
        assert_eq!(f(f64::NAN), "nan");
        assert_eq!(f(-f64::NAN), "-nan");
        assert_eq!(f(f64::NEG_INFINITY), "-inf");
        assert_eq!(f(5e-324), "5e-324");
        assert_eq!(f(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(f(1700000000.5), "1700000000.5");
    }

    /// 10^k to 64 bits, rounded to nearest, from exact integer arithmetic.
    fn power_of_ten(k: i32) -> Fp {
        // big naturals as little-endian u32 limbs
        fn mul_small(a: &mut Vec<u32>, m: u32) {
            let mut carry = 0u64;
            for limb in a.iter_mut() {
                let v = u64::from(*limb) * u64::from(m) + carry;
                *limb = v as u32;
                carry = v >> 32;
            }
            if carry > 0 {
                a.push(carry as u32);
            }
        }
        fn bits(a: &[u32]) -> i64 {
            let top = *a.last().unwrap();
            (a.len() as i64 - 1) * 32 + (32 - top.leading_zeros() as i64)
        }
        fn bit(a: &[u32], i: i64) -> bool {
            i >= 0 && (a[(i / 32) as usize] >> (i % 32)) & 1 == 1
        }
        let mut num = vec![1u32];
        for _ in 0..k.unsigned_abs() {
            mul_small(&mut num, 10);
        }
        if k >= 0 {
            // the top 64 bits of 10^k, rounded
            let n = bits(&num);
            let mut frac = 0u64;
            for i in (n - 64..n).rev() {
                frac = (frac << 1) | u64::from(bit(&num, i));
            }
            let half = bit(&num, n - 65);
            let rest = (0..n - 65).any(|i| bit(&num, i));
            let mut exp = (n - 64) as i32;
            if half && (rest || frac & 1 == 1) {
                frac = frac.wrapping_add(1);
                if frac == 0 {
                    frac = 1 << 63;
                    exp += 1;
                }
            }
            Fp { frac, exp }
        } else {
            // q = floor(2^s / 10^-k) with s chosen so that q has 64 bits,
            // then one rounding on the remainder
            let n = bits(&num);
            let s = n + 63;
            let ge = |a: &Vec<u32>, b: &Vec<u32>| {
                let len = a.len().max(b.len());
                for i in (0..len).rev() {
                    let x = *a.get(i).unwrap_or(&0);
                    let y = *b.get(i).unwrap_or(&0);
                    if x != y {
                        return x > y;
                    }
                }
                true
            };
            let sub = |a: &mut Vec<u32>, b: &Vec<u32>| {
                let mut borrow = 0i64;
                for (i, limb) in a.iter_mut().enumerate() {
                    let v = *limb as i64 - *b.get(i).unwrap_or(&0) as i64 - borrow;
                    *limb = v.rem_euclid(1 << 32) as u32;
                    borrow = i64::from(v < 0);
                }
            };
            let mut q = 0u128;
            let mut rem = vec![0u32];
            for i in (0..=s).rev() {
                mul_small(&mut rem, 2);
                if i == s {
                    rem[0] |= 1;
                }
                q <<= 1;
                if ge(&rem, &num) {
                    sub(&mut rem, &num);
                    q |= 1;
                }
            }
            assert!((1 << 63..1 << 64).contains(&q), "10^{k}");
            let mut exp = -(s as i32);
            let mut twice = rem.clone();
            mul_small(&mut twice, 2);
            let equal = ge(&twice, &num) && ge(&num, &twice);
            if (ge(&twice, &num) && !equal) || (equal && q & 1 == 1) {
                q += 1;
                if q == 1 << 64 {
                    q = 1 << 63;
                    exp += 1;
                }
            }
            Fp {
                frac: q as u64,
                exp,
            }
        }
    }

    #[test]
    fn cached_powers_are_ten_to_the_k() {
        for (i, p) in POWERS_OF_TEN.iter().enumerate() {
            let k = -348 + 8 * i as i32;
            assert_eq!(*p, power_of_ten(k), "10^{k}");
        }
    }

    #[test]
    fn every_binade_finds_a_cached_power() {
        for biased in 0..2047u64 {
            for frac in [0u64, 1, FRAC_MASK] {
                let d = f64::from_bits((biased << 52) | frac);
                if d == 0.0 {
                    continue;
                }
                let (digits, _) = grisu2(d).unwrap_or_else(|| panic!("{d:e}"));
                assert!(!digits.is_empty() && digits.len() <= 18, "{d:e}");
                // Grisu2's digits read back as the same double.
                let s = fpconv_dtoa(d);
                assert_eq!(s.parse::<f64>().unwrap(), d, "{s}");
            }
        }
    }

    #[test]
    fn string2ll_is_strict() {
        assert_eq!(string2ll(b"0"), Some(0));
        assert_eq!(string2ll(b"-0"), None);
        assert_eq!(string2ll(b"007"), None);
        assert_eq!(string2ll(b"+7"), None);
        assert_eq!(string2ll(b" 7"), None);
        assert_eq!(string2ll(b"-"), None);
        assert_eq!(string2ll(b""), None);
        assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(string2ll(b"9223372036854775808"), None);
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(string2ll(b"-9223372036854775809"), None);
        assert_eq!(string2ll(b"1e+17"), None);
    }

    #[test]
    fn expire_as_redis() {
        let now = Timestamp::from_millis(1_700_000_000_000);
        assert_eq!(expire("10", now), Ok(Ttl::Seconds(10)));
        assert_eq!(expire("0", now), Ok(Ttl::Delete));
        assert_eq!(expire("-3", now), Ok(Ttl::Delete));
        assert_eq!(expire("-0", now), Err(ScriptError::NotAnInteger));
        assert_eq!(expire("1.5", now), Err(ScriptError::NotAnInteger));
        assert_eq!(expire("nan", now), Err(ScriptError::NotAnInteger));
        assert_eq!(
            expire("9223372036854776", now),
            Err(ScriptError::InvalidExpireTime)
        );
        assert_eq!(
            expire("-9223372036854776", now),
            Err(ScriptError::InvalidExpireTime)
        );
        // within LLONG_MAX / 1000 but past LLONG_MAX once the base time is added
        assert_eq!(
            expire("9223372000000000", now),
            Err(ScriptError::InvalidExpireTime)
        );
        assert_eq!(
            expire("9223370000000000", now),
            Ok(Ttl::Seconds(9_223_370_000_000_000))
        );
    }

    #[test]
    fn reply_integer_is_the_c_cast() {
        assert_eq!(reply_integer(2.9), 2);
        assert_eq!(reply_integer(-2.9), -2);
        assert_eq!(reply_integer(-0.0), 0);
        assert_eq!(reply_integer(-9_223_372_036_854_775_808.0), i64::MIN);
        assert_eq!(
            reply_integer(9_223_372_036_854_774_784.0),
            9_223_372_036_854_774_784
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(reply_integer(f64::NAN), i64::MIN);
            assert_eq!(reply_integer(f64::INFINITY), i64::MIN);
            assert_eq!(reply_integer(9_223_372_036_854_775_808.0), i64::MIN);
        }
    }

    #[test]
    fn sleep_text_is_percent_6f() {
        assert_eq!(sleep_text(0.0), "0.000000");
        assert_eq!(sleep_text(-0.0), "-0.000000");
        assert_eq!(sleep_text(4.999996), "4.999996");
        assert_eq!(sleep_text(0.0078125), "0.007812"); // a tie: even
        assert_eq!(sleep_text(0.0234375), "0.023438"); // a tie: even
        assert_eq!(sleep_text(-1e-9), "-0.000000");
        assert_eq!(sleep_text(f64::NAN), "nan");
        assert_eq!(sleep_text(-f64::NAN), "-nan");
        assert_eq!(sleep_text(f64::NEG_INFINITY), "-inf");
        assert_eq!(sleep_text(1e22), "10000000000000000000000.000000");
    }

    #[test]
    fn nan_signs_follow_sse() {
        let nan = f64::NAN;
        let neg = -f64::NAN;
        assert!(add(nan, neg).is_sign_positive());
        assert!(mul(neg, nan).is_sign_negative());
        assert!(sub(1.5, neg).is_sign_negative());
        assert!(sub(f64::INFINITY, f64::INFINITY).is_sign_negative());
        assert!(mul(0.0, f64::INFINITY).is_sign_negative());
        assert!(div(0.0, 0.0).is_sign_negative());
        assert!(floor(neg).is_sign_negative());
        assert_eq!(max0(nan), 0.0);
        assert_eq!(min(3.0, nan), 3.0);
        assert!(min(nan, 3.0).is_nan());
    }

    fn call<'a>(knobs: Knobs<'a>, bucket: Bucket<'a>, second: &'a str, us: &'a str) -> Call<'a> {
        Call {
            knobs,
            args: Args {
                rps: b"5",
                burst: b"1",
                window: b"5",
                requested_tokens: b"1",
                knobs_ttl: b"604800",
            },
            bucket,
            clock: Clock::Keys {
                second: Some(second.as_bytes()),
                microsecond: Some(us.as_bytes()),
            },
            now: Timestamp::from_millis(1_700_000_000_000),
            number_text: NumberText::Printf17g,
        }
    }

    const EMPTY: Bucket<'static> = Bucket::Hash {
        tokens: None,
        refreshed: None,
    };

    #[test]
    fn a_new_bucket_starts_full_and_sleeps_to_the_window_end() {
        let out = throttle(&call(Knobs::default(), EMPTY, "1000", "250000"));
        assert_eq!(
            out,
            Outcome {
                knobs_ttl: None,
                bucket: Some(BucketWrite {
                    tokens: "24".into(),
                    refreshed: "1000".into(),
                    ttl: Some(Ttl::Seconds(10)),
                }),
                reply: Ok(Reply {
                    allowed: true,
                    tokens: 24,
                    sleep: "4.750000".into(),
                }),
            }
        );
    }

    #[test]
    fn whole_windows_refill_on_the_first_use_grid() {
        // 0 tokens, refreshed at 1000; 12.5 s later two whole 5 s windows
        // passed: 2 × ceil(5 × 5) = 50, capped at 25; refreshed moves to 1010.
        let bucket = Bucket::Hash {
            tokens: Some(b"0"),
            refreshed: Some(b"1000"),
        };
        let out = throttle(&call(Knobs::default(), bucket, "1012", "500000"));
        let write = out.bucket.unwrap();
        assert_eq!(
            (write.tokens.as_str(), write.refreshed.as_str()),
            ("24", "1010")
        );
        assert_eq!(out.reply.unwrap().sleep, "2.500000");
        // 4.9 s after the grid point: no refill, nothing moves.
        let bucket = Bucket::Hash {
            tokens: Some(b"0"),
            refreshed: Some(b"1000"),
        };
        let out = throttle(&call(Knobs::default(), bucket, "1004", "900000"));
        assert_eq!(out.bucket.unwrap().refreshed, "1000");
        assert_eq!(
            out.reply,
            Ok(Reply {
                allowed: false,
                tokens: 0,
                sleep: "0.100000".into()
            })
        );
    }

    #[test]
    fn knobs_override_and_get_their_ttl_first() {
        let knobs = Knobs {
            rps: Some(b"1"),
            burst: Some(b"1"),
            window: Some(b"1"),
        };
        let out = throttle(&call(knobs, EMPTY, "1000", "0"));
        assert_eq!(out.knobs_ttl, Some(Ttl::Seconds(604_800)));
        assert_eq!(out.reply.unwrap().tokens, 0);
        // a knob that is not a number: the EXPIRE happened, then Lua fails
        let knobs = Knobs {
            rps: Some(b"fast"),
            burst: Some(b"1"),
            window: Some(b"1"),
        };
        let out = throttle(&call(knobs, EMPTY, "1000", "0"));
        assert_eq!(out.knobs_ttl, Some(Ttl::Seconds(604_800)));
        assert_eq!(out.bucket, None);
        assert_eq!(out.reply, Err(ScriptError::Arithmetic(Operand::Rps)));
        // an rps field alone: burst is nil at the ttl
        let knobs = Knobs {
            rps: Some(b"1"),
            burst: None,
            window: None,
        };
        let out = throttle(&call(knobs, EMPTY, "1000", "0"));
        assert_eq!(out.reply, Err(ScriptError::Arithmetic(Operand::Burst)));
        // no rps field: the hash is ignored
        let knobs = Knobs {
            rps: None,
            burst: Some(b"junk"),
            window: None,
        };
        let out = throttle(&call(knobs, EMPTY, "1000", "0"));
        assert_eq!(out.knobs_ttl, None);
        assert_eq!(out.reply.unwrap().tokens, 24);
    }

    #[test]
    fn the_server_clock_is_times_two_integers() {
        let mut c = call(Knobs::default(), EMPTY, "", "");
        c.clock = Clock::Server;
        c.now = Timestamp(1_000_250_000);
        let out = throttle(&c);
        assert_eq!(out.bucket.unwrap().refreshed, "1000");
        assert_eq!(out.reply.unwrap().sleep, "4.750000");
    }

    #[test]
    fn expire_at_ms_is_the_base_plus_the_seconds() {
        let now = Timestamp(1_700_000_000_123_999);
        assert_eq!(Ttl::Seconds(10).expire_at_ms(now), Some(1_700_000_010_123));
        assert_eq!(Ttl::Delete.expire_at_ms(now), None);
    }

    #[test]
    fn for_server_picks_by_version() {
        assert_eq!(NumberText::for_server(false, 7, 0), NumberText::Printf17g);
        assert_eq!(NumberText::for_server(false, 6, 2), NumberText::Printf17g);
        assert_eq!(
            NumberText::for_server(false, 7, 2),
            NumberText::IntegerOrGrisu
        );
        assert_eq!(
            NumberText::for_server(false, 8, 0),
            NumberText::IntegerOrGrisu
        );
        assert_eq!(
            NumberText::for_server(true, 7, 0),
            NumberText::IntegerOrGrisu
        );
    }

    #[test]
    fn switches_touch_nothing() {
        let mut c = call(Knobs::default(), Bucket::WrongType, "x", "y");
        c.args.rps = b"0";
        c.args.window = b"2.5";
        assert_eq!(
            throttle(&c),
            Outcome {
                knobs_ttl: None,
                bucket: None,
                reply: Ok(Reply {
                    allowed: false,
                    tokens: 0,
                    sleep: "2.500000".into()
                })
            }
        );
        c.args.rps = b"-1";
        assert_eq!(
            throttle(&c).reply,
            Ok(Reply {
                allowed: true,
                tokens: 1,
                sleep: "0.000000".into()
            })
        );
        c.args.rps = b"1";
        assert_eq!(throttle(&c).reply, Err(ScriptError::WrongType));
    }

    #[test]
    fn errors_after_the_write_keep_it() {
        // frozen_microsecond missing: the bucket is written, then Lua fails
        let mut c = call(Knobs::default(), EMPTY, "1000", "0");
        c.clock = Clock::Keys {
            second: Some(b"1000"),
            microsecond: None,
        };
        let out = throttle(&c);
        assert!(out.bucket.is_some_and(|w| w.ttl == Some(Ttl::Seconds(10))));
        assert_eq!(
            out.reply,
            Err(ScriptError::Arithmetic(Operand::Microsecond))
        );
        // a ttl of 1e17: 7.0 prints 1e+17 (not an integer), 7.2 prints the
        // integer (out of range)
        let mut c = call(Knobs::default(), EMPTY, "1000", "0");
        c.args.burst = b"1e16";
        c.args.window = b"5";
        let out = throttle(&c);
        assert_eq!(out.bucket.map(|w| w.ttl), Some(None));
        assert_eq!(out.reply, Err(ScriptError::NotAnInteger));
        c.number_text = NumberText::IntegerOrGrisu;
        assert_eq!(throttle(&c).reply, Err(ScriptError::InvalidExpireTime));
        // requested_tokens not a number: a compare error, before any write
        let mut c = call(Knobs::default(), EMPTY, "1000", "0");
        c.args.requested_tokens = b"one";
        let out = throttle(&c);
        assert_eq!(out.bucket, None);
        assert_eq!(
            out.reply,
            Err(ScriptError::Compare(Operand::RequestedTokens))
        );
    }

    #[test]
    fn fractional_tokens_are_written_per_server() {
        let mut c = call(Knobs::default(), EMPTY, "1000", "0");
        c.args.rps = b"2";
        c.args.window = b"5";
        c.args.requested_tokens = b"9.9";
        let out = throttle(&c);
        assert_eq!(out.bucket.unwrap().tokens, "0.099999999999999645");
        assert_eq!(out.reply.unwrap().tokens, 0);
        c.number_text = NumberText::IntegerOrGrisu;
        assert_eq!(throttle(&c).bucket.unwrap().tokens, "0.09999999999999964");
    }
}
