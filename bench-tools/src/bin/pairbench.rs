//! pairbench: pairs per second of an acquire command and the release that
//! needs its answer (`LEASE` then `LEASE.RELEASE <id from the reply>`).
//!
//! `--clients` connections each run pairs back to back for `--seconds`:
//! send `--pipeline` acquires (each on its own key), read their replies,
//! then send the releases for those that were granted, read those, and
//! start again. One thread drives every connection through epoll, as
//! redis-benchmark does, so the client costs the same for every command.
//!
//! Templates are whitespace-separated words with placeholders:
//! - `{key}`: the pair's key, a 12-digit random number below `--keyspace`
//!   (the length redis-benchmark's `__rand_int__` gives), or `hot` with
//!   `--keyspace 0`; the same in the acquire and its release;
//! - `{member}`: a number unique to the pair (16 digits), for clients that
//!   name their own holder (a sorted-set semaphore's member);
//! - `{id}` (release only): the acquire's reply, or its first element when
//!   it is an array. A nil reply means "not granted": no release is sent.
//!
//! ```text
//! pairbench --port P --acquire 'LEASE bl:{key} 100 60000' --release 'LEASE.RELEASE bl:{key} {id}'
//! pairbench --port P --acquire 'INCR bi:{key}' --release 'DECR bi:{key}'
//! ```
//!
//! Prints one line of `key=value` pairs: `pairs`, `seconds`,
//! `pairs_per_s`, `granted`, `denied`, `released` (release replies equal
//! to 1), `errors`, and the latency of a batch (send of its first acquire
//! to its last release reply) `p50_ms`, `p99_ms`. Exit status 1 on an
//! error reply (the first three are printed), 2 on bad usage or a
//! connection failure.
//!
//! Standard library plus `libc` (epoll); RESP written and read by hand.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench_tools::{Epoll, Value, parse, percentile};

struct Opts {
    host: String,
    port: u16,
    clients: usize,
    pipeline: usize,
    seconds: f64,
    keyspace: u64,
    acquire: Template,
    release: Template,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: pairbench --port P --acquire 'CMD {{key}} ...' --release 'CMD {{key}} {{id}}' \
         [--host 127.0.0.1] [--clients 50] [--pipeline 1] [--seconds 2] [--keyspace 100000 (0: one hot key)]"
    );
    ExitCode::from(2)
}

fn parse_opts() -> Option<Opts> {
    let mut o = Opts {
        host: "127.0.0.1".into(),
        port: 0,
        clients: 50,
        pipeline: 1,
        seconds: 2.0,
        keyspace: 100_000,
        acquire: Template(Vec::new()),
        release: Template(Vec::new()),
    };
    let words =
        |v: &str| Template::new(&v.split_whitespace().map(String::from).collect::<Vec<_>>());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next()?;
        match a.as_str() {
            "--host" => o.host = v,
            "--port" => o.port = v.parse().ok()?,
            "--clients" => o.clients = v.parse().ok()?,
            "--pipeline" => o.pipeline = v.parse().ok()?,
            "--seconds" => o.seconds = v.parse().ok()?,
            "--keyspace" => o.keyspace = v.parse().ok()?,
            "--acquire" => o.acquire = words(&v),
            "--release" => o.release = words(&v),
            _ => return None,
        }
    }
    let ok = o.port != 0
        && o.clients > 0
        && o.pipeline > 0
        && o.seconds > 0.0
        && !o.acquire.0.is_empty()
        && !o.release.0.is_empty()
        && !o.acquire.uses(|p| matches!(p, Piece::Id));
    ok.then_some(o)
}

/// xorshift64*: enough for picking keys, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A piece of a template word.
enum Piece {
    Lit(Vec<u8>),
    Key,
    Member,
    Id,
}

/// A command template: words made of pieces.
struct Template(Vec<Vec<Piece>>);

impl Template {
    fn new(words: &[String]) -> Template {
        type Make = fn() -> Piece;
        let holders: [(&str, Make); 3] = [
            ("{key}", || Piece::Key),
            ("{member}", || Piece::Member),
            ("{id}", || Piece::Id),
        ];
        Template(
            words
                .iter()
                .map(|w| {
                    let mut pieces = Vec::new();
                    let mut rest = w.as_str();
                    while !rest.is_empty() {
                        let first = holders
                            .iter()
                            .filter_map(|(ph, make)| rest.find(ph).map(|p| (p, *ph, make)))
                            .min_by_key(|(p, _, _)| *p);
                        match first {
                            Some((p, ph, make)) => {
                                if p > 0 {
                                    pieces.push(Piece::Lit(rest.as_bytes()[..p].to_vec()));
                                }
                                pieces.push(make());
                                rest = &rest[p + ph.len()..];
                            }
                            None => {
                                pieces.push(Piece::Lit(rest.as_bytes().to_vec()));
                                rest = "";
                            }
                        }
                    }
                    pieces
                })
                .collect(),
        )
    }

