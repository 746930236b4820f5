//! The fixed-width layouts: version 2, which each write replicates for the
//! states written on every call (a plain bucket, a permit without
//! settings; see `codec`), and which releases before the compact layouts
//! also stored; and version 1, read only. Every value ever written still
//! loads (RDB files, AOFs, DUMP payloads of older releases).
//!
//! ```text
//! v2 bucket:   0x02 'B' bucket                               (replicated)
//! v2 knobbed:  0x02 'K' has_bucket:u8 [bucket] knobs         (read only)
//! v2 permit:   0x02 'P' last_valid_at_us:u64 stamp_us:u64    (read only)
//! v2 paced:    0x02 'Q' last_valid_at_us:u64 stamp_us:u64 last_interval_us:u64 promised_until_us:u64  (replicated)
//!   bucket:    full_lo:u64 full_hi:u32 stamp_s:u32 num:u32 den:u32 capacity:u64
//!   knobs:     rps_kind:u8 (0 deny, 1 allow, 2 rate) num:u32 den:u32
//!              burst_nano:u64 window_ns:u64 ttl_us:u64 expires_at_us:u64
//! v1 limiter:  0x01 'L' level_femto:i128 updated_at_us:u64 params [0 | 1 params ttl_us:u64 expires_at_us:u64]
//!   params:    rate_kind:u8 (0 deny, 1 allow, 2 per-second) rps_nano:u64 burst_nano:u64 window_ns:u64
//! v1 permit:   0x01 'P' last_valid_at_us:u64
//! ```
//! (little-endian, fixed width). Version 1 values (written before the
//! bucket was kept as a full-again instant) are converted: same tokens,
//! rounded down to what today's units hold.

use crate::bucket::Bucket;
use crate::codec::{CodecError, Encoded, FixedWriter, Reader};
use crate::permit::PermitState;
use crate::rate::{Limit, LimitLion, MAX_CAPACITY, NANO, Policy, Rate, Rps};
use crate::throttle::{Knobbed, Knobs, MAX_KNOBS_TTL, ThrottleState, checked_knobs, read_knobbed};
use crate::time::{HORIZON, Micros, Timestamp};

/// The kind letters of THROTTLE states in versions 1 and 2.
pub const THROTTLE_KINDS: &[u8] = b"BKL";
/// The kind letters of PERMIT states in versions 1 and 2.
pub const PERMIT_KINDS: &[u8] = b"PQ";
const PACED_KIND: u8 = b'Q';

/// A plain bucket's replicated layout: `0x02 'B' bucket` (34 bytes).
#[inline]
pub fn bucket(b: &Bucket) -> Option<Encoded> {
    let mut w = FixedWriter::<34>::new();
    w.put(&[2, b'B']);
    b.put_fixed(&mut w);
    w.finish().map(Encoded::whole)
}

/// A permit's replicated layout when it has no settings: `0x02 'Q'` and
/// its four instants and durations (34 bytes).
#[inline]
pub fn paced(
    last_valid_at: Timestamp,
    stamp: Timestamp,
    last_interval: Micros,
    promised_until: Timestamp,
) -> Option<Encoded> {
    let mut w = FixedWriter::<34>::new();
    w.put(&[2, PACED_KIND])
        .put(&last_valid_at.0.to_le_bytes())
        .put(&stamp.0.to_le_bytes())
        .put(&last_interval.0.to_le_bytes())
        .put(&promised_until.0.to_le_bytes());
    w.finish().map(Encoded::whole)
}

fn header(r: &mut Reader<'_>) -> Result<(u8, u8), CodecError> {
    Ok((r.u8()?, r.u8()?))
}

fn v2_rate(r: &mut Reader<'_>) -> Result<Rate, CodecError> {
    let (num, den) = (r.le_u32()?, r.le_u32()?);
    match Rate::new(u64::from(num), u64::from(den)) {
        // Reduced, as every rate is written.
        Some(rate) if rate.num() == num && rate.den() == den => Ok(rate),
        _ => Err(CodecError::BadField("rate")),
    }
}

fn v2_bucket(r: &mut Reader<'_>) -> Result<Bucket, CodecError> {
    let full_lo = r.le_u64()?;
    let full_hi = r.le_u32()?;
    let stamp_s = r.le_u32()?;
    let rate = v2_rate(r)?;
    let limit = Limit::new(rate, r.le_u64()?).map_err(|_| CodecError::BadField("capacity"))?;
    let full = (u128::from(full_hi) << 64) | u128::from(full_lo);
    Bucket::from_raw_full(limit, full, stamp_s).ok_or(CodecError::BadField("bucket state"))
}

