//! The rush transcripts in the docs have the shape of what rush prints today.
//!
//! Three documents show rush's output: `rush/README.md`,
//! `docs/prove-your-limits.md` and the "Prove your limits hold" section of
//! `README.md`. In them, a ```` ```text ```` block right after a ```` ```sh ````
//! block is:
//! - a **run transcript** when the `sh` block runs rush as
//!   `cargo run --release -p rush -- ...`: this test runs the block (on a
//!   real redis-server with the module, sustained runs cut to at most 1 s),
//!   and the transcript must have the same lines as the real output once
//!   numbers are blanked and runs of per-second lines are folded into one;
//! - a **fragment** when the `sh` block calls `rush` otherwise (e.g. on a
//!   cluster), or when the block follows a `<!-- rush output -->` line:
//!   every line must be one rush printed in this test (numbers blanked; for
//!   error messages, notes and targets only their frame counts).
//!
//! Any other `text` block must not look like rush output.
//!
//! `RUSH_TRANSCRIPTS=write cargo test --release -p rush --test transcripts`
//! replaces every run transcript with real output (full durations, the URLs
//! put back to `redis://127.0.0.1:6379/` and `http://127.0.0.1:8080`).
//!
//! The `sh` lines understood: `cargo run --release -p rush -- ARGS`,
//! `cargo run --release -p http-api -- FLAGS` (starts the example API),
//! `redis-cli WORDS`, `VAR=$(redis-cli SCRIPT LOAD "$(cat FILE)")`,
//! `redis-cli FUNCTION LOAD REPLACE "$(cat FILE)"`, `echo "exit $?"`,
//! comments; anything else fails the test, so every documented command
//! stays runnable.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The URLs the docs show, and what the test uses instead.
const DOC_REDIS_URL: &str = "redis://127.0.0.1:6379/";
const DOC_API_BASE: &str = "http://127.0.0.1:8080";
/// Sustained runs are cut to this when checking (the shape does not depend on it).
const CHECK_DURATION: &str = "1s";
/// Where a fragment block is marked in the Markdown source.
const FRAGMENT_MARK: &str = "<!-- rush output -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("rush/ is inside the repository")
        .to_path_buf()
}

/// One fenced block of a Markdown file.
#[derive(Clone, Debug)]
struct Block {
    lang: String,
    /// Line index (0-based) of the opening fence.
    open: usize,
    /// Line index of the closing fence.
    close: usize,
    lines: Vec<String>,
}

/// The fenced blocks of `lines[from..to]`.
fn blocks(lines: &[String], from: usize, to: usize) -> Vec<Block> {
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        if let Some(lang) = lines[i].strip_prefix("```") {
            let open = i;
            i += 1;
            while i < to && !lines[i].starts_with("```") {
                i += 1;
            }
            out.push(Block {
                lang: lang.trim().to_string(),
                open,
                close: i,
                lines: lines[open + 1..i.min(to)].to_vec(),
            });
        }
        i += 1;
    }
    out
}

/// The part of a document this test reads: a whole file, or one `## ` section.
struct Doc {
    path: &'static str,
    section: Option<&'static str>,
}

const DOCS: [Doc; 3] = [
    Doc {
        path: "rush/README.md",
        section: None,
    },
    Doc {
        path: "docs/prove-your-limits.md",
        section: None,
    },
    Doc {
        path: "README.md",
        section: Some("## Prove your limits hold"),
    },
];

impl Doc {
    /// The file's lines and the range this test reads.
    fn read(&self) -> (Vec<String>, usize, usize) {
        let text = std::fs::read_to_string(repo_root().join(self.path)).expect("read the doc");
        let lines: Vec<String> = text.lines().map(String::from).collect();
        let Some(title) = self.section else {
            let n = lines.len();
            return (lines, 0, n);
        };
        let from = lines
            .iter()
            .position(|l| l == title)
            .unwrap_or_else(|| panic!("{}: no section {title:?}", self.path));
        let to = lines[from + 1..]
            .iter()
            .position(|l| l.starts_with("## "))
            .map_or(lines.len(), |p| from + 1 + p);
        (lines, from, to)
    }
}

/// How a `text` block is checked.
enum Kind {
    /// Run the `sh` block (its lines) and compare.
    Run(Vec<String>),
    Fragment,
    Other,
}

fn is_rush_run(line: &str) -> bool {
    line.starts_with("cargo run --release -p rush -- ")
}

fn kind(lines: &[String], prev: Option<&Block>, text: &Block) -> Kind {
    let before = lines[..text.open]
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(String::as_str);
    if before == Some(FRAGMENT_MARK) {
        return Kind::Fragment;
    }
    let Some(sh) = prev.filter(|p| p.lang == "sh" && before == Some("```")) else {
        return Kind::Other;
    };
    if sh.lines.iter().any(|l| is_rush_run(l)) {
        Kind::Run(sh.lines.clone())
    } else if sh.lines.iter().any(|l| l.starts_with("rush ")) {
        Kind::Fragment
    } else {
        Kind::Other
    }
}

