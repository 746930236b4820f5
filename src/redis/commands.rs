//! Registering the commands: every family lists its own commands beside
//! their handlers (`COMMANDS` in each family file: name, handler, flags,
//! keys, arity, docs, with named fields); `super::FAMILIES` lists the
//! families; this file registers them all (`CreateCommand`,
//! `SetCommandInfo` for `COMMAND INFO`/`DOCS`, ACL categories) and holds
//! the pieces the families' docs share.
//!
//! Names are registered in lower case, as Redis registers its own commands:
//! lookups ignore case, and Redis's own errors (wrong arity) quote the name
//! as registered: `ERR wrong number of arguments for 'throttle' command`.

use std::ffi::CStr;

use super::ffi::Ctx;
use super::ffi::command::{self, Access, AclSupport, Arg, Begin, KeySpec, Keys, Spec};

/// The flags of a write command.
pub const WRITE: &CStr = c"write deny-oom fast";
/// The flags of a read-only command.
pub const READ: &CStr = c"readonly fast";

/// One key, at position 1, written.
pub const ONE_KEY_WRITE: Keys = one_key(Access::Write);
/// One key, at position 1, read.
pub const ONE_KEY_READ: Keys = one_key(Access::Read);

const fn one_key(access: Access) -> Keys {
    Keys {
        first: 1,
        last: 1,
        step: 1,
        specs: match access {
            Access::Write => &[KeySpec {
                begin: Begin::Index(1),
                last: 0,
                step: 1,
                access: Access::Write,
            }],
            Access::Read => &[KeySpec {
                begin: Begin::Index(1),
                last: 0,
                step: 1,
                access: Access::Read,
            }],
        },
    }
}

/// The key argument.
pub const KEY: Arg = Arg::key(c"key", 0);
/// THROTTLE's optional `tokens`.
pub const TOKENS: Arg = Arg::integer(c"tokens").optional();
/// LimitLion's `rps burst window`.
pub const LIMIT: Arg = Arg::group(
    c"limit",
    &[
        Arg::double(c"rps"),
        Arg::double(c"burst"),
        Arg::double(c"window"),
    ],
);

/// The module's ACL category: `ACL SETUSER app +@throttle` grants every
/// command of the module.
const ACL_CATEGORY: &CStr = c"throttle";

/// Registers every command of every family; the name of the first Redis
/// refused, if any.
pub fn register(ctx: Ctx<'_>) -> Result<(), String> {
    let all = || super::FAMILIES.iter().flat_map(|f| f.iter());
    for c in all() {
        if !command::create(ctx, c) {
            return Err(format!("could not register {}", c.name.to_string_lossy()));
        }
    }
    for c in all() {
        if !command::set_info(ctx, c) {
            ctx.log(
                c"warning",
                &format!(
                    "could not set command info for {}",
                    c.name.to_string_lossy()
                ),
            );
        }
    }
    register_acl(ctx, all);
    Ok(())
}

/// Puts every command in its ACL categories, as far as the server allows:
/// on Redis 7.4+ and Valkey the module's own `@throttle` too; on Redis 7.2
/// the standard ones only (a module cannot add a category there); on Redis
/// 7.0 none (module commands are granted by name). Never fails the load.
fn register_acl<'a, I: Iterator<Item = &'a Spec>>(ctx: Ctx<'_>, all: impl Fn() -> I) {
    let support = command::acl_support();
    let own = match support {
        AclSupport::Nothing => {
            ctx.log(
                c"notice",
                "this server has no module ACL categories (Redis 7.0): grant the commands by name",
            );
            return;
        }
        AclSupport::Standard => {
            ctx.log(
                c"notice",
                "this server cannot add the @throttle ACL category (Redis 7.2): the commands \
                 are in the standard categories (@write, @fast, ...); grant them by name",
            );
            None
        }
        AclSupport::ModuleCategory => {
            command::add_acl_category(ctx, ACL_CATEGORY).then_some(ACL_CATEGORY)
        }
    };
    let refused = all()
        .filter(|c| !command::set_acl_categories(ctx, c, own))
        .count();
    if refused > 0 || (support == AclSupport::ModuleCategory && own.is_none()) {
        ctx.log(c"warning", "could not set every command's ACL categories");
    }
}

/// Test builds only, to prove that no panic reaches Redis:
/// `THROTTLE.FAULT PANIC` panics inside the command's guard;
/// `THROTTLE.FAULT PANIC-CALLBACK` panics inside the guard that wraps every
/// callback (type callbacks, INFO), which logs and carries on; replies OK.
#[cfg(feature = "fault-injection")]
pub mod fault {
    use super::super::error::{Error, Result};
    use super::super::ffi::command::{Arg, Keys, Spec, handler};
    use super::super::ffi::{Args, Ctx, guard};

    #[rustfmt::skip]
    pub const COMMANDS: &[Spec] = &[
        Spec { name: c"throttle.fault", handler: handler(fault), flags: c"fast", keys: Keys::NONE, arity: 2, dangerous: true,
            summary: c"Test builds only: THROTTLE.FAULT PANIC panics inside the command's guard.",
            args: &[Arg::string(c"what")] },
    ];

    fn fault(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
        let what = args.get(1).map(|a| a.bytes().to_ascii_uppercase());
        match what.as_deref() {
            Some(b"PANIC") => panic!("fault injected by THROTTLE.FAULT PANIC"),
            Some(b"PANIC-CALLBACK") => {
                guard::or((), "callback", || {
                    panic!("fault injected by THROTTLE.FAULT PANIC-CALLBACK")
                });
                ctx.reply_simple(c"OK");
                Ok(())
            }
            _ => Err(Error::Syntax),
        }
    }
}
