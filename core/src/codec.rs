//! Binary encoding of stored states: the primitives and the [`Codec`]
//! trait. Each state's own layout lives beside the state (`throttle.rs`,
//! `permit.rs`, ...); the fixed-width layouts live in `fixed.rs`.
//!
//! Two kinds of layout:
//! - **compact**, for what is kept at rest: RDB, DUMP/RESTORE, AOF
//!   rewrite ([`Codec::encode`]). A tag byte naming the layout, then the
//!   state's fields as LEB128 varints (signed ones zigzag-encoded),
//!   relative to the state's own timestamp where that keeps them small. A
//!   plain bucket takes about 14 bytes.
//! - **fixed-width**, for the effect each write replicates
//!   (`THROTTLE.APPLY key payload`, [`Codec::encode_replicated`]): a state
//!   written on every call (a plain bucket, a permit without settings)
//!   sends its fields little-endian at fixed offsets, which costs a few
//!   stores where varints cost a loop per field. About twice the bytes, on
//!   the replication stream and in the AOF only. Every other state
//!   replicates its compact layout.
//!
//! Decoding accepts every layout ever written and refuses anything else
//! (unknown tag, short or long input, out-of-range fields, states no call
//! can produce) with an error: it never panics, on any input.

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

/// A state that is stored: its layout, and every older layout it decodes.
pub trait Codec: Sized {
    /// The compact layout: what RDB, DUMP and AOF rewrite store.
    fn encode(&self) -> Encoded;
    /// What a write replicates: the compact layout unless the state has a
    /// fixed-width one (cheaper to write, see the module docs). Decodes
    /// with [`Codec::decode`] like every layout.
    fn encode_replicated(&self) -> Encoded {
        self.encode()
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
    /// Whether `bytes` claims to be a value of this type (its first bytes
    /// name one of its layouts); [`Codec::decode`] still validates it.
    fn claims(bytes: &[u8]) -> bool;
}

/// Values up to this many bytes encode without allocating.
const INLINE: usize = 96;

/// An encoded value: on the stack when small (every bucket and permit).
pub struct Encoded {
    inline: [u8; INLINE],
    len: usize,
    heap: Option<Vec<u8>>,
}

impl Encoded {
    /// A layout built whole (a fixed-width one).
    #[inline]
    pub fn whole<const N: usize>(bytes: &[u8; N]) -> Encoded {
        let mut inline = [0u8; INLINE];
        match inline.get_mut(..N) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                Encoded {
                    inline,
                    len: N,
                    heap: None,
                }
            }
            None => Encoded {
                inline,
                len: 0,
                heap: Some(bytes.to_vec()),
            },
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.heap {
            Some(v) => v,
            None => self.inline.get(..self.len).unwrap_or(&[]),
        }
    }
}

/// Writes a layout.
pub struct Writer {
    out: Encoded,
}

impl Writer {
    /// A layout starting with its tag byte.
    pub fn new(tag: u8) -> Writer {
        let mut w = Writer {
            out: Encoded {
                inline: [0; INLINE],
                len: 0,
                heap: None,
            },
        };
        w.put(&[tag]);
        w
    }

    /// Bytes: copied into the inline buffer while they fit, else onto the
    /// heap.
    #[inline]
    pub fn put(&mut self, bytes: &[u8]) {
        let (len, end) = (self.out.len, self.out.len.saturating_add(bytes.len()));
        if self.out.heap.is_none()
            && let Some(dst) = self.out.inline.get_mut(len..end)
        {
            dst.copy_from_slice(bytes);
            self.out.len = end;
            return;
        }
        self.spill(bytes);
    }

    #[cold]
    fn spill(&mut self, bytes: &[u8]) {
        let inline = &self.out.inline;
        let len = self.out.len;
        self.out
            .heap
            .get_or_insert_with(|| {
                let mut v = Vec::with_capacity(INLINE.saturating_mul(2));
                v.extend_from_slice(inline.get(..len).unwrap_or(&[]));
                v
            })
            .extend_from_slice(bytes);
    }

    pub fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    /// An unsigned LEB128 varint.
    pub fn uint(&mut self, v: u128) {
        match u64::try_from(v) {
            Ok(v) => self.u64(v),
            Err(_) => {
                let mut buf = [0u8; 19];
                let mut n = 0usize;
                let mut v = v;
                for slot in buf.iter_mut() {
                    n = n.wrapping_add(1); // at most 19
                    if v < 0x80 {
                        *slot = v as u8;
                        break;
                    }
                    *slot = (v & 0x7f) as u8 | 0x80;
                    v >>= 7;
                }
                self.put(buf.get(..n).unwrap_or(&[]));
            }
        }
    }