fn v2_knobs(r: &mut Reader<'_>) -> Result<Knobs, CodecError> {
    let kind = r.u8()?;
    let rps = match kind {
        0 | 1 => {
            if (r.le_u32()?, r.le_u32()?) != (0, 0) {
                // The switches carry no rate: anything else there is damage.
                return Err(CodecError::BadField("rps of a switch"));
            }
            if kind == 0 { Rps::Deny } else { Rps::Allow }
        }
        2 => Rps::Rate(v2_rate(r)?),
        _ => return Err(CodecError::BadField("rps kind")),
    };
    let args = LimitLion {
        rps,
        burst_nano: r.le_u64()?,
        window_ns: r.le_u64()?,
    };
    let ttl = Micros(r.le_u64()?);
    checked_knobs(args, ttl, Timestamp(r.le_u64()?))
}

/// A THROTTLE state in layout version 1 or 2.
pub fn decode_throttle(bytes: &[u8]) -> Result<ThrottleState, CodecError> {
    let mut r = Reader::new(bytes);
    let v = match header(&mut r)? {
        (2, b'B') => ThrottleState::Plain(v2_bucket(&mut r)?),
        (2, b'K') => read_knobbed(&mut r, v2_bucket, v2_knobs)?,
        (1, b'L') => v1_throttle(&mut r)?,
        (1 | 2, _) => return Err(CodecError::WrongKind),
        (v, _) => return Err(CodecError::UnknownVersion(v)),
    };
    r.end()?;
    Ok(v)
}

