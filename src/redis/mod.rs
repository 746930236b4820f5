//! The Redis layer: the only code that touches Redis. Each command is
//! parse → read the clock once → load the key → call the core → store →
//! propagate the effect → reply.

pub mod apply;
pub mod args;
pub mod blocking;
pub mod clock;
pub mod config;
pub mod datatype;
pub mod error;
pub mod ffi;
pub mod guard;
pub mod info;
pub mod permit;
pub mod stats;
pub mod throttle;
