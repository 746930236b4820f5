//! The command line: flags, and turning them into a checked [`Plan`].

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::classify::{RedisRule, StatusSet};
use crate::lease::{HoldRange, LeasePlan, key_word, lease_args};
use crate::plan::{Align, KeyOrder, Mode, Plan, Ui};
use crate::seed;
use crate::target::Connector;
use crate::target::http::{HttpConnector, HttpTarget};
use crate::target::redis::{RedisConnector, RedisTarget, block_timeout};
use crate::template::{KeyRange, Template, Vars};
use crate::verify::{Limit, VerifyConfig};

const ABOUT: &str = "Rush a Redis command or an HTTP endpoint with many connections, count what was \
allowed and throttled, and prove that a rate limit holds.";

const AFTER: &str = "\
Modes: burst (default): every worker connects, waits at a barrier, then makes --calls calls.
       sustained (--duration): workers call for the duration, as fast as possible or at --rate.
Templates: { n } (drawn from --keys), {worker}, {call}, {run}; {{ and }} are literal braces.
Exit codes: 0 ok, 1 verification failed or inconclusive, 2 bad input, 3 target unreachable,
            130 interrupted (partial report printed).

Examples:
  rush redis -c 100 -- THROTTLE user:{run} 1 10 1
  rush redis -c 20 -d 5s --keys 1..=100 --verify -- THROTTLE 'user:{run}:{ n }' 50 1 1
  rush redis -c 8 -d 3s --verify -- PERMIT job:{run} 100 50 BLOCK 10000
  rush redis -c 200 -d 5s --verify --kill-fraction 0.02 -- LEASE pool:{run} 10 300 BLOCK 5000
  rush http -c 50 -n 4 -H 'X-API-Key: key-{ n }' --keys 1..=10 http://127.0.0.1:8080/";

/// `rush`: the command line.
#[derive(Parser, Debug, Clone)]
#[command(name = "rush", version, about = ABOUT, after_help = AFTER)]
pub struct Cli {
    #[command(subcommand)]
    pub target: TargetCmd,
    #[command(flatten)]
    pub common: Common,
}

