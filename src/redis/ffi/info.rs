//! The module's INFO sections: Redis calls the callback registered here for
//! `INFO`, `INFO throttle` and crash reports; the module writes its
//! sections through an [`InfoWriter`]. Redis prefixes every section and
//! field with the module's name (`throttle_`).

use std::ffi::{CString, c_int};
use std::sync::OnceLock;

use redis_module::raw;

use super::guard;
use super::{Ctx, Lent, log_global};

/// Writes INFO sections and fields.
pub struct InfoWriter<'a> {
    ctx: Lent<'a, raw::RedisModuleInfoCtx>,
}

impl InfoWriter<'_> {
    /// Starts a section (Redis names it `throttle_<name>`).
    pub fn section(&mut self, name: &str) {
        if let Ok(n) = CString::new(name) {
            // SAFETY: the INFO context of the running callback; a
            // NUL-terminated name Redis copies.
            unsafe { api!(RedisModule_InfoAddSection)(self.ctx.raw(), n.as_ptr()) };
        }
    }

    pub fn field_i64(&mut self, name: &str, v: i64) {
        if let Ok(n) = CString::new(name) {
            // SAFETY: as in `section`.
            unsafe { api!(RedisModule_InfoAddFieldLongLong)(self.ctx.raw(), n.as_ptr(), v) };
        }
    }

    pub fn field_str(&mut self, name: &str, v: &str) {
        if let (Ok(n), Ok(v)) = (CString::new(name), CString::new(v)) {
            // SAFETY: as in `section`; both strings are copied.
            unsafe {
                api!(RedisModule_InfoAddFieldCString)(self.ctx.raw(), n.as_ptr(), v.as_ptr())
            };
        }
    }
}

static WRITE: OnceLock<fn(&mut InfoWriter<'_>)> = OnceLock::new();

/// Registers the function that writes the module's sections (at load).
pub fn register(ctx: Ctx<'_>, write: fn(&mut InfoWriter<'_>)) -> bool {
    let _ = WRITE.set(write);
    // SAFETY: a valid context during load; the callback lives for ever.
    unsafe { api!(RedisModule_RegisterInfoFunc)(ctx.raw(), Some(on_info)) == super::OK }
}

unsafe extern "C" fn on_info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    guard::or((), "INFO", || {
        // SAFETY: the INFO context Redis passed to this callback.
        let Some(ctx) = (unsafe { Lent::from_raw(ctx) }) else {
            log_global(c"warning", "INFO without a context");
            return;
        };
        if let Some(write) = WRITE.get() {
            write(&mut InfoWriter { ctx });
        }
    })
}
