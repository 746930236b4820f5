//! The one shape every limiter decision has.
//!
//! Each algorithm is a state type `S` (what one key stores), a rule (what
//! the caller or the key's settings ask for), and a decision
//! `decide(Option<&S>, now, &rule, request) -> Step<S, Answer>`: from the
//! stored state (`None`: no key) and the time, it says what to write and
//! what to answer, both typed. The Redis layer has one generic update path
//! that loads the state, calls the decision, carries out the [`Write`]
//! (value, expiry, replication, signal, event) and replies the answer.
//!
//! Every state implements [`State`]: its codec (every version ever written
//! decodes), when the key may expire, and how it shifts when the server
//! stalled (held clients released late push their key's schedule back; the
//! next write carries that shift into the state).

use crate::codec::Codec;
use crate::time::{Micros, Timestamp};

/// What a decision does to the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write<S> {
    /// Nothing changes.
    Keep,
    /// Store `value`; when `expire_at` is given, move the key's expiry there.
    Store {
        value: S,
        expire_at: Option<Timestamp>,
    },
    /// Remove the key (nothing left worth keeping).
    Delete,
}

impl<S> Write<S> {
    /// The value this write stores, if any.
    pub fn stored(&self) -> Option<&S> {
        match self {
            Write::Store { value, .. } => Some(value),
            _ => None,
        }
    }

    pub fn is_keep(&self) -> bool {
        matches!(self, Write::Keep)
    }
}

/// One decision: what to write, and what to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step<S, A> {
    pub write: Write<S>,
    pub answer: A,
}

impl<S, A> Step<S, A> {
    /// A step that writes nothing.
    pub fn keep(answer: A) -> Step<S, A> {
        Step {
            write: Write::Keep,
            answer,
        }
    }

    /// The same write with another answer.
    pub fn map<B>(self, f: impl FnOnce(A) -> B) -> Step<S, B> {
        Step {
            write: self.write,
            answer: f(self.answer),
        }
    }
}

/// What the Redis layer needs of every stored state.
pub trait State: Codec + Clone {
    /// When the key may expire: the state says nothing after this instant
    /// that a missing key would not say.
    fn expiry(&self) -> Timestamp;

    /// The state after its schedule moved `by` later: the server released
    /// a held client of this key late, and everything queued behind it
    /// moved back by the same amount, so later callers must too. A state
    /// whose schedule has passed is unchanged in effect.
    fn paused(&self, by: Micros) -> Self;
}