/// What to call.
#[derive(Subcommand, Debug, Clone)]
pub enum TargetCmd {
    /// Call a Redis command: rush redis [OPTIONS] -- COMMAND [ARG]...
    Redis(RedisArgs),
    /// Call an HTTP(S) URL: rush http [OPTIONS] URL
    Http(HttpArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RedisArgs {
    /// Redis URL (redis://[user:password@]host:port[/db]); repeat with --cluster for several seed nodes
    #[arg(
        short = 'u',
        long = "url",
        value_name = "URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub urls: Vec<String>,
    /// Treat the URL(s) as seed nodes of a Redis Cluster (calls are routed by key)
    #[arg(long)]
    pub cluster: bool,
    /// How a reply is classified: auto (THROTTLE/PERMIT/LEASE by their reply, others: ok),
    /// throttle, permit, lease, ok (non-error is allowed), nonnil (nil is throttled), int<=N
    /// (also <, >=, >, ==, !=)
    #[arg(long, default_value = "auto", value_name = "RULE")]
    pub rule: String,
    /// Lease scenario (LEASE, or --rule lease): how long each holder keeps its lease, ms: N, or
    /// A..B drawn uniformly [default: 5..50]
    #[arg(long, value_name = "MS")]
    pub hold_ms: Option<String>,
    /// Lease scenario: the share of holders killed while holding (at the end of the hold they
    /// drop their connection without releasing, then reconnect), 0 to 1 [default: 0]
    #[arg(long, value_name = "FRACTION")]
    pub kill_fraction: Option<f64>,
    /// Lease scenario: the release command, sent with `key lease_id` appended [default for
    /// LEASE: LEASE.RELEASE]
    #[arg(long, value_name = "WORDS")]
    pub release_cmd: Option<String>,
    /// Lease scenario: the renewal command, sent with `key lease_id ttl_ms` appended [default
    /// for LEASE: LEASE.RENEW]
    #[arg(long, value_name = "WORDS")]
    pub renew_cmd: Option<String>,
    /// The command and its arguments (templates); put options before it or use --
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// http:// or https:// URL (path and query may use templates)
    #[arg(value_name = "URL")]
    pub url: String,
    /// HTTP method
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// Request header "Name: value" (the value may use templates); repeatable
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Request body (a template)
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the request body (a template) from a file
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<String>,
    /// Statuses counted as allowed: 2xx, 200, 200-204, or a comma list
    #[arg(long, default_value = "2xx", value_name = "SET")]
    pub allow_status: String,
    /// Trust the CA certificate(s) in this PEM file too (for HTTPS with a private CA)
    #[arg(long, value_name = "PATH")]
    pub cacert: Option<String>,
    /// Statuses counted as throttled (any other status is an error)
    #[arg(long, default_value = "429", value_name = "SET")]
    pub throttled_status: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrderArg {
    Random,
    Sequential,
}

/// Options shared by every target.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Number of workers, each with its own connection
    #[arg(
        short = 'c',
        long,
        default_value_t = 10,
        global = true,
        value_name = "N"
    )]
    pub workers: u64,
    /// Burst mode: calls per worker
    #[arg(short = 'n', long, global = true, value_name = "M")]
    pub calls: Option<u64>,
    /// Sustained mode: run for this long (e.g. 10s, 500ms, 2m)
    #[arg(short = 'd', long, global = true, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Sustained mode: target rate in calls per second over all workers (default: as fast as possible)
    #[arg(short = 'r', long, global = true, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Values of { n }: N, A..B (B excluded) or A..=B
    #[arg(long, default_value = "0", global = true, value_name = "RANGE")]
    pub keys: String,
    /// How { n } is drawn from --keys
    #[arg(long, value_enum, default_value = "random", global = true)]
    pub key_order: KeyOrderArg,
    /// Seed for {run} and the random draws of { n }: one seed gives each worker the same keys
    /// again (default: drawn from the OS; the JSON report gives it)
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// Response timeout per call (raised above a WAIT/BLOCK timeout in the command)
    #[arg(long, default_value = "5s", global = true, value_name = "DURATION")]
    pub timeout: String,
    /// Connection timeout
    #[arg(long, default_value = "3s", global = true, value_name = "DURATION")]
    pub connect_timeout: String,
    /// Release the workers just before a multiple of this period on the wall clock (probes fixed windows at their edges)
    #[arg(long, global = true, value_name = "PERIOD")]
    pub align_to: Option<String>,
    /// With --align-to: how long before the edge to release the workers
    #[arg(long, default_value = "50ms", global = true, value_name = "DURATION")]
    pub align_lead: String,
    /// Check the admitted calls against the limit; exit 1 when it does not hold
    #[arg(long, global = true)]
    pub verify: bool,
    /// Token-bucket rate under test, tokens per second (default: from THROTTLE's arguments)
    #[arg(long, global = true, value_name = "RPS", requires = "limit_capacity")]
    pub limit_rps: Option<f64>,
    /// Token-bucket capacity under test (default: ceil(rps*burst*window) from THROTTLE's arguments)
    #[arg(long, global = true, value_name = "TOKENS", requires = "limit_rps")]
    pub limit_capacity: Option<f64>,
    /// Permit interval under test, ms (default: PERMIT's interval argument)
    #[arg(long, global = true, value_name = "MS", conflicts_with_all = ["limit_rps", "limit_capacity"])]
    pub limit_interval_ms: Option<f64>,
    /// Concurrency limit under test, places held at once (default: LEASE's limit argument)
    #[arg(long, global = true, value_name = "N", conflicts_with_all = ["limit_rps", "limit_capacity", "limit_interval_ms"])]
    pub limit_concurrency: Option<u64>,
    /// Tokens each call takes (default: THROTTLE's tokens argument, else 1)
    #[arg(long, global = true)]
    pub tokens: Option<u64>,
    /// Server timestamp resolution allowed as slack in the bucket check, ms
    #[arg(long, default_value_t = 1.0, global = true, value_name = "MS")]
    pub resolution_ms: f64,
    /// Allowed client/server clock difference when checking BLOCK replies against valid_at, ms
    #[arg(long, default_value_t = 2.0, global = true, value_name = "MS")]
    pub clock_tolerance_ms: f64,
    /// Over-admission (tokens, or permits, beyond the bound, summed over keys) that still
    /// passes, e.g. what a failover may lose
    #[arg(long, default_value_t = 0, global = true, value_name = "TOKENS")]
    pub allow_excess: u64,
    /// Report each value of { n } on its own: counts, errors, last allowed call, over-admission
    #[arg(long, global = true)]
    pub per_key: bool,
    /// Print the final report as JSON (and no per-second lines or progress bar)
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar (it is drawn only when stderr is a terminal anyway)
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// No per-second lines in sustained mode
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

/// The text clap prints for `e` (help, version, or a usage error), with
/// `{n}` written as the docs write it.
///
/// clap turns a literal `{n}` in help text into a newline, so the help
/// source writes `{ n }` (templates accept both) and this puts `{n}` back.
pub fn clap_text(e: &clap::Error) -> String {
    e.render().to_string().replace("{ n }", "{n}")
}

/// Parses a duration: `10s`, `1.5s`, `250ms`, `100us`, `2m`, `1h`, or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("bad duration {text:?}: write e.g. 10s, 1.5s, 250ms, 100us, 2m, 1h");
    let x: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" => x,
        "ms" => x / 1e3,
        "us" | "µs" => x / 1e6,
        "m" | "min" => x * 60.0,
        "h" => x * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs > 7.0 * 86400.0 {
        return Err(format!("bad duration {text:?}: too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What `main` needs besides the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    pub json: bool,
    pub ui: Ui,
}

/// Builds the plan from parsed flags; every error is a message for the user.
///
/// The steps, in the order their errors are reported: the run's shape
/// (`check_workers`, `Timeouts::parse`, `mode`, `--keys`, `align`), the
/// target (`redis_target` or `http_target`), `check_keys_used`, then the
/// check (`verify_config`).
pub fn plan(cli: &Cli, is_terminal: bool) -> Result<(Plan, Output), String> {
    let c = &cli.common;
    check_workers(c.workers)?;
    let timeouts = Timeouts::parse(c)?;
    let mode = mode(c)?;
    let keys = KeyRange::parse(&c.keys)?;
    let align = align(c)?;
    let target = match &cli.target {
        TargetCmd::Redis(r) => redis_target(r, timeouts)?,
        TargetCmd::Http(h) => http_target(h, timeouts)?,
    };
    check_keys_used(&c.keys, keys, target.uses_n)?;
    let mut notes = Vec::new();
    let verify = verify_config(c, &target, &mut notes)?;
    if target.lease.is_some() && c.tokens.is_some() {
        return Err(
            "--tokens is for rate limits: a lease takes the places of its COST argument".into(),
        );
    }
    let lease = target.lease.map(|mut l| {
        l.limit = c.limit_concurrency.or(l.limit);
        l
    });
    let plan = Plan {
        connector: target.connector,
        mode,
        workers: c.workers,
        keys,
        key_order: match c.key_order {
            KeyOrderArg::Random => KeyOrder::Random,
            KeyOrderArg::Sequential => KeyOrder::Sequential,
        },
        tokens: c.tokens.or(target.command.tokens).unwrap_or(1),
        verify,
        align,
        seed: c.seed.unwrap_or_else(seed::fresh),
        notes,
        per_key: c.per_key,
        lease,
    };
    Ok((plan, output(c, is_terminal)))
}

fn positive(name: &str, x: f64) -> Result<f64, String> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(format!("{name} must be a positive number, got {x}"))
    }
}

fn non_negative(name: &str, x: f64) -> Result<f64, String> {
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("{name} must be a number ≥ 0, got {x}"))
    }
}