/// Splits a shell line into words: '...' literal, "..." with `$VAR`, `#` comments.
fn shell_words(line: &str, vars: &HashMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    let expand = |chars: &mut std::iter::Peekable<std::str::Chars>, out: &mut String| {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        out.push_str(
            vars.get(&name)
                .unwrap_or_else(|| panic!("unknown variable ${name} in {line:?}")),
        );
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '#' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let mut w = word.take().unwrap_or_default();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '$' => expand(&mut chars, &mut w),
                        c => w.push(c),
                    }
                }
                word = Some(w);
            }
            '$' => {
                let mut w = word.take().unwrap_or_default();
                expand(&mut chars, &mut w);
                word = Some(w);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Runs documented commands against the test's servers.
struct Runner {
    server: testkit::Server,
    /// The example HTTP API, once a block started it.
    api: Option<String>,
    vars: HashMap<String, String>,
    /// Write mode: full durations.
    write: bool,
    /// Output of each `sh` block already run (the docs repeat some).
    done: HashMap<Vec<String>, String>,
}

impl Runner {
    /// The output of an `sh` block: what rush printed, and `exit N` lines.
    async fn run_block(&mut self, sh: &[String]) -> String {
        if let Some(out) = self.done.get(sh) {
            return out.clone();
        }
        let mut out = String::new();
        let mut status = 0;
        let joined = sh.join("\n").replace("\\\n", " ");
        for line in joined.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == "echo \"exit $?\"" {
                out.push_str(&format!("exit {status}\n"));
            } else if let Some(rest) = line.strip_prefix("cargo run --release -p rush -- ") {
                let (stdout, code) = self.rush(&shell_words(rest, &self.vars)).await;
                out.push_str(&stdout);
                status = code;
            } else if let Some(rest) = line.strip_prefix("cargo run --release -p http-api -- ") {
                self.start_api(&shell_words(rest, &self.vars)).await;
            } else if let Some((var, file)) = script_load(line) {
                let lua = std::fs::read_to_string(repo_root().join(&file)).expect("read script");
                let sha: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(lua)
                    .query(&mut self.server.conn())
                    .expect("SCRIPT LOAD");
                self.vars.insert(var, sha);
            } else if let Some(file) = function_load(line) {
                let lua = std::fs::read_to_string(repo_root().join(&file)).expect("read library");
                let _: String = redis::cmd("FUNCTION")
                    .arg("LOAD")
                    .arg("REPLACE")
                    .arg(lua)
                    .query(&mut self.server.conn())
                    .expect("FUNCTION LOAD");
            } else if let Some(rest) = line.strip_prefix("redis-cli ") {
                let words = shell_words(rest, &self.vars);
                let _: redis::Value = redis::cmd(&words[0])
                    .arg(&words[1..])
                    .query(&mut self.server.conn())
                    .expect("redis-cli line");
            } else {
                panic!(
                    "the transcript test cannot run {line:?}: use a form it knows (see its doc)"
                );
            }
        }
        self.done.insert(sh.to_vec(), out.clone());
        out
    }

    /// Runs the rush binary on the test's servers; returns stdout (with the
    /// docs' URLs) and the exit code.
    async fn rush(&mut self, args: &[String]) -> (String, i32) {
        let url = self.server.url();
        let mut argv: Vec<String> = Vec::new();
        let mut has_url = false;
        for (i, a) in args.iter().enumerate() {
            let mut a = a.replace(DOC_API_BASE, self.api.as_deref().unwrap_or(DOC_API_BASE));
            let prev = i.checked_sub(1).map(|j| args[j].as_str());
            if !self.write && matches!(prev, Some("-d" | "--duration")) {
                a = shorter(&a);
            }
            has_url |= a == "-u" || a == "--url";
            argv.push(a);
        }
        if argv.first().map(String::as_str) == Some("redis") && !has_url {
            argv.splice(1..1, ["-u".to_string(), url.clone()]);
        }
        let bin = env!("CARGO_BIN_EXE_rush");
        let out = tokio::task::spawn_blocking(move || Command::new(bin).args(&argv).output())
            .await
            .expect("join")
            .expect("run rush");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.is_empty(),
            "rush {args:?} wrote to stderr:\n{stderr}"
        );
        let mut stdout = String::from_utf8_lossy(&out.stdout).replace(&url, DOC_REDIS_URL);
        if let Some(api) = &self.api {
            stdout = stdout.replace(api.as_str(), DOC_API_BASE);
        }
        (stdout, out.status.code().unwrap_or(-1))
    }

    /// Starts the example HTTP API with the block's `--rps/--burst/--window`.
    async fn start_api(&mut self, flags: &[String]) {
        let flag = |name: &str, default: f64| {
            flags
                .iter()
                .position(|f| f == name)
                .and_then(|i| flags.get(i + 1))
                .map_or(default, |v| v.parse().expect("a number"))
        };
        let base = common::start_http_api(
            &self.server.url(),
            flag("--rps", 10.0),
            flag("--burst", 1.0),
            flag("--window", 1.0),
        )
        .await;
        self.api = Some(base);
    }
}

