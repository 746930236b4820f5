//! `throttle_core::limitlion` against LimitLion 1.1's own `throttle.lua`,
//! call by call, on plain servers; then the module's `THROTTLE.LIMITLION`
//! against the same core, on the same keys as the script.
//!
//! The script comes out of `../shared/peers/limitlion-6411f9f.tar.gz` (or
//! `$LIMITLION_TARBALL`) at run time, with LimitLion's testing-mode change
//! (the clock from the `frozen_second` / `frozen_microsecond` keys when
//! `frozen_second` exists), and runs with EVALSHA as LimitLion runs it.
//!
//! - `conversions_match_the_servers_lua`: the number conversions one by
//!   one, through the server's Lua: `tonumber`, `%.17g`, `%.6f`, a number
//!   as a `redis.call` argument, a number as a reply integer;
//!   `argument_text_of_random_doubles_matches`: the argument text of 40,000
//!   random doubles; `special_values_through_the_script_match`: 3,000
//!   calls on NaN, inf, -0 and extreme knobs through the script, and the
//!   same 3,000 through the command.
//! - `random_calls_match_the_script`: seeded random sequences (knobs set,
//!   changed and hand-written, window changes, fractional rps, burst and
//!   tokens, frozen-time steps, missing and malformed fields, keys of other
//!   types): before each call the test reads what the script will read,
//!   asks the core what the script will answer and write, runs the script,
//!   and compares the reply (or error), both hashes and both expiry times.
//!   Everything for one call runs in one MULTI/EXEC, so no key expires
//!   between the read and the call. `LIMITLION_SEED` and `LIMITLION_CALLS`
//!   (default 24,000) repeat or lengthen a run.
//! - `module_and_script_on_shared_keys_match_the_core`: the same sequences
//!   on a server with the module, each call through the script or
//!   `THROTTLE.LIMITLION` at random on the same keys (a mixed fleet), each
//!   checked the same way (the command's error text exactly).
//!
//! `REDIS_SERVER` picks the server (Debian's 7.0.15 prints Lua numbers with
//! `%.17g`; 7.2+ and Valkey with integers or fpconv: the test reads the
//! version and picks [`NumberText`] as the module must).

mod common;

use std::collections::BTreeMap;

use redis::{Connection, Value};
use testkit::Server;
use throttle_core::Timestamp;
use throttle_core::limitlion::{
    self, Args, Bucket, BucketWrite, Call, Clock, Knobs, NumberText, Outcome, Reply, ScriptError,
    Ttl,
};

/// How this server's Lua bridge prints numbers, from `INFO server`.
fn number_text(con: &mut Connection) -> NumberText {
    let info: String = redis::cmd("INFO").arg("server").query(con).unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
            .map(|v| v.trim().to_string())
    };
    let valkey = field("valkey_version").is_some()
        || field("server_name").is_some_and(|n| n.contains("valkey"));
    let version = field("redis_version").expect("redis_version");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let text = NumberText::for_server(valkey, major, minor);
    eprintln!("server {version} (valkey: {valkey}): {text:?}");
    text
}

fn plain_server() -> (Server, Connection, NumberText) {
    let server = Server::builder().without_module().start();
    let mut con = server.conn();
    let text = number_text(&mut con);
    (server, con, text)
}

