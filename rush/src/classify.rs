//! Turning a reply into an outcome: allowed, throttled or error.
//!
//! Redis replies are classified by a [`RedisRule`]; `auto` picks the rule from
//! the command name (THROTTLE and PERMIT have fixed reply shapes, any other
//! command is allowed unless it fails). HTTP responses are classified by two
//! status sets ([`StatusSet`]): allowed (default `2xx`) and throttled (default
//! `429`); any other status is an error.

use std::fmt;

use redis::Value;

/// The three outcomes of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allowed,
    Throttled,
    Error,
}

/// What a PERMIT reply granted (server wall clock, milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit {
    pub time_to_wait_ms: i64,
    pub valid_at_ms: i64,
    pub expires_at_ms: i64,
}

/// What a LEASE-shaped reply granted: `[lease_id, expires_at_ms, in_use, limit]`
/// (only the id is required: a script may answer less).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    pub id: i64,
    /// Server wall clock, Unix ms.
    pub expires_at_ms: Option<i64>,
    /// The places in use when it started, its own included.
    pub in_use: Option<i64>,
}

/// The classified result of one call.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    pub outcome: Outcome,
    /// Error text when `outcome` is `Error`.
    pub error: Option<String>,
    /// The grant, for PERMIT-shaped replies that granted.
    pub permit: Option<Permit>,
    /// The grant, for LEASE-shaped replies that granted.
    pub lease: Option<LeaseGrant>,
    /// The `limit` field of a THROTTLE- or LEASE-shaped reply.
    pub limit: Option<i64>,
}

impl Classified {
    pub fn allowed() -> Self {
        Classified {
            outcome: Outcome::Allowed,
            error: None,
            permit: None,
            lease: None,
            limit: None,
        }
    }
    pub fn throttled() -> Self {
        Classified {
            outcome: Outcome::Throttled,
            ..Classified::allowed()
        }
    }
    pub fn error(msg: impl Into<String>) -> Self {
        Classified {
            outcome: Outcome::Error,
            error: Some(msg.into()),
            ..Classified::allowed()
        }
    }
}

/// A comparison in an `int` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Le,
    Lt,
    Ge,
    Gt,
    Eq,
    Ne,
}

impl Cmp {
    fn holds(self, a: i64, b: i64) -> bool {
        match self {
            Cmp::Le => a <= b,
            Cmp::Lt => a < b,
            Cmp::Ge => a >= b,
            Cmp::Gt => a > b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Cmp::Le => "<=",
            Cmp::Lt => "<",
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }
}

/// How a Redis reply becomes an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisRule {
    /// `throttle` for THROTTLE, `permit` for PERMIT, `ok` for anything else.
    Auto,
    /// `[allowed, remaining, retry_after_ms, reset_after_ms, limit]`: allowed when the first is 1.
    Throttle,
    /// `[time_to_wait_ms, valid_at_ms, expires_at_ms]` is granted (allowed); nil is refused (throttled).
    Permit,
    /// `[lease_id, expires_at_ms, in_use, limit]` (or just `[lease_id]`, or
    /// the bare id) is a lease (allowed); nil is refused (throttled). Runs
    /// the lease scenario: acquire, hold, release.
    Lease,
    /// Any reply that is not an error is allowed.
    Ok,
    /// Nil is throttled; any other reply is allowed.
    NonNil,
    /// The integer reply (or the first element of an array reply) compared with a constant: true is allowed, false throttled.
    Int(Cmp, i64),
}

impl RedisRule {
    /// Parses `auto`, `throttle`, `permit`, `ok`, `nonnil` or `int<=N` (also `<`, `>=`, `>`, `==`, `!=`).
    pub fn parse(text: &str) -> Result<RedisRule, String> {
        let t = text.trim();
        match t {
            "auto" => return Ok(RedisRule::Auto),
            "throttle" => return Ok(RedisRule::Throttle),
            "permit" => return Ok(RedisRule::Permit),
            "lease" => return Ok(RedisRule::Lease),
            "ok" => return Ok(RedisRule::Ok),
            "nonnil" => return Ok(RedisRule::NonNil),
            _ => {}
        }
        let bad = || {
            format!(
                "bad rule {text:?}: expected auto, throttle, permit, lease, ok, nonnil or int<=N \
                 (also int<N, int>=N, int>N, int==N, int!=N)"
            )
        };
        let rest = t.strip_prefix("int").ok_or_else(bad)?.trim_start();
        let (cmp, num) = [
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("==", Cmp::Eq),
            ("!=", Cmp::Ne),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ]
        .iter()
        .find_map(|(op, cmp)| rest.strip_prefix(op).map(|n| (*cmp, n)))
        .ok_or_else(bad)?;
        let n = num.trim().parse::<i64>().map_err(|_| bad())?;
        Ok(RedisRule::Int(cmp, n))
    }