/// `VAR=$(redis-cli SCRIPT LOAD "$(cat FILE)")` → (VAR, FILE).
fn script_load(line: &str) -> Option<(String, String)> {
    let (var, rest) = line.split_once("=$(redis-cli SCRIPT LOAD \"$(cat ")?;
    let file = rest.strip_suffix(")\")")?;
    Some((var.to_string(), file.to_string()))
}

/// `redis-cli FUNCTION LOAD REPLACE "$(cat FILE)"` → FILE.
fn function_load(line: &str) -> Option<String> {
    let rest = line.strip_prefix("redis-cli FUNCTION LOAD REPLACE \"$(cat ")?;
    Some(rest.strip_suffix(")\"")?.to_string())
}

/// A duration cut to [`CHECK_DURATION`] when longer.
fn shorter(d: &str) -> String {
    let long = rush::cli::parse_duration(d).expect("a duration");
    let cap = rush::cli::parse_duration(CHECK_DURATION).expect("a duration");
    if long > cap {
        CHECK_DURATION.to_string()
    } else {
        d.to_string()
    }
}

/// A line with every number blanked to `#` and white space folded.
fn blank(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            // An exponent (JSON may print 1e-5).
            if chars.peek() == Some(&'e') {
                let mut look = chars.clone();
                look.next();
                if look.peek() == Some(&'-') {
                    look.next();
                }
                if look.peek().is_some_and(char::is_ascii_digit) {
                    chars = look;
                    while chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                }
            }
            out.push('#');
        } else if c.is_whitespace() {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// A per-second line, blanked.
fn is_interval(shape: &str) -> bool {
    shape.starts_with("#s sent ") && shape.contains(" done ")
}

const INTERVALS: &str = "<per-second lines>";

/// The shape of a transcript: blanked lines, runs of per-second lines folded.
fn shape(text: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text {
        let s = blank(line);
        let s = if is_interval(&s) {
            INTERVALS.to_string()
        } else {
            s
        };
        if s == INTERVALS && out.last().is_some_and(|l| l == INTERVALS) {
            continue;
        }
        out.push(s);
    }
    out
}

/// A blanked line with its free text dropped: error messages, notes, targets.
fn frame(shape: &str) -> String {
    if let Some((count, _)) = shape.split_once(" × ") {
        return format!("{count} × …");
    }
    if let Some(i) = shape.find("note: ") {
        return format!("{}note: …", &shape[..i]);
    }
    if let Some(i) = shape.find(" against ") {
        let tail = if shape.ends_with("(Ctrl-C stops early)") {
            " (Ctrl-C stops early)"
        } else {
            ""
        };
        return format!("{} against …{tail}", &shape[..i]);
    }
    shape.to_string()
}

/// Extra runs whose lines fragments may use: errors with an allowance and
/// the per-key table (with and without errors).
async fn probes(runner: &mut Runner) -> Vec<String> {
    let bare = testkit::Server::builder().without_module().start();
    let mut out = String::new();
    for args in [
        format!(
            "redis -u {} -c 2 -n 2 --keys 1..=2 --key-order sequential --verify --allow-excess 16 \
             --per-key -- THROTTLE p:{{run}}:{{n}} 10 10 1",
            bare.url()
        ),
        "redis -c 2 -n 3 --keys 1..=3 --key-order sequential --verify --per-key -- \
         THROTTLE p:{run}:{n} 1 1 1"
            .to_string(),
    ] {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        out.push_str(&runner.rush(&args).await.0);
    }
    out.lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_have_the_shape_of_real_output() {
    let write = std::env::var("RUSH_TRANSCRIPTS").is_ok_and(|v| v == "write");
    let mut runner = Runner {
        server: testkit::Server::start(),
        api: None,
        vars: HashMap::new(),
        write,
        done: HashMap::new(),
    };
    let mut problems = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // (doc, line, text) of blocks checked once every run is known.
    let mut fragments = Vec::new();
    let mut others = Vec::new();
    let mut runs = 0;
    for doc in &DOCS {
        let (mut lines, from, to) = doc.read();
        let mut rewrites: BTreeMap<usize, (usize, String)> = BTreeMap::new();
        let bs = blocks(&lines, from, to);
        for (i, b) in bs.iter().enumerate() {
            let prev = i.checked_sub(1).map(|j| &bs[j]);
            if b.lang == "sh" {
                // A block that starts the API is run when it is met.
                if b.lines.iter().any(|l| l.contains("-p http-api -- ")) {
                    runner.run_block(&b.lines).await;
                }
                continue;
            }
            if b.lang != "text" {
                continue;
            }
            let at = format!("{}:{}", doc.path, b.open + 1);
            match kind(&lines, prev, b) {
                Kind::Run(sh) => {
                    runs += 1;
                    let real = runner.run_block(&sh).await;
                    let real_lines: Vec<String> = real.lines().map(String::from).collect();
                    seen.extend(real_lines.iter().map(|l| frame(&blank(l))));
                    if write {
                        rewrites.insert(b.open, (b.close, real));
                        continue;
                    }
                    let (want, got) = (shape(&b.lines), shape(&real_lines));
                    if want != got {
                        problems.push(format!(
                            "{at}: the transcript does not have the shape of what rush prints.\n\
                             transcript:\n  {}\nreal:\n  {}\nreal output:\n{real}",
                            want.join("\n  "),
                            got.join("\n  ")
                        ));
                    }
                }
                Kind::Fragment => fragments.push((at, b.lines.clone())),
                Kind::Other => others.push((at, b.lines.clone())),
            }
        }
        if write && !rewrites.is_empty() {
            for (open, (close, real)) in rewrites.into_iter().rev() {
                let new: Vec<String> = real.lines().map(String::from).collect();
                lines.splice(open + 1..close, new);
            }
            let path = repo_root().join(doc.path);
            std::fs::write(&path, lines.join("\n") + "\n").expect("write the doc");
        }
    }
    assert!(
        runs >= 10,
        "only {runs} run transcripts found: did the docs move?"
    );
    seen.extend(probes(&mut runner).await.iter().map(|l| frame(&blank(l))));
    for (at, text) in &fragments {
        for line in text {
            let f = frame(&blank(line));
            if f == "..." || f.is_empty() {
                continue;
            }
            if !seen.contains(&frame(&blank(line))) {
                problems.push(format!(
                    "{at}: no rush output has a line shaped like {line:?}"
                ));
            }
        }
    }
    for (at, text) in &others {
        let looks = text
            .iter()
            .map(|l| frame(&blank(l)))
            .filter(|f| f.len() > 12 && seen.contains(f))
            .count();
        if looks > 0 {
            problems.push(format!(
                "{at}: this text block looks like rush output: put its command in the sh block \
                 before it, or mark it with {FRAGMENT_MARK}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn shapes_blank_numbers_and_fold_per_second_lines() {
    assert_eq!(
        blank("latency: p50 1.207 ms,   max 1e-5 ms (100 calls)"),
        "latency: p# # ms, max # ms (# calls)"
    );
    let t: Vec<String> = [
        "rush: 4 workers for 3.0 s",
        "     1s  sent   500  done   500  allowed 491  throttled 9  errors 0  p50 0.08 ms  p99 15.79 ms",
        "     2s  sent   500  done   500  allowed 399  throttled 101  errors 0  p50 0.09 ms  p99 0.66 ms",
        "   3.0s  sent   500  done   500  allowed 400  throttled 100  errors 0  p50 0.09 ms  p99 0.84 ms",
        "    allowed: 1290",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        shape(&t),
        ["rush: # workers for # s", INTERVALS, "allowed: #"]
    );
    assert_eq!(
        frame(&blank("        134 × CLUSTERDOWN The cluster is down")),
        "# × …"
    );
    assert_eq!(
        frame(&blank(
            "rush: sustained against cluster redis://127.0.0.1:31011 THROTTLE fo:{run}:{n} 10 10 1"
        )),
        "rush: sustained against …"
    );
    let vars = HashMap::from([("SHA".to_string(), "abc".to_string())]);
    assert_eq!(
        shell_words(
            "redis --rule 'int<=10' -- EVALSHA $SHA 1 'fw:{run}' \"x $SHA\" # comment",
            &vars
        ),
        [
            "redis", "--rule", "int<=10", "--", "EVALSHA", "abc", "1", "fw:{run}", "x abc"
        ]
    );
    assert_eq!(
        script_load(r#"SHA=$(redis-cli SCRIPT LOAD "$(cat rush/lua/fixed_window.lua)")"#),
        Some(("SHA".into(), "rush/lua/fixed_window.lua".into()))
    );
    assert_eq!(
        function_load(r#"redis-cli FUNCTION LOAD REPLACE "$(cat rush/lua/zset_semaphore.lua)""#),
        Some("rush/lua/zset_semaphore.lua".into())
    );
    assert_eq!(shorter("5s"), "1s");
    assert_eq!(shorter("400ms"), "400ms");
}