    /// An unsigned LEB128 varint (the common case, without 128-bit steps):
    /// built in registers, written with one fixed-size copy. (A loop-free
    /// form, the 7-bit groups spread with masks, measured 1.3% more
    /// instructions per THROTTLE: scripts/bench/profile.sh.)
    #[inline]
    pub fn u64(&mut self, v: u64) {
        let mut buf = [0u8; 10];
        let mut n = 0usize;
        let mut v = v;
        for slot in buf.iter_mut() {
            n = n.wrapping_add(1); // at most 10
            if v < 0x80 {
                *slot = v as u8;
                break;
            }
            *slot = (v & 0x7f) as u8 | 0x80;
            v >>= 7;
        }
        self.put_first(&buf, n);
    }

    /// The first `n` bytes of `buf`: while the inline buffer has room for
    /// all of `buf`, one copy of a known size (no call to memcpy), then the
    /// length moves by `n`.
    #[inline]
    fn put_first<const N: usize>(&mut self, buf: &[u8; N], n: usize) {
        let len = self.out.len;
        if self.out.heap.is_none()
            && let Some(dst) = self
                .out
                .inline
                .get_mut(len..len.saturating_add(N))
                .and_then(|d| <&mut [u8; N]>::try_from(d).ok())
        {
            *dst = *buf;
            self.out.len = len.saturating_add(n.min(N));
            return;
        }
        self.put(buf.get(..n).unwrap_or(&[]));
    }

    /// A signed varint (zigzag).
    pub fn int(&mut self, v: i128) {
        let zz = (v.unsigned_abs() << 1).wrapping_sub(u128::from(v < 0));
        self.uint(zz);
    }

    pub fn finish(self) -> Encoded {
        self.out
    }
}

/// Builds a fixed-width layout of `N` bytes: fields little-endian, one
/// after another (inlined, the offsets are constants: a store per field).
pub struct FixedWriter<const N: usize> {
    out: [u8; N],
    at: usize,
}

impl<const N: usize> FixedWriter<N> {
    #[inline]
    pub fn new() -> FixedWriter<N> {
        FixedWriter { out: [0; N], at: 0 }
    }

    /// The next bytes (dropped past the end: `finish` is then refused by
    /// the tests, never reached by a layout whose fields add up to `N`).
    #[inline]
    pub fn put(&mut self, bytes: &[u8]) -> &mut Self {
        let end = self.at.saturating_add(bytes.len());
        if let Some(dst) = self.out.get_mut(self.at..end) {
            dst.copy_from_slice(bytes);
        }
        self.at = end;
        self
    }

    /// The layout; `None` unless the fields filled exactly `N` bytes.
    #[inline]
    pub fn finish(&self) -> Option<&[u8; N]> {
        (self.at == N).then_some(&self.out)
    }
}

impl<const N: usize> Default for FixedWriter<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads a layout.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(CodecError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_le_bytes(self.take()?))
    }

    /// Fixed-width little-endian fields (`fixed.rs`).
    pub fn le_u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    pub fn le_u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    pub fn le_i128(&mut self) -> Result<i128, CodecError> {
        Ok(i128::from_le_bytes(self.take()?))
    }

    /// An unsigned LEB128 varint, in its shortest form only (so each value
    /// has exactly one encoding, and damage is seen).
    #[inline]
    pub fn uint(&mut self, what: &'static str) -> Result<u128, CodecError> {
        // One byte (a small field: a rate's numerator, a capacity) inline.
        if let [b, rest @ ..] = self.rest
            && *b < 0x80
        {
            self.rest = rest;
            return Ok(u128::from(*b));
        }
        self.multi_byte_uint(what)
    }

    /// [`Reader::uint`] of two bytes or more.
    fn multi_byte_uint(&mut self, what: &'static str) -> Result<u128, CodecError> {
        // Up to 9 bytes (63 bits) cannot overflow a u64: no checks per byte.
        // A plain counter and shift (an iterator of shifts, `step_by`, cost
        // twice the instructions: this runs five times a key on RDB load).
        let (mut v, mut shift) = (0u64, 0u32);
        for (i, &b) in self.rest.iter().take(9).enumerate() {
            v |= u64::from(b & 0x7f).wrapping_shl(shift);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(CodecError::BadField(what)); // not the shortest form
                }
                self.rest = self.rest.get(i.wrapping_add(1)..).unwrap_or(&[]);
                return Ok(u128::from(v));
            }
            shift = shift.wrapping_add(7); // at most 56
        }
        self.long_uint(what)
    }

    /// A varint of 10 bytes or more (or a truncated one), checked byte by
    /// byte.
    #[cold]
    fn long_uint(&mut self, what: &'static str) -> Result<u128, CodecError> {
        let mut v: u128 = 0;
        for i in 0..19u32 {
            let b = self.u8()?;
            let bits = u128::from(b & 0x7f);
            let shift = i.saturating_mul(7);
            let shifted = bits.checked_shl(shift).filter(|s| s >> shift == bits);
            v |= shifted.ok_or(CodecError::BadField(what))?;
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(CodecError::BadField(what)); // not the shortest form
                }
                return Ok(v);
            }
        }
        Err(CodecError::BadField(what))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        u64::try_from(self.uint(what)?).map_err(|_| CodecError::BadField(what))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        u32::try_from(self.uint(what)?).map_err(|_| CodecError::BadField(what))
    }

    /// A signed varint (zigzag).
    pub fn int(&mut self, what: &'static str) -> Result<i128, CodecError> {
        let zz = self.uint(what)?;
        let magnitude = i128::try_from(zz >> 1).map_err(|_| CodecError::BadField(what))?;
        Ok(if zz & 1 == 1 {
            magnitude.saturating_neg().saturating_sub(1)
        } else {
            magnitude
        })
    }

    pub fn end(&self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
}

