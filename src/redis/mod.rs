//! The Redis layer: the only code that touches Redis. Each command is
//! parse → read the clock once → load the key → call the core → store →
//! propagate the effect → reply.

// Functions here take the context and string pointers Redis hands to the
// command; they are valid for the duration of the call by Redis's contract.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod all;
pub mod apply;
pub mod args;
pub mod blocking;
pub mod clock;
pub mod commands;
pub mod config;
pub mod datatype;
pub mod error;
pub mod ffi;
pub mod guard;
pub mod info;
pub mod knobs;
pub mod permit;
pub mod stats;
pub mod throttle;
