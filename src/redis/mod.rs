//! The Redis layer: the only code that touches Redis. Each command is
//! parse → read the clock once → update (load, decide in the core, store,
//! replicate, signal) → reply, or hold the caller.
//!
//! This file is the module's registry: its command families ([`FAMILIES`])
//! and its data types ([`TYPES`]), each listed once, and the set-up OnLoad
//! runs. The rest:
//!
//! - [`ffi`]: the FFI wall (every raw module API call and every callback
//!   Redis makes, behind the panic wall; the only `unsafe` in the crate);
//! - [`error`]: the one error enum and its texts; [`args`]: one parser per
//!   argument kind; [`clock`]: the module's clock; [`config`]: the configs;
//! - [`keyspace`]: the one update path (load, carry, store, expiry,
//!   replication, signal, event) and the foreign-layout adapters;
//! - [`blocking`]: the scheduler of held clients (never writes);
//! - [`replies`], [`stats`]: every reply and every counter, from the
//!   core's typed answers;
//! - [`commands`]: registering the families' commands;
//! - one file per command family: [`throttle`], [`knobs`], [`all`],
//!   [`cell`], [`limitlion`], [`permit`], [`lease`], [`apply`],
//!   [`testclock`].

pub mod all;
pub mod apply;
pub mod args;
pub mod blocking;
pub mod cell;
pub mod clock;
pub mod commands;
pub mod config;
pub mod error;
// The FFI wall: the one module allowed `unsafe` (the crate denies it).
#[allow(unsafe_code)]
#[deny(clippy::undocumented_unsafe_blocks)]
pub mod ffi;
pub mod keyspace;
pub mod knobs;
pub mod lease;
pub mod limitlion;
pub mod permit;
pub mod replies;
pub mod stats;
pub mod testclock;
pub mod throttle;

use std::marker::PhantomData;

use throttle_core::lease::LeaseState;
use throttle_core::permit::PermitState;
use throttle_core::throttle::ThrottleState;

use ffi::Key;
use ffi::command::Spec;
use keyspace::Stored;

/// Every command family, each listing its commands.
pub const FAMILIES: &[&[Spec]] = &[
    throttle::COMMANDS,
    knobs::COMMANDS,
    all::COMMANDS,
    cell::COMMANDS,
    limitlion::COMMANDS,
    permit::COMMANDS,
    lease::COMMANDS,
    apply::COMMANDS,
    testclock::COMMANDS,
    #[cfg(feature = "fault-injection")]
    commands::fault::COMMANDS,
];

/// Every data type the module stores: registered at load, and what
/// THROTTLE.APPLY decodes a payload as (the type whose layout it names).
pub const TYPES: &[&dyn DataTypeEntry] = &[
    &Entry::<ThrottleState>(PhantomData),
    &Entry::<PermitState>(PhantomData),
    &Entry::<LeaseState>(PhantomData),
];

/// The RDB encoding version every type registers (3: the compact
/// layouts); values of versions 1 and 2 load.
const ENCODING_VERSION: i32 = 3;

/// A data type, as the registry handles it.
pub trait DataTypeEntry: Sync {
    fn register(&self, ctx: ffi::Ctx<'_>) -> Result<(), String>;
    /// Whether `payload` names one of this type's layouts.
    fn claims(&self, payload: &[u8]) -> bool;
    /// Stores `payload`, decoded as this type, at `key` (THROTTLE.APPLY).
    fn apply(&self, key: &mut Key<'_>, payload: &[u8]) -> error::Result<()>;
}

struct Entry<S>(PhantomData<fn() -> S>);

impl<S: Stored> DataTypeEntry for Entry<S> {
    fn register(&self, ctx: ffi::Ctx<'_>) -> Result<(), String> {
        ffi::types::register::<S>(ctx, ENCODING_VERSION, keyspace::APPLY_COMMAND)
    }

    fn claims(&self, payload: &[u8]) -> bool {
        S::claims(payload)
    }

    fn apply(&self, key: &mut Key<'_>, payload: &[u8]) -> error::Result<()> {
        let old = key.get::<S>().ok().flatten();
        let value = S::apply(old, payload).map_err(|why| error::Error::Payload {
            what: S::entry().name,
            why,
        })?;
        keyspace::put(key, value);
        Ok(())
    }
}

/// Everything OnLoad sets up.
pub fn setup(ctx: ffi::Ctx<'_>, load_args: &[&[u8]]) -> Result<(), String> {
    // HANDLE_IO_ERRORS: without it, a short read or a wrong opcode while
    // loading one of our values (RESTORE of a crafted payload) makes Redis
    // panic; with it the load call fails and `rdb_load` refuses the value.
    // NO_IMPLICIT_SIGNAL_MODIFIED: closing a key opened for writing would
    // otherwise invalidate WATCH even when nothing was written (a denied
    // THROTTLE); the write paths signal explicitly instead.
    ffi::set_module_options(
        ctx,
        redis_module::raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS
            | redis_module::raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED,
    );
    ffi::detect_valkey(ctx);
    config::register(ctx, load_args)?;
    for t in TYPES {
        t.register(ctx)?;
    }
    commands::register(ctx)?;
    blocking::start(ctx)?;
    if !ffi::info::register(ctx, stats::info) {
        return Err("could not register the INFO section".into());
    }
    Ok(())
}
