//! PERMIT and its settings: parse → now → update → reply (or hold).
//!
//! ```text
//! PERMIT       key [interval_ms [max_waiting]] [GRACE ms] [BLOCK timeout_ms]
//! PERMIT.SET   key [INTERVAL interval_ms] [MAX_WAITING n] [TTL seconds]   → OK
//! PERMIT.GET   key                                                        → map, or nil
//! PERMIT.RESET key                                                        → 1 removed, 0 none
//! ```
//! PERMIT replies `[time_to_wait_ms, valid_at_ms, expires_at_ms]`, or nil.
//! Without `max_waiting` there is no bound on waiting permits; without
//! `interval_ms` the key's settings (PERMIT.SET) give both. PERMIT.SET
//! re-spaces the callers the server holds on the key at once (the core's
//! `permit::set`; the scheduler moves them). The key holds an `rl-permit`.

use throttle_core::Micros;
use throttle_core::permit::{
    self as core, Permit, PermitRequest, PermitRule, PermitState, SettingsChanges,
};
use throttle_core::time::MAX_WAIT;

use super::args;
use super::blocking::{self, Hold};
use super::clock;
use super::commands::{KEY, ONE_KEY_WRITE, READ, WRITE, key_only};
use super::config;
use super::error::{Error, Range, Result};
use super::ffi::command::{Arg, Spec, handler};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};
use super::replies::{self, HeldPermit};
use super::stats;

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"permit", handler: handler(permit), flags: WRITE, keys: ONE_KEY_WRITE, arity: -2, dangerous: false,
        summary: c"Minimum-interval permit. Replies [time_to_wait_ms, valid_at_ms, expires_at_ms] or nil; BLOCK holds the caller until its slot.",
        args: &[KEY, Arg::double(c"interval_ms").optional(), Arg::integer(c"max_waiting").optional(),
            Arg::integer(c"grace_ms").token(c"GRACE").optional(), Arg::integer(c"timeout_ms").token(c"BLOCK").optional()] },
    Spec { name: c"permit.set", handler: handler(set), flags: WRITE, keys: ONE_KEY_WRITE, arity: -2, dangerous: false,
        summary: c"Set a permit stream's interval and bound for every caller; re-spaces the callers held on it.",
        args: &[KEY, Arg::double(c"interval_ms").token(c"INTERVAL").optional(),
            Arg::integer(c"max_waiting").token(c"MAX_WAITING").optional(), Arg::integer(c"seconds").token(c"TTL").optional()] },
    key_only(c"permit.get", handler(get), READ, c"A permit stream's settings and queue now."),
    key_only(c"permit.reset", handler(reset), c"write fast", c"Remove a permit stream's settings. Replies 1 if there were any."),
];

crate::data_type!(PermitState, PERMITS, "rl-permit", stats::PERMIT_KEYS);

/// What a PERMIT call asks.
struct Call {
    rule: Option<PermitRule>,
    grace: Option<Micros>,
    block: Option<Micros>,
}

fn is_option(bytes: &[u8]) -> bool {
    args::is_option(bytes, "GRACE") || args::is_option(bytes, "BLOCK")
}

