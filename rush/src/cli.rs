//! The command line: flags, and turning them into a checked [`Plan`].

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::classify::{RedisRule, StatusSet};
use crate::run::{Align, KeyOrder, Mode, Plan, Ui};
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
    /// How a reply is classified: auto (THROTTLE/PERMIT by their reply, others: ok), throttle,
    /// permit, ok (non-error is allowed), nonnil (nil is throttled), int<=N (also <, >=, >, ==, !=)
    #[arg(long, default_value = "auto", value_name = "RULE")]
    pub rule: String,
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
    /// Seed for drawing { n } and {run} (default: random)
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

fn positive(name: &str, x: f64) -> Result<f64, String> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(format!("{name} must be a positive number, got {x}"))
    }
}

fn parse_templates(words: &[String]) -> Result<Vec<Template>, String> {
    words
        .iter()
        .map(|w| Template::parse(w).map_err(|e| e.to_string()))
        .collect()
}

/// The THROTTLE arguments `rps burst window [tokens]`, when they are constant numbers.
fn throttle_params(words: &[String]) -> Option<(f64, f64, f64, Option<u64>)> {
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<f64>().ok());
    let (rps, burst, window) = (num(2)?, num(3)?, num(4)?);
    let tokens = words.get(5).and_then(|w| w.parse::<u64>().ok());
    Some((rps, burst, window, tokens))
}