// ---------------------------------------------------------------------------
// A seeded generator (SplitMix64).

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seed() -> u64 {
    std::env::var("LIMITLION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x11AB_2026)
}

// ---------------------------------------------------------------------------
// Conversions, one at a time.

/// Strings for `tonumber`: decimals, hex, specials, whitespace, junk.
fn number_strings(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    let fixed: &[&str] = &[
        "0",
        "-0",
        "+0",
        "1",
        "-1",
        "0.5",
        "1.5",
        "2.5",
        "-2.5",
        "0.1",
        "1e16",
        "1e17",
        "1e21",
        "1e22",
        "123456789012345678",
        "4611686018427387904",
        "4611686018427387905",
        "-4611686018427387904",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854777856",
        "1e300",
        "1e308",
        "1e309",
        "-1e309",
        "1e-300",
        "4.9406564584124654e-324",
        "2.4703282292062328e-324",
        "1e-400",
        "0.0078125",
        "0.0234375",
        "1700000000.00390625",
        "0.000015",
        "1e-7",
        "0.09999999999999964",
        "inf",
        "-inf",
        "Infinity",
        "INF",
        "infinit",
        "nan",
        "-nan",
        "NaN",
        "nan(123)",
        "nan(",
        "0x10",
        "0X1F",
        "-0x10",
        "0x1p3",
        "0x1.8p1",
        "0x.8",
        "0x",
        "0x1p",
        "0xg",
        "1x",
        "0x1x",
        " 5",
        "5 ",
        " \t\n\x0b\x0c\r5\r\n",
        "5 x",
        "",
        " ",
        ".",
        "-",
        "+",
        "e5",
        "1e",
        "1e+",
        "1.",
        ".5",
        "-.5",
        "1_000",
        "5\0junk",
        "\0",
        "1,5",
        "١",
        "0b101",
        "00012",
        "1e0005",
        "0.0000000000000000000000000000000000001e40",
        "1E-5",
        "9.999999999999999e22",
    ];
    let mut out: Vec<Vec<u8>> = fixed.iter().map(|s| s.as_bytes().to_vec()).collect();
    while out.len() < n {
        let s = match rng.below(10) {
            0 => format!("{:?}", f64::from_bits(rng.next())),
            1 => format!("{:e}", f64::from_bits(rng.next())),
            2 => format!("{}", rng.next() as i64 >> rng.below(64)),
            3 => format!("{}.{:06}", rng.below(100_000), rng.below(1_000_000)),
            4 => format!(
                "{:.*}",
                rng.below(25) as usize,
                rng.unit() * 10f64.powi(rng.below(30) as i32 - 10)
            ),
            5 => format!("{:#x}", rng.next() >> rng.below(64)),
            6 => format!(
                "{}",
                (rng.below(1 << 20) as f64) / (1u64 << rng.below(30)) as f64
                    + rng.below(2_000_000_000) as f64
            ),
            7 => {
                let pool = [
                    "0", "1", "9", ".", "e", "-", "+", "x", " ", "a", "p", "n", "i",
                ];
                (0..1 + rng.below(8)).map(|_| *rng.pick(&pool)).collect()
            }
            8 => format!("{}e{}", rng.below(1000), rng.below(700) as i64 - 350),
            _ => format!("{}", rng.unit() * 1e6),
        };
        out.push(s.into_bytes());
    }
    out
}

const PROBE: &str = "\
local out = {}
for i, a in ipairs(ARGV) do
  local n = tonumber(a)
  if n == nil then
    out[i] = {'nil'}
  else
    redis.call('hset', KEYS[1], tostring(i), n)
    out[i] = {string.format('%.17g', n), string.format('%.6f', n), n}
  end
end
return out";

fn text(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn conversions_match_the_servers_lua() {
    let (_server, mut con, number_text) = plain_server();
    let mut rng = Rng(seed());
    let strings = number_strings(&mut rng, 6000);
    let mut checked = 0;
    for chunk in strings.chunks(400) {
        let _: () = redis::cmd("DEL").arg("probe").query(&mut con).unwrap();
        let reply: Vec<Value> = redis::cmd("EVAL")
            .arg(PROBE)
            .arg(1)
            .arg("probe")
            .arg(chunk)
            .query(&mut con)
            .unwrap();
        let written: BTreeMap<String, Vec<u8>> =
            redis::cmd("HGETALL").arg("probe").query(&mut con).unwrap();
        assert_eq!(reply.len(), chunk.len());
        for (i, (s, r)) in chunk.iter().zip(&reply).enumerate() {
            let ours = limitlion::tonumber(s);
            let Value::Array(r) = r else { panic!("{r:?}") };
            let shown = String::from_utf8_lossy(s);
            match ours {
                None => assert_eq!(r.len(), 1, "tonumber({shown:?}): Lua reads {r:?}"),
                Some(x) => {
                    assert_eq!(r.len(), 3, "tonumber({shown:?}): Lua says nil, we {x:?}");
                    let g17 = String::from_utf8(text(&r[0])).unwrap();
                    assert_eq!(
                        limitlion::printf_g17(x),
                        g17,
                        "%.17g of tonumber({shown:?})"
                    );
                    let f6 = String::from_utf8(text(&r[1])).unwrap();
                    assert_eq!(limitlion::sleep_text(x), f6, "%.6f of tonumber({shown:?})");
                    assert_eq!(
                        limitlion::reply_integer(x),
                        int(&r[2]),
                        "reply of {shown:?}"
                    );
                    let arg = String::from_utf8(written[&(i + 1).to_string()].clone()).unwrap();
                    assert_eq!(number_text.format(x), arg, "argument text of {shown:?}");
                }
            }
            checked += 1;
        }
    }
    eprintln!("{checked} conversions agree");
}

/// The text of a Lua number passed to `redis.call`, for 40,000 random
/// doubles (every exponent, integers near 2^62 and 2^63, short decimals):
/// `%.17g` on 7.0, integers or fpconv's Grisu2 digits on 7.2+ and Valkey.
#[test]
fn argument_text_of_random_doubles_matches() {
    let (_server, mut con, number_text) = plain_server();
    let mut rng = Rng(seed() ^ 0xD0_0B1E);
    let mut values: Vec<f64> = Vec::with_capacity(40_000);
    while values.len() < 40_000 {
        let x = match rng.below(6) {
            0 | 1 => f64::from_bits(rng.next()),
            2 => (rng.next() >> rng.below(64)) as f64 * if rng.chance(50) { -1.0 } else { 1.0 },
            3 => rng.below(1 << 40) as f64 / 10f64.powi(rng.below(20) as i32),
            4 => (1u64 << 62) as f64 + (rng.below(4096) as f64 - 2048.0) * 1024.0,
            _ => rng.unit() * 10f64.powi(rng.below(44) as i32 - 22),
        };
        if !x.is_nan() {
            values.push(x);
        }
    }
    for chunk in values.chunks(1000) {
        let _: () = redis::cmd("DEL").arg("probe").query(&mut con).unwrap();
        let args: Vec<String> = chunk.iter().map(|x| format!("{x:e}")).collect();
        let _: Value = redis::cmd("EVAL")
            .arg(PROBE)
            .arg(1)
            .arg("probe")
            .arg(&args)
            .query(&mut con)
            .unwrap();
        let written: BTreeMap<String, String> =
            redis::cmd("HGETALL").arg("probe").query(&mut con).unwrap();
        for (i, x) in chunk.iter().enumerate() {
            assert_eq!(
                number_text.format(*x),
                written[&(i + 1).to_string()],
                "{x:e}"
            );
        }
    }
    eprintln!("{} argument texts agree", values.len());
}

/// Arithmetic on NaN, inf and signed zeros gives the same bits in the
/// server's Lua and in the core, and in the module's command (on a server
/// with the module, same keys and clock).
#[test]
fn special_values_through_the_script_match() {
    let (_plain, mut plain, number_text) = plain_server();
    let module_server = Server::start();
    let mut module = module_server.conn();
    let sha = load(&mut plain);
    let specials = [
        "nan", "-nan", "inf", "-inf", "0", "-0", "1e308", "-1", "0.5", "1e-320",
    ];
    let mut calls = 0;
    for rps in specials {
        for burst in specials {
            for window in specials {
                for tokens in ["1", "nan", "-inf"] {
                    let profile = Profile {
                        rps: rps.into(),
                        burst: burst.into(),
                        window: window.into(),
                        knobs_ttl: "604800".into(),
                    };
                    for (con, via) in [(&mut plain, Via::Script(&sha)), (&mut module, Via::Command)]
                    {
                        let mut w = writes();
                        w.cmd("FLUSHALL");
                        w.cmd("MSET").arg(&[
                            "frozen_second",
                            "1000",
                            "frozen_microsecond",
                            "250000",
                        ]);
                        w.cmd("HSET").arg("throttle:s").arg(&[
                            "tokens",
                            tokens,
                            "refreshed",
                            "990",
                        ]);
                        one_call(con, &mut w, via, number_text, "throttle:s", &profile, "1");
                        calls += 1;
                    }
                }
            }
        }
    }
    eprintln!("{calls} calls with special values agree (half through the command)");
}

// ---------------------------------------------------------------------------
// The differential.

fn load(con: &mut Connection) -> String {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(common::limitlion_testing_script())
        .query(con)
        .unwrap()
}

/// Default arguments of a sequence (what the callers pass).
#[derive(Clone, Debug)]
struct Profile {
    rps: String,
    burst: String,
    window: String,
    knobs_ttl: String,
}

const RPS: &[&str] = &[
    "1", "5", "10", "2", "0.5", "0.2", "0.6", "2.2", "0.0001", "0.3", "1.5", "100", "0.1", "7",
    "0", "-1", "3.3", "1e-3", "0.125", "25",
];
const RPS_ODD: &[&str] = &[
    "-2", "nan", "inf", "1e308", "0x10", " 4 ", "abc", "", "-0", "1e-320", "-1.0", "0.0",
];
const BURST: &[&str] = &["1", "2", "3.3", "10", "1.5", "0.5", "4", "1.1", "0.25"];
const BURST_ODD: &[&str] = &[
    "0",
    "-1",
    "1e16",
    "4611686018427387904",
    "nan",
    "-0",
    "junk",
    "1e300",
    "0x2",
];
const WINDOW: &[&str] = &[
    "1",
    "2",
    "5",
    "10",
    "0.5",
    "0.25",
    "3.7",
    "1.5",
    "0.1",
    "60",
    "0.00390625",
    "7",
];
const WINDOW_ODD: &[&str] = &["0", "-5", "1e-7", "inf", "nan", "-0", "x", "1e10"];
const KNOBS_TTL: &[&str] = &["604800", "604800", "604800", "0", "10", "100000", "1"];
const KNOBS_TTL_ODD: &[&str] = &[
    "-5",
    "1.5",
    "1e17",
    "1e16",
    "junk",
    "nan",
    "9223372036854775",
    "0.0",
];
const TOKENS: &[&str] = &[
    "1", "1", "1", "2", "0", "0.5", "1.5", "2.2", "3", "10", "0.1",
];
const TOKENS_ODD: &[&str] = &["-1", "1e300", "nan", "junk", "-inf", "inf", "1e-300", " 2 "];

fn choose(rng: &mut Rng, usual: &[&str], odd: &[&str], odd_percent: u64) -> String {
    if rng.chance(odd_percent) {
        rng.pick(odd).to_string()
    } else {
        rng.pick(usual).to_string()
    }
}

fn profile(rng: &mut Rng) -> Profile {
    Profile {
        rps: choose(rng, RPS, RPS_ODD, 4),
        burst: choose(rng, BURST, BURST_ODD, 3),
        window: choose(rng, WINDOW, WINDOW_ODD, 3),
        knobs_ttl: choose(rng, KNOBS_TTL, KNOBS_TTL_ODD, 3),
    }
}

/// A token count a caller asks for: usually small, sometimes the whole
/// capacity as a float (LimitLion's tests do `rps * burst * window`).
fn requested(rng: &mut Rng, p: &Profile) -> String {
    if rng.chance(8) {
        let product = |a: &str, b: &str, c: &str| -> Option<f64> {
            Some(
                a.trim().parse::<f64>().ok()?
                    * b.trim().parse::<f64>().ok()?
                    * c.trim().parse::<f64>().ok()?,
            )
        };
        if let Some(c) = product(&p.rps, &p.burst, &p.window) {
            let c = if rng.chance(50) { c } else { c + 1.0 };
            return format!("{c:?}");
        }
    }
    choose(rng, TOKENS, TOKENS_ODD, 2)
}

/// The frozen clock of a sequence.
struct Frozen {
    second: i64,
    micro: i64,
}

impl Frozen {
    /// Moves time (mostly forward) and writes the keys; sometimes writes
    /// them in a form only `tonumber` reads, or not at all.
    fn step(&mut self, rng: &mut Rng, w: &mut Writes, window: f64) {
        let us: i64 = match rng.below(12) {
            0 => 0,
            1 | 2 => rng.below(1_000_000) as i64,
            3 | 4 => {
                let w = if window.is_finite() && window > 0.0 && window < 1e6 {
                    window
                } else {
                    1.0
                };
                ((rng.below(4) as f64 * w) * 1e6) as i64 + rng.below(3) as i64 - 1
            }
            5 => rng.below(30_000_000) as i64,
            6 => 1,
            7 => -(rng.below(3_000_000) as i64),
            8 => rng.below(200_000) as i64,
            9 => 1_000_000 - self.micro + rng.below(2) as i64 * 4,
            _ => rng.below(3_000_000) as i64,
        };
        let total = self.second * 1_000_000 + self.micro + us;
        self.second = total.div_euclid(1_000_000);
        self.micro = total.rem_euclid(1_000_000);
        let second = match rng.below(40) {
            0 => format!(" {} ", self.second),
            1 => format!("{:e}", self.second as f64),
            _ => self.second.to_string(),
        };
        let micro = match rng.below(60) {
            0 => "abc".to_string(),
            1 => format!("{}.5", self.micro),
            2 => "-5".to_string(),
            3 => "1000000".to_string(),
            _ => self.micro.to_string(),
        };
        w.cmd("DEL").arg("frozen_second");
        if rng.chance(1) {
            // exists, but MGET reads nil: `now` is nil
            w.cmd("HSET").arg(&["frozen_second", "f", "v"]);
        } else {
            w.cmd("SET").arg("frozen_second").arg(second);
        }
        if rng.chance(1) {
            w.cmd("DEL").arg("frozen_microsecond");
        } else {
            w.cmd("SET").arg("frozen_microsecond").arg(micro);
        }
    }
}

/// An operator's hand edit of the knobs hash.
fn edit_knobs(rng: &mut Rng, w: &mut Writes, knobs: &str) {
    let field = *rng.pick(&["rps", "burst", "window"]);
    let value = match field {
        "rps" => choose(rng, RPS, RPS_ODD, 15),
        "burst" => choose(rng, BURST, BURST_ODD, 15),
        _ => choose(rng, WINDOW, WINDOW_ODD, 15),
    };
    let mut cmd = redis::cmd("HSET");
    match rng.below(10) {
        0..=3 => {
            // throttle_set with all three
            cmd.arg(knobs).arg(&[
                "rps",
                &choose(rng, RPS, RPS_ODD, 5),
                "burst",
                &choose(rng, BURST, BURST_ODD, 5),
                "window",
                &choose(rng, WINDOW, WINDOW_ODD, 5),
            ]);
        }
        4..=6 => {
            cmd.arg(knobs).arg(field).arg(value);
        }
        7 => {
            cmd = redis::cmd("HDEL");
            cmd.arg(knobs).arg(field);
        }
        8 => {
            cmd = redis::cmd("DEL");
            cmd.arg(knobs);
        }
        _ => {
            cmd = redis::cmd("EXPIRE");
            cmd.arg(knobs).arg(1000 + rng.below(100_000));
        }
    }
    // (an edit of a key of another type fails, and changes nothing)
    w.add_command(cmd);
}

/// A hand edit of the bucket hash (what LimitLion's tests do with HMSET).
fn edit_bucket(rng: &mut Rng, w: &mut Writes, bucket: &str, frozen: &Frozen) {
    let now = frozen.second;
    let tokens = *rng.pick(&[
        "0", "1", "2", "3", "24", "2.5", "0.1", "-1", "1e300", "nan", "junk", "", "100000",
    ]);
    let refreshed = match rng.below(8) {
        0 => now.to_string(),
        1 => (now - rng.below(100) as i64).to_string(),
        2 => "0".to_string(),
        3 => (now + rng.below(100) as i64).to_string(),
        4 => format!("{}.25", now - 3),
        5 => "junk".to_string(),
        6 => "-nan".to_string(),
        _ => (now - rng.below(10) as i64).to_string(),
    };
    let mut cmd = redis::cmd("HSET");
    match rng.below(12) {
        0..=4 => {
            cmd.arg(bucket)
                .arg(&["tokens", tokens, "refreshed", &refreshed]);
        }
        5 => {
            cmd.arg(bucket).arg(&["tokens", tokens]);
        }
        6 => {
            cmd.arg(bucket).arg(&["refreshed", &refreshed]);
        }
        7 => {
            cmd = redis::cmd("HDEL");
            cmd.arg(bucket).arg(*rng.pick(&["tokens", "refreshed"]));
        }
        8 => {
            cmd.arg(bucket).arg(&["note", "kept by HMSET"]);
        }
        9 => {
            cmd = redis::cmd("SET");
            cmd.arg(bucket).arg("not a hash");
        }
        _ => {
            cmd = redis::cmd("DEL");
            cmd.arg(bucket);
        }
    }
    // (an edit of a key of another type fails, and changes nothing)
    w.add_command(cmd);
}

/// One key's state inside the transaction: its type, hash fields and
/// absolute expiry (PEXPIRETIME: -1 none, -2 no key).
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyState {
    kind: String,
    fields: BTreeMap<Vec<u8>, Vec<u8>>,
    expire_at_ms: i64,
}

fn key_state(kind: &Value, fields: &Value, expire: &Value) -> KeyState {
    let kind = match kind {
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "ok".into(),
        other => panic!("TYPE: {other:?}"),
    };
    let fields = match fields {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Value::Array(items) => items
            .chunks(2)
            .map(|kv| (text(&kv[0]), text(&kv[1])))
            .collect(),
        Value::ServerError(_) => BTreeMap::new(),
        other => panic!("HGETALL: {other:?}"),
    };
    KeyState {
        kind,
        fields,
        expire_at_ms: int(expire),
    }
}

fn opt_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Nil => None,
        other => Some(text(other)),
    }
}

