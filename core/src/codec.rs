//! Versioned binary encoding of stored values, used for RDB, DUMP/RESTORE,
//! AOF rewrite and replication alike.
//!
//! Layout (little-endian, fixed width):
//! ```text
//! limiter v1: 0x01 'L' level:i128 updated_at:u64 params [0|1 knobs]
//!   params:   rate_kind:u8 (0 deny, 1 allow, 2 per-second) rps_nano:u64 burst_nano:u64 window_ns:u64
//!   knobs:    params ttl_us:u64 expires_at_us:u64
//! permit v1:  0x01 'P' last_valid_at_us:u64
//! ```
//! [`decode_limiter`] and [`decode_permit`] accept every version ever
//! written and reject anything else (unknown version, wrong kind, short or
//! long input, out-of-range fields) with an error: they never panic, on
//! any input.

use crate::bucket::{Bucket, LEVEL_BOUND};
use crate::limiter::{Knobs, Limiter, Params};
use crate::permit::PermitState;
use crate::quota::Rate;
use crate::time::Micros;

/// The current encoding version.
pub const VERSION: u8 = 1;
const KIND_LIMITER: u8 = b'L';
const KIND_PERMIT: u8 = b'P';

/// Why stored bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    UnknownVersion(u8),
    WrongKind,
    Truncated,
    TrailingBytes,
    BadField(&'static str),
}

/// Longest encoding of a limiter: 2 + 16 + 8 + 25 + 1 + 25 + 16.
pub const MAX_LIMITER_LEN: usize = 93;
/// Encoding of a permit state.
pub const PERMIT_LEN: usize = 10;

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.at.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.at..end) {
            dst.copy_from_slice(bytes);
        }
        self.at = end;
    }
    fn params(&mut self, p: &Params) {
        let (kind, rps) = match p.rate {
            Rate::DenyAll => (0u8, 0u64),
            Rate::AllowAll => (1, 0),
            Rate::PerSecond(n) => (2, n),
        };
        self.put(&[kind]);
        self.put(&rps.to_le_bytes());
        self.put(&p.burst_nano.to_le_bytes());
        self.put(&p.window_ns.to_le_bytes());
    }
}

/// Encodes `v` into `out`; returns the number of bytes written.
pub fn encode_limiter(v: &Limiter, out: &mut [u8; MAX_LIMITER_LEN]) -> usize {
    let mut w = Writer { buf: out, at: 0 };
    w.put(&[VERSION, KIND_LIMITER]);
    w.put(&v.bucket.level.to_le_bytes());
    w.put(&v.bucket.updated_at.0.to_le_bytes());
    w.params(&v.params);
    match &v.knobs {
        None => w.put(&[0]),
        Some(k) => {
            w.put(&[1]);
            w.params(&k.params);
            w.put(&k.ttl.0.to_le_bytes());
            w.put(&k.expires_at.0.to_le_bytes());
        }
    }
    w.at
}