fn parse(args: &Args<'_>) -> Result<Call> {
    if args.len() < 2 {
        return Err(Error::Arity("permit"));
    }
    // Each argument is read once.
    let mut i = 2;
    let mut rule = None;
    let interval_text = args.bytes(i);
    if i < args.len() && !is_option(interval_text) {
        let interval = args::interval_ms(interval_text)?;
        i += 1;
        let mut max_waiting = None;
        let max_text = args.bytes(i);
        if i < args.len() && !is_option(max_text) {
            max_waiting = Some(args::count(max_text, "max_waiting")?);
            i += 1;
        }
        rule = Some(PermitRule {
            interval,
            max_waiting,
        });
    }
    let (mut grace, mut block) = (None, None);
    let mut options = args::Options::new(*args, i);
    while let Some((name, value)) = options.next_pair()? {
        if args::is_option(name, "GRACE") {
            args::once(&mut grace, value, |v| args::timeout_ms(v, "GRACE"))?;
        } else if args::is_option(name, "BLOCK") {
            args::once(&mut block, value, |v| args::timeout_ms(v, "BLOCK"))?;
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(Call { rule, grace, block })
}

/// PERMIT key [interval_ms [max_waiting]] [GRACE ms] [BLOCK timeout_ms]
pub fn permit(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let call = parse(&args)?;
    let now = clock::now();
    let name = args::arg(&args, 1, "permit")?;
    // BLOCK 0 waits as long as the slot needs (at most a year); inside
    // MULTI/Lua BLOCK behaves as the plain form (the reply tells the wait).
    let held = call.block.is_some() && !ctx.deny_blocking();
    let timeout = call
        .block
        .map(|t| if t == Micros::ZERO { MAX_WAIT } else { t });
    let req = PermitRequest {
        rule: call.rule,
        grace: call.grace,
        grace_percent: config::grace_percent(),
        max_wait: timeout.filter(|_| held),
        held,
    };
    let target = Target::new(name, c"permit");
    let answer = keyspace::update(ctx, target, now, |s| core::decide(s, now, &req))?;
    stats::permit(&answer);
    match (answer.permit, timeout) {
        (
            Permit::Reserved {
                valid_at,
                wait,
                expires_at,
            },
            Some(timeout),
        ) if held => {
            let grace = expires_at.since(valid_at);
            let hold = Hold {
                key: blocking::key_id(ctx, name),
                slot: valid_at,
                timeout,
                on_time_for: grace,
                state_for: wait.saturating_add(answer.interval),
                tag: None,
                state: keyspace::snapshot::<PermitState>(ctx, name),
            };
            blocking::hold(ctx, hold, Box::new(HeldPermit { grace }))?;
        }
        _ => replies::permit(ctx, &answer),
    }
    Ok(())
}

/// `MAX_WAITING`: a count, or -1 for no bound.
fn max_waiting(v: &[u8]) -> Result<Option<u64>> {
    let n = args::integer(v, "MAX_WAITING", -1, i64::MAX, Range::MaxWaiting)?;
    Ok(u64::try_from(n).ok())
}

fn parse_set(args: &Args<'_>) -> Result<SettingsChanges> {
    let mut c = SettingsChanges::default();
    args::settings(
        args,
        "permit.set",
        &mut [
            ("INTERVAL", &mut |v| {
                args::once(&mut c.interval, v, args::interval_ms)
            }),
            ("MAX_WAITING", &mut |v| {
                args::once(&mut c.max_waiting, v, max_waiting)
            }),
            ("TTL", &mut |v| {
                args::once(&mut c.ttl, v, args::settings_ttl)
            }),
        ],
    )?;
    Ok(c)
}

/// PERMIT.SET key [INTERVAL interval_ms] [MAX_WAITING n] [TTL seconds]
pub fn set(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let changes = parse_set(&args)?;
    let now = clock::now();
    let name = args::arg(&args, 1, "permit.set")?;
    let key = blocking::key_id(ctx, name);
    let held = blocking::held_slots(&key);
    let target = Target::new(name, c"permit.set");
    let slots = keyspace::update(ctx, target, now, |s| {
        core::set(s, now, &changes, config::knobs_ttl(), &held)
            .map_err(|_| Error::IncompleteSettings)
    })?;
    if !slots.is_empty() {
        blocking::retime(&key, &slots, now);
    }
    replies::ok(ctx);
    Ok(())
}

/// PERMIT.GET key
pub fn get(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = args::only_key(&args, "permit.get")?;
    let now = clock::now();
    let snapshot = keyspace::read::<PermitState, _, Error>(ctx, name, |s| Ok(core::get(s, now)))?;
    replies::permit_settings(ctx, snapshot.as_ref(), now);
    Ok(())
}

/// PERMIT.RESET key
pub fn reset(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = args::only_key(&args, "permit.reset")?;
    let now = clock::now();
    let target = Target::new(name, c"permit.reset");
    let removed = keyspace::update(ctx, target, now, |s| Ok::<_, Error>(core::reset(s)))?;
    replies::flag(ctx, removed);
    Ok(())
}