fn time_us(v: &Value) -> Timestamp {
    let Value::Array(parts) = v else {
        panic!("TIME: {v:?}")
    };
    let secs: u64 = String::from_utf8(text(&parts[0])).unwrap().parse().unwrap();
    let micros: u64 = String::from_utf8(text(&parts[1])).unwrap().parse().unwrap();
    Timestamp(secs * 1_000_000 + micros)
}

fn time_ms(v: &Value) -> i64 {
    i64::try_from(time_us(v).0 / 1000).unwrap()
}

/// The phrase each error puts in the script's error reply.
fn phrase(e: ScriptError) -> &'static str {
    match e {
        ScriptError::Arithmetic(_) => "attempt to perform arithmetic",
        ScriptError::Compare(_) => "attempt to compare",
        ScriptError::WrongType => "WRONGTYPE",
        ScriptError::NotAnInteger => "value is not an integer or out of range",
        ScriptError::InvalidExpireTime => "invalid expire time",
    }
}

/// An expiry the script set: between `before + ttl` and `after + ttl`.
fn check_expiry(what: &str, ttl: Ttl, state: &KeyState, before_ms: i64, after_ms: i64) {
    match ttl {
        Ttl::Seconds(s) => {
            assert!(
                state.expire_at_ms >= before_ms + s * 1000
                    && state.expire_at_ms <= after_ms + s * 1000 + 1,
                "{what}: EXPIRE {s} should give an expiry in [{}, {}], got {}",
                before_ms + s * 1000,
                after_ms + s * 1000,
                state.expire_at_ms
            );
        }
        Ttl::Delete => assert_eq!(state.kind, "none", "{what}: EXPIRE ≤ 0 deletes it"),
    }
}