/// Encodes a permit state.
pub fn encode_permit(s: &PermitState) -> [u8; PERMIT_LEN] {
    let mut out = [0u8; PERMIT_LEN];
    let mut w = Writer {
        buf: &mut out,
        at: 0,
    };
    w.put(&[VERSION, KIND_PERMIT]);
    w.put(&s.last_valid_at.0.to_le_bytes());
    out
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
        Ok(self.take::<1>()?[0])
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i128(&mut self) -> Result<i128, CodecError> {
        Ok(i128::from_le_bytes(self.take()?))
    }
    fn header(&mut self, kind: u8) -> Result<u8, CodecError> {
        let version = self.u8()?;
        if version != VERSION {
            return Err(CodecError::UnknownVersion(version));
        }
        if self.u8()? != kind {
            return Err(CodecError::WrongKind);
        }
        Ok(version)
    }
    fn params(&mut self) -> Result<Params, CodecError> {
        let kind = self.u8()?;
        let rps = self.u64()?;
        let rate = match (kind, rps) {
            (0, 0) => Rate::DenyAll,
            (1, 0) => Rate::AllowAll,
            // The switches carry no rate: anything else there is damage.
            (0 | 1, _) => return Err(CodecError::BadField("rps of a switch")),
            (2, _) => Rate::PerSecond(rps),
            _ => return Err(CodecError::BadField("rate kind")),
        };
        let p = Params {
            rate,
            burst_nano: self.u64()?,
            window_ns: self.u64()?,
        };
        p.limit()
            .map_err(|_| CodecError::BadField("limit parameters"))?;
        Ok(p)
    }
    fn end(&self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
}

/// Decodes a limiter written by any version of [`encode_limiter`].
pub fn decode_limiter(bytes: &[u8]) -> Result<Limiter, CodecError> {
    let mut r = Reader { rest: bytes };
    r.header(KIND_LIMITER)?;
    let level = r.i128()?;
    if !(-LEVEL_BOUND..=LEVEL_BOUND).contains(&level) {
        return Err(CodecError::BadField("level"));
    }
    let updated_at = Micros(r.u64()?);
    let params = r.params()?;
    let knobs = match r.u8()? {
        0 => None,
        1 => Some(Box::new(Knobs {
            params: r.params()?,
            ttl: Micros(r.u64()?),
            expires_at: Micros(r.u64()?),
        })),
        _ => return Err(CodecError::BadField("knobs flag")),
    };
    r.end()?;
    Ok(Limiter {
        bucket: Bucket { level, updated_at },
        params,
        knobs,
    })
}

/// Decodes a permit state written by any version of [`encode_permit`].
pub fn decode_permit(bytes: &[u8]) -> Result<PermitState, CodecError> {
    let mut r = Reader { rest: bytes };
    r.header(KIND_PERMIT)?;
    let last_valid_at = Micros(r.u64()?);
    r.end()?;
    Ok(PermitState { last_valid_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::NANO;

    fn sample(knobs: bool) -> Limiter {
        let params = Params {
            rate: Rate::PerSecond(5 * NANO),
            burst_nano: 2 * NANO,
            window_ns: 8 * NANO,
        };
        Limiter {
            bucket: Bucket {
                level: -12_345,
                updated_at: Micros(1_700_000_000_000_000),
            },
            params,
            knobs: knobs.then(|| {
                Box::new(Knobs {
                    params: Params {
                        rate: Rate::DenyAll,
                        ..params
                    },
                    ttl: Micros(604_800_000_000),
                    expires_at: Micros(1_700_000_604_800_000),
                })
            }),
        }
    }

    fn encoded(v: &Limiter) -> Vec<u8> {
        let mut buf = [0u8; MAX_LIMITER_LEN];
        let n = encode_limiter(v, &mut buf);
        buf[..n].to_vec()
    }

    #[test]
    fn round_trips() {
        for knobs in [false, true] {
            let v = sample(knobs);
            assert_eq!(decode_limiter(&encoded(&v)), Ok(v));
        }
        let p = PermitState {
            last_valid_at: Micros(42),
        };
        assert_eq!(decode_permit(&encode_permit(&p)), Ok(p));
        assert_eq!(encoded(&sample(true)).len(), MAX_LIMITER_LEN);
    }

    #[test]
    fn a_switch_with_a_rate_is_refused() {
        // Found by the codec property test: a damaged rps field under a
        // deny/allow switch used to be ignored, so a corrupt value loaded.
        let mut v = sample(false);
        v.params.rate = Rate::DenyAll;
        let mut bytes = encoded(&v);
        assert_eq!(decode_limiter(&bytes), Ok(v.clone()));
        bytes[27] = 1;
        assert_eq!(
            decode_limiter(&bytes),
            Err(CodecError::BadField("rps of a switch"))
        );
        bytes[26] = 1;
        assert_eq!(
            decode_limiter(&bytes),
            Err(CodecError::BadField("rps of a switch"))
        );
    }

    #[test]
    fn rejects_bad_input() {
        let good = encoded(&sample(true));
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
        assert_eq!(
            decode_limiter(&encode_permit(&PermitState {
                last_valid_at: Micros(1)
            })),
            Err(CodecError::WrongKind)
        );
        let mut zero_burst = good.clone();
        zero_burst[35..43].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(
            decode_limiter(&zero_burst),
            Err(CodecError::BadField("limit parameters"))
        );
    }
}
