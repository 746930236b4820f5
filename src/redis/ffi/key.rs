//! Open keys, and the values of the module's data types in them.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;

use redis_module::raw;

use super::types::{DataType, into_raw};
use super::{Ctx, OK};

/// What an open key holds instead of the module type asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    /// A string (redis-cell keeps its limiters as strings).
    String,
    /// Anything else: another module type, a list, a hash, ...
    Other,
}

/// An open key; closed on drop. Opened for reading only, a missing key has
/// no handle (Redis returns NULL) and holds nothing.
pub struct Key<'a> {
    pub(super) ptr: *mut raw::RedisModuleKey,
    /// The module value this handle last found or stored, with its type,
    /// so a command checks the key's type once: the key changes only
    /// through this handle's `&mut self` methods, which keep it current.
    pub(super) found: Cell<Option<(*mut raw::RedisModuleType, NonNull<c_void>)>>,
    pub(super) _ctx: PhantomData<Ctx<'a>>,
}

impl Key<'_> {
    /// One type check: the value when the key holds a `T`, else what it
    /// holds instead (`Ok(None)`: nothing). The common case, a key of ours,
    /// takes two API calls (the type, then the value).
    fn value_ptr<T: DataType>(&self) -> std::result::Result<Option<NonNull<T>>, Holds> {
        let Some(ty) = T::entry().redis_type() else {
            return Err(Holds::Other);
        };
        if let Some((found_ty, value)) = self.found.get()
            && found_ty == ty
        {
            return Ok(Some(value.cast()));
        }
        if self.ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: an open key handle; Redis answers NULL for an empty key
        // or one that holds no module value.
        let got = unsafe { api!(RedisModule_ModuleTypeGetType)(self.ptr) };
        if got == ty {
            // SAFETY: the key holds a value of T's module type (just checked).
            let value = NonNull::new(unsafe { api!(RedisModule_ModuleTypeGetValue)(self.ptr) });
            self.found.set(value.map(|v| (ty, v)));
            return Ok(value.map(NonNull::cast));
        }
        if !got.is_null() {
            return Err(Holds::Other);
        }
        // SAFETY: an open key handle.
        let kt = unsafe { api!(RedisModule_KeyType)(self.ptr) } as isize;
        match kt {
            _ if kt == raw::REDISMODULE_KEYTYPE_EMPTY => Ok(None),
            _ if kt == raw::REDISMODULE_KEYTYPE_STRING => Err(Holds::String),
            _ => Err(Holds::Other),
        }
    }

    /// The value when the key holds one of type `T` (`Ok(None)`: nothing
    /// there), else what it holds instead.
    pub fn get<T: DataType>(&self) -> std::result::Result<Option<&T>, Holds> {
        // SAFETY: values of T's type are Box<T> (the data type's contract, ffi/types.rs),
        // owned by the keyspace, which nothing else touches while this
        // command runs; the borrow ends with the key handle's.
        self.value_ptr::<T>()
            .map(|p| p.map(|p| unsafe { &*p.as_ptr() }))
    }

    /// The value, mutably, when the key holds one of type `T`.
    pub fn value_mut<T: DataType>(&mut self) -> Option<&mut T> {
        // SAFETY: as in `get`; `&mut self` makes this the only borrow.
        self.value_ptr::<T>()
            .ok()
            .flatten()
            .map(|p| unsafe { &mut *p.as_ptr() })
    }

    /// Stores a new value at an empty key, or in place of whatever the key
    /// holds. Returns false (and frees the value) if Redis refused it.
    pub fn set_value<T: DataType>(&mut self, value: Box<T>) -> bool {
        let Some(ty) = T::entry().redis_type() else {
            return false; // not a registered type: nothing is written
        };
        if self.ptr.is_null() {
            return false; // opened for reading, and missing: nothing to write through
        }
        let p = into_raw(value);
        // SAFETY: a non-NULL open key (Redis refuses the write, and we free
        // `p`, when it was opened for reading only); on success Redis owns
        // `p` and frees it through T's free callback.
        let rc = unsafe { api!(RedisModule_ModuleTypeSetValue)(self.ptr, ty, p) };
        if rc != OK {
            T::entry()
                .count
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            // SAFETY: Redis did not take ownership: `p` is still our Box.
            drop(unsafe { Box::from_raw(p.cast::<T>()) });
            return false;
        }
        self.found.set(NonNull::new(p).map(|v| (ty, v)));
        true
    }

    /// Sets the absolute expiry in Unix milliseconds (server time);
    /// `server_now_ms` is read only on servers without `SetAbsExpire`.
    pub fn set_expire_at_ms(&mut self, at_ms: i64, server_now_ms: impl FnOnce() -> i64) {
        if self.ptr.is_null() {
            return;
        }
        match optional_api!(RedisModule_SetAbsExpire) {
            // SAFETY: a non-NULL open key (Redis refuses it unless the key
            // was opened for writing and holds a value).
            Some(f) => unsafe {
                f(self.ptr, at_ms);
            },
            // SAFETY: as above (the relative form, for servers without SetAbsExpire).
            None => unsafe {
                api!(RedisModule_SetExpire)(self.ptr, at_ms.saturating_sub(server_now_ms()).max(1));
            },
        }
    }

    /// Whether the key exists (a handle opened for reading exists only
    /// for a key that does, as EXISTS answers).
    pub fn exists(&self) -> bool {
        !self.ptr.is_null() && !matches!(self.is_hash(), Ok(false))
    }

    /// Whether the key holds a hash (`Ok(false)`: nothing), else what it
    /// holds instead.
    fn is_hash(&self) -> std::result::Result<bool, Holds> {
        if self.ptr.is_null() {
            return Ok(false);
        }
        // SAFETY: an open key handle.
        let kt = unsafe { api!(RedisModule_KeyType)(self.ptr) } as isize;
        match kt {
            _ if kt == raw::REDISMODULE_KEYTYPE_EMPTY => Ok(false),
            _ if kt == raw::REDISMODULE_KEYTYPE_HASH => Ok(true),
            _ if kt == raw::REDISMODULE_KEYTYPE_STRING => Err(Holds::String),
            _ => Err(Holds::Other),
        }
    }

    /// The values of a hash's fields (`None`: no such field; every field
    /// `None` for a missing key), as HMGET answers, or what the key holds
    /// instead of a hash.
    pub fn hash_get<const N: usize>(
        &self,
        fields: [&CStr; N],
    ) -> std::result::Result<[Option<Vec<u8>>; N], Holds> {
        let mut values = [const { None }; N];
        if !self.is_hash()? {
            return Ok(values);
        }
        for (field, value) in fields.iter().zip(values.iter_mut()) {
            let mut got: *mut raw::RedisModuleString = std::ptr::null_mut();
            // SAFETY: an open key that holds a hash; CFIELDS: the field is
            // a NUL-terminated C string; the list ends with NULL. Redis
            // sets `got` to a new string (ours to free) or NULL.
            unsafe {
                api!(RedisModule_HashGet)(
                    self.ptr,
                    raw::REDISMODULE_HASH_CFIELDS as i32,
                    field.as_ptr(),
                    &mut got as *mut *mut raw::RedisModuleString,
                    std::ptr::null::<c_char>(),
                )
            };
            if !got.is_null() {
                let mut len = 0usize;
                // SAFETY: `got` is a live string Redis created for us: its
                // bytes are copied out, then it is freed exactly once (no
                // context: the module does not use automatic memory).
                unsafe {
                    let p = api!(RedisModule_StringPtrLen)(got, &mut len);
                    *value = Some(std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec());
                    api!(RedisModule_FreeString)(std::ptr::null_mut(), got);
                }
            }
        }
        Ok(values)
    }

    /// Sets hash fields as HSET does (creating the hash at an empty key).
    /// False when the key was opened for reading or holds another type.
    pub fn hash_set(&mut self, pairs: &[(&CStr, &[u8])]) -> bool {
        if self.ptr.is_null() || self.is_hash().is_err() {
            return false;
        }
        for (field, value) in pairs {
            // SAFETY: Redis copies the bytes into a new string, freed below.
            let v = unsafe {
                api!(RedisModule_CreateString)(
                    std::ptr::null_mut(),
                    value.as_ptr().cast::<c_char>(),
                    value.len(),
                )
            };
            // SAFETY: an open key, writable (checked above that it is not a
            // read-only missing key; Redis refuses a read-only handle) and
            // empty or a hash; CFIELDS with a C string field and a live
            // value string Redis copies (HASH_SET_COPY); NULL ends the list.
            unsafe {
                api!(RedisModule_HashSet)(
                    self.ptr,
                    raw::REDISMODULE_HASH_CFIELDS as i32,
                    field.as_ptr(),
                    v,
                    std::ptr::null::<c_char>(),
                );
                api!(RedisModule_FreeString)(std::ptr::null_mut(), v);
            }
        }
        self.found.set(None);
        true
    }

    /// Deletes the key's value.
    pub fn delete(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        // SAFETY: a non-NULL open key (Redis refuses it unless opened for
        // writing; a no-op on an empty key).
        unsafe { api!(RedisModule_DeleteKey)(self.ptr) };
        self.found.set(None);
    }
}

impl Drop for Key<'_> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: a handle this value opened and closes exactly once.
            unsafe { api!(RedisModule_CloseKey)(self.ptr) };
        }
    }
}
