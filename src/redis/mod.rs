//! The Redis layer: the only code that touches Redis. Each command is
//! parse → read the clock once → load the key → call the core → store
//! (value, expiry, effect, signal, event) → reply.
//!
//! - [`ffi`]: the one FFI wall (every raw module API call, with lifetimes);
//! - [`guard`]: the panic wall; [`error`]: the one error enum and its texts;
//! - [`args`]: one parser per argument kind; [`clock`]: the module's clock;
//! - [`keyspace`]: load and store, for every command; [`datatype`]: the
//!   data types and their persistence callbacks;
//! - [`blocking`]: held clients, released on the monotonic clock;
//! - [`replies`]: decisions as reply integers;
//! - [`commands`]: the command table; then one file per command family:
//!   [`throttle`], [`permit`], [`knobs`], [`all`], [`cell`], [`apply`],
//!   [`testclock`];
//! - [`config`], [`stats`]: configs, counters and INFO.

pub mod all;
pub mod apply;
pub mod args;
pub mod blocking;
pub mod cell;
pub mod clock;
pub mod commands;
pub mod config;
pub mod datatype;
pub mod error;
pub mod ffi;
pub mod guard;
pub mod keyspace;
pub mod knobs;
pub mod permit;
pub mod replies;
pub mod stats;
pub mod testclock;
pub mod throttle;