/// `--workers` is 1..=100000.
fn check_workers(workers: u64) -> Result<(), String> {
    if workers == 0 || workers > 100_000 {
        return Err(format!("--workers must be 1..=100000, got {workers}"));
    }
    Ok(())
}

/// `--timeout` and `--connect-timeout`, both above zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timeouts {
    response: Duration,
    connect: Duration,
}

impl Timeouts {
    fn parse(c: &Common) -> Result<Timeouts, String> {
        let response = parse_duration(&c.timeout)?;
        let connect = parse_duration(&c.connect_timeout)?;
        if response.is_zero() || connect.is_zero() {
            return Err("--timeout and --connect-timeout must be above zero".into());
        }
        Ok(Timeouts { response, connect })
    }
}

/// Burst (`--calls`, default 1) or sustained (`--duration`, optionally `--rate`).
fn mode(c: &Common) -> Result<Mode, String> {
    match (&c.duration, c.calls) {
        (Some(_), Some(_)) => {
            Err("--calls is for burst mode and --duration for sustained mode: give one".into())
        }
        (Some(d), None) => {
            let duration = parse_duration(d)?;
            if duration.is_zero() {
                return Err("--duration must be above zero".into());
            }
            let rate = c.rate.map(|r| positive("--rate", r)).transpose()?;
            Ok(Mode::Sustained { duration, rate })
        }
        (None, calls) => {
            if c.rate.is_some() {
                return Err("--rate needs --duration (sustained mode)".into());
            }
            let calls = calls.unwrap_or(1);
            if calls == 0 || calls > 1_000_000_000 {
                return Err(format!("--calls must be 1..=1000000000, got {calls}"));
            }
            Ok(Mode::Burst { calls })
        }
    }
}

/// `--align-to` with `--align-lead`: the lead must be shorter than the period.
fn align(c: &Common) -> Result<Option<Align>, String> {
    let Some(p) = &c.align_to else {
        return Ok(None);
    };
    let period = parse_duration(p)?;
    let lead = parse_duration(&c.align_lead)?;
    if period.is_zero() || lead >= period {
        return Err("--align-to must be above zero and above --align-lead".into());
    }
    Ok(Some(Align { period, lead }))
}

/// A `--keys` range of several values needs `{n}` somewhere, or every call
/// would hit the same key while the report counts several.
fn check_keys_used(text: &str, keys: KeyRange, uses_n: bool) -> Result<(), String> {
    if keys.len() > 1 && !uses_n {
        return Err(format!(
            "--keys {text} gives several values of {{n}}, but no template uses {{n}}"
        ));
    }
    Ok(())
}

/// What the command's own arguments say about the limit under test.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct FromCommand {
    /// `THROTTLE key rps burst window` or `PERMIT key interval_ms` with constant numbers.
    limit: Option<Limit>,
    /// `PERMIT ... BLOCK`: a granted reply must not come before its `valid_at`.
    blocking: bool,
    /// THROTTLE's constant `tokens` argument.
    tokens: Option<u64>,
}

/// A checked target and what the checks after it need.
struct Target {
    connector: Connector,
    /// Some template uses `{n}`.
    uses_n: bool,
    command: FromCommand,
    /// Replies are PERMIT-shaped (`valid_at`), so permits can be checked.
    permit_replies: bool,
    /// The lease scenario, with the limit the command states (if constant).
    lease: Option<LeasePlan>,
}

fn parse_template(text: &str) -> Result<Template, String> {
    Template::parse(text).map_err(|e| e.to_string())
}

/// `rush redis`: the command's templates, its rule, its response timeout.
fn redis_target(r: &RedisArgs, t: Timeouts) -> Result<Target, String> {
    let args = r
        .command
        .iter()
        .map(|w| parse_template(w))
        .collect::<Result<Vec<_>, _>>()?;
    // The words with every placeholder at its default: enough to read the
    // command name, a WAIT/BLOCK timeout and constant numbers.
    let sample: Vec<String> = args.iter().map(|t| t.render(Vars::default())).collect();
    let name = sample.first().cloned().unwrap_or_default();
    let rule = RedisRule::parse(&r.rule)?.resolve(&name);
    let constant: Vec<bool> = args.iter().map(Template::is_constant).collect();
    let command = limit_from_command(rule, &sample, &constant);
    Ok(Target {
        uses_n: args.iter().any(Template::uses_n),
        lease: lease_plan(r, rule, &sample, &constant, &command)?,
        command,
        permit_replies: rule == RedisRule::Permit,
        connector: Connector::Redis(RedisConnector::new(RedisTarget {
            urls: r.urls.clone(),
            cluster: r.cluster,
            args,
            rule,
            response_timeout: response_timeout(t.response, &sample),
            connect_timeout: t.connect,
        })?),
    })
}