    fn uses(&self, which: fn(&Piece) -> bool) -> bool {
        self.0.iter().flatten().any(which)
    }

    /// Appends the command in RESP with its placeholders filled.
    fn fill(&self, out: &mut Vec<u8>, key: &[u8], member: &[u8], id: &[u8]) {
        let part = |p: &Piece| -> usize {
            match p {
                Piece::Lit(b) => b.len(),
                Piece::Key => key.len(),
                Piece::Member => member.len(),
                Piece::Id => id.len(),
            }
        };
        out.extend_from_slice(format!("*{}\r\n", self.0.len()).as_bytes());
        for w in &self.0 {
            let len: usize = w.iter().map(part).sum();
            out.extend_from_slice(format!("${len}\r\n").as_bytes());
            for p in w {
                out.extend_from_slice(match p {
                    Piece::Lit(b) => b,
                    Piece::Key => key,
                    Piece::Member => member,
                    Piece::Id => id,
                });
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[derive(PartialEq)]
enum Phase {
    Acquire,
    Release,
    Done,
}

struct Slot {
    key: Vec<u8>,
    id: Option<Vec<u8>>,
}

struct Conn {
    sock: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wanting_write: bool,
    phase: Phase,
    slots: Vec<Slot>,
    /// Replies still expected in this phase, and the next slot they are for.
    pending: usize,
    next: usize,
    started: Instant,
}

#[derive(Default)]
struct Totals {
    pairs: u64,
    granted: u64,
    denied: u64,
    released: u64,
    errors: u64,
    batch_ms: Vec<f64>,
}

struct Bench {
    o: Opts,
    rng: Rng,
    member: u64,
    deadline: Instant,
    t: Totals,
}

impl Bench {
    /// Starts the connection's next batch of acquires, or ends it after
    /// the deadline.
    fn start_batch(&mut self, c: &mut Conn) {
        if Instant::now() >= self.deadline {
            c.phase = Phase::Done;
            return;
        }
        c.slots.clear();
        for _ in 0..self.o.pipeline {
            let key = if self.o.keyspace == 0 {
                b"hot".to_vec()
            } else {
                format!("{:012}", self.rng.next() % self.o.keyspace).into_bytes()
            };
            self.member += 1;
            let member = self.member.to_string();
            self.o
                .acquire
                .fill(&mut c.wbuf, &key, member.as_bytes(), b"");
            c.slots.push(Slot { key, id: None });
        }
        c.phase = Phase::Acquire;
        c.pending = self.o.pipeline;
        c.next = 0;
        c.started = Instant::now();
    }

    fn error(&mut self, what: &str, e: &str) {
        self.t.errors += 1;
        if self.t.errors <= 3 {
            eprintln!("pairbench: {what} answered an error: {e}");
        }
    }

    /// Handles one reply on `c`.
    fn reply(&mut self, c: &mut Conn, v: Value) {
        match c.phase {
            Phase::Acquire => {
                match &v {
                    Value::Error(e) => self.error("an acquire", e),
                    Value::Nil => self.t.denied += 1,
                    _ => match v.as_arg() {
                        Some(id) => {
                            self.t.granted += 1;
                            c.slots[c.next].id = Some(id);
                        }
                        None => self.t.denied += 1,
                    },
                }
                c.next += 1;
                c.pending -= 1;
                if c.pending == 0 {
                    let mut n = 0;
                    for s in &c.slots {
                        if let Some(id) = &s.id {
                            self.o.release.fill(&mut c.wbuf, &s.key, b"", id);
                            n += 1;
                        }
                    }
                    if n == 0 {
                        self.finish_batch(c);
                    } else {
                        c.phase = Phase::Release;
                        c.pending = n;
                    }
                }
            }
            Phase::Release => {
                match &v {
                    Value::Error(e) => self.error("a release", e),
                    Value::Int(1) => self.t.released += 1,
                    _ => {}
                }
                c.pending -= 1;
                if c.pending == 0 {
                    self.finish_batch(c);
                }
            }
            Phase::Done => {}
        }
    }

    fn finish_batch(&mut self, c: &mut Conn) {
        self.t.pairs += c.slots.len() as u64;
        self.t
            .batch_ms
            .push(c.started.elapsed().as_secs_f64() * 1e3);
        self.start_batch(c);
    }
}

/// Writes what `c` has buffered; `Ok(true)` when some is left for later.
fn flush(c: &mut Conn) -> std::io::Result<bool> {
    while !c.wbuf.is_empty() {
        match c.sock.write(&c.wbuf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.wbuf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

fn main() -> ExitCode {
    let Some(o) = parse_opts() else {
        return usage();
    };
    let addr = format!("{}:{}", o.host, o.port);
    let mut conns = Vec::with_capacity(o.clients);
    for i in 0..o.clients {
        let c = TcpStream::connect(&addr)
            .and_then(|s| s.set_nodelay(true).map(|_| s))
            .and_then(|s| s.set_nonblocking(true).map(|_| s));
        match c {
            Ok(sock) => conns.push(Conn {
                sock,
                rbuf: Vec::with_capacity(4096),
                wbuf: Vec::with_capacity(4096),
                wanting_write: false,
                phase: Phase::Done,
                slots: Vec::new(),
                pending: 0,
                next: 0,
                started: Instant::now(),
            }),
            Err(e) => {
                eprintln!("pairbench: connection {i} to {addr} failed: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut ep = match Epoll::new(conns.len()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pairbench: epoll: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = (bench_tools::now_us() as u64) ^ (u64::from(std::process::id()) << 32) | 1;
    let start = Instant::now();
    let mut b = Bench {
        rng: Rng(seed),
        member: 1_000_000_000_000_000,
        deadline: start + Duration::from_secs_f64(o.seconds),
        o,
        t: Totals::default(),
    };
    for (i, c) in conns.iter_mut().enumerate() {
        b.start_batch(c);
        let more = match flush(c) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("pairbench: send failed: {e}");
                return ExitCode::from(2);
            }
        };
        c.wanting_write = more;
        if let Err(e) = ep.add(c.sock.as_raw_fd(), i as u64, more) {
            eprintln!("pairbench: epoll_ctl: {e}");
            return ExitCode::from(2);
        }
    }
    let hard_stop = b.deadline + Duration::from_secs(30);
    let mut active = conns.len();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_done = start;
    while active > 0 {
        if Instant::now() > hard_stop {
            eprintln!(
                "pairbench: {active} connections still waiting for replies 30 s after the end"
            );
            return ExitCode::from(1);
        }
        let ready = match ep.wait(100) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("pairbench: epoll_wait: {e}");
                return ExitCode::from(2);
            }
        };
        for (token, _) in ready {
            let c = &mut conns[token as usize];
            if c.phase == Phase::Done {
                continue;
            }
            loop {
                match c.sock.read(&mut chunk) {
                    Ok(0) => {
                        eprintln!("pairbench: the server closed a connection");
                        return ExitCode::from(1);
                    }
                    Ok(n) => c.rbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("pairbench: read failed: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            let mut used = 0;
            loop {
                match parse(&c.rbuf[used..]) {
                    Ok(Some((v, n))) => {
                        used += n;
                        b.reply(c, v);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("pairbench: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            c.rbuf.drain(..used);
            if c.phase == Phase::Done {
                active -= 1;
                last_done = Instant::now();
                continue;
            }
            let more = match flush(c) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("pairbench: send failed: {e}");
                    return ExitCode::from(1);
                }
            };
            if more != c.wanting_write {
                c.wanting_write = more;
                if let Err(e) = ep.modify(c.sock.as_raw_fd(), token, more) {
                    eprintln!("pairbench: epoll_ctl: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let secs = last_done.duration_since(start).as_secs_f64();
    let t = &mut b.t;
    t.batch_ms.sort_by(f64::total_cmp);
    println!(
        "pairs={} seconds={secs:.3} pairs_per_s={:.0} granted={} denied={} released={} errors={} \
         p50_ms={:.3} p99_ms={:.3}",
        t.pairs,
        t.pairs as f64 / secs,
        t.granted,
        t.denied,
        t.released,
        t.errors,
        percentile(&t.batch_ms, 50.0),
        percentile(&t.batch_ms, 99.0),
    );
    if t.errors > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders() {
        let words: Vec<String> = ["EVALSHA", "s", "1", "z:{key}", "{member}", "x{id}y{key}"]
            .map(String::from)
            .to_vec();
        let mut out = Vec::new();
        Template::new(&words).fill(&mut out, b"000000000042", b"17", b"9");
        assert_eq!(
            out,
            bench_tools::command(&[
                "EVALSHA",
                "s",
                "1",
                "z:000000000042",
                "17",
                "x9y000000000042"
            ])
        );
    }

    #[test]
    fn keys_spread_over_the_keyspace() {
        let mut r = Rng(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[(r.next() % 10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
