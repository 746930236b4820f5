//! Shared by the bench-tools binaries that talk to many connections at
//! once (`pairbench`, `leasewait`): RESP2 written and read by hand, an
//! epoll wrapper, the wall clock in µs and nearest-rank percentiles.
//! Standard library plus `libc`.

use std::io;
use std::os::fd::RawFd;
use std::time::{SystemTime, UNIX_EPOCH};

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Bulk(Vec<u8>),
    Simple(String),
    Error(String),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    /// The value as an argument for a later command: an integer's digits,
    /// a string's bytes, or an array's first element as such. `None` for
    /// nil, an error, or an empty array.
    pub fn as_arg(&self) -> Option<Vec<u8>> {
        match self {
            Value::Int(n) => Some(n.to_string().into_bytes()),
            Value::Bulk(b) => Some(b.clone()),
            Value::Simple(s) => Some(s.clone().into_bytes()),
            Value::Array(v) => v.first()?.as_arg(),
            Value::Nil | Value::Error(_) => None,
        }
    }

    /// The integers of an array of integers (`None` for anything else).
    pub fn ints(&self) -> Option<Vec<i64>> {
        match self {
            Value::Array(v) => v
                .iter()
                .map(|x| match x {
                    Value::Int(n) => Some(*n),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

/// Appends one command in RESP (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A command's RESP from whitespace-free words.
pub fn command(args: &[&str]) -> Vec<u8> {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let mut out = Vec::new();
    encode(&mut out, &bytes);
    out
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn number(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("bad RESP number {:?}", String::from_utf8_lossy(text)))
}

/// Parses one reply at the start of `buf`: `Ok(Some((value, bytes used)))`,
/// `Ok(None)` when more bytes are needed, `Err` on bytes that are not RESP2.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, String> {
    let Some((head, mut used)) = line(buf) else {
        return Ok(None);
    };
    let Some((&kind, rest)) = head.split_first() else {
        return Err("empty RESP line".into());
    };
    let value = match kind {
        b':' => Value::Int(number(rest)?),
        b'+' => Value::Simple(String::from_utf8_lossy(rest).into_owned()),
        b'-' => Value::Error(String::from_utf8_lossy(rest).into_owned()),
        b'_' => Value::Nil,
        b'$' => {
            let n = number(rest)?;
            if n < 0 {
                Value::Nil
            } else {
                let n = n as usize;
                if buf.len() < used + n + 2 {
                    return Ok(None);
                }
                let v = buf[used..used + n].to_vec();
                used += n + 2;
                Value::Bulk(v)
            }
        }
        b'*' => {
            let n = number(rest)?;
            if n < 0 {
                Value::Nil
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    match parse(&buf[used..])? {
                        Some((v, k)) => {
                            items.push(v);
                            used += k;
                        }
                        None => return Ok(None),
                    }
                }
                Value::Array(items)
            }
        }
        other => return Err(format!("unexpected RESP type byte {other:#x}")),
    };
    Ok(Some((value, used)))
}

/// The wall clock in µs since the epoch (the server's clock on this host).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Nearest-rank percentile of sorted values (NaN when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// A level-triggered epoll set whose events carry a `u64` token.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(capacity: usize) -> io::Result<Epoll> {
        // SAFETY: plain syscall; the fd is closed in Drop.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)];
        Ok(Epoll { fd, events })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` for reading (and writing when `write`).
    pub fn add(&self, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest(write), token)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest(write), token)
    }

    /// Waits up to `timeout_ms` and returns the ready tokens with their
    /// event bits.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<Vec<(u64, u32)>> {
        // SAFETY: the buffer holds `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
        Ok(self.events[..n as usize]
            .iter()
            .map(|e| (e.u64, e.events))
            .collect())
    }
}

fn interest(write: bool) -> u32 {
    let mut ev = libc::EPOLLIN as u32;
    if write {
        ev |= libc::EPOLLOUT as u32;
    }
    ev
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_complete_replies() {
        let full = b"*4\r\n:17\r\n:9\r\n$2\r\nab\r\n*-1\r\n:5\r\n";
        for cut in 0..full.len() - 4 {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (v, used) = parse(full).unwrap().unwrap();
        assert_eq!(used, full.len() - 4);
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Int(17),
                Value::Int(9),
                Value::Bulk(b"ab".to_vec()),
                Value::Nil
            ])
        );
        assert_eq!(v.as_arg(), Some(b"17".to_vec()));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Value::Nil, 5)));
        assert_eq!(
            parse(b"-ERR x\r\n").unwrap(),
            Some((Value::Error("ERR x".into()), 8))
        );
        assert!(parse(b"?\r\n").is_err());
        assert_eq!(Value::Nil.as_arg(), None);
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(command(&["GET", "k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