/// Builds the plan from parsed flags; every error is a message for the user.
pub fn plan(cli: &Cli, is_terminal: bool) -> Result<(Plan, Output), String> {
    let c = &cli.common;
    if c.workers == 0 || c.workers > 100_000 {
        return Err(format!("--workers must be 1..=100000, got {}", c.workers));
    }
    let timeout = parse_duration(&c.timeout)?;
    let connect_timeout = parse_duration(&c.connect_timeout)?;
    if timeout.is_zero() || connect_timeout.is_zero() {
        return Err("--timeout and --connect-timeout must be above zero".into());
    }
    let mode = match (&c.duration, c.calls) {
        (Some(_), Some(_)) => {
            return Err(
                "--calls is for burst mode and --duration for sustained mode: give one".into(),
            );
        }
        (Some(d), None) => {
            let duration = parse_duration(d)?;
            if duration.is_zero() {
                return Err("--duration must be above zero".into());
            }
            let rate = c.rate.map(|r| positive("--rate", r)).transpose()?;
            Mode::Sustained { duration, rate }
        }
        (None, calls) => {
            if c.rate.is_some() {
                return Err("--rate needs --duration (sustained mode)".into());
            }
            let calls = calls.unwrap_or(1);
            if calls == 0 || calls > 1_000_000_000 {
                return Err(format!("--calls must be 1..=1000000000, got {calls}"));
            }
            Mode::Burst { calls }
        }
    };
    let keys = KeyRange::parse(&c.keys)?;
    let align = match &c.align_to {
        Some(p) => {
            let period = parse_duration(p)?;
            let lead = parse_duration(&c.align_lead)?;
            if period.is_zero() || lead >= period {
                return Err("--align-to must be above zero and above --align-lead".into());
            }
            Some(Align { period, lead })
        }
        None => None,
    };
    let mut notes = Vec::new();
    let uses_n;
    let mut tokens_from_cmd = None;
    let mut derived: Option<(Limit, bool)> = None;
    let mut is_permit_rule = false;

    let connector = match &cli.target {
        TargetCmd::Redis(r) => {
            let args = parse_templates(&r.command)?;
            uses_n = args.iter().any(Template::uses_n);
            let sample: Vec<String> = args.iter().map(|t| t.render(Vars::default())).collect();
            let name = sample.first().cloned().unwrap_or_default();
            let rule = RedisRule::parse(&r.rule)?.resolve(&name);
            is_permit_rule = rule == RedisRule::Permit;
            let mut response_timeout = timeout;
            if let Some(block) = block_timeout(&sample) {
                // A week bounds any sane block; beyond it Instant arithmetic could overflow.
                let block = block.min(Duration::from_secs(7 * 86400));
                response_timeout = response_timeout.max(block + Duration::from_secs(1));
            }
            let constant = |i: usize| args.get(i).is_some_and(Template::is_constant);
            if name.eq_ignore_ascii_case("THROTTLE") && rule == RedisRule::Throttle {
                if let Some((rps, burst, window, tokens)) = throttle_params(&sample)
                    && (2..=4).all(constant)
                {
                    let capacity = (rps * burst * window).ceil().max(1.0);
                    tokens_from_cmd = tokens;
                    if rps > 0.0 && capacity >= 0.0 {
                        derived = Some((Limit::Bucket { rps, capacity }, false));
                    }
                }
            } else if name.eq_ignore_ascii_case("PERMIT")
                && rule == RedisRule::Permit
                && constant(2)
                && let Some(interval) = sample.get(2).and_then(|w| w.parse::<f64>().ok())
            {
                let blocking = sample
                    .iter()
                    .skip(3)
                    .any(|w| w.eq_ignore_ascii_case("BLOCK"));
                derived = Some((
                    Limit::Pacing {
                        interval_ms: interval,
                    },
                    blocking,
                ));
            }
            let urls = r.urls.clone();
            Connector::Redis(RedisConnector::new(RedisTarget {
                urls,
                cluster: r.cluster,
                args,
                rule,
                response_timeout,
                connect_timeout,
            })?)
        }
        TargetCmd::Http(h) => {
            let url = Template::parse(&h.url).map_err(|e| e.to_string())?;
            let mut headers = Vec::new();
            for raw in &h.headers {
                let (name, value) = raw
                    .split_once(':')
                    .ok_or_else(|| format!("bad header {raw:?}: write \"Name: value\""))?;
                headers.push((
                    name.trim().to_string(),
                    Template::parse(value.trim()).map_err(|e| e.to_string())?,
                ));
            }
            let body = match (&h.body, &h.body_file) {
                (Some(b), _) => Some(Template::parse(b).map_err(|e| e.to_string())?),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read --body-file {path:?}: {e}"))?;
                    Some(Template::parse(&text).map_err(|e| e.to_string())?)
                }
                (None, None) => None,
            };
            uses_n = url.uses_n()
                || headers.iter().any(|(_, v)| v.uses_n())
                || body.as_ref().is_some_and(Template::uses_n);
            Connector::Http(HttpConnector::new(HttpTarget {
                method: h.method.clone(),
                url,
                headers,
                body,
                allowed: StatusSet::parse(&h.allow_status)?,
                throttled: StatusSet::parse(&h.throttled_status)?,
                response_timeout: timeout,
                connect_timeout,
                ca_pem: match &h.cacert {
                    Some(path) => Some(
                        std::fs::read(path)
                            .map_err(|e| format!("cannot read --cacert {path:?}: {e}"))?,
                    ),
                    None => None,
                },
            })?)
        }
    };
    if keys.len() > 1 && !uses_n {
        return Err(format!(
            "--keys {} gives several values of {{n}}, but no template uses {{n}}",
            c.keys
        ));
    }

    let tokens = c.tokens.or(tokens_from_cmd).unwrap_or(1);
    let verify = if c.verify {
        let (limit, blocking) = match (c.limit_rps, c.limit_capacity, c.limit_interval_ms) {
            (Some(rps), Some(capacity), _) => {
                let rps = positive("--limit-rps", rps)?;
                if !(capacity.is_finite() && capacity >= 0.0) {
                    return Err(format!(
                        "--limit-capacity must be a number ≥ 0, got {capacity}"
                    ));
                }
                (Limit::Bucket { rps, capacity }, false)
            }
            (_, _, Some(ms)) => {
                let blocking = derived.is_some_and(|(_, b)| b);
                (
                    Limit::Pacing {
                        interval_ms: positive("--limit-interval-ms", ms)?,
                    },
                    blocking,
                )
            }
            _ => {
                let d = derived.ok_or(
                    "--verify needs the limit under test: give --limit-rps and --limit-capacity \
                     (token bucket) or --limit-interval-ms (permits); they are derived only from \
                     THROTTLE key rps burst window and PERMIT key interval_ms with constant numbers",
                )?;
                notes.push(format!("limit taken from the command's arguments: {}", d.0));
                d
            }
        };
        if let Limit::Pacing { interval_ms } = limit {
            positive("the permit interval", interval_ms)?;
            if !is_permit_rule {
                return Err("checking permits needs PERMIT-shaped replies (valid_at): use PERMIT or --rule permit".into());
            }
        }
        if !(c.resolution_ms.is_finite() && c.resolution_ms >= 0.0) {
            return Err("--resolution-ms must be ≥ 0".into());
        }
        if !(c.clock_tolerance_ms.is_finite() && c.clock_tolerance_ms >= 0.0) {
            return Err("--clock-tolerance-ms must be ≥ 0".into());
        }
        Some(VerifyConfig {
            limit,
            resolution_us: (c.resolution_ms * 1e3).round() as u64,
            clock_tolerance_ms: c.clock_tolerance_ms,
            blocking,
            allow_excess: c.allow_excess,
        })
    } else {
        if c.allow_excess > 0 {
            return Err("--allow-excess needs --verify".into());
        }
        None
    };

    let plan = Plan {
        connector,
        mode,
        workers: c.workers,
        keys,
        key_order: match c.key_order {
            KeyOrderArg::Random => KeyOrder::Random,
            KeyOrderArg::Sequential => KeyOrder::Sequential,
        },
        tokens,
        verify,
        align,
        seed: c.seed.unwrap_or_else(|| fastrand::u64(..)),
        notes,
        per_key: c.per_key,
    };
    let output = Output {
        json: c.json,
        ui: Ui {
            lines: !c.json && !c.quiet,
            progress: !c.json && !c.no_progress && is_terminal,
        },
    };
    Ok((plan, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
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