/// How a call runs: LimitLion's script (EVALSHA, with its testing-mode
/// clock), or the module's command on the same keys (with `CLOCK`).
#[derive(Clone, Copy, Debug)]
enum Via<'a> {
    Script(&'a str),
    Command,
}

/// The test's own writes (clock steps, hand edits) that go ahead of the
/// next call, in its round trip: a failed one (an edit of a key of another
/// type) changes nothing, as it would alone.
type Writes = redis::Pipeline;

fn writes() -> Writes {
    let mut w = redis::pipe();
    w.ignore_errors();
    w
}

/// Sends the pending writes, then in the same round trip: TIME, one
/// transaction that reads everything, runs the call and reads everything
/// again, and TIME. Compares with the core. Returns the outcome.
fn one_call(
    con: &mut Connection,
    w: &mut Writes,
    via: Via<'_>,
    number_text: NumberText,
    bucket_key: &str,
    p: &Profile,
    requested_tokens: &str,
) -> Option<Outcome> {
    let knobs_key = format!("{bucket_key}{}", limitlion::KNOBS_SUFFIX);
    let mut pipe = std::mem::replace(w, writes());
    let written = pipe.len();
    pipe.cmd("TIME");
    pipe.cmd("MULTI");
    let read = |pipe: &mut redis::Pipeline| {
        for key in [bucket_key, knobs_key.as_str()] {
            pipe.cmd("TYPE").arg(key);
            pipe.cmd("HGETALL").arg(key);
            pipe.cmd("PEXPIRETIME").arg(key);
        }
    };
    read(&mut pipe);
    pipe.cmd("HMGET")
        .arg(&knobs_key)
        .arg(&["rps", "burst", "window"]);
    pipe.cmd("EXISTS").arg("frozen_second");
    pipe.cmd("MGET")
        .arg(&["frozen_second", "frozen_microsecond"]);
    let argv = [
        p.rps.as_str(),
        &p.burst,
        &p.window,
        requested_tokens,
        &p.knobs_ttl,
    ];
    match via {
        Via::Script(sha) => pipe
            .cmd("EVALSHA")
            .arg(sha)
            .arg(0)
            .arg(bucket_key)
            .arg(&argv),
        Via::Command => pipe
            .cmd("THROTTLE.LIMITLION")
            .arg(bucket_key)
            .arg(&knobs_key)
            .arg(&argv)
            .arg(&["CLOCK", "frozen_second", "frozen_microsecond"]),
    };
    pipe.cmd("TIME");
    read(&mut pipe);
    pipe.cmd("EXEC");
    pipe.cmd("TIME");
    let replies: Vec<Value> = pipe.query(con).unwrap();
    // The writes, TIME, MULTI's OK, 17 QUEUED, EXEC's replies, TIME.
    let [before, _, queued @ .., r, after] = replies.get(written..).unwrap_or_default() else {
        panic!("{replies:?}")
    };
    assert_eq!(queued.len(), 17, "{replies:?}");
    let before = time_us(before);
    let before_ms = i64::try_from(before.0 / 1000).unwrap();
    let Value::Array(r) = r else {
        panic!("EXEC: {r:?}")
    };
    assert_eq!(r.len(), 17, "{r:?}");
    let bucket_before = key_state(&r[0], &r[1], &r[2]);
    let knobs_before = key_state(&r[3], &r[4], &r[5]);
    assert_eq!(int(&r[7]), 1, "the test keeps frozen_second");
    let Value::Array(clock) = &r[8] else {
        panic!("MGET: {:?}", r[8])
    };
    let script = &r[9];
    // TIME inside the transaction answers the time EXEC started (Redis 7.2+
    // and Valkey cache it per top-level command), and the module reads the
    // clock itself, later: the bound is a TIME after the transaction.
    let _ = &r[10];
    let after_ms = time_ms(after);
    let bucket_after = key_state(&r[11], &r[12], &r[13]);
    let knobs_after = key_state(&r[14], &r[15], &r[16]);
    let context = format!(
        "bucket {bucket_before:?}, knobs {knobs_before:?}, clock {clock:?}, args {p:?} tokens {requested_tokens:?}: {via:?} replied {script:?}"
    );

    if knobs_before.kind != "hash" && knobs_before.kind != "none" {
        // HMGET fails before anything: the glue answers WRONGTYPE.
        let Value::ServerError(e) = script else {
            panic!("{context}")
        };
        assert!(e.to_string().contains("WRONGTYPE"), "{context}");
        assert_eq!(bucket_after, bucket_before, "{context}");
        assert_eq!(knobs_after, knobs_before, "{context}");
        return None;
    }

    let Value::Array(knob_fields) = &r[6] else {
        panic!("HMGET: {:?}", r[6])
    };

    let knob_fields: Vec<Option<Vec<u8>>> = knob_fields.iter().map(opt_bytes).collect();
    let clock_fields: Vec<Option<Vec<u8>>> = clock.iter().map(opt_bytes).collect();
    let tokens = bucket_before.fields.get(b"tokens".as_slice()).cloned();
    let refreshed = bucket_before.fields.get(b"refreshed".as_slice()).cloned();
    let call = Call {
        knobs: Knobs {
            rps: knob_fields[0].as_deref(),
            burst: knob_fields[1].as_deref(),
            window: knob_fields[2].as_deref(),
        },
        args: Args {
            rps: p.rps.as_bytes(),
            burst: p.burst.as_bytes(),
            window: p.window.as_bytes(),
            requested_tokens: requested_tokens.as_bytes(),
            knobs_ttl: p.knobs_ttl.as_bytes(),
        },
        bucket: if bucket_before.kind == "hash" || bucket_before.kind == "none" {
            Bucket::Hash {
                tokens: tokens.as_deref(),
                refreshed: refreshed.as_deref(),
            }
        } else {
            Bucket::WrongType
        },
        clock: Clock::Keys {
            second: clock_fields[0].as_deref(),
            microsecond: clock_fields[1].as_deref(),
        },
        now: before,
        number_text,
    };
    let out = limitlion::throttle(&call);
    let context = format!("{context}\n  core: {out:?}");

    // The reply.
    match (&out.reply, script) {
        (
            Ok(Reply {
                allowed,
                tokens,
                sleep,
            }),
            Value::Array(items),
        ) => {
            assert_eq!(items.len(), 3, "{context}");
            assert_eq!(int(&items[0]), i64::from(*allowed), "allowed: {context}");
            assert_eq!(int(&items[1]), *tokens, "tokens: {context}");
            assert_eq!(text(&items[2]), sleep.as_bytes(), "sleep: {context}");
        }
        (Err(e), Value::ServerError(server)) => {
            let shown = server.to_string();
            assert!(shown.contains(phrase(*e)), "error: {context}");
            if let Via::Command = via {
                let text = format!("{} {}", server.code(), server.details().unwrap_or_default());
                assert_eq!(text, e.message(), "the command's error text: {context}");
            }
        }
        _ => panic!("reply differs: {context}"),
    }

    // The knobs: never written; their expiry as predicted.
    assert_eq!(knobs_after.fields, knobs_before.fields, "{context}");
    match out.knobs_ttl {
        Some(ttl) => check_expiry("knobs", ttl, &knobs_after, before_ms, after_ms),
        None => assert_eq!(knobs_after, knobs_before, "{context}"),
    }

    // The bucket.
    match &out.bucket {
        None => assert_eq!(bucket_after, bucket_before, "bucket: {context}"),
        Some(BucketWrite {
            tokens,
            refreshed,
            ttl,
        }) => {
            let mut fields = bucket_before.fields.clone();
            fields.insert(b"tokens".to_vec(), tokens.clone().into_bytes());
            fields.insert(b"refreshed".to_vec(), refreshed.clone().into_bytes());
            match ttl {
                Some(Ttl::Delete) => assert_eq!(bucket_after.kind, "none", "{context}"),
                Some(ttl) => {
                    assert_eq!(bucket_after.fields, fields, "bucket: {context}");
                    check_expiry("bucket", *ttl, &bucket_after, before_ms, after_ms);
                }
                None => {
                    assert_eq!(bucket_after.fields, fields, "bucket: {context}");
                    let kept = if bucket_before.kind == "none" {
                        -1
                    } else {
                        bucket_before.expire_at_ms
                    };
                    assert_eq!(bucket_after.expire_at_ms, kept, "{context}");
                }
            }
        }
    }
    Some(out)
}

