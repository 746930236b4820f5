//! One error type for every command, and its one mapping to a reply.
//!
//! Messages follow Redis's wording: the first word is the error code
//! (`ERR`, `WRONGTYPE`), and argument errors name the argument.

use throttle_core::codec::CodecError;

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
    #[error("ERR {arg} must be {range}")]
    OutOfRange {
        arg: &'static str,
        range: &'static str,
    },
    #[error("ERR {arg} has too many decimal places (at most {digits})")]
    TooPrecise { arg: &'static str, digits: u32 },
    #[error("ERR {0}")]
    Invalid(&'static str),
    #[error("ERR invalid {what} payload: {why:?}")]
    Payload { what: &'static str, why: CodecError },
    #[error("ERR internal error")]
    Internal,
}

pub type Result<T> = std::result::Result<T, Error>;
