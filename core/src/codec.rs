//! Versioned binary encoding of stored values, used for RDB, DUMP/RESTORE,
//! AOF rewrite and replication alike.
//!
//! Layout (little-endian, fixed width):
//! ```text
//! v2 bucket:   0x02 'B' bucket
//! v2 knobbed:  0x02 'K' has_bucket:u8 [bucket] knobs
//! v2 permit:   0x02 'P' last_valid_at_us:u64 stamp_us:u64
//!   bucket:    full_lo:u64 full_hi:u32 stamp_s:u32 num:u32 den:u32 capacity:u64
//!   knobs:     rps_kind:u8 (0 deny, 1 allow, 2 rate) num:u32 den:u32
//!              burst_nano:u64 window_ns:u64 ttl_us:u64 expires_at_us:u64
//! v1 limiter:  0x01 'L' level_femto:i128 updated_at_us:u64 params [0 | 1 params ttl_us:u64 expires_at_us:u64]
//!   params:    rate_kind:u8 (0 deny, 1 allow, 2 per-second) rps_nano:u64 burst_nano:u64 window_ns:u64
//! v1 permit:   0x01 'P' last_valid_at_us:u64
//! ```
//! A plain bucket encodes in 34 bytes, so it travels as one short string.
//!
//! [`decode_limiter`] and [`decode_permit`] accept every version ever
//! written and reject anything else (unknown version, wrong kind, short or
//! long input, out-of-range fields, states no call can produce) with an
//! error: they never panic, on any input. Version 1 values (written before
//! the bucket was kept as a full-again instant) are converted: same tokens,
//! rounded down to what the new units hold.

use crate::bucket::Bucket;
use crate::limiter::{Knobbed, Knobs, Limiter, MAX_KNOBS_TTL};
use crate::permit::PermitState;
use crate::rate::{Limit, LimitLion, MAX_CAPACITY, NANO, Policy, Rate, Rps};
use crate::time::{HORIZON, MAX_WAIT, Micros};

/// The current encoding version.
pub const VERSION: u8 = 2;
const KIND_BUCKET: u8 = b'B';
const KIND_KNOBBED: u8 = b'K';
const KIND_PERMIT: u8 = b'P';
const V1_KIND_LIMITER: u8 = b'L';

/// Why stored bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    UnknownVersion(u8),
    WrongKind,
    Truncated,
    TrailingBytes,
    BadField(&'static str),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::UnknownVersion(v) => write!(f, "unknown encoding version {v}"),
            CodecError::WrongKind => f.write_str("not a value of this kind"),
            CodecError::Truncated => f.write_str("truncated"),
            CodecError::TrailingBytes => f.write_str("trailing bytes"),
            CodecError::BadField(what) => write!(f, "bad {what}"),
        }
    }
}

/// Encoded length of a plain bucket.
pub const BUCKET_LEN: usize = 2 + 32;
/// Longest encoding of a limiter (knobbed, with a bucket).
pub const MAX_LIMITER_LEN: usize = 3 + 32 + 1 + 8 + 16 + 16;
/// Encoding of a permit state.
pub const PERMIT_LEN: usize = 2 + 16;

/// An encoded value, on the stack.
pub struct Encoded {
    buf: [u8; MAX_LIMITER_LEN],
    len: usize,
}