/// Puts back a well-formed clock, and drops malformed knobs and a bucket
/// of another type.
fn repair(con: &mut Connection, bucket: &str, knobs: &str, frozen: &Frozen) {
    let _: () = redis::cmd("DEL")
        .arg(&[knobs, "frozen_second"])
        .query(con)
        .unwrap();
    let kind: String = redis::cmd("TYPE").arg(bucket).query(con).unwrap();
    if kind != "hash" {
        let _: () = redis::cmd("DEL").arg(bucket).query(con).unwrap();
    }
    let _: () = redis::cmd("MSET")
        .arg("frozen_second")
        .arg(frozen.second)
        .arg("frozen_microsecond")
        .arg(frozen.micro)
        .query(con)
        .unwrap();
}

fn calls_wanted() -> usize {
    std::env::var("LIMITLION_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24_000)
}

/// How the random sequences run their calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Every call through LimitLion's script.
    Script,
    /// Each call through the script or the module's command at random, on
    /// the same keys: a mixed fleet.
    Mixed,
}

#[test]
fn random_calls_match_the_script() {
    let (_server, mut con, number_text) = plain_server();
    random_sequences(&mut con, number_text, Mode::Script);
}

/// THROTTLE.LIMITLION and LimitLion's script on the same keys of one
/// server, each call through either at random, every call checked against
/// the core (which the script matches, above): the module answers and
/// writes exactly as the script, in every state either left.
#[test]
fn module_and_script_on_shared_keys_match_the_core() {
    let server = Server::start();
    let mut con = server.conn();
    let number_text = number_text(&mut con);
    random_sequences(&mut con, number_text, Mode::Mixed);
}