/// The lease scenario's plan when the rule is `lease` (its flags are refused otherwise).
fn lease_plan(
    r: &RedisArgs,
    rule: RedisRule,
    sample: &[String],
    constant: &[bool],
    command: &FromCommand,
) -> Result<Option<LeasePlan>, String> {
    if rule != RedisRule::Lease {
        let given = [
            r.hold_ms.is_some(),
            r.kill_fraction.is_some(),
            r.release_cmd.is_some(),
            r.renew_cmd.is_some(),
        ];
        if given.contains(&true) {
            return Err(
                "--hold-ms, --kill-fraction, --release-cmd and --renew-cmd are for the \
                        lease scenario (LEASE, or --rule lease)"
                    .into(),
            );
        }
        return Ok(None);
    }
    let key_word = key_word(sample);
    // Check the shape now; numbers drawn from placeholders are checked per call.
    let shape: Vec<String> = sample
        .iter()
        .zip(constant)
        .map(|(w, c)| if *c { w.clone() } else { "1".to_string() })
        .collect();
    lease_args(&shape, key_word)?;
    let hold = HoldRange::parse(r.hold_ms.as_deref().unwrap_or("5..50"))?;
    let kill_fraction = r.kill_fraction.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&kill_fraction) {
        return Err(format!(
            "--kill-fraction must be a number from 0 to 1, got {kill_fraction}"
        ));
    }
    let is_lease = sample
        .first()
        .is_some_and(|w| w.eq_ignore_ascii_case("LEASE"));
    let words = |flag: &Option<String>, name: &str, default: &str| -> Result<Vec<String>, String> {
        match flag {
            Some(text) => {
                let w: Vec<String> = text.split_whitespace().map(String::from).collect();
                if w.is_empty() {
                    return Err(format!("--{name} is empty"));
                }
                Ok(w)
            }
            None if is_lease => Ok(vec![default.to_string()]),
            None => Err(format!(
                "--rule lease on {:?} needs --release-cmd and --renew-cmd (the commands that \
                 release and renew its leases)",
                sample.first().cloned().unwrap_or_default()
            )),
        }
    };
    Ok(Some(LeasePlan {
        hold,
        kill_fraction,
        release: words(&r.release_cmd, "release-cmd", "LEASE.RELEASE")?,
        renew: words(&r.renew_cmd, "renew-cmd", "LEASE.RENEW")?,
        key_word,
        limit: match command.limit {
            Some(Limit::Concurrency { limit }) => Some(limit),
            _ => None,
        },
    }))
}

/// `--timeout`, raised above a blocking command's `WAIT`/`BLOCK` timeout
/// (plus a second) so that the client never gives up before the server.
fn response_timeout(timeout: Duration, sample: &[String]) -> Duration {
    match block_timeout(sample) {
        // A week bounds any sane block; beyond it Instant arithmetic could overflow.
        Some(block) => {
            timeout.max(block.min(Duration::from_secs(7 * 86400)) + Duration::from_secs(1))
        }
        None => timeout,
    }
}

/// The limit a THROTTLE or PERMIT command states, when its numbers are
/// constant (`constant[i]`: word `i` has no placeholder) and its replies
/// are read by the command's own rule.
fn limit_from_command(rule: RedisRule, words: &[String], constant: &[bool]) -> FromCommand {
    let name = words.first().map(String::as_str).unwrap_or_default();
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<f64>().ok());
    let is_constant = |i: usize| constant.get(i).copied().unwrap_or(false);
    if name.eq_ignore_ascii_case("THROTTLE") && rule == RedisRule::Throttle {
        // THROTTLE key rps burst window [tokens]
        let (Some(rps), Some(burst), Some(window)) = (num(2), num(3), num(4)) else {
            return FromCommand::default();
        };
        if !(2..=4).all(is_constant) {
            return FromCommand::default();
        }
        let capacity = (rps * burst * window).ceil().max(1.0);
        FromCommand {
            limit: (rps > 0.0 && capacity >= 0.0).then_some(Limit::Bucket { rps, capacity }),
            blocking: false,
            tokens: words.get(5).and_then(|w| w.parse::<u64>().ok()),
        }
    } else if rule == RedisRule::Lease {
        // LEASE key limit ttl_ms ... (a script: the same after its first key)
        let at = key_word(words) + 1;
        let limit = words.get(at).and_then(|w| w.parse::<u64>().ok());
        FromCommand {
            limit: limit
                .filter(|l| *l >= 1 && is_constant(at))
                .map(|limit| Limit::Concurrency { limit }),
            blocking: false,
            tokens: None,
        }
    } else if name.eq_ignore_ascii_case("PERMIT") && rule == RedisRule::Permit && is_constant(2) {
        // PERMIT key interval_ms ... [BLOCK ms]
        let Some(interval_ms) = num(2) else {
            return FromCommand::default();
        };
        FromCommand {
            limit: Some(Limit::Pacing { interval_ms }),
            blocking: words
                .iter()
                .skip(3)
                .any(|w| w.eq_ignore_ascii_case("BLOCK")),
            tokens: None,
        }
    } else {
        FromCommand::default()
    }
}

/// `rush http`: URL, headers and body templates, status sets, CA file.
fn http_target(h: &HttpArgs, t: Timeouts) -> Result<Target, String> {
    let url = parse_template(&h.url)?;
    let headers = parse_headers(&h.headers)?;
    let body = match (&h.body, &h.body_file) {
        (Some(b), _) => Some(parse_template(b)?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --body-file {path:?}: {e}"))?;
            Some(parse_template(&text)?)
        }
        (None, None) => None,
    };
    let uses_n = url.uses_n()
        || headers.iter().any(|(_, v)| v.uses_n())
        || body.as_ref().is_some_and(Template::uses_n);
    let ca_pem = match &h.cacert {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("cannot read --cacert {path:?}: {e}"))?)
        }
        None => None,
    };
    Ok(Target {
        uses_n,
        command: FromCommand::default(),
        permit_replies: false,
        lease: None,
        connector: Connector::Http(HttpConnector::new(HttpTarget {
            method: h.method.clone(),
            url,
            headers,
            body,
            allowed: StatusSet::parse(&h.allow_status)?,
            throttled: StatusSet::parse(&h.throttled_status)?,
            response_timeout: t.response,
            connect_timeout: t.connect,
            ca_pem,
        })?),
    })
}

