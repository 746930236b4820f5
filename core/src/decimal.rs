//! Exact decimal numbers in fixed point.
//!
//! Rate-limit parameters arrive as decimal text ("0.0001", "2.5", "1e9").
//! [`parse`] turns such text into an exact integer count of `10^-scale`
//! units, or an error: there is no floating point anywhere, so `0.1` is
//! exactly one tenth and never `0.1000000000000000055…`.
//!
//! Accepted, as Redis accepts floats: an optional sign, digits with an
//! optional fractional part (`5`, `5.`, `.5`, `0.25`), and an optional
//! exponent (`1e9`, `2.5E-3`). Rejected: empty text, spaces, hex, `inf`,
//! `nan`, trailing garbage, and values that need more than `scale`
//! fractional digits or do not fit in 128 bits.

/// Why a decimal could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecimalError {
    /// Not a decimal number at all.
    Invalid,
    /// More precise than the unit allows (e.g. `0.0000000001` at scale 9).
    TooPrecise,
    /// Too large to represent.
    OutOfRange,
}

/// An exact decimal: `sign × units × 10^-scale`, scale chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    pub negative: bool,
    pub units: u128,
}

/// Exponents beyond this are saturated: any nonzero value that far from
/// 1 is out of range (or too precise) at every scale a caller uses.
const EXPONENT_LIMIT: i64 = 1_000_000;

fn pow10(exp: u32) -> Option<u128> {
    match POW10_U64.get(usize::try_from(exp).ok()?) {
        Some(&p) => Some(u128::from(p)),
        None => 10u128.checked_pow(exp),
    }
}

/// Parses `text` as an exact count of `10^-scale` units.
///
/// The value is normalised before it is scaled, so only its significant
/// digits count: `0e99999` is zero, and `10000000000000000000000000000000000000000e-40`
/// is exactly one.
pub fn parse(text: &[u8], scale: u32) -> Result<Fixed, DecimalError> {
    plain(text, scale).unwrap_or_else(|| parse_general(text, scale))
}

/// Every power of ten a `u64` holds: `10^0 ..= 10^19`.
const POW10_U64: [u64; 20] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

/// The digits at the start of `text` added to `value`: the new value and
/// how many digits there were. Up to 19 digits cannot overflow a `u64`
/// (`10^19 − 1 < 2^64`); a caller with more ignores the value.
#[inline(always)]
fn digits(text: &[u8], mut value: u64) -> (u64, usize) {
    let mut n = 0;
    while let Some(&c) = text.get(n) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(d));
        n = n.wrapping_add(1);
    }
    (value, n)
}

/// The common case the short way: unsigned digits with an optional
/// fraction (`60000`, `0.01`, `2.5`, `5.`, `.5`), at most 19 digits, no
/// more fractional digits than `scale` and a scale no more than 19 above
/// them; the same value as the general path. `None` for anything else
/// (the general path decides).
fn plain(text: &[u8], scale: u32) -> Option<Result<Fixed, DecimalError>> {
    if text.len() > 20 {
        return None;
    }
    let (value, int_len) = digits(text, 0);
    let (value, frac_len) = match text.get(int_len) {
        None => (value, 0),
        Some(b'.') => {
            let fraction = text.get(int_len.wrapping_add(1)..).unwrap_or_default();
            let (value, frac_len) = digits(fraction, value);
            if frac_len != fraction.len() {
                return None;
            }
            (value, frac_len)
        }
        Some(_) => return None,
    };
    let count = int_len.wrapping_add(frac_len);
    if count == 0 || count > 19 {
        return None;
    }
    let shift = scale.checked_sub(u32::try_from(frac_len).ok()?)?;
    let p = POW10_U64.get(usize::try_from(shift).ok()?)?;
    // Both factors are below 10^20, so the product fits in 128 bits.
    Some(Ok(Fixed {
        negative: false,
        units: u128::from(value).wrapping_mul(u128::from(*p)),
    }))
}