impl Encoded {
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

struct Writer {
    out: Encoded,
}

impl Writer {
    fn new(kind: u8) -> Writer {
        let mut w = Writer {
            out: Encoded {
                buf: [0; MAX_LIMITER_LEN],
                len: 0,
            },
        };
        w.put(&[VERSION, kind]);
        w
    }
    fn put(&mut self, bytes: &[u8]) {
        let end = self.out.len.saturating_add(bytes.len());
        if let Some(dst) = self.out.buf.get_mut(self.out.len..end) {
            dst.copy_from_slice(bytes);
            self.out.len = end;
        }
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn bucket(&mut self, b: &Bucket) {
        let full = b.full();
        self.u64(u64::try_from(full & u128::from(u64::MAX)).unwrap_or(0));
        self.u32(u32::try_from(full >> 64).unwrap_or(0));
        self.u32(b.stamp_s());
        self.u32(b.limit().rate().num());
        self.u32(b.limit().rate().den());
        self.u64(b.limit().capacity());
    }
    fn knobs(&mut self, k: &Knobs) {
        let (kind, num, den) = match k.args.rps {
            Rps::Deny => (0u8, 0, 0),
            Rps::Allow => (1, 0, 0),
            Rps::Rate(r) => (2, r.num(), r.den()),
        };
        self.put(&[kind]);
        self.u32(num);
        self.u32(den);
        self.u64(k.args.burst_nano);
        self.u64(k.args.window_ns);
        self.u64(k.ttl.0);
        self.u64(k.expires_at.0);
    }
}

/// A value the codec stores: every version ever written decodes.
pub trait Codec: Sized {
    fn encode(&self) -> Encoded;
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
}

impl Codec for Limiter {
    fn encode(&self) -> Encoded {
        encode_limiter(self)
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_limiter(bytes)
    }
}

impl Codec for PermitState {
    fn encode(&self) -> Encoded {
        encode_permit(self)
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_permit(bytes)
    }
}

/// Encodes a limiter.
pub fn encode_limiter(v: &Limiter) -> Encoded {
    match v {
        Limiter::Plain(b) => {
            let mut w = Writer::new(KIND_BUCKET);
            w.bucket(b);
            w.out
        }
        Limiter::Knobbed(k) => {
            let mut w = Writer::new(KIND_KNOBBED);
            match &k.bucket {
                Some(b) => {
                    w.put(&[1]);
                    w.bucket(b);
                }
                None => w.put(&[0]),
            }
            w.knobs(&k.knobs);
            w.out
        }
    }
}

/// Encodes a permit state.
pub fn encode_permit(s: &PermitState) -> Encoded {
    let mut w = Writer::new(KIND_PERMIT);
    w.u64(s.last_valid_at.0);
    w.u64(s.stamp.0);
    w.out
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(CodecError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i128(&mut self) -> Result<i128, CodecError> {
        Ok(i128::from_le_bytes(self.take()?))
    }
    /// Version and kind.
    fn header(&mut self) -> Result<(u8, u8), CodecError> {
        Ok((self.u8()?, self.u8()?))
    }
    fn end(&self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
    fn rate(&mut self) -> Result<Rate, CodecError> {
        let (num, den) = (self.u32()?, self.u32()?);
        match Rate::new(u64::from(num), u64::from(den)) {
            // Reduced, as every rate is written.
            Some(r) if r.num() == num && r.den() == den => Ok(r),
            _ => Err(CodecError::BadField("rate")),
        }
    }
    fn bucket(&mut self) -> Result<Bucket, CodecError> {
        let full_lo = self.u64()?;
        let full_hi = self.u32()?;
        let stamp_s = self.u32()?;
        let rate = self.rate()?;
        let limit = Limit::new(rate, self.u64()?).map_err(|_| CodecError::BadField("capacity"))?;
        let full = (u128::from(full_hi) << 64) | u128::from(full_lo);
        Bucket::from_parts(limit, full, stamp_s).ok_or(CodecError::BadField("bucket state"))
    }
    fn knobs(&mut self) -> Result<Knobs, CodecError> {
        let kind = self.u8()?;
        let rps = match kind {
            0 | 1 => {
                if (self.u32()?, self.u32()?) != (0, 0) {
                    // The switches carry no rate: anything else there is damage.
                    return Err(CodecError::BadField("rps of a switch"));
                }
                if kind == 0 { Rps::Deny } else { Rps::Allow }
            }
            2 => Rps::Rate(self.rate()?),
            _ => return Err(CodecError::BadField("rps kind")),
        };
        let args = LimitLion {
            rps,
            burst_nano: self.u64()?,
            window_ns: self.u64()?,
        };
        let policy = args
            .policy()
            .map_err(|_| CodecError::BadField("knobs limit"))?;
        let ttl = Micros(self.u64()?);
        if ttl > MAX_KNOBS_TTL {
            return Err(CodecError::BadField("knobs ttl"));
        }
        Ok(Knobs {
            args,
            policy,
            ttl,
            expires_at: Micros(self.u64()?),
        })
    }
}

/// Decodes a limiter written by any version of [`encode_limiter`].
pub fn decode_limiter(bytes: &[u8]) -> Result<Limiter, CodecError> {
    let mut r = Reader { rest: bytes };
    let v = match r.header()? {
        (VERSION, KIND_BUCKET) => Limiter::Plain(r.bucket()?),
        (VERSION, KIND_KNOBBED) => {
            let bucket = match r.u8()? {
                0 => None,
                1 => Some(r.bucket()?),
                _ => return Err(CodecError::BadField("bucket flag")),
            };
            let knobs = r.knobs()?;
            Limiter::Knobbed(Box::new(Knobbed { bucket, knobs }))
        }
        (1, V1_KIND_LIMITER) => v1_limiter(&mut r)?,
        (VERSION | 1, _) => return Err(CodecError::WrongKind),
        (v, _) => return Err(CodecError::UnknownVersion(v)),
    };
    r.end()?;
    Ok(v)
}

/// Decodes a permit state written by any version of [`encode_permit`].
pub fn decode_permit(bytes: &[u8]) -> Result<PermitState, CodecError> {
    let mut r = Reader { rest: bytes };
    let s = match r.header()? {
        (VERSION, KIND_PERMIT) => PermitState {
            last_valid_at: Micros(r.u64()?),
            stamp: Micros(r.u64()?),
        },
        (1, KIND_PERMIT) => {
            // v1 kept no stamp: take the earliest one the slot allows.
            let last_valid_at = Micros(r.u64()?);
            PermitState {
                last_valid_at,
                stamp: last_valid_at.saturating_sub(HORIZON),
            }
        }
        (VERSION | 1, _) => return Err(CodecError::WrongKind),
        (v, _) => return Err(CodecError::UnknownVersion(v)),
    };
    r.end()?;
    if !s.is_plausible() {
        return Err(CodecError::BadField("last slot"));
    }
    Ok(s)
}

// ---- version 1 ------------------------------------------------------------

/// Femto-tokens per token in version 1.
const V1_FEMTO: i128 = 1_000_000_000_000_000;
/// Version 1's "full whatever the capacity" level (and the bound on |level|).
const V1_LEVEL_BOUND: i128 = V1_FEMTO * V1_FEMTO * 1_000_000;
/// Version 1's largest rate, burst and window (in billionths).
const V1_MAX_RPS_NANO: u64 = 10_000_000_000 * NANO;
const V1_MAX_NANO: u64 = 1_000_000_000 * NANO;

/// Version 1 parameters: `(rps, burst_nano, window_ns)` as they were stored.
fn v1_params(r: &mut Reader<'_>) -> Result<(Option<u64>, bool, u64, u64), CodecError> {
    let kind = r.u8()?;
    let rps = r.u64()?;
    let (burst, window) = (r.u64()?, r.u64()?);
    if !(1..=V1_MAX_NANO).contains(&burst) || !(1..=V1_MAX_NANO).contains(&window) {
        return Err(CodecError::BadField("limit parameters"));
    }
    match (kind, rps) {
        (0, 0) => Ok((None, false, burst, window)),
        (1, 0) => Ok((None, true, burst, window)),
        (0 | 1, _) => Err(CodecError::BadField("rps of a switch")),
        (2, n) if (1..=V1_MAX_RPS_NANO).contains(&n) => Ok((Some(n), false, burst, window)),
        _ => Err(CodecError::BadField("rate kind")),
    }
}

/// The nearest limit today's bounds can hold, rounding toward fewer tokens:
/// version 1 allowed a faster rate, more digits and longer refills.
fn v1_args(rps: Option<u64>, allow: bool, burst: u64, window: u64) -> LimitLion {
    let rps = match rps {
        None if allow => Rps::Allow,
        None => Rps::Deny,
        Some(nano) => {
            let mut nano = nano.min(crate::rate::MAX_RPS_NANO);
            // Keep the 9 leading significant digits (round down).
            let mut scale = 1u64;
            while nano.checked_div(scale).unwrap_or(0) >= 1_000_000_000 {
                scale = scale.saturating_mul(10);
            }
            nano = nano
                .checked_div(scale)
                .unwrap_or(0)
                .saturating_mul(scale)
                .max(1);
            Rate::from_nano(nano).map_or(Rps::Deny, Rps::Rate)
        }
    };
    LimitLion {
        rps,
        burst_nano: burst.min(crate::rate::MAX_BURST_NANO),
        window_ns: window.min(crate::rate::MAX_WINDOW_NS),
    }
}

/// The bucket of a version 1 args, if its policy is a bucket: refill and
/// capacity clamped to today's bounds.
fn v1_limit(args: &LimitLion) -> Option<Limit> {
    let Rps::Rate(rate) = args.rps else {
        return None;
    };
    match args.policy() {
        Ok(Policy::Bucket(l)) => Some(l),
        _ => {
            // Too large today: the largest capacity the rate refills in time.
            let by_refill = u128::from(crate::time::HORIZON.0)
                .saturating_mul(rate.units_per_us())
                .checked_div(rate.units_per_token())
                .unwrap_or(1);
            let cap = u64::try_from(by_refill)
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_CAPACITY);
            Limit::new(rate, cap).ok()
        }
    }
}

fn v1_limiter(r: &mut Reader<'_>) -> Result<Limiter, CodecError> {
    let level = r.i128()?;
    if !(-V1_LEVEL_BOUND..=V1_LEVEL_BOUND).contains(&level) {
        return Err(CodecError::BadField("level"));
    }
    let updated_at = Micros(r.u64()?);
    let (rps, allow, burst, window) = v1_params(r)?;
    let last_call = v1_args(rps, allow, burst, window);
    let knobs = match r.u8()? {
        0 => None,
        1 => {
            let (rps, allow, burst, window) = v1_params(r)?;
            let ttl = Micros(r.u64()?.min(MAX_KNOBS_TTL.0));
            let expires_at = Micros(r.u64()?);
            let args = v1_args(rps, allow, burst, window);
            // Knobs today's bounds cannot hold are dropped (callers' limits apply).
            args.policy().ok().map(|policy| Knobs {
                args,
                policy,
                ttl,
                expires_at,
            })
        }
        _ => return Err(CodecError::BadField("knobs flag")),
    };
    // The bucket is counted in the limit in force when it was written.
    let limit = knobs
        .and_then(|k| match k.policy {
            Policy::Bucket(l) if k.expires_at > updated_at => Some(l),
            _ => None,
        })
        .or_else(|| v1_limit(&last_call));
    let bucket = limit.and_then(|l| v1_bucket(level, updated_at, &l));
    match (bucket, knobs) {
        (bucket, Some(knobs)) => Ok(Limiter::Knobbed(Box::new(Knobbed { bucket, knobs }))),
        (Some(b), None) => Ok(Limiter::Plain(b)),
        // A switch without knobs never stored a bucket in version 1.
        (None, None) => Err(CodecError::BadField("limit parameters")),
    }
}

/// `level` femto-tokens at `updated_at`, as a bucket under `limit`.
fn v1_bucket(level: i128, updated_at: Micros, limit: &Limit) -> Option<Bucket> {
    let rate = limit.rate();
    let per_token = i128::try_from(rate.units_per_token()).ok()?;
    let cap = i128::try_from(limit.capacity_units()).ok()?;
    // units = floor(level × per_token / 10^15), computed without overflow.
    let whole = level.div_euclid(V1_FEMTO);
    let part = level.rem_euclid(V1_FEMTO);
    let units = whole
        .saturating_mul(per_token)
        .saturating_add(part.saturating_mul(per_token).div_euclid(V1_FEMTO));
    let floor = i128::try_from(u128::from(MAX_WAIT.0).saturating_mul(rate.units_per_us()))
        .ok()?
        .saturating_neg();
    let units = units.clamp(floor, cap);
    let behind = u128::try_from(cap.saturating_sub(units)).ok()?;
    let at = updated_at.min(crate::bucket::MAX_INSTANT);
    let full = u128::from(at.0)
        .saturating_mul(rate.units_per_us())
        .saturating_add(behind);
    let stamp = u32::try_from(at.as_secs_floor()).unwrap_or(u32::MAX);
    Bucket::from_parts(*limit, full, stamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket;
    use crate::limiter::{KnobChanges, Write, set_knobs, snapshot, throttle};

    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_790_000_000 * SEC;

    fn sample(knobs: bool) -> Limiter {
        let p = LimitLion {
            rps: Rps::Rate(Rate::from_nano(5 * NANO).unwrap()),
            burst_nano: 2 * NANO,
            window_ns: 8 * NANO,
        }
        .policy()
        .unwrap();
        let o = throttle(None, Micros(T0), Some(&p), 7, Micros::ZERO).unwrap();
        let Some(Write::Store { value, .. }) = o.write else {
            panic!()
        };
        if !knobs {
            return value;
        }
        let ch = KnobChanges {
            rps: Some(Rps::Deny),
            burst_nano: Some(NANO),
            window_ns: Some(NANO),
            ttl: None,
        };
        match set_knobs(Some(&value), Micros(T0), &ch, Micros(60 * SEC)).unwrap() {
            Write::Store { value, .. } => value,
            Write::Delete => panic!(),
        }
    }

    #[test]
    fn round_trips() {
        for knobs in [false, true] {
            let v = sample(knobs);
            assert_eq!(decode_limiter(encode_limiter(&v).as_bytes()), Ok(v));
        }
        assert_eq!(encode_limiter(&sample(false)).as_bytes().len(), BUCKET_LEN);
        let p = PermitState {
            last_valid_at: Micros(T0 + 5),
            stamp: Micros(T0),
        };
        assert_eq!(decode_permit(encode_permit(&p).as_bytes()), Ok(p));
        assert_eq!(encode_permit(&p).as_bytes().len(), PERMIT_LEN);
    }

    #[test]
    fn rejects_bad_input() {
        let good = encode_limiter(&sample(true)).as_bytes().to_vec();
        assert_eq!(decode_limiter(&[]), Err(CodecError::Truncated));
        assert_eq!(
            decode_limiter(&good[..good.len() - 1]),
            Err(CodecError::Truncated)
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode_limiter(&long), Err(CodecError::TrailingBytes));
        let mut v9 = good.clone();
        v9[0] = 9;
        assert_eq!(decode_limiter(&v9), Err(CodecError::UnknownVersion(9)));
        assert_eq!(decode_permit(&good), Err(CodecError::WrongKind));
        let p = PermitState {
            last_valid_at: Micros(1),
            stamp: Micros(1),
        };
        assert_eq!(
            decode_limiter(encode_permit(&p).as_bytes()),
            Err(CodecError::WrongKind)
        );
        // An unreduced rate is damage.
        let mut plain = encode_limiter(&sample(false)).as_bytes().to_vec();
        plain[18..22].copy_from_slice(&10u32.to_le_bytes());
        plain[22..26].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(decode_limiter(&plain), Err(CodecError::BadField("rate")));
        // A bucket "full" a century after it was written: no call makes that.
        let mut far = encode_limiter(&sample(false)).as_bytes().to_vec();
        far[10] = 0xff;
        assert_eq!(
            decode_limiter(&far),
            Err(CodecError::BadField("bucket state"))
        );
        // A permit chain beyond the horizon.
        let p = PermitState {
            last_valid_at: Micros(T0 + HORIZON.0 + 1),
            stamp: Micros(T0),
        };
        assert_eq!(
            decode_permit(encode_permit(&p).as_bytes()),
            Err(CodecError::BadField("last slot"))
        );
    }

    /// Version 1 bytes, as the previous release wrote them.
    fn v1(level: i128, updated_at: u64, rps_nano: u64, burst: u64, window: u64) -> Vec<u8> {
        let mut b = vec![1, b'L'];
        b.extend(level.to_le_bytes());
        b.extend(updated_at.to_le_bytes());
        b.push(2);
        b.extend(rps_nano.to_le_bytes());
        b.extend(burst.to_le_bytes());
        b.extend(window.to_le_bytes());
        b.push(0);
        b
    }

    #[test]
    fn version_1_values_load_with_their_tokens() {
        // 5 tokens/s, capacity 80, 73.5 tokens held at T0.
        let bytes = v1(735 * V1_FEMTO / 10, T0, 5 * NANO, 2 * NANO, 8 * NANO);
        let v = decode_limiter(&bytes).unwrap();
        let s = snapshot(&v, Micros(T0));
        assert_eq!((s.tokens, s.limit), (Some(73), 80));
        // 6.5 tokens short of full at 5/s: full in 1.3 s.
        assert_eq!(s.reset_after, Micros(1_300_000));
        // The "full whatever the capacity" sentinel is a full bucket.
        let full = decode_limiter(&v1(V1_LEVEL_BOUND, T0, 5 * NANO, 2 * NANO, 8 * NANO)).unwrap();
        assert_eq!(snapshot(&full, Micros(T0)).tokens, Some(80));
        // A rate faster than today's bound is clamped, not refused.
        let fast = decode_limiter(&v1(0, T0, V1_MAX_RPS_NANO, NANO, NANO)).unwrap();
        assert_eq!(fast.bucket().unwrap().limit().rate().text(), "1000000000");
        // A v1 permit loads with a stamp that never looks like a step back.
        let mut p = vec![1, b'P'];
        p.extend((T0 + 5).to_le_bytes());
        let s = decode_permit(&p).unwrap();
        assert_eq!(s.last_valid_at, Micros(T0 + 5));
        assert_eq!(s.rebased(Micros(T0)), None);
        // Reservations (negative level) carry over.
        let owed = decode_limiter(&v1(-2 * V1_FEMTO, T0, NANO, NANO, NANO)).unwrap();
        let d = bucket::decide(
            owed.bucket(),
            Micros(T0),
            &owed.bucket().unwrap().limit(),
            1,
            Micros::ZERO,
        );
        assert_eq!(
            d.verdict,
            bucket::Verdict::Denied {
                retry: bucket::Retry::After(Micros(3 * SEC))
            }
        );
    }
}