/// `-H 'Name: value'` headers; the value is a template.
fn parse_headers(raw: &[String]) -> Result<Vec<(String, Template)>, String> {
    raw.iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("bad header {h:?}: write \"Name: value\""))?;
            Ok((name.trim().to_string(), parse_template(value.trim())?))
        })
        .collect()
}

/// `--verify`: the limit under test and the check's tolerances; without
/// it, the flags that only make sense with it are refused.
fn verify_config(
    c: &Common,
    target: &Target,
    notes: &mut Vec<String>,
) -> Result<Option<VerifyConfig>, String> {
    if !c.verify {
        if c.allow_excess > 0 {
            return Err("--allow-excess needs --verify".into());
        }
        return Ok(None);
    }
    let (limit, blocking) = limit_under_test(c, &target.command, notes)?;
    match (limit, target.lease.is_some()) {
        (Limit::Concurrency { .. }, false) => {
            return Err(
                "checking a concurrency limit needs the lease scenario: LEASE, or --rule lease"
                    .into(),
            );
        }
        (Limit::Bucket { .. } | Limit::Pacing { .. }, true) => {
            return Err("the lease scenario checks a concurrency limit: give --limit-concurrency N (or nothing: LEASE's limit)".into());
        }
        _ => {}
    }
    if let Limit::Pacing { interval_ms } = limit {
        positive("the permit interval", interval_ms)?;
        if !target.permit_replies {
            return Err("checking permits needs PERMIT-shaped replies (valid_at): use PERMIT or --rule permit".into());
        }
    }
    non_negative("--resolution-ms", c.resolution_ms)?;
    non_negative("--clock-tolerance-ms", c.clock_tolerance_ms)?;
    Ok(Some(VerifyConfig {
        limit,
        resolution_us: (c.resolution_ms * 1e3).round() as u64,
        clock_tolerance_ms: c.clock_tolerance_ms,
        blocking,
        allow_excess: c.allow_excess,
    }))
}

/// The limit to check, and whether granted permits block until `valid_at`:
/// from `--limit-rps`/`--limit-capacity`, else `--limit-interval-ms`, else
/// the command's own arguments (with a note saying so).
fn limit_under_test(
    c: &Common,
    from_cmd: &FromCommand,
    notes: &mut Vec<String>,
) -> Result<(Limit, bool), String> {
    if let Some(limit) = c.limit_concurrency {
        if limit == 0 {
            return Err("--limit-concurrency must be at least 1".into());
        }
        return Ok((Limit::Concurrency { limit }, false));
    }
    match (c.limit_rps, c.limit_capacity, c.limit_interval_ms) {
        (Some(rps), Some(capacity), _) => {
            let rps = positive("--limit-rps", rps)?;
            let capacity = non_negative("--limit-capacity", capacity)?;
            Ok((Limit::Bucket { rps, capacity }, false))
        }
        (_, _, Some(ms)) => {
            let interval_ms = positive("--limit-interval-ms", ms)?;
            Ok((Limit::Pacing { interval_ms }, from_cmd.blocking))
        }
        _ => {
            let limit = from_cmd.limit.ok_or(
                "--verify needs the limit under test: give --limit-rps and --limit-capacity \
                 (token bucket), --limit-interval-ms (permits) or --limit-concurrency (leases); \
                 they are derived only from THROTTLE key rps burst window, PERMIT key \
                 interval_ms and LEASE key limit with constant numbers",
            )?;
            notes.push(format!("limit taken from the command's arguments: {limit}"));
            Ok((limit, from_cmd.blocking))
        }
    }
}