    /// Resolves `auto` for a command name.
    pub fn resolve(self, command: &str) -> RedisRule {
        match self {
            RedisRule::Auto if command.eq_ignore_ascii_case("THROTTLE") => RedisRule::Throttle,
            RedisRule::Auto if command.eq_ignore_ascii_case("PERMIT") => RedisRule::Permit,
            RedisRule::Auto if command.eq_ignore_ascii_case("LEASE") => RedisRule::Lease,
            RedisRule::Auto => RedisRule::Ok,
            r => r,
        }
    }

    /// Classifies a successful (non-error) reply.
    pub fn classify(self, v: &Value) -> Classified {
        match self {
            RedisRule::Auto | RedisRule::Ok => Classified::allowed(),
            RedisRule::NonNil => {
                if matches!(v, Value::Nil) {
                    Classified::throttled()
                } else {
                    Classified::allowed()
                }
            }
            RedisRule::Throttle => classify_throttle(v),
            RedisRule::Permit => classify_permit(v),
            RedisRule::Lease => classify_lease(v),
            RedisRule::Int(cmp, n) => {
                let x = match v {
                    Value::Array(items) => items.first().and_then(as_int),
                    v => as_int(v),
                };
                match x {
                    Some(x) if cmp.holds(x, n) => Classified::allowed(),
                    Some(_) => Classified::throttled(),
                    None => Classified::error(format!(
                        "reply is not an integer (rule int{}{n}): {}",
                        cmp.as_str(),
                        short(v)
                    )),
                }
            }
        }
    }
}

impl fmt::Display for RedisRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisRule::Auto => f.write_str("auto"),
            RedisRule::Throttle => f.write_str("throttle"),
            RedisRule::Permit => f.write_str("permit"),
            RedisRule::Lease => f.write_str("lease"),
            RedisRule::Ok => f.write_str("ok"),
            RedisRule::NonNil => f.write_str("nonnil"),
            RedisRule::Int(c, n) => write!(f, "int{}{n}", c.as_str()),
        }
    }
}

/// An integer reply (or one sent as text).
pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn ints(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Array(items) => items.iter().map(as_int).collect(),
        _ => None,
    }
}

/// A short rendering of a reply for error messages.
pub fn short(v: &Value) -> String {
    let mut s = format!("{v:?}");
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn classify_throttle(v: &Value) -> Classified {
    match ints(v) {
        Some(x) if x.len() == 5 && (x[0] == 0 || x[0] == 1) => {
            let mut c = if x[0] == 1 {
                Classified::allowed()
            } else {
                Classified::throttled()
            };
            c.limit = Some(x[4]);
            c
        }
        _ => Classified::error(format!(
            "unexpected THROTTLE reply (want 5 integers): {}",
            short(v)
        )),
    }
}

fn classify_permit(v: &Value) -> Classified {
    if matches!(v, Value::Nil) {
        return Classified::throttled();
    }
    match ints(v) {
        Some(x) if x.len() == 3 => Classified {
            permit: Some(Permit {
                time_to_wait_ms: x[0],
                valid_at_ms: x[1],
                expires_at_ms: x[2],
            }),
            ..Classified::allowed()
        },
        _ => Classified::error(format!(
            "unexpected PERMIT reply (want nil or 3 integers): {}",
            short(v)
        )),
    }
}

fn classify_lease(v: &Value) -> Classified {
    if matches!(v, Value::Nil) {
        return Classified::throttled();
    }
    let x = match v {
        Value::Array(_) => ints(v),
        v => as_int(v).map(|id| vec![id]),
    };
    match x {
        Some(x) if (1..=4).contains(&x.len()) => Classified {
            lease: Some(LeaseGrant {
                id: x[0],
                expires_at_ms: x.get(1).copied(),
                in_use: x.get(2).copied(),
            }),
            limit: x.get(3).copied(),
            ..Classified::allowed()
        },
        _ => Classified::error(format!(
            "unexpected LEASE reply (want nil, or [lease_id, expires_at_ms, in_use, limit] as integers): {}",
            short(v)
        )),
    }
}

/// A set of HTTP status codes: `2xx`, `429`, `200-299`, or a comma list of those.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet {
    ranges: Vec<(u16, u16)>,
    text: String,
}