/// [`parse`] for any text: sign, fraction, exponent.
fn parse_general(text: &[u8], scale: u32) -> Result<Fixed, DecimalError> {
    let (negative, rest) = match text.split_first() {
        Some((b'-', r)) => (true, r),
        Some((b'+', r)) => (false, r),
        Some(_) => (false, text),
        None => return Err(DecimalError::Invalid),
    };
    let (mantissa_text, exp_text) = split_once(rest, |c| c == b'e' || c == b'E');
    let (int_digits, frac_digits) = split_once(mantissa_text, |c| c == b'.');
    let frac_digits = frac_digits.unwrap_or_default();
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(DecimalError::Invalid);
    }
    if !int_digits.iter().chain(frac_digits).all(u8::is_ascii_digit) {
        return Err(DecimalError::Invalid);
    }
    let exponent: i64 = match exp_text {
        None => 0,
        Some(e) => parse_exponent(e)?,
    };
    // value = digits × 10^(exponent − frac_len), with leading and trailing
    // zeros of the digit string dropped (trailing ones into the exponent).
    let all = || int_digits.iter().chain(frac_digits);
    let frac_len = i64::try_from(frac_digits.len()).unwrap_or(i64::MAX);
    let total = all().count();
    let leading = all().take_while(|&&c| c == b'0').count();
    if leading == total {
        return Ok(Fixed { negative, units: 0 });
    }
    let trailing = all().rev().take_while(|&&c| c == b'0').count();
    let significant = total.saturating_sub(leading).saturating_sub(trailing);
    // 39 significant digits already exceed u128.
    if significant > 39 {
        return Err(DecimalError::OutOfRange);
    }
    let mut mantissa: u128 = 0;
    for &d in all().skip(leading).take(significant) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(d.saturating_sub(b'0'))))
            .ok_or(DecimalError::OutOfRange)?;
    }
    let trailing = i64::try_from(trailing).unwrap_or(i64::MAX);
    // units = mantissa × 10^shift
    let shift = exponent
        .saturating_add(trailing)
        .saturating_sub(frac_len)
        .saturating_add(i64::from(scale));
    if shift < 0 {
        // The last significant digit is not zero: a fraction of a unit.
        return Err(DecimalError::TooPrecise);
    }
    let units = u32::try_from(shift)
        .ok()
        .and_then(pow10)
        .and_then(|p| mantissa.checked_mul(p))
        .ok_or(DecimalError::OutOfRange)?;
    Ok(Fixed { negative, units })
}

/// Splits at the first byte matching `sep`, dropping it.
fn split_once(text: &[u8], sep: impl Fn(u8) -> bool) -> (&[u8], Option<&[u8]>) {
    match text.iter().position(|&c| sep(c)) {
        Some(i) => match text.split_at_checked(i) {
            Some((head, tail)) => (head, tail.get(1..)),
            None => (text, None),
        },
        None => (text, None),
    }
}

/// An exponent: optional sign and digits; magnitudes beyond
/// [`EXPONENT_LIMIT`] saturate there.
fn parse_exponent(text: &[u8]) -> Result<i64, DecimalError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', r)) => (true, r),
        Some((b'+', r)) => (false, r),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(DecimalError::Invalid);
    }
    let magnitude = digits.iter().fold(0i64, |acc, &d| {
        acc.saturating_mul(10)
            .saturating_add(i64::from(d.saturating_sub(b'0')))
            .min(EXPONENT_LIMIT)
    });
    Ok(if negative {
        magnitude.saturating_neg()
    } else {
        magnitude
    })
}

