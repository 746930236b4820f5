//! leasewait: release-to-admit latency for waiters held on the server.
//!
//! A key with one place is held (`LEASE key 1 ttl`); `--waiters`
//! connections each send `LEASE key 1 ttl BLOCK timeout`, one at a time,
//! each sent once the previous one is seen waiting (`LEASE.PEEK`), so the
//! server's queue is in send order. Then the chain runs: the holder's lease
//! is released, and each waiter, the moment its lease arrives, releases it
//! on its own connection. For every admission, the latency is the time from
//! sending the LEASE.RELEASE that freed the place to the arrival of the
//! next waiter's reply (monotonic clock, stamped when epoll reports the
//! reply). One thread drives every connection through epoll.
//!
//! `--mode list` runs the same chain on Redis's own blocking, as a
//! baseline: the waiters send `BLPOP key 0`, and a release is
//! `LPUSH key token` (one token in circulation: at most one holder, no
//! expiry, no ids).
//!
//! Prints one line of `key=value` pairs:
//!
//! ```text
//! mode=lease waiters=1000 admitted=1000 nil=0 errors=0 fifo=yes at_most_one=yes ids_increasing=yes
//! enqueue_ms=812.3 total_ms=160.2 server_cpu_ms=150.1 mean_ms=0.160 first_tenth_mean_ms=0.2
//! last_tenth_mean_ms=0.1 p50_ms=0.142 p90_ms=0.190 p99_ms=0.410 max_ms=1.502
//! ```
//!
//! (one line; `server_cpu_ms` is the server's CPU time over the chain,
//! from `INFO cpu`; the tenths are the mean latency of the first and the
//! last tenth of the admissions, with the most and the fewest waiters
//! queued behind.)
//!
//! Exit status 1 when a waiter got no lease (nil, error, or none before
//! the deadline), a lease's reply counted another in use beside it, ids did
//! not increase, or admission was not in queue order; 2 on bad usage or a connection failure.
//! `--dump FILE` writes one line per admission.
//!
//! Standard library plus `libc` (epoll); RESP written and read by hand.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench_tools::{Epoll, Value, command, parse, percentile};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Lease,
    List,
}

struct Opts {
    host: String,
    port: u16,
    waiters: usize,
    mode: Mode,
    key: String,
    ttl_ms: u64,
    timeout_ms: u64,
    dump: Option<String>,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: leasewait --port P [--host 127.0.0.1] [--waiters 1000] [--mode lease|list] [--key K] \
         [--ttl-ms 120000] [--timeout-ms 120000] [--dump FILE]"
    );
    ExitCode::from(2)
}

fn parse_opts() -> Option<Opts> {
    let mut o = Opts {
        host: "127.0.0.1".into(),
        port: 0,
        waiters: 1000,
        mode: Mode::Lease,
        key: format!("leasewait:{}", std::process::id()),
        ttl_ms: 120_000,
        timeout_ms: 120_000,
        dump: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next()?;
        match a.as_str() {
            "--host" => o.host = v,
            "--port" => o.port = v.parse().ok()?,
            "--waiters" => o.waiters = v.parse().ok()?,
            "--mode" => {
                o.mode = match v.as_str() {
                    "lease" => Mode::Lease,
                    "list" => Mode::List,
                    _ => return None,
                }
            }
            "--key" => o.key = v,
            "--ttl-ms" => o.ttl_ms = v.parse().ok()?,
            "--timeout-ms" => o.timeout_ms = v.parse().ok()?,
            "--dump" => o.dump = Some(v),
            _ => return None,
        }
    }
    (o.port != 0 && o.waiters > 0 && o.ttl_ms > 0).then_some(o)
}

/// A blocking request-reply on the control connection.
fn call(sock: &mut TcpStream, args: &[&str]) -> Result<Value, String> {
    sock.write_all(&command(args))
        .map_err(|e| format!("{}: {e}", args[0]))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some((v, _)) = parse(&buf)? {
            return Ok(v);
        }
        match sock.read(&mut chunk) {
            Ok(0) => return Err(format!("{}: connection closed", args[0])),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{}: {e}", args[0])),
        }
    }
}

/// How many clients wait now: LEASE.PEEK's `waiting`, or the server's
/// `blocked_clients` for BLPOP.
fn waiting(ctl: &mut TcpStream, o: &Opts) -> Result<usize, String> {
    match o.mode {
        Mode::Lease => match call(ctl, &["LEASE.PEEK", &o.key])?.ints() {
            Some(v) if v.len() == 4 => Ok(v[2] as usize),
            other => Err(format!("LEASE.PEEK answered {other:?}")),
        },
        Mode::List => match call(ctl, &["INFO", "clients"])? {
            Value::Bulk(b) => String::from_utf8_lossy(&b)
                .lines()
                .find_map(|l| l.strip_prefix("blocked_clients:")?.trim().parse().ok())
                .ok_or_else(|| "no blocked_clients in INFO clients".into()),
            other => Err(format!("INFO answered {other:?}")),
        },
    }
}

