//! One error type for every command, and its one mapping to a reply.
//!
//! Messages follow Redis's wording: the first word is the error code
//! (`ERR`, `WRONGTYPE`), and argument errors name the argument. Every
//! message text lives here (ranges in [`Range`]), so the README, the
//! parsers and the tests quote one source.

use throttle_core::Timestamp;
use throttle_core::cell::BadTat;
use throttle_core::codec::CodecError;
use throttle_core::permit::NoSettings;
use throttle_core::rate::LimitError;
use throttle_core::throttle::{NoLimit, SetError};

/// The allowed range of an argument, as the error message states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    Rps,
    Burst,
    Window,
    Count,
    Timeout,
    KnobsTtl,
    Interval,
    ExpireAt,
    MaxBurst,
    CellCount,
    CellPeriod,
    CellQuantity,
    MaxWaiting,
    LeaseLimit,
    LeaseTtl,
}

impl Range {
    pub const fn text(self) -> &'static str {
        match self {
            Range::Rps => "> 0 and <= 1e9 (or 0 to deny all, -1 to allow all)",
            Range::Burst => "> 0 and <= 1e9",
            Range::Window => "> 0 and <= 1e9 seconds",
            Range::Count => "an integer >= 0",
            Range::Timeout => "an integer >= 0 and <= 31622400000 (one year)",
            Range::KnobsTtl => "an integer >= 1 and <= 315360000 (ten years)",
            Range::Interval => "> 0 and <= 1e12 ms",
            Range::ExpireAt => "an integer >= 0",
            Range::MaxBurst => "an integer >= 0 and <= 999999999999999",
            Range::CellCount => {
                "an integer >= 1 (at most 4294967295 once divided by its common factor with period)"
            }
            Range::CellPeriod => {
                "an integer >= 1 (at most 4294967295 once divided by its common factor with count_per_period)"
            }
            Range::CellQuantity => "an integer >= 0 (to give tokens back, use THROTTLE.REFUND)",
            Range::MaxWaiting => "an integer >= 0, or -1 for no bound",
            Range::LeaseLimit => "an integer >= 1 and <= 1000000000000000",
            Range::LeaseTtl => "an integer >= 1 and <= 31622400000 (one year)",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(&'static str),
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR {arg} is not a valid {kind}")]
    NotANumber {
        arg: &'static str,
        kind: &'static str,
    },
    #[error("ERR {arg} must be {}", range.text())]
    OutOfRange { arg: &'static str, range: Range },
    #[error("ERR {arg} has too many decimal places (at most {digits})")]
    TooPrecise { arg: &'static str, digits: u32 },
    #[error("ERR rps has too many significant digits (at most 9)")]
    RpsDigits,
    #[error("ERR rps*burst*window is too large (the limit must be at most 1e15 tokens)")]
    Capacity,
    #[error(
        "ERR the limit would take more than 1e9 seconds to refill from empty (capacity / rate)"
    )]
    Refill,
    #[error("ERR the first THROTTLE.SET on a limiter must give RPS, BURST and WINDOW")]
    IncompleteKnobs,
    #[error("ERR no knobs on this key: give rps burst window, or set them with THROTTLE.SET")]
    NoKnobs,
    #[error("ERR no settings on this key: give interval_ms, or set them with PERMIT.SET")]
    NoPermitSettings,
    #[error("ERR the first PERMIT.SET on a key must give INTERVAL")]
    IncompleteSettings,
    #[error("ERR {arg} must be an integer >= 0 and <= {} (microseconds, year 9967)", Timestamp::LATEST.0)]
    ClockRange { arg: &'static str },
    #[error("ERR THROTTLE.ALL got the same key twice")]
    DuplicateKey,
    #[error("ERR THROTTLE.ALL takes at most {0} limits (config throttle.all-max-limits)")]
    TooManyLimits(i64),
    #[error("ERR invalid {what} payload: {why}")]
    Payload { what: &'static str, why: CodecError },
    #[error(
        "ERR THROTTLE.APPLY is accepted from a master or while loading only; enable it for clients with CONFIG SET throttle.apply-from-clients yes"
    )]
    ApplyRefused,
    #[error(
        "ERR THROTTLE.CLOCK needs the module loaded with 'test-clock yes' (--loadmodule <path> test-clock yes)"
    )]
    NoTestClock,
    #[error("ERR the knobs key must differ from the bucket key")]
    SameKnobsKey,
    /// An error LimitLion's script raises (its text from the core).
    #[error("{0}")]
    Script(String),
    #[error("ERR the server could not hold the client")]
    CannotBlock,
    #[error("ERR internal error")]
    Internal,
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<LimitError> for Error {
    fn from(e: LimitError) -> Error {
        let range = |arg, range| Error::OutOfRange { arg, range };
        match e {
            LimitError::Rps => range("rps", Range::Rps),
            LimitError::RpsDigits => Error::RpsDigits,
            LimitError::Burst => range("burst", Range::Burst),
            LimitError::Window => range("window", Range::Window),
            LimitError::Capacity => Error::Capacity,
            LimitError::Refill => Error::Refill,
            LimitError::MaxBurst => range("max_burst", Range::MaxBurst),
            LimitError::Count => range("count_per_period", Range::CellCount),
            LimitError::Period => range("period", Range::CellPeriod),
        }
    }
}

impl From<SetError> for Error {
    fn from(e: SetError) -> Error {
        match e {
            SetError::Incomplete => Error::IncompleteKnobs,
            SetError::Limit(l) => l.into(),
        }
    }
}

impl From<NoLimit> for Error {
    fn from(_: NoLimit) -> Error {
        Error::NoKnobs
    }
}

/// PERMIT's short form on a key without settings (PERMIT.SET, which needs
/// an interval the first time, maps it to `IncompleteSettings` itself).
impl From<NoSettings> for Error {
    fn from(_: NoSettings) -> Error {
        Error::NoPermitSettings
    }
}

/// A string redis-cell left that holds no TAT: another type's key.
impl From<BadTat> for Error {
    fn from(_: BadTat) -> Error {
        Error::WrongType
    }
}