/// Formats `units × 10^-scale` as the shortest exact decimal ("5", "0.0001").
pub fn format(negative: bool, units: u128, scale: u32) -> String {
    let divisor = pow10(scale).unwrap_or(1);
    let (int, frac) = (
        units.checked_div(divisor).unwrap_or(units),
        units.checked_rem(divisor).unwrap_or(0),
    );
    let sign = if negative && units != 0 { "-" } else { "" };
    if frac == 0 {
        return format!("{sign}{int}");
    }
    let width = usize::try_from(scale).unwrap_or(0);
    let digits = format!("{frac:0width$}");
    format!("{sign}{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_plain_integer_parses_as_the_general_path(v: u64, lead in 0usize..3, scale in 0u32..=40) {
            let t = format!("{}{v}", "0".repeat(lead));
            proptest::prop_assert_eq!(parse(t.as_bytes(), scale), parse_general(t.as_bytes(), scale));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_plain_decimal_parses_as_the_general_path(
            text in "[0-9]{0,12}\\.?[0-9]{0,12}", scale in 0u32..=40,
        ) {
            proptest::prop_assert_eq!(parse(text.as_bytes(), scale), parse_general(text.as_bytes(), scale));
        }
    }

    #[test]
    fn the_table_of_powers_is_the_powers_of_ten() {
        for exp in 0..=40u32 {
            assert_eq!(pow10(exp), 10u128.checked_pow(exp), "10^{exp}");
        }
    }

    #[test]
    fn plain_decimals_take_the_short_way_to_the_same_value() {
        let texts = [
            "0.01",
            "2.5",
            "5.",
            ".5",
            ".",
            "",
            "0.000",
            "00.10",
            "1.2345678901234567890",
            "123456789012345678.9",
            "12345678901234567890",
            "0.0000000001",
            "..1",
            "1.2.3",
            "0",
            "000",
            "0.",
        ];
        for t in texts {
            for scale in [0, 1, 3, 9, 30, 38, 40] {
                assert_eq!(
                    parse(t.as_bytes(), scale),
                    parse_general(t.as_bytes(), scale),
                    "{t} at scale {scale}"
                );
            }
        }
        // The short way answers these itself.
        assert!(plain(b"0.01", 9).is_some());
        assert!(plain(b"60000", 3).is_some());
        assert!(plain(b"1e3", 3).is_none());
    }

    #[test]
    fn plain_integers_take_the_short_way_to_the_same_value() {
        let texts = [
            "0",
            "7",
            "007",
            "60000",
            "1000000",
            "9999999999999999999",
            "1844674407370955161",
        ];
        for t in texts {
            for scale in [0, 3, 6, 9, 15, 30] {
                assert_eq!(
                    parse(t.as_bytes(), scale),
                    parse_general(t.as_bytes(), scale),
                    "{t} at scale {scale}"
                );
            }
        }
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(format(false, 5_000_000_000, 9), "5");
        assert_eq!(format(false, 100_000, 9), "0.0001");
        assert_eq!(format(true, 1_000_000_000, 9), "-1");
        assert_eq!(format(false, 2_500_000_000, 9), "2.5");
        assert_eq!(format(false, 250, 3), "0.25");
    }

    fn units(s: &str, scale: u32) -> Result<(bool, u128), DecimalError> {
        parse(s.as_bytes(), scale).map(|f| (f.negative, f.units))
    }

    /// `(text, scale, negative, units)`: each text reads as exactly that.
    #[rustfmt::skip]
    const EXACT: &[(&str, u32, bool, u128)] = &[
        ("5", 9, false, 5_000_000_000), ("0.0001", 9, false, 100_000), ("2.5", 9, false, 2_500_000_000),
        (".5", 3, false, 500), ("5.", 0, false, 5), ("-1", 9, true, 1_000_000_000), ("+7", 0, false, 7),
        ("0.000000001", 9, false, 1), ("1.50000000000000000000000000000000000000000", 1, false, 15),
        ("000000000000000000000000000000000000000000012", 0, false, 12),
        // Exponents.
        ("1e9", 9, false, 1_000_000_000_000_000_000), ("2.5E-3", 9, false, 2_500_000), ("1e+2", 0, false, 100),
        ("0e999", 0, false, 0),
        // Normalised before scaling (found by hostile testing: all refused).
        ("0e99999", 9, false, 0), ("10000000000000000000000000000000000000000e-40", 0, false, 1),
        ("0.000e-99999999999999999999", 9, false, 0), ("1000e-3", 0, false, 1), ("1e+00000000000000000000000003", 0, false, 1000),
    ];

    #[test]
    fn values_are_exact() {
        for &(text, scale, negative, want) in EXACT {
            assert_eq!(
                units(text, scale),
                Ok((negative, want)),
                "{text} at scale {scale}"
            );
        }
    }

    #[test]
    fn garbage_is_invalid() {
        for bad in [
            "", "-", "+", ".", "e5", "1e", "1e+", "abc", "0x10", "1.2.3", " 1", "1 ", "1e5x",
            "nan", "NaN", "inf", "-inf", "infinity", "1,5", "--1", "1e--2", "\u{0}1",
        ] {
            assert_eq!(units(bad, 9), Err(DecimalError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn too_precise_and_too_large() {
        use DecimalError::{OutOfRange, TooPrecise};
        #[rustfmt::skip]
        let cases = [
            ("0.0000000001", 9, TooPrecise), ("1e-10", 9, TooPrecise), ("1e-99999", 9, TooPrecise),
            ("1e-999999999999999999999", 9, TooPrecise), ("1e99999", 9, OutOfRange),
            ("1e999999999999999999999", 0, OutOfRange), ("1e40", 0, OutOfRange),
            ("999999999999999999999999999999999999999999", 0, OutOfRange),
        ];
        for (text, scale, want) in cases {
            assert_eq!(units(text, scale), Err(want), "{text}");
        }
    }
}