/// The server's CPU time so far (user + system, all threads), in ms.
fn server_cpu_ms(ctl: &mut TcpStream) -> Result<f64, String> {
    match call(ctl, &["INFO", "cpu"])? {
        Value::Bulk(b) => Ok(String::from_utf8_lossy(&b)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k == "used_cpu_user" || k == "used_cpu_sys")
                    .then(|| v.trim().parse::<f64>().ok())?
            })
            .sum::<f64>()
            * 1e3),
        other => Err(format!("INFO cpu answered {other:?}")),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Waiting,
    Releasing,
    Done,
}

fn main() -> ExitCode {
    let Some(o) = parse_opts() else {
        return usage();
    };
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("leasewait: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(o: &Opts) -> Result<bool, String> {
    let addr = format!("{}:{}", o.host, o.port);
    let connect = || -> Result<TcpStream, String> {
        let s = TcpStream::connect(&addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        Ok(s)
    };
    let mut ctl = connect()?;
    call(&mut ctl, &["DEL", &o.key])?;
    let ttl = o.ttl_ms.to_string();
    let timeout = o.timeout_ms.to_string();
    let (wait_cmd, holder) = match o.mode {
        Mode::Lease => {
            let held = call(&mut ctl, &["LEASE", &o.key, "1", &ttl])?;
            let id = held
                .as_arg()
                .ok_or_else(|| format!("the first LEASE answered {held:?}"))?;
            (
                command(&["LEASE", &o.key, "1", &ttl, "BLOCK", &timeout]),
                String::from_utf8_lossy(&id).into_owned(),
            )
        }
        Mode::List => (
            command(&["BLPOP", &o.key, &(o.timeout_ms as f64 / 1e3).to_string()]),
            String::new(),
        ),
    };
    let release = |id: &str| match o.mode {
        Mode::Lease => command(&["LEASE.RELEASE", &o.key, id]),
        Mode::List => command(&["LPUSH", &o.key, "token"]),
    };

    // Queue the waiters in send order.
    let t_enqueue = Instant::now();
    let mut socks = Vec::with_capacity(o.waiters);
    for i in 0..o.waiters {
        let mut s = connect().map_err(|e| format!("waiter {i}: {e} (ulimit -n? maxclients?)"))?;
        s.write_all(&wait_cmd)
            .map_err(|e| format!("waiter {i}: {e}"))?;
        let until = Instant::now() + Duration::from_secs(10);
        while waiting(&mut ctl, o)? < i + 1 {
            if Instant::now() > until {
                return Err(format!("waiter {i} is not seen waiting after 10 s"));
            }
        }
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        socks.push(s);
    }
    let enqueue_ms = t_enqueue.elapsed().as_secs_f64() * 1e3;

    let mut ep = Epoll::new(o.waiters + 1).map_err(|e| format!("epoll: {e}"))?;
    for (i, s) in socks.iter().enumerate() {
        ep.add(s.as_raw_fd(), i as u64, false)
            .map_err(|e| format!("epoll_ctl: {e}"))?;
    }
    let cpu0 = server_cpu_ms(&mut ctl)?;
    ctl.set_nonblocking(true).map_err(|e| e.to_string())?;
    let ctl_token = o.waiters as u64;
    ep.add(ctl.as_raw_fd(), ctl_token, false)
        .map_err(|e| format!("epoll_ctl: {e}"))?;

    let mut state = vec![State::Waiting; o.waiters];
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); o.waiters + 1];
    let mut latency_ms = Vec::with_capacity(o.waiters);
    let mut order = Vec::with_capacity(o.waiters);
    let (mut nil, mut errors) = (0usize, 0usize);
    let (mut at_most_one, mut ids_increasing) = (true, true);
    let mut last_id: i64 = holder.parse().unwrap_or(0);
    let mut ctl_answered = false;
    let mut done = 0;
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline =
        Instant::now() + Duration::from_millis(o.timeout_ms.min(o.ttl_ms)) + Duration::from_secs(5);

    let t_start = Instant::now();
    let mut sent_at = Instant::now();
    ctl.write_all(&release(&holder))
        .map_err(|e| format!("the first release: {e}"))?;
    while (done < o.waiters || !ctl_answered) && Instant::now() < deadline {
        let ready = ep.wait(100).map_err(|e| format!("epoll_wait: {e}"))?;
        let stamp = Instant::now();
        for (token, _) in ready {
            let i = token as usize;
            let sock = if token == ctl_token {
                &mut ctl
            } else {
                &mut socks[i]
            };
            loop {
                match sock.read(&mut chunk) {
                    Ok(0) => return Err("the server closed a connection".into()),
                    Ok(n) => bufs[i].extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            while let Some((v, used)) = parse(&bufs[i])? {
                bufs[i].drain(..used);
                if token == ctl_token {
                    ctl_answered = true;
                    let ok = match o.mode {
                        Mode::Lease => v == Value::Int(1),
                        Mode::List => matches!(v, Value::Int(_)),
                    };
                    if !ok {
                        errors += 1;
                        eprintln!("leasewait: the first release answered {v:?}");
                    }
                    continue;
                }
                match state[i] {
                    State::Waiting => {
                        latency_ms.push(stamp.duration_since(sent_at).as_secs_f64() * 1e3);
                        order.push(i);
                        let id = match (&v, o.mode) {
                            (Value::Nil, _) => {
                                nil += 1;
                                None
                            }
                            (Value::Error(e), _) => {
                                errors += 1;
                                eprintln!("leasewait: waiter {i} answered {e}");
                                None
                            }
                            (_, Mode::Lease) => match v.ints() {
                                Some(r) if r.len() == 4 => {
                                    // [lease_id, expires_at_ms, in_use, limit]:
                                    // in use 1 is this lease alone.
                                    ids_increasing &= r[0] > last_id;
                                    last_id = r[0];
                                    at_most_one &= r[2] == 1 && r[3] == 1;
                                    Some(r[0].to_string())
                                }
                                _ => {
                                    errors += 1;
                                    eprintln!("leasewait: waiter {i} answered {v:?}");
                                    None
                                }
                            },
                            (_, Mode::List) => Some(String::new()),
                        };
                        let Some(id) = id else {
                            state[i] = State::Done;
                            done += 1;
                            continue;
                        };
                        sent_at = Instant::now();
                        socks[i]
                            .write_all(&release(&id))
                            .map_err(|e| format!("release on waiter {i}: {e}"))?;
                        state[i] = State::Releasing;
                    }
                    State::Releasing => {
                        match (&v, o.mode) {
                            (Value::Int(1), Mode::Lease) | (Value::Int(_), Mode::List) => {}
                            _ => {
                                errors += 1;
                                eprintln!("leasewait: waiter {i}'s release answered {v:?}");
                            }
                        }
                        state[i] = State::Done;
                        done += 1;
                    }
                    State::Done => {
                        errors += 1;
                        eprintln!("leasewait: waiter {i} got a second reply {v:?}");
                    }
                }
            }
        }
    }
    let total_ms = t_start.elapsed().as_secs_f64() * 1e3;
    ctl.set_nonblocking(false).map_err(|e| e.to_string())?;
    let cpu_ms = server_cpu_ms(&mut ctl)? - cpu0;
    // The first and the last tenth of the admissions: with more waiters
    // queued behind, and with few.
    let tenth = (latency_ms.len() / 10).max(1);
    let mean_of = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let first_tenth = mean_of(&latency_ms[..tenth.min(latency_ms.len())]);
    let last_tenth = mean_of(&latency_ms[latency_ms.len().saturating_sub(tenth)..]);
    let admitted = latency_ms.len() - nil;
    let missing = state.iter().filter(|s| **s == State::Waiting).count();
    let fifo = order.windows(2).all(|w| w[0] < w[1]);
    if let Some(path) = &o.dump {
        let mut text = String::from("admission\twaiter\tlatency_ms\n");
        for (n, (w, l)) in order.iter().zip(&latency_ms).enumerate() {
            text.push_str(&format!("{n}\t{w}\t{l:.3}\n"));
        }
        std::fs::write(path, text).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    let mean = latency_ms.iter().sum::<f64>() / latency_ms.len().max(1) as f64;
    latency_ms.sort_by(f64::total_cmp);
    let yn = |b: bool| if b { "yes" } else { "no" };
    println!(
        "mode={} waiters={} admitted={admitted} nil={nil} errors={errors} fifo={} at_most_one={} \
         ids_increasing={} enqueue_ms={enqueue_ms:.1} total_ms={total_ms:.1} server_cpu_ms={cpu_ms:.1} \
         mean_ms={mean:.3} first_tenth_mean_ms={first_tenth:.3} last_tenth_mean_ms={last_tenth:.3} \
         p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        if o.mode == Mode::Lease {
            "lease"
        } else {
            "list"
        },
        o.waiters,
        yn(fifo),
        yn(at_most_one),
        if o.mode == Mode::Lease {
            yn(ids_increasing)
        } else {
            "n/a"
        },
        percentile(&latency_ms, 50.0),
        percentile(&latency_ms, 90.0),
        percentile(&latency_ms, 99.0),
        latency_ms.last().copied().unwrap_or(f64::NAN),
    );
    let ok = missing == 0
        && nil == 0
        && errors == 0
        && fifo
        && at_most_one
        && ids_increasing
        && ctl_answered;
    if !ok {
        eprintln!(
            "leasewait: {missing} never admitted, {nil} nil, {errors} errors, fifo {}, at most one {}, ids increasing {}",
            yn(fifo),
            yn(at_most_one),
            yn(ids_increasing)
        );
    }
    Ok(ok)
}