/// The first byte of a layout, if any.
pub fn tag(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: i128) -> i128 {
        let mut w = Writer::new(b'x');
        w.int(v);
        let e = w.finish();
        let mut r = Reader::new(e.as_bytes());
        assert_eq!(r.u8(), Ok(b'x'));
        let back = r.int("v").unwrap();
        r.end().unwrap();
        back
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            1 << 40,
            -(1 << 95),
            (1 << 96) - 1,
            i128::MAX,
            i128::MIN + 1,
        ] {
            assert_eq!(round(v), v, "{v}");
        }
        let mut w = Writer::new(0);
        w.u64(u64::MAX);
        w.uint(u128::MAX);
        let e = w.finish();
        let mut r = Reader::new(e.as_bytes());
        r.u8().unwrap();
        assert_eq!(r.u64("a"), Ok(u64::MAX));
        assert_eq!(r.uint("b"), Ok(u128::MAX));
    }

    #[test]
    fn every_varint_length_round_trips_in_its_shortest_form() {
        // Each side of every 7-bit boundary, one after another, across the
        // inline buffer's end: the fast 9-byte paths and the long ones.
        let mut w = Writer::new(0);
        let mut values = Vec::new();
        for k in 1..=18u32 {
            let edge = 1u128 << (7 * k);
            values.extend([edge - 1, edge]);
        }
        for &v in &values {
            w.uint(v);
        }
        let e = w.finish();
        let mut r = Reader::new(e.as_bytes());
        r.u8().unwrap();
        for (i, &v) in values.iter().enumerate() {
            let before = r.rest.len();
            assert_eq!(r.uint("v"), Ok(v), "{v}");
            let len = before - r.rest.len();
            assert_eq!(len, (i / 2 + 1 + i % 2).max(1), "{v} in {len} bytes");
        }
        r.end().unwrap();
        // A 9-byte form with a trailing zero group is refused too.
        let mut r = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x00]);
        assert_eq!(r.uint("v"), Err(CodecError::BadField("v")));
    }

    #[test]
    fn varints_are_the_plain_leb128_bytes() {
        // The writer against a byte-at-a-time encoder: each side of every
        // 7-bit boundary, and a spread of others.
        let plain = |mut v: u64| {
            let mut out = vec![];
            loop {
                if v < 0x80 {
                    out.push(v as u8);
                    return out;
                }
                out.push((v & 0x7f) as u8 | 0x80);
                v >>= 7;
            }
        };
        let mut values = vec![0, 1, u64::MAX];
        for k in 1..=9u32 {
            let edge = 1u64.checked_shl(7 * k).unwrap_or(0);
            values.extend([edge.wrapping_sub(1), edge, edge.wrapping_add(1)]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            let mut w = Writer::new(0);
            w.u64(v);
            assert_eq!(&w.finish().as_bytes()[1..], plain(v).as_slice(), "{v:#x}");
        }
    }

    #[test]
    fn small_values_take_one_byte() {
        let mut w = Writer::new(0);
        w.u64(127);
        w.int(-64);
        assert_eq!(w.finish().as_bytes().len(), 3);
    }

    #[test]
    fn damaged_varints_are_refused() {
        // Not the shortest form (a trailing zero group).
        let mut r = Reader::new(&[0x81, 0x00]);
        assert_eq!(r.uint("v"), Err(CodecError::BadField("v")));
        // Unterminated.
        let mut r = Reader::new(&[0x80, 0x80]);
        assert_eq!(r.uint("v"), Err(CodecError::Truncated));
        // Too long for 128 bits.
        let mut r = Reader::new(&[0xff; 20]);
        assert_eq!(r.uint("v"), Err(CodecError::BadField("v")));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(r.u32("v"), Err(CodecError::BadField("v")));
    }

    #[test]
    fn long_values_spill_to_the_heap() {
        let mut w = Writer::new(1);
        for i in 0..100u8 {
            w.u8(i);
        }
        let e = w.finish();
        assert_eq!(e.as_bytes().len(), 101);
        assert_eq!(e.as_bytes()[100], 99);
    }
}