/// JSON or text, per-second lines, progress bar (only on a terminal).
fn output(c: &Common, is_terminal: bool) -> Output {
    Output {
        json: c.json,
        ui: Ui {
            lines: !c.json && !c.quiet,
            progress: !c.json && !c.no_progress && is_terminal,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn help_writes_the_placeholder_as_the_docs_do() {
        for args in [
            &["rush", "--help"][..],
            &["rush", "redis", "--help"],
            &["rush", "-h"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
            let help = clap_text(&e);
            assert!(help.contains("{n}"), "{help}");
            assert!(!help.contains("{ n }"), "{help}");
        }
        let help = clap_text(&Cli::try_parse_from(["rush", "--help"]).unwrap_err());
        assert!(
            help.contains("Values of {n}: N, A..B (B excluded) or A..=B"),
            "{help}"
        );
        assert!(help.contains("THROTTLE 'user:{run}:{n}' 50 1 1"), "{help}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e300").is_err());
    }

    #[test]
    fn derives_the_bucket_from_throttle() {
        let c = cli(&[
            "rush", "redis", "--verify", "--", "THROTTLE", "k:{n}", "10", "2", "1.5", "3",
        ]);
        let (p, _) = plan(&c, false).unwrap();
        let v = p.verify.unwrap();
        assert_eq!(
            v.limit,
            Limit::Bucket {
                rps: 10.0,
                capacity: 30.0
            }
        );
        assert_eq!(p.tokens, 3);
        assert_eq!(p.mode, Mode::Burst { calls: 1 });
    }

    #[test]
    fn derives_pacing_from_permit_block() {
        let c = cli(&[
            "rush", "redis", "-d", "1s", "--verify", "--", "PERMIT", "p", "100", "5", "BLOCK",
            "3000",
        ]);
        let (p, _) = plan(&c, false).unwrap();
        let v = p.verify.unwrap();
        assert_eq!(v.limit, Limit::Pacing { interval_ms: 100.0 });
        assert!(v.blocking);
    }

    #[test]
    fn sensible_errors() {
        let err = |args: &[&str]| plan(&cli(args), false).unwrap_err();
        assert!(
            err(&["rush", "redis", "--", "THROTTLE", "k:{id}", "1", "1", "1"])
                .contains("unknown placeholder")
        );
        assert!(err(&["rush", "redis", "-u", "http://x", "--", "PING"]).contains("bad Redis URL"));
        assert!(
            err(&["rush", "redis", "--keys", "1..=5", "--", "PING"])
                .contains("no template uses {n}")
        );
        assert!(err(&["rush", "redis", "--verify", "--", "INCR", "x"]).contains("--verify needs"));
        assert!(err(&["rush", "redis", "-n", "2", "-d", "1s", "--", "PING"]).contains("give one"));
        assert!(err(&["rush", "redis", "--rate", "5", "--", "PING"]).contains("--rate needs"));
        assert!(
            err(&["rush", "redis", "--rule", "int<<3", "--", "INCR", "x"]).contains("bad rule")
        );
        assert!(err(&["rush", "http", "ftp://example"]).contains("scheme"));
        assert!(err(&["rush", "http", "not a url"]).contains("bad URL"));
        assert!(
            err(&["rush", "http", "-H", "NoColon", "http://127.0.0.1/"]).contains("bad header")
        );
        assert!(
            err(&["rush", "http", "--allow-status", "2yy", "http://127.0.0.1/"])
                .contains("bad status")
        );
        assert!(
            err(&["rush", "http", "-X", "GE T", "http://127.0.0.1/"]).contains("bad HTTP method")
        );
        assert!(err(&["rush", "redis", "-c", "0", "--", "PING"]).contains("--workers"));
        assert!(
            err(&["rush", "redis", "--timeout", "soon", "--", "PING"]).contains("bad duration")
        );
        assert!(
            err(&[
                "rush",
                "redis",
                "--verify",
                "--limit-interval-ms",
                "5",
                "--",
                "INCR",
                "x"
            ])
            .contains("PERMIT-shaped")
        );
        assert!(
            err(&["rush", "redis", "--allow-excess", "3", "--", "PING"]).contains("needs --verify")
        );
    }

    #[test]
    fn allow_excess_and_per_key() {
        let c = cli(&[
            "rush",
            "redis",
            "--verify",
            "--allow-excess",
            "7",
            "--per-key",
            "--",
            "THROTTLE",
            "k",
            "1",
            "1",
            "1",
        ]);
        let (p, _) = plan(&c, false).unwrap();
        assert_eq!(p.verify.unwrap().allow_excess, 7);
        assert!(p.per_key);
        let c = cli(&["rush", "redis", "--", "PING"]);
        assert!(!plan(&c, false).unwrap().0.per_key);
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    fn common(args: &[&str]) -> Common {
        let mut all = vec!["rush", "redis"];
        all.extend_from_slice(args);
        all.extend(["--", "PING"]);
        cli(&all).common
    }

    #[test]
    fn the_command_states_its_limit_only_with_constant_numbers() {
        let all = [true; 8];
        let from =
            |rule, w: &[&str], constant: &[bool]| limit_from_command(rule, &words(w), constant);
        let t = from(
            RedisRule::Throttle,
            &["throttle", "k", "10", "2", "1.5", "3"],
            &all,
        );
        assert_eq!(
            t,
            FromCommand {
                limit: Some(Limit::Bucket {
                    rps: 10.0,
                    capacity: 30.0
                }),
                blocking: false,
                tokens: Some(3)
            }
        );
        // A tiny bucket still holds one token.
        let t = from(
            RedisRule::Throttle,
            &["THROTTLE", "k", "0.1", "1", "1"],
            &all,
        );
        assert_eq!(
            t.limit,
            Some(Limit::Bucket {
                rps: 0.1,
                capacity: 1.0
            })
        );
        // rps drawn from a placeholder: nothing is derived.
        let templated = [true, false, false, true, true, true];
        let t = from(
            RedisRule::Throttle,
            &["THROTTLE", "k", "0", "2", "1", "4"],
            &templated,
        );
        assert_eq!(t, FromCommand::default());
        // A zero rate is no bucket, but the tokens still count.
        let t = from(
            RedisRule::Throttle,
            &["THROTTLE", "k", "0", "2", "1", "4"],
            &all,
        );
        assert_eq!((t.limit, t.tokens), (None, Some(4)));
        // Read with another rule, THROTTLE states nothing.
        let t = from(RedisRule::Ok, &["THROTTLE", "k", "1", "2", "1"], &all);
        assert_eq!(t, FromCommand::default());
        let p = from(
            RedisRule::Permit,
            &["PERMIT", "k", "100", "5", "block", "3000"],
            &all,
        );
        assert_eq!(p.limit, Some(Limit::Pacing { interval_ms: 100.0 }));
        assert!(p.blocking);
        let p = from(RedisRule::Permit, &["PERMIT", "k", "100", "5"], &all);
        assert!(!p.blocking && p.limit.is_some());
        let p = from(RedisRule::Permit, &["PERMIT", "k", "soon"], &all);
        assert_eq!(p, FromCommand::default());
        let p = from(RedisRule::Permit, &["INCR", "k", "100"], &all);
        assert_eq!(p, FromCommand::default());
    }

    #[test]
    fn lease_runs_the_lease_scenario_and_states_its_limit() {
        let c = cli(&[
            "rush",
            "redis",
            "-c",
            "20",
            "-d",
            "1s",
            "--verify",
            "--kill-fraction",
            "0.05",
            "--",
            "LEASE",
            "pool:{n}",
            "10",
            "2000",
            "BLOCK",
            "5000",
        ]);
        let (p, _) = plan(&c, false).unwrap();
        assert_eq!(p.verify.unwrap().limit, Limit::Concurrency { limit: 10 });
        let l = p.lease.unwrap();
        assert_eq!(l.hold, HoldRange::parse("5..50").unwrap());
        assert_eq!((l.kill_fraction, l.key_word, l.limit), (0.05, 1, Some(10)));
        assert_eq!(
            (l.release, l.renew),
            (
                vec!["LEASE.RELEASE".to_string()],
                vec!["LEASE.RENEW".to_string()]
            )
        );
        assert_eq!(
            p.notes,
            ["limit taken from the command's arguments: concurrency: at most 10 at once"]
        );
        // --limit-concurrency names another limit, for the check and the recovery.
        let c = cli(&[
            "rush",
            "redis",
            "--verify",
            "--limit-concurrency",
            "4",
            "--hold-ms",
            "1..2",
            "--",
            "LEASE",
            "k",
            "10",
            "100",
        ]);
        let (p, _) = plan(&c, false).unwrap();
        assert_eq!(p.verify.unwrap().limit, Limit::Concurrency { limit: 4 });
        assert_eq!(p.lease.unwrap().limit, Some(4));
        // Without --verify, the scenario still runs (and knows the limit).
        let c = cli(&["rush", "redis", "--", "lease", "k", "3", "100"]);
        assert_eq!(plan(&c, false).unwrap().0.lease.unwrap().limit, Some(3));
    }

    #[test]
    fn a_script_can_act_as_lease() {
        let c = cli(&[
            "rush",
            "redis",
            "--rule",
            "lease",
            "--verify",
            "--release-cmd",
            "FCALL zsem_release 1",
            "--renew-cmd",
            "FCALL zsem_renew 1",
            "--",
            "FCALL",
            "zsem_acquire",
            "1",
            "k",
            "5",
            "100",
        ]);
        let (p, _) = plan(&c, false).unwrap();
        let l = p.lease.unwrap();
        assert_eq!((l.key_word, l.limit), (3, Some(5)));
        assert_eq!(l.release, ["FCALL", "zsem_release", "1"]);
        assert_eq!(p.verify.unwrap().limit, Limit::Concurrency { limit: 5 });
    }

    #[test]
    fn lease_flags_and_their_errors() {
        let err = |args: &[&str]| plan(&cli(args), false).unwrap_err();
        let e = err(&["rush", "redis", "--kill-fraction", "0.1", "--", "PING"]);
        assert!(e.contains("are for the lease scenario"), "{e}");
        let e = err(&[
            "rush",
            "redis",
            "--hold-ms",
            "5",
            "--",
            "THROTTLE",
            "k",
            "1",
            "1",
            "1",
        ]);
        assert!(e.contains("are for the lease scenario"), "{e}");
        let e = err(&[
            "rush",
            "redis",
            "--kill-fraction",
            "1.5",
            "--",
            "LEASE",
            "k",
            "1",
            "10",
        ]);
        assert!(
            e.contains("--kill-fraction must be a number from 0 to 1"),
            "{e}"
        );
        let e = err(&[
            "rush",
            "redis",
            "--hold-ms",
            "9..1",
            "--",
            "LEASE",
            "k",
            "1",
            "10",
        ]);
        assert!(e.contains("bad --hold-ms"), "{e}");
        let e = err(&["rush", "redis", "--", "LEASE", "k", "1"]);
        assert!(e.contains("no ttl_ms"), "{e}");
        let e = err(&[
            "rush", "redis", "--rule", "lease", "--", "FCALL", "f", "1", "k", "1", "10",
        ]);
        assert!(e.contains("needs --release-cmd and --renew-cmd"), "{e}");
        let e = err(&[
            "rush", "redis", "--tokens", "2", "--", "LEASE", "k", "1", "10",
        ]);
        assert!(e.contains("COST"), "{e}");
        let e = err(&[
            "rush",
            "redis",
            "--verify",
            "--limit-concurrency",
            "3",
            "--",
            "INCR",
            "x",
        ]);
        assert!(e.contains("needs the lease scenario"), "{e}");
        let e = err(&[
            "rush",
            "redis",
            "--verify",
            "--limit-rps",
            "3",
            "--limit-capacity",
            "3",
            "--",
            "LEASE",
            "k",
            "1",
            "10",
        ]);
        assert!(e.contains("--limit-concurrency"), "{e}");
        let e = err(&[
            "rush", "redis", "--verify", "--", "LEASE", "k:{n}", "{n}", "10",
        ]);
        assert!(e.contains("--verify needs the limit under test"), "{e}");
        let e = err(&[
            "rush",
            "redis",
            "--verify",
            "--limit-concurrency",
            "0",
            "--",
            "LEASE",
            "k",
            "1",
            "10",
        ]);
        assert!(e.contains("at least 1"), "{e}");
    }

    #[test]
    fn response_timeout_outlives_the_block() {
        let five = Duration::from_secs(5);
        let t = |w: &[&str]| response_timeout(five, &words(w));
        assert_eq!(t(&["GET", "k"]), five);
        assert_eq!(
            t(&["PERMIT", "k", "100", "5", "BLOCK", "8000"]),
            Duration::from_secs(9)
        );
        assert_eq!(t(&["THROTTLE", "k", "1", "1", "1", "WAIT", "100"]), five);
        assert_eq!(
            t(&["LEASE", "k", "10", "100", "BLOCK", "8000"]),
            Duration::from_secs(9)
        );
        // BLOCK 0 waits up to 366 days: the longest response timeout.
        assert_eq!(
            t(&["LEASE", "k", "10", "100", "BLOCK", "0"]),
            Duration::from_secs(7 * 86400 + 1)
        );
        assert_eq!(
            t(&["PERMIT", "k", "1", "1", "BLOCK", "99999999999999"]),
            Duration::from_secs(7 * 86400 + 1)
        );
    }

    #[test]
    fn modes_and_their_errors() {
        assert_eq!(mode(&common(&[])), Ok(Mode::Burst { calls: 1 }));
        assert_eq!(mode(&common(&["-n", "7"])), Ok(Mode::Burst { calls: 7 }));
        assert_eq!(
            mode(&common(&["-d", "2s", "-r", "50"])),
            Ok(Mode::Sustained {
                duration: Duration::from_secs(2),
                rate: Some(50.0)
            })
        );
        let err = |a: &[&str]| mode(&common(a)).unwrap_err();
        assert!(err(&["-n", "0"]).contains("--calls must be"));
        assert!(err(&["-d", "0s"]).contains("--duration must be above zero"));
        assert!(err(&["-d", "1s", "-r", "0"]).contains("--rate must be a positive"));
        assert!(err(&["-r", "5"]).contains("--rate needs --duration"));
    }

    #[test]
    fn alignment_and_timeouts() {
        assert_eq!(align(&common(&[])), Ok(None));
        assert_eq!(
            align(&common(&["--align-to", "1s"])),
            Ok(Some(Align {
                period: Duration::from_secs(1),
                lead: Duration::from_millis(50)
            }))
        );
        assert!(align(&common(&["--align-to", "40ms"])).is_err());
        assert!(Timeouts::parse(&common(&["--timeout", "0s"])).is_err());
        assert_eq!(
            Timeouts::parse(&common(&["--connect-timeout", "250ms"])),
            Ok(Timeouts {
                response: Duration::from_secs(5),
                connect: Duration::from_millis(250)
            })
        );
        assert!(check_workers(1).is_ok() && check_workers(100_000).is_ok());
        assert!(check_workers(100_001).is_err());
    }

    #[test]
    fn several_keys_need_a_template_that_uses_them() {
        let one = KeyRange::parse("3").unwrap();
        let five = KeyRange::parse("1..=5").unwrap();
        assert!(check_keys_used("3", one, false).is_ok());
        assert!(check_keys_used("1..=5", five, true).is_ok());
        let e = check_keys_used("1..=5", five, false).unwrap_err();
        assert!(e.contains("--keys 1..=5") && e.contains("{n}"), "{e}");
    }

    #[test]
    fn flags_name_the_limit_before_the_command_does() {
        let permit_block = FromCommand {
            limit: Some(Limit::Pacing { interval_ms: 100.0 }),
            blocking: true,
            tokens: None,
        };
        let mut notes = Vec::new();
        let c = common(&["--verify", "--limit-rps", "2", "--limit-capacity", "0"]);
        assert_eq!(
            limit_under_test(&c, &permit_block, &mut notes),
            Ok((
                Limit::Bucket {
                    rps: 2.0,
                    capacity: 0.0
                },
                false
            ))
        );
        // Another interval on a blocking PERMIT: the replies still block.
        let c = common(&["--verify", "--limit-interval-ms", "250"]);
        assert_eq!(
            limit_under_test(&c, &permit_block, &mut notes),
            Ok((Limit::Pacing { interval_ms: 250.0 }, true))
        );
        assert!(notes.is_empty());
        let c = common(&["--verify"]);
        assert_eq!(
            limit_under_test(&c, &permit_block, &mut notes),
            Ok((Limit::Pacing { interval_ms: 100.0 }, true))
        );
        assert_eq!(
            notes,
            ["limit taken from the command's arguments: permits: one per 100 ms"]
        );
        let e = limit_under_test(&c, &FromCommand::default(), &mut notes).unwrap_err();
        assert!(e.contains("--verify needs the limit under test"), "{e}");
        let c = common(&["--verify", "--limit-rps", "1", "--limit-capacity", "-1"]);
        let e = limit_under_test(&c, &permit_block, &mut notes).unwrap_err();
        assert!(e.contains("--limit-capacity must be a number ≥ 0"), "{e}");
    }

    #[test]
    fn output_follows_json_quiet_and_the_terminal() {
        let ui = |a: &[&str], tty| output(&common(a), tty);
        assert_eq!(
            ui(&[], true),
            Output {
                json: false,
                ui: Ui {
                    lines: true,
                    progress: true
                }
            }
        );
        assert!(!ui(&[], false).ui.progress);
        assert_eq!(
            ui(&["--json"], true),
            Output {
                json: true,
                ui: Ui::default()
            }
        );
        assert!(!ui(&["-q"], true).ui.lines);
        assert!(!ui(&["--no-progress"], true).ui.progress);
    }

    #[test]
    fn blocking_calls_get_a_longer_response_timeout() {
        let sample: Vec<String> = ["PERMIT", "k", "100", "5", "BLOCK", "8000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(block_timeout(&sample), Some(Duration::from_secs(8)));
        let sample: Vec<String> = ["THROTTLE", "k", "1", "1", "1", "WAIT", "700"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(block_timeout(&sample), Some(Duration::from_millis(700)));
    }
}