impl StatusSet {
    pub fn parse(text: &str) -> Result<StatusSet, String> {
        let bad = |part: &str| {
            format!(
                "bad status set {text:?}: {part:?} is not a status (200), a class (2xx) or a range (200-299)"
            )
        };
        let code = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(c) if (100..=999).contains(&c) => Ok(c),
                _ => Err(bad(s)),
            }
        };
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let p = part.trim();
            if p.len() == 3 && p.ends_with("xx") {
                let d = p[..1].parse::<u16>().map_err(|_| bad(p))?;
                if !(1..=9).contains(&d) {
                    return Err(bad(p));
                }
                ranges.push((d * 100, d * 100 + 99));
            } else if let Some((a, b)) = p.split_once('-') {
                let (a, b) = (code(a)?, code(b)?);
                if b < a {
                    return Err(bad(p));
                }
                ranges.push((a, b));
            } else {
                let c = code(p)?;
                ranges.push((c, c));
            }
        }
        Ok(StatusSet {
            ranges,
            text: text.to_string(),
        })
    }

    pub fn contains(&self, status: u16) -> bool {
        self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&status))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Classifies an HTTP status: allowed first, then throttled, else an error.
pub fn classify_status(status: u16, allowed: &StatusSet, throttled: &StatusSet) -> Classified {
    if allowed.contains(status) {
        Classified::allowed()
    } else if throttled.contains(status) {
        Classified::throttled()
    } else {
        Classified::error(format!("HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(x: &[i64]) -> Value {
        Value::Array(x.iter().map(|i| Value::Int(*i)).collect())
    }

    #[test]
    fn throttle_replies() {
        let r = RedisRule::Auto.resolve("throttle");
        assert_eq!(r, RedisRule::Throttle);
        assert_eq!(
            r.classify(&arr(&[1, 9, 0, 100, 10])).outcome,
            Outcome::Allowed
        );
        assert_eq!(r.classify(&arr(&[1, 9, 0, 100, 10])).limit, Some(10));
        assert_eq!(
            r.classify(&arr(&[0, 0, 90, 100, 10])).outcome,
            Outcome::Throttled
        );
        assert_eq!(r.classify(&arr(&[2, 0, 0, 0, 1])).outcome, Outcome::Error);
        assert_eq!(r.classify(&Value::Nil).outcome, Outcome::Error);
    }

    #[test]
    fn permit_replies() {
        let r = RedisRule::Auto.resolve("PERMIT");
        assert_eq!(r.classify(&Value::Nil).outcome, Outcome::Throttled);
        let c = r.classify(&arr(&[5, 1000, 2000]));
        assert_eq!(c.outcome, Outcome::Allowed);
        assert_eq!(c.permit.unwrap().valid_at_ms, 1000);
        assert_eq!(r.classify(&arr(&[5, 1000])).outcome, Outcome::Error);
    }

    #[test]
    fn lease_replies() {
        let r = RedisRule::Auto.resolve("lease");
        assert_eq!(r, RedisRule::Lease);
        assert_eq!(RedisRule::parse("lease"), Ok(RedisRule::Lease));
        assert_eq!(r.classify(&Value::Nil).outcome, Outcome::Throttled);
        let c = r.classify(&arr(&[1_764_000_000_123_456, 1_764_000_002_123, 3, 10]));
        assert_eq!(c.outcome, Outcome::Allowed);
        assert_eq!(
            c.lease,
            Some(LeaseGrant {
                id: 1_764_000_000_123_456,
                expires_at_ms: Some(1_764_000_002_123),
                in_use: Some(3)
            })
        );
        assert_eq!(c.limit, Some(10));
        // A script may answer just the id, in an array or bare.
        assert_eq!(r.classify(&arr(&[42])).lease.map(|l| l.id), Some(42));
        assert_eq!(r.classify(&Value::Int(7)).lease.map(|l| l.id), Some(7));
        for bad in [
            arr(&[]),
            arr(&[1, 2, 3, 4, 5]),
            Value::SimpleString("OK".into()),
        ] {
            assert_eq!(r.classify(&bad).outcome, Outcome::Error, "{bad:?}");
        }
    }

    /// Reply integers as large as 2^53-1 (the module's replies stay below
    /// 9e15; "never expires" is 253402300799999), and the extremes of i64,
    /// are read exactly, whether sent as integers or as text.
    #[test]
    fn reply_integers_are_read_exactly() {
        const NEVER: i64 = 9_007_199_254_740_991;
        let r = RedisRule::Permit;
        let c = r.classify(&arr(&[0, 1_764_000_000_123, NEVER]));
        assert_eq!(
            c.permit,
            Some(Permit {
                time_to_wait_ms: 0,
                valid_at_ms: 1_764_000_000_123,
                expires_at_ms: NEVER
            })
        );
        let text = Value::Array(
            ["0", "1764000000123", "9007199254740991"]
                .iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        );
        assert_eq!(r.classify(&text).permit, c.permit);
        for x in [NEVER, -NEVER, i64::MAX, i64::MIN] {
            let t = RedisRule::Throttle.classify(&arr(&[1, x, 0, x, x]));
            assert_eq!((t.outcome, t.limit), (Outcome::Allowed, Some(x)));
            let eq = RedisRule::Int(Cmp::Eq, x);
            assert_eq!(eq.classify(&Value::Int(x)).outcome, Outcome::Allowed);
            assert_eq!(
                eq.classify(&Value::SimpleString(x.to_string())).outcome,
                Outcome::Allowed
            );
        }
        // One past i64 is not an integer rush can read: an error, not a wrap.
        let big = Value::BulkString(b"9223372036854775808".to_vec());
        assert_eq!(
            RedisRule::Int(Cmp::Ge, 0).classify(&big).outcome,
            Outcome::Error
        );
    }

    #[test]
    fn int_rules() {
        let r = RedisRule::parse("int<=3").unwrap();
        assert_eq!(r.classify(&Value::Int(3)).outcome, Outcome::Allowed);
        assert_eq!(r.classify(&Value::Int(4)).outcome, Outcome::Throttled);
        assert_eq!(r.classify(&arr(&[2, 99])).outcome, Outcome::Allowed);
        assert_eq!(r.classify(&Value::Okay).outcome, Outcome::Error);
        assert_eq!(
            RedisRule::parse("int > -1").unwrap(),
            RedisRule::Int(Cmp::Gt, -1)
        );
        assert_eq!(
            RedisRule::parse("int!=0").unwrap(),
            RedisRule::Int(Cmp::Ne, 0)
        );
        assert!(RedisRule::parse("int<=x").is_err());
        assert!(RedisRule::parse("float<1").is_err());
        assert_eq!(RedisRule::parse("int==5").unwrap().to_string(), "int==5");
    }

    #[test]
    fn status_sets() {
        let s = StatusSet::parse("2xx,304,500-503").unwrap();
        assert!(s.contains(200) && s.contains(299) && s.contains(304) && s.contains(502));
        assert!(!s.contains(429) && !s.contains(300));
        assert!(StatusSet::parse("0xx").is_err());
        assert!(StatusSet::parse("abc").is_err());
        assert!(StatusSet::parse("99").is_err());
        assert!(StatusSet::parse("300-200").is_err());
        let t = StatusSet::parse("429").unwrap();
        assert_eq!(classify_status(429, &s, &t).outcome, Outcome::Throttled);
        assert_eq!(
            classify_status(404, &s, &t).error.as_deref(),
            Some("HTTP 404")
        );
    }
}