/// A PERMIT state in layout version 1 or 2.
pub fn decode_permit(bytes: &[u8]) -> Result<PermitState, CodecError> {
    let mut r = Reader::new(bytes);
    let s = match header(&mut r)? {
        (2, b'P') => {
            let last_valid_at = Timestamp(r.le_u64()?);
            PermitState::new(last_valid_at, Timestamp(r.le_u64()?))
        }
        (2, PACED_KIND) => {
            let (last_valid_at, stamp) = (Timestamp(r.le_u64()?), Timestamp(r.le_u64()?));
            let (last_interval, promised_until) = (Micros(r.le_u64()?), Timestamp(r.le_u64()?));
            PermitState::new(last_valid_at, stamp).paced(last_interval, promised_until)
        }
        (1, b'P') => {
            // v1 kept no stamp: take the earliest one the slot allows.
            let last_valid_at = Timestamp(r.le_u64()?);
            PermitState::new(last_valid_at, last_valid_at.saturating_sub(HORIZON))
        }
        (1 | 2, _) => return Err(CodecError::WrongKind),
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

/// Version 1 parameters: `(rps, allow, burst_nano, window_ns)` as stored.
fn v1_params(r: &mut Reader<'_>) -> Result<(Option<u64>, bool, u64, u64), CodecError> {
    let kind = r.u8()?;
    let rps = r.le_u64()?;
    let (burst, window) = (r.le_u64()?, r.le_u64()?);
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
            let by_refill = u128::from(HORIZON.0)
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

fn v1_throttle(r: &mut Reader<'_>) -> Result<ThrottleState, CodecError> {
    let level = r.le_i128()?;
    if !(-V1_LEVEL_BOUND..=V1_LEVEL_BOUND).contains(&level) {
        return Err(CodecError::BadField("level"));
    }
    let updated_at = Timestamp(r.le_u64()?);
    let (rps, allow, burst, window) = v1_params(r)?;
    let last_call = v1_args(rps, allow, burst, window);
    let knobs = match r.u8()? {
        0 => None,
        1 => {
            let (rps, allow, burst, window) = v1_params(r)?;
            let ttl = Micros(r.le_u64()?.min(MAX_KNOBS_TTL.0));
            let expires_at = Timestamp(r.le_u64()?);
            let args = v1_args(rps, allow, burst, window);
            // Knobs today's bounds cannot hold are dropped (callers' limits apply).
            checked_knobs(args, ttl, expires_at).ok()
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
        (bucket, Some(knobs)) => Ok(ThrottleState::Knobbed(Box::new(Knobbed { bucket, knobs }))),
        (Some(b), None) => Ok(ThrottleState::Plain(b)),
        // A switch without knobs never stored a bucket in version 1.
        (None, None) => Err(CodecError::BadField("limit parameters")),
    }
}

/// `level` femto-tokens at `updated_at`, as a bucket under `limit`.
fn v1_bucket(level: i128, updated_at: Timestamp, limit: &Limit) -> Option<Bucket> {
    let per_token = i128::try_from(limit.rate().units_per_token()).ok()?;
    // units = floor(level × per_token / 10^15), computed without overflow.
    let whole = level.div_euclid(V1_FEMTO);
    let part = level.rem_euclid(V1_FEMTO);
    let units = whole
        .saturating_mul(per_token)
        .saturating_add(part.saturating_mul(per_token).div_euclid(V1_FEMTO));
    Bucket::from_level(*limit, units, updated_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket;
    use crate::codec::Codec;
    use crate::throttle::get;

    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_790_000_000 * SEC;

    /// Version 1 bytes, as that release wrote them.
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

    /// Version 2 bytes of a plain bucket.
    fn v2_plain(full: u128, stamp_s: u32, num: u32, den: u32, capacity: u64) -> Vec<u8> {
        let mut b = vec![2, b'B'];
        b.extend(
            u64::try_from(full & u128::from(u64::MAX))
                .unwrap()
                .to_le_bytes(),
        );
        b.extend(u32::try_from(full >> 64).unwrap().to_le_bytes());
        b.extend(stamp_s.to_le_bytes());
        b.extend(num.to_le_bytes());
        b.extend(den.to_le_bytes());
        b.extend(capacity.to_le_bytes());
        b
    }

    #[test]
    fn version_2_values_load_and_reencode_identically() {
        // 5 tokens/s (1 unit = 1/1e6 token), capacity 80, 7 used at T0.
        let full = u128::from(T0) * 5 + 7_000_000;
        let bytes = v2_plain(full, u32::try_from(T0 / SEC).unwrap(), 5, 1, 80);
        let v = ThrottleState::decode(&bytes).unwrap();
        assert!(ThrottleState::claims(&bytes));
        let s = get(Some(&v), Timestamp(T0)).unwrap();
        assert_eq!((s.tokens, s.limit), (Some(73), 80));
        // Today's layout holds the same state.
        assert_eq!(ThrottleState::decode(v.encode().as_bytes()), Ok(v));
        // Damage is still refused.
        let mut bad = bytes.clone();
        bad[18..22].copy_from_slice(&10u32.to_le_bytes());
        bad[22..26].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            ThrottleState::decode(&bad),
            Err(CodecError::BadField("rate"))
        );
        let mut far = bytes.clone();
        far[10] = 0xff;
        assert_eq!(
            ThrottleState::decode(&far),
            Err(CodecError::BadField("bucket state"))
        );
        let mut v9 = bytes;
        v9[0] = 9;
        assert_eq!(
            ThrottleState::decode(&v9),
            Err(CodecError::UnknownVersion(9))
        );
    }

    #[test]
    fn version_1_values_load_with_their_tokens() {
        // 5 tokens/s, capacity 80, 73.5 tokens held at T0.
        let bytes = v1(735 * V1_FEMTO / 10, T0, 5 * NANO, 2 * NANO, 8 * NANO);
        let v = ThrottleState::decode(&bytes).unwrap();
        let s = get(Some(&v), Timestamp(T0)).unwrap();
        assert_eq!((s.tokens, s.limit), (Some(73), 80));
        // 6.5 tokens short of full at 5/s: full in 1.3 s.
        assert_eq!(s.reset_after, Micros(1_300_000));
        // The "full whatever the capacity" sentinel is a full bucket.
        let full =
            ThrottleState::decode(&v1(V1_LEVEL_BOUND, T0, 5 * NANO, 2 * NANO, 8 * NANO)).unwrap();
        assert_eq!(get(Some(&full), Timestamp(T0)).unwrap().tokens, Some(80));
        // A rate faster than today's bound is clamped, not refused.
        let fast = ThrottleState::decode(&v1(0, T0, V1_MAX_RPS_NANO, NANO, NANO)).unwrap();
        assert_eq!(fast.bucket().unwrap().limit().rate().text(), "1000000000");
        // A v1 permit loads with a stamp that never looks like a step back.
        let mut p = vec![1, b'P'];
        p.extend((T0 + 5).to_le_bytes());
        let s = PermitState::decode(&p).unwrap();
        assert_eq!(s.last_valid_at(), Timestamp(T0 + 5));
        assert_eq!(s.rebased(Timestamp(T0)), None);
        // Reservations (negative level) carry over.
        let owed = ThrottleState::decode(&v1(-2 * V1_FEMTO, T0, NANO, NANO, NANO)).unwrap();
        let d = bucket::decide(
            owed.bucket(),
            Timestamp(T0),
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

    #[test]
    fn version_2_permits_load() {
        let mut p = vec![2, b'P'];
        p.extend((T0 + 5).to_le_bytes());
        p.extend(T0.to_le_bytes());
        let s = PermitState::decode(&p).unwrap();
        assert_eq!(
            (s.last_valid_at(), s.stamp()),
            (Timestamp(T0 + 5), Timestamp(T0))
        );
        assert!(PermitState::claims(&p));
        assert!(!ThrottleState::claims(&p));
        assert_eq!(ThrottleState::decode(&p), Err(CodecError::WrongKind));
        // A chain beyond the horizon.
        let mut far = vec![2, b'P'];
        far.extend((T0 + HORIZON.0 + 1).to_le_bytes());
        far.extend(T0.to_le_bytes());
        assert_eq!(
            PermitState::decode(&far),
            Err(CodecError::BadField("last slot"))
        );
    }
}