fn random_sequences(con: &mut Connection, number_text: NumberText, mode: Mode) {
    let sha = load(con);
    let mut w = writes();
    let seed = seed();
    let mut rng = Rng(seed);
    let wanted = calls_wanted();
    eprintln!("seed {seed} (LIMITLION_SEED), {wanted} calls (LIMITLION_CALLS), {mode:?}");
    let mut through_command = 0;
    let mut via = |rng: &mut Rng| {
        if mode == Mode::Mixed && rng.chance(50) {
            through_command += 1;
            Via::Command
        } else {
            Via::Script(&sha)
        }
    };
    let (mut calls, mut allowed, mut denied, mut errors) = (0, 0, 0, 0);
    let (mut written, mut fractional, mut special) = (0, 0, 0);
    let mut sequence = 0u64;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    while calls < wanted {
        sequence += 1;
        let bucket = format!("throttle:seq{sequence}");
        let knobs = format!("{bucket}{}", limitlion::KNOBS_SUFFIX);
        let mut p = profile(&mut rng);
        let mut frozen = Frozen {
            second: 1_700_000_000 + rng.below(100_000_000) as i64,
            micro: rng.below(1_000_000) as i64,
        };
        frozen.step(&mut rng, &mut w, 1.0);
        if rng.chance(30) {
            edit_knobs(&mut rng, &mut w, &knobs);
        }
        let length = 20 + rng.below(120);
        for _ in 0..length {
            let window = p.window.trim().parse::<f64>().unwrap_or(1.0);
            if rng.chance(55) {
                frozen.step(&mut rng, &mut w, window);
            }
            if rng.chance(5) {
                edit_knobs(&mut rng, &mut w, &knobs);
            }
            if rng.chance(4) {
                edit_bucket(&mut rng, &mut w, &bucket, &frozen);
            }
            if rng.chance(3) {
                // the callers change their defaults (a deploy, a window change)
                p = profile(&mut rng);
            }
            if rng.chance(1) {
                // a knobs key of another type (cleaned up at once after)
                w.cmd("SET").arg(&knobs).arg("x");
                let v = via(&mut rng);
                one_call(con, &mut w, v, number_text, &bucket, &p, "1");
                w.cmd("DEL").arg(&knobs);
                calls += 1;
                continue;
            }
            let tokens = requested(&mut rng, &p);
            let v = via(&mut rng);
            if let Some(out) = one_call(con, &mut w, v, number_text, &bucket, &p, &tokens) {
                match &out.reply {
                    Ok(r) if r.allowed => allowed += 1,
                    Ok(_) => denied += 1,
                    Err(e) => {
                        errors += 1;
                        *kinds.entry(format!("{e:?}")).or_insert(0) += 1;
                        if rng.chance(60) {
                            // an operator notices and repairs (else it stays broken)
                            repair(con, &bucket, &knobs, &frozen); // (w is empty after a call)
                            p = profile(&mut rng);
                        }
                    }
                }
                if let Some(w) = &out.bucket {
                    written += 1;
                    fractional += usize::from(w.tokens.contains(['.', 'e']));
                    special += usize::from(w.tokens.contains(['n', 'i']));
                }
            }
            calls += 1;
        }
    }
    eprintln!(
        "{calls} calls ({through_command} through THROTTLE.LIMITLION) in {sequence} sequences \
         agree: {allowed} allowed, {denied} denied, {errors} errors ({kinds:?}), {written} bucket \
         writes ({fractional} with fractional tokens, {special} with nan or inf)"
    );
    assert!(calls >= wanted);
    // The generator must exercise each path, or the comparison proves little.
    assert!(
        allowed > wanted / 10 && denied > wanted / 20,
        "{allowed} / {denied}"
    );
    assert!(errors > 50 && errors < wanted / 5, "{errors}");
    assert!(
        fractional > wanted / 50 && special > 10,
        "{fractional} / {special}"
    );
}
