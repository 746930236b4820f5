//! The docs against live servers: README.md and every `docs/*.md` are read
//! at run time, and their tables, error texts and replies compared with
//! what the server registers, prints and answers. A change to either side
//! that the other does not follow fails here, whichever page it is on.
//!
//! - every command table (`| command | arity | flags | keys |`, in
//!   docs/commands.md) equals `COMMAND LIST FILTERBY MODULE throttle` and
//!   `COMMAND INFO`, and its page has a heading per command;
//! - README's table of one example per command names every command, and
//!   each example, run in order on the test clock, gets the reply shown;
//! - every `ERR …` / `WRONGTYPE …` text on any page is what some call in
//!   [`error_calls`] gets (or a server error another suite checks), and
//!   every error those calls get is in the command reference;
//! - every config table equals `CONFIG GET throttle.*` (names, defaults on
//!   a fresh server, ranges, mutability);
//! - every INFO table equals the fields `INFO throttle` prints, section by
//!   section;
//! - the reply examples and THROTTLE.GET's fields are what the server
//!   answers.
//!
//! `tests/docs.rs` checks the links between the pages.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use redis::{Connection, Value};
use testkit::ServerVersion;

// ---- the pages -------------------------------------------------------------

/// One Markdown page: its path from the repository root, and its text.
#[derive(Clone)]
struct Page {
    name: String,
    text: String,
}

/// README.md, then every `docs/*.md` in name order.
fn pages() -> Vec<Page> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("a docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|name| {
            let path = root.join(&name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Page { name, text }
        })
        .collect()
}

fn readme() -> Page {
    pages()
        .into_iter()
        .find(|p| p.name == "README.md")
        .expect("README.md")
}

/// Every page's text with every run of white space as one space (for
/// phrases that a line break may split).
fn all_flat() -> String {
    pages()
        .iter()
        .map(|p| flat(&p.text))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text with its fenced code blocks left out (their lines blank).
fn prose(text: &str) -> String {
    let mut fenced = false;
    text.lines()
        .map(|l| {
            let fence = l.trim_start().starts_with("```");
            let keep = !fenced && !fence;
            if fence {
                fenced = !fenced;
            }
            if keep { l } else { "" }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rows of every table whose header row starts with `| <columns> |`
/// (its first columns, e.g. `field | type`), as trimmed cells (the header
/// and separator rows left out), one list of rows per table.
fn tables(text: &str, columns: &str) -> Vec<Vec<Vec<String>>> {
    let head = format!("| {columns} |");
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(&head) {
            continue;
        }
        let rows = lines[i + 1..]
            .iter()
            .skip(1)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                l.trim()
                    .trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect();
        found.push(rows);
    }
    found
}

/// Every table of every page whose header starts with `| <columns> |`, as
/// (page, rows); fails if no page has one.
fn tables_in_pages(columns: &str) -> Vec<(Page, Vec<Vec<String>>)> {
    let mut found = Vec::new();
    for page in pages() {
        for rows in tables(&page.text, columns) {
            found.push((page.clone(), rows));
        }
    }
    assert!(
        !found.is_empty(),
        "no page has a table starting with | {columns} |"
    );
    found
}

/// A cell's text without its backticks.
fn plain(cell: &str) -> String {
    cell.replace('`', "")
}

/// Every inline code span (a run of backticks up to the next run of as
/// many), its white space (line breaks and indents included) read as one
/// space, as Markdown renders it.
fn code_spans(text: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        let ticks = rest[open..].len() - rest[open..].trim_start_matches('`').len();
        let fence = "`".repeat(ticks);
        let after = &rest[open + ticks..];
        // The closing run: exactly as many backticks.
        let mut from = 0;
        let close = loop {
            let Some(at) = after[from..].find(&fence).map(|a| from + a) else {
                break None;
            };
            let run = after[at..].len() - after[at..].trim_start_matches('`').len();
            if run == ticks {
                break Some(at);
            }
            from = at + run;
        };
        let Some(close) = close else { break };
        spans.push(flat(&after[..close]));
        rest = &after[close + ticks..];
    }
    spans
}

/// The text with every run of white space as one space.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Fails with what only the docs have and what only the server has.
fn assert_same<T: Ord + std::fmt::Debug>(docs: &BTreeSet<T>, server: &BTreeSet<T>, what: &str) {
    assert_same_as(docs, server, ["the docs", "the server"], what);
}

/// Fails with what only `a` has and what only `b` has (`names` names them).
fn assert_same_as<T: Ord + std::fmt::Debug>(
    a: &BTreeSet<T>,
    b: &BTreeSet<T>,
    names: [&str; 2],
    what: &str,
) {
    let only_a: Vec<&T> = a.difference(b).collect();
    let only_b: Vec<&T> = b.difference(a).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "{what}: only in {}: {only_a:?}; only in {}: {only_b:?}",
        names[0],
        names[1]
    );
}

// ---- calls -----------------------------------------------------------------

/// Sends `args` (binary safe) and returns the reply, or the error text.
fn call(con: &mut Connection, args: &[Vec<u8>]) -> Result<Value, String> {
    let mut cmd = redis::cmd(std::str::from_utf8(&args[0]).expect("a command name"));
    for a in &args[1..] {
        cmd.arg(a.as_slice());
    }
    cmd.query::<Value>(con).map_err(|e| error_text(&e))
}

fn strs(args: &[&str]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_bytes().to_vec()).collect()
}

fn ok(con: &mut Connection, args: &[&str]) -> Value {
    call(con, &strs(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A reply as README writes it: `[1, 79, 0, 200, 80]`, nested arrays too.
fn shown(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(shown).collect();
            format!("[{}]", items.join(", "))
        }
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::Nil => "nil".into(),
        other => format!("{other:?}"),
    }
}

// ---- the command table -----------------------------------------------------

/// COMMAND INFO of one command as its fields: name, arity, flags, first
/// key, last key, step, ACL categories, …
fn command_info(c: &mut Connection, name: &str) -> Vec<Value> {
    match ok(c, &["COMMAND", "INFO", name]) {
        Value::Array(outer) => match outer.into_iter().next() {
            Some(Value::Array(info)) => info,
            other => panic!("no COMMAND INFO for {name}: {other:?}"),
        },
        other => panic!("COMMAND INFO {name}: {other:?}"),
    }
}

fn string_set(v: &Value) -> BTreeSet<String> {
    redis::from_redis_value::<Vec<String>>(v.clone())
        .unwrap_or_else(|e| panic!("a list of strings: {v:?}: {e}"))
        .into_iter()
        .collect()
}

fn words(cell: &str) -> BTreeSet<String> {
    plain(cell).split_whitespace().map(str::to_string).collect()
}

/// The module's commands, lower case (`THROTTLE.FAULT`, in test builds
/// only, left out).
fn registered(c: &mut Connection) -> BTreeSet<String> {
    string_set(&ok(
        c,
        &["COMMAND", "LIST", "FILTERBY", "MODULE", "throttle"],
    ))
    .into_iter()
    .map(|n| n.to_lowercase())
    .filter(|n| n != "throttle.fault")
    .collect()
}

/// The headings of a page (any level, outside code blocks) whose first
/// word is a command name in capitals, as that name in lower case.
fn command_headings(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').strip_prefix(' '))
        .filter_map(|h| h.split_whitespace().next())
        .filter(|w| w.chars().all(|ch| ch.is_ascii_uppercase() || ch == '.'))
        .map(str::to_lowercase)
        .collect()
}

#[test]
fn the_command_table_is_what_the_server_registers() {
    let s = Server::start();
    let mut c = s.conn();
    let version = ServerVersion::of(&mut c);
    let registered = registered(&mut c);

    for (page, rows) in tables_in_pages("command | arity | flags | keys") {
        let at = &page.name;
        let documented: BTreeSet<String> =
            rows.iter().map(|r| plain(&r[0]).to_lowercase()).collect();
        assert_eq!(
            documented.len(),
            rows.len(),
            "{at}: a command twice in the table"
        );
        assert_same(
            &documented,
            &registered,
            &format!("{at}: the command table vs COMMAND LIST FILTERBY MODULE throttle"),
        );

        // Each command has its own `## NAME …` heading on the table's page,
        // and each such heading names a command of the table.
        assert_same_as(
            &command_headings(&page.text),
            &documented,
            ["the headings", "the table"],
            &format!("{at}: the command headings vs the command table"),
        );

        for r in &rows {
            let name = plain(&r[0]).to_lowercase();
            let info = command_info(&mut c, &name);
            let arity: i64 = r[1]
                .parse()
                .unwrap_or_else(|_| panic!("{at}: {name}: arity {}", r[1]));
            assert_eq!(info[1], Value::Int(arity), "{at}: {name}: arity");
            // COMMAND INFO spells deny-oom as denyoom and adds `module`.
            let flags: BTreeSet<String> = words(&r[2])
                .into_iter()
                .map(|f| f.replace("deny-oom", "denyoom"))
                .collect();
            let mut server_flags = string_set(&info[2]);
            server_flags.remove("module");
            assert_eq!(server_flags, flags, "{at}: {name}: flags");
            let keys: Vec<i64> = match r[3].as_str() {
                "none" => vec![0, 0, 0],
                // "1 2 1, and the two after `CLOCK`": the legacy triple first.
                k => k
                    .split(',')
                    .next()
                    .unwrap_or(k)
                    .split_whitespace()
                    .map(|n| n.parse().unwrap())
                    .collect(),
            };
            let server_keys: Vec<i64> = info[3..6]
                .iter()
                .map(|v| redis::from_redis_value(v.clone()).unwrap())
                .collect();
            assert_eq!(server_keys, keys, "{at}: {name}: first, last, step");
            let mut cats = words(&r[4]);
            if !version.has_command_acl_categories() {
                cats.clear(); // Redis 7.0: module commands have no category
            } else if version.has_module_acl_categories() {
                cats.insert("@throttle".into());
            }
            assert_eq!(string_set(&info[6]), cats, "{at}: {name}: ACL categories");
        }
    }
}

// ---- one example per command -----------------------------------------------

/// README's `| command | example | reply |` table: it names every command,
/// and its examples, run in order on a new server whose test clock is frozen
/// where the README says (`THROTTLE.CLOCK FREEZE <unix_us>`), get the
/// replies shown (an array as `[1, 79, 0, 200, 80]`, an error as its text).
#[test]
fn readme_has_one_example_per_command_with_its_reply() {
    let readme = readme();
    let found = tables(&readme.text, "command | example | reply");
    assert_eq!(found.len(), 1, "README.md: one table of examples");
    let rows = &found[0];
    let freeze: Vec<String> = code_spans(&readme.text)
        .into_iter()
        .filter(|s| s.starts_with("THROTTLE.CLOCK FREEZE "))
        .collect();
    let [freeze] = freeze.as_slice() else {
        panic!(
            "README.md names the frozen time once as `THROTTLE.CLOCK FREEZE <unix_us>`: {freeze:?}"
        )
    };

    let mut s = Server::builder().module_args(["test-clock", "yes"]).start();
    let mut c = s.conn();
    let documented: BTreeSet<String> = rows.iter().map(|r| plain(&r[0]).to_lowercase()).collect();
    assert_same(
        &documented,
        &registered(&mut c),
        "README.md's examples vs COMMAND LIST FILTERBY MODULE throttle",
    );
    let freeze: Vec<&str> = freeze.split(' ').collect();
    assert_eq!(ok(&mut c, &freeze), Value::Okay);

    let mut wrong = Vec::new();
    for r in rows {
        let (command, example, want) = (plain(&r[0]), plain(&r[1]), plain(&r[2]));
        let args: Vec<&str> = example.split_whitespace().collect();
        assert!(
            args[0].eq_ignore_ascii_case(&command),
            "README.md: the example {example:?} is not a call of {command}"
        );
        let got = match call(&mut c, &strs(&args)) {
            Ok(v) => shown(&v),
            Err(e) => e,
        };
        if got != want {
            wrong.push(format!(
                "{example}: the server answers {got}, README.md shows {want}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_healthy(&mut s);
}

// ---- errors ----------------------------------------------------------------

/// Which server a call runs on: the default one, or one loaded with
/// `test-clock yes` on which `throttle.apply-from-clients` is `yes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum On {
    Plain,
    Clock,
}

/// A call and the error it must get.
struct ErrCall {
    want: &'static str,
    on: On,
    args: Vec<Vec<u8>>,
}

fn err(want: &'static str, args: &[&str]) -> ErrCall {
    ErrCall {
        want,
        on: On::Plain,
        args: strs(args),
    }
}

fn err_on_clock(want: &'static str, args: Vec<Vec<u8>>) -> ErrCall {
    ErrCall {
        want,
        on: On::Clock,
        args,
    }
}

/// A v2 PERMIT payload (see core/src/codec.rs).
fn permit_payload(last_valid_at_us: u64, stamp_us: u64) -> Vec<u8> {
    let mut p = vec![2, b'P'];
    p.extend_from_slice(&last_valid_at_us.to_le_bytes());
    p.extend_from_slice(&stamp_us.to_le_bytes());
    p
}

fn apply(payload: Vec<u8>) -> Vec<Vec<u8>> {
    vec![b"THROTTLE.APPLY".to_vec(), b"k".to_vec(), payload]
}

/// Every documented error and calls that get it. On the plain server,
/// `bucket` is a THROTTLE key, `permit` a PERMIT key, `str` a string and
/// `cellnum` a string too large to be redis-cell's state.
#[rustfmt::skip]
fn error_calls() -> Vec<ErrCall> {
    let mut v = vec![
        // Arity, as Redis checks it and as the module checks it.
        err("ERR wrong number of arguments for 'throttle' command", &["THROTTLE"]),
        err("ERR wrong number of arguments for 'throttle.peek' command", &["THROTTLE.PEEK"]),
        err("ERR wrong number of arguments for 'permit' command", &["PERMIT"]),
        err("ERR wrong number of arguments for 'permit.set' command", &["PERMIT.SET"]),
        err("ERR wrong number of arguments for 'permit.get' command", &["PERMIT.GET"]),
        err("ERR wrong number of arguments for 'permit.reset' command", &["PERMIT.RESET"]),
        err("ERR wrong number of arguments for 'throttle.set' command", &["THROTTLE.SET"]),
        err("ERR wrong number of arguments for 'throttle.get' command", &["THROTTLE.GET"]),
        err("ERR wrong number of arguments for 'throttle.get' command", &["THROTTLE.GET", "a", "b"]),
        err("ERR wrong number of arguments for 'throttle.reset' command", &["THROTTLE.RESET"]),
        err("ERR wrong number of arguments for 'throttle.refund' command", &["THROTTLE.REFUND", "k"]),
        err("ERR wrong number of arguments for 'throttle.refund' command", &["THROTTLE.REFUND", "k", "1", "2"]),
        err("ERR wrong number of arguments for 'throttle.all' command", &["THROTTLE.ALL", "1", "k", "1", "1"]),
        err("ERR wrong number of arguments for 'throttle.all' command", &["THROTTLE.ALL", "1", "k", "1", "1", "1", "k2"]),
        err("ERR wrong number of arguments for 'cl.throttle' command", &["CL.THROTTLE", "k", "1", "1"]),
        err("ERR wrong number of arguments for 'cl.throttle' command", &["CL.THROTTLE", "k", "1", "1", "1", "1", "1"]),
        err("ERR wrong number of arguments for 'throttle.clock' command", &["THROTTLE.CLOCK"]),
        err_on_clock("ERR wrong number of arguments for 'throttle.clock' command", strs(&["THROTTLE.CLOCK"])),
        err("ERR wrong number of arguments for 'throttle.apply' command", &["THROTTLE.APPLY", "k"]),
        err("ERR wrong number of arguments for 'throttle.apply' command", &["THROTTLE.APPLY", "k", "x", "1", "2"]),
        // The limit errors.
        err("ERR rps is not a valid decimal number", &["THROTTLE", "k", "nan", "1", "1"]),
        err("ERR rps is not a valid decimal number", &["THROTTLE.SET", "k", "RPS", "0x10"]),
        err("ERR rps must be > 0 and <= 1e9 (or 0 to deny all, -1 to allow all)", &["THROTTLE", "k", "1e10", "1", "1"]),
        err("ERR rps must be > 0 and <= 1e9 (or 0 to deny all, -1 to allow all)", &["THROTTLE", "k", "-2", "1", "1"]),
        err("ERR rps must be > 0 and <= 1e9 (or 0 to deny all, -1 to allow all)", &["THROTTLE.ALL", "1", "k", "1000000001", "1", "1"]),
        err("ERR rps has too many decimal places (at most 9)", &["THROTTLE", "k", "0.0000000001", "1", "1"]),
        err("ERR rps has too many significant digits (at most 9)", &["THROTTLE", "k", "1234567.891", "1", "1"]),
        err("ERR burst is not a valid decimal number", &["THROTTLE", "k", "1", "inf", "1"]),
        err("ERR burst must be > 0 and <= 1e9", &["THROTTLE", "k", "1", "0", "1"]),
        err("ERR burst must be > 0 and <= 1e9", &["THROTTLE.SET", "k", "BURST", "1e10"]),
        err("ERR burst has too many decimal places (at most 9)", &["THROTTLE", "k", "1", "0.0000000001", "1"]),
        err("ERR window is not a valid decimal number", &["THROTTLE.PEEK", "k", "1", "1", " 1"]),
        err("ERR window must be > 0 and <= 1e9 seconds", &["THROTTLE", "k", "1", "1", "0"]),
        err("ERR window must be > 0 and <= 1e9 seconds", &["THROTTLE.ALL", "1", "k", "1", "1", "1e10"]),
        err("ERR window has too many decimal places (at most 9)", &["THROTTLE", "k", "1", "1", "1.0000000001"]),
        err("ERR rps*burst*window is too large (the limit must be at most 1e15 tokens)", &["THROTTLE", "k", "1e9", "1e9", "1e9"]),
        err("ERR the limit would take more than 1e9 seconds to refill from empty (capacity / rate)", &["THROTTLE", "k", "0.000000001", "2", "1e9"]),
        err("ERR the limit would take more than 1e9 seconds to refill from empty (capacity / rate)", &["CL.THROTTLE", "k", "999999999999999", "1", "1"]),
        // THROTTLE's other arguments.
        err("ERR tokens is not a valid integer", &["THROTTLE", "k", "1", "1", "1", "+1"]),
        err("ERR tokens is not a valid integer", &["THROTTLE.REFUND", "bucket", "1.0"]),
        err("ERR tokens is not a valid integer", &["THROTTLE.ALL", "x", "k", "1", "1", "1"]),
        err("ERR tokens must be an integer >= 0", &["THROTTLE", "k", "1", "1", "1", "-1"]),
        err("ERR tokens must be an integer >= 0", &["THROTTLE.REFUND", "bucket", "-1"]),
        err("ERR tokens must be an integer >= 0", &["THROTTLE.ALL", "99999999999999999999", "k", "1", "1", "1"]),
        err("ERR timeout_ms is not a valid integer", &["THROTTLE", "k", "1", "1", "1", "1", "WAIT", "x"]),
        err("ERR timeout_ms must be an integer >= 0 and <= 31622400000 (one year)", &["THROTTLE", "k", "1", "1", "1", "1", "WAIT", "31622400001"]),
        err("ERR syntax error", &["THROTTLE", "k", "5", "2"]),
        err("ERR syntax error", &["THROTTLE", "k", "1", "1", "1", "1", "WAIT", "1", "WAIT", "1"]),
        err("ERR syntax error", &["THROTTLE", "k", "1", "1", "1", "1", "WAIT"]),
        err("ERR syntax error", &["THROTTLE.PEEK", "k", "1", "1", "1", "1", "WAIT", "1"]),
        err("ERR syntax error", &["PERMIT", "p", "1", "1", "FOO", "1"]),
        err("ERR syntax error", &["THROTTLE.SET", "k", "RPS"]),
        err_on_clock("ERR syntax error", strs(&["THROTTLE.CLOCK", "NOW"])),
        err_on_clock("ERR syntax error", strs(&["THROTTLE.CLOCK", "GET", "1"])),
        err("ERR no knobs on this key: give rps burst window, or set them with THROTTLE.SET", &["THROTTLE", "nokey"]),
        err("ERR no knobs on this key: give rps burst window, or set them with THROTTLE.SET", &["THROTTLE", "bucket", "1", "WAIT", "10"]),
        err("ERR no knobs on this key: give rps burst window, or set them with THROTTLE.SET", &["THROTTLE.PEEK", "nokey"]),
        // PERMIT.
        err("ERR interval_ms is not a valid decimal number", &["PERMIT", "p", "x", "1"]),
        err("ERR interval_ms must be > 0 and <= 1e12 ms", &["PERMIT", "p", "0", "1"]),
        err("ERR interval_ms must be > 0 and <= 1e12 ms", &["PERMIT", "p", "1000000000001", "1"]),
        err("ERR interval_ms has too many decimal places (at most 3)", &["PERMIT", "p", "0.0001", "1"]),
        err("ERR max_waiting is not a valid integer", &["PERMIT", "p", "1", "01"]),
        err("ERR max_waiting must be an integer >= 0", &["PERMIT", "p", "1", "-1"]),
        err("ERR GRACE is not a valid integer", &["PERMIT", "p", "1", "1", "GRACE", "x"]),
        err("ERR GRACE must be an integer >= 0 and <= 31622400000 (one year)", &["PERMIT", "p", "1", "1", "grace", "-1"]),
        err("ERR BLOCK is not a valid integer", &["PERMIT", "p", "1", "1", "BLOCK", "1e3"]),
        err("ERR BLOCK must be an integer >= 0 and <= 31622400000 (one year)", &["PERMIT", "p", "1", "1", "BLOCK", "31622400001"]),
        err("ERR no settings on this key: give interval_ms, or set them with PERMIT.SET", &["PERMIT", "p"]),
        err("ERR no settings on this key: give interval_ms, or set them with PERMIT.SET", &["PERMIT", "p", "BLOCK", "10"]),
        // Leases.
        err("ERR wrong number of arguments for 'lease' command", &["LEASE", "l", "1"]),
        err("ERR wrong number of arguments for 'lease.release' command", &["LEASE.RELEASE", "l"]),
        err("ERR wrong number of arguments for 'lease.renew' command", &["LEASE.RENEW", "l", "1"]),
        err("ERR wrong number of arguments for 'lease.peek' command", &["LEASE.PEEK"]),
        err("ERR limit is not a valid integer", &["LEASE", "l", "x", "1"]),
        err("ERR limit must be an integer >= 1 and <= 1000000000000000", &["LEASE", "l", "0", "1"]),
        err("ERR ttl_ms is not a valid integer", &["LEASE", "l", "1", "1.5"]),
        err("ERR ttl_ms must be an integer >= 1 and <= 31622400000 (one year)", &["LEASE", "l", "1", "0"]),
        err("ERR COST is not a valid integer", &["LEASE", "l", "1", "1", "COST", "x"]),
        err("ERR COST must be an integer >= 1 and <= 1000000000000000", &["LEASE", "l", "1", "1", "COST", "0"]),
        err("ERR BLOCK is not a valid integer", &["LEASE", "l", "1", "1", "BLOCK", "x"]),
        err("ERR BLOCK must be an integer >= 0 and <= 31622400000 (one year)", &["LEASE", "l", "1", "1", "BLOCK", "-1"]),
        err("ERR syntax error", &["LEASE", "l", "1", "1", "COST"]),
        err("ERR lease_id is not a valid integer", &["LEASE.RELEASE", "l", "x"]),
        err("ERR lease_id must be an integer >= 0", &["LEASE.RENEW", "l", "-1", "1"]),
        // PERMIT.SET.
        err("ERR the first PERMIT.SET on a key must give INTERVAL", &["PERMIT.SET", "p", "MAX_WAITING", "3"]),
        err("ERR interval_ms is not a valid decimal number", &["PERMIT.SET", "p", "INTERVAL", "x"]),
        err("ERR interval_ms must be > 0 and <= 1e12 ms", &["PERMIT.SET", "p", "INTERVAL", "0"]),
        err("ERR interval_ms has too many decimal places (at most 3)", &["PERMIT.SET", "p", "INTERVAL", "0.0001"]),
        err("ERR MAX_WAITING is not a valid integer", &["PERMIT.SET", "p", "INTERVAL", "1", "MAX_WAITING", "x"]),
        err("ERR MAX_WAITING must be an integer >= 0, or -1 for no bound", &["PERMIT.SET", "p", "INTERVAL", "1", "MAX_WAITING", "-2"]),
        err("ERR TTL is not a valid integer", &["PERMIT.SET", "p", "INTERVAL", "1", "TTL", "x"]),
        err("ERR TTL must be an integer >= 1 and <= 315360000 (ten years)", &["PERMIT.SET", "p", "INTERVAL", "1", "TTL", "0"]),
        err("ERR syntax error", &["PERMIT.SET", "p", "INTERVAL"]),
        err("ERR syntax error", &["PERMIT.SET", "p", "FOO", "1"]),
        // THROTTLE.SET.
        err("ERR the first THROTTLE.SET on a limiter must give RPS, BURST and WINDOW", &["THROTTLE.SET", "nokey", "RPS", "1"]),
        err("ERR the first THROTTLE.SET on a limiter must give RPS, BURST and WINDOW", &["THROTTLE.SET", "bucket", "RPS", "1", "BURST", "1"]),
        err("ERR TTL is not a valid integer", &["THROTTLE.SET", "k", "RPS", "1", "BURST", "1", "WINDOW", "1", "TTL", "x"]),
        err("ERR TTL must be an integer >= 1 and <= 315360000 (ten years)", &["THROTTLE.SET", "k", "RPS", "1", "BURST", "1", "WINDOW", "1", "TTL", "0"]),
        err("ERR TTL must be an integer >= 1 and <= 315360000 (ten years)", &["THROTTLE.SET", "k", "RPS", "1", "BURST", "1", "WINDOW", "1", "TTL", "315360001"]),
        // THROTTLE.ALL.
        err("ERR THROTTLE.ALL got the same key twice", &["THROTTLE.ALL", "1", "a", "1", "1", "1", "a", "1", "1", "1"]),
        // CL.THROTTLE.
        err("ERR max_burst is not a valid integer", &["CL.THROTTLE", "k", "1.5", "1", "1"]),
        err("ERR max_burst must be an integer >= 0 and <= 999999999999999", &["CL.THROTTLE", "k", "-1", "1", "1"]),
        err("ERR max_burst must be an integer >= 0 and <= 999999999999999", &["CL.THROTTLE", "k", "1000000000000000", "1", "1"]),
        err("ERR count_per_period is not a valid integer", &["CL.THROTTLE", "k", "1", "x", "1"]),
        err("ERR count_per_period must be an integer >= 1 (at most 4294967295 once divided by its common factor with period)", &["CL.THROTTLE", "k", "1", "0", "1"]),
        err("ERR count_per_period must be an integer >= 1 (at most 4294967295 once divided by its common factor with period)", &["CL.THROTTLE", "k", "1", "4294967296", "1"]),
        err("ERR period is not a valid integer", &["CL.THROTTLE", "k", "1", "1", ""]),
        err("ERR period must be an integer >= 1 (at most 4294967295 once divided by its common factor with count_per_period)", &["CL.THROTTLE", "k", "1", "1", "0"]),
        err("ERR period must be an integer >= 1 (at most 4294967295 once divided by its common factor with count_per_period)", &["CL.THROTTLE", "k", "1", "1", "4294967296"]),
        err("ERR quantity is not a valid integer", &["CL.THROTTLE", "k", "1", "1", "1", "x"]),
        err("ERR quantity must be an integer >= 0 (to give tokens back, use THROTTLE.REFUND)", &["CL.THROTTLE", "k", "1", "1", "1", "-1"]),
        // THROTTLE.CLOCK.
        err("ERR THROTTLE.CLOCK needs the module loaded with 'test-clock yes' (--loadmodule <path> test-clock yes)", &["THROTTLE.CLOCK", "GET"]),
        err("ERR THROTTLE.CLOCK needs the module loaded with 'test-clock yes' (--loadmodule <path> test-clock yes)", &["THROTTLE.CLOCK", "FREEZE", "x"]),
        err_on_clock("ERR unix_us is not a valid integer", strs(&["THROTTLE.CLOCK", "FREEZE", "x"])),
        err_on_clock("ERR unix_us must be an integer >= 0 and <= 252370678398999000 (microseconds, year 9967)", strs(&["THROTTLE.CLOCK", "freeze", "-1"])),
        err_on_clock("ERR unix_us must be an integer >= 0 and <= 252370678398999000 (microseconds, year 9967)", strs(&["THROTTLE.CLOCK", "FREEZE", "252370678398999001"])),
        err_on_clock("ERR us is not a valid integer", strs(&["THROTTLE.CLOCK", "ADVANCE", "1.5"])),
        err_on_clock("ERR us must be an integer >= 0 and <= 252370678398999000 (microseconds, year 9967)", strs(&["THROTTLE.CLOCK", "ADVANCE", "-1"])),
        err_on_clock("ERR us must be an integer >= 0 and <= 252370678398999000 (microseconds, year 9967)", strs(&["THROTTLE.CLOCK", "ADVANCE", "252370678398999000"])),
        // THROTTLE.APPLY.
        err("ERR THROTTLE.APPLY is accepted from a master or while loading only; enable it for clients with CONFIG SET throttle.apply-from-clients yes", &["THROTTLE.APPLY", "k", "xx"]),
        err_on_clock("ERR invalid state payload: not a value of this kind", apply(b"xx".to_vec())),
        err_on_clock("ERR invalid rl-bucket payload: truncated", apply(vec![2, b'B'])),
        err_on_clock("ERR invalid rl-bucket payload: truncated", apply(b"b".to_vec())),
        // A rate not in its lowest terms (10/2): no call writes that.
        err_on_clock("ERR invalid rl-bucket payload: bad rate", apply(vec![b'b', 1, 10, 2, 80, 0])),
        err_on_clock("ERR invalid rl-permit payload: trailing bytes", apply([permit_payload(7, 7), vec![0]].concat())),
        // A last slot more than the horizon (1e15 µs) after its stamp.
        err_on_clock("ERR invalid rl-permit payload: bad last slot", apply(permit_payload(1_000_000_000_000_001, 0))),
    ];
    let valid = permit_payload(1_800_000_000_000_000, 1_800_000_000_000_000);
    for (text, at) in [
        ("ERR expire_at_ms is not a valid integer", &b"soon"[..]),
        ("ERR expire_at_ms must be an integer >= 0", b"-1"),
    ] {
        let mut args = apply(valid.clone());
        args.push(at.to_vec());
        v.push(err_on_clock(text, args));
    }
    // THROTTLE.LIMITLION: its own checks, then the script's errors.
    const LL: &str = "THROTTLE.LIMITLION";
    for (text, args) in [
        ("ERR wrong number of arguments for 'throttle.limitlion' command", &[LL, "b", "b:knobs", "5", "2", "8", "1"][..]),
        ("ERR syntax error", &[LL, "b", "b:knobs", "5", "2", "8", "1", "9", "CLOCK", "s"]),
        ("ERR the knobs key must differ from the bucket key", &[LL, "b", "b", "5", "2", "8", "1", "9"]),
        (
            "ERR rps is not a number: LimitLion's script fails here (attempt to perform arithmetic on a nil value)",
            &[LL, "b", "b:knobs", "fast", "2", "8", "1", "9"],
        ),
        // floor(burst × window × 2) = 1e16 s: EXPIRE's milliseconds overflow.
        ("ERR invalid expire time in 'expire' command", &[LL, "big", "big:knobs", "1", "5e15", "1", "1", "9"]),
        // knobs_ttl 0.5 > 0: the knobs' EXPIRE gets "0.5".
        ("ERR value is not an integer or out of range", &[LL, "b", "hasknobs", "5", "2", "8", "1", "0.5"]),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", &[LL, "str", "str:knobs", "5", "2", "8", "1", "9"]),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", &[LL, "b", "str", "5", "2", "8", "1", "9"]),
    ] {
        v.push(err(text, args));
    }
    // WRONGTYPE from every command that reads a key.
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for args in [
        &["THROTTLE", "str", "1", "1", "1"][..],
        &["THROTTLE", "permit", "1", "1", "1"],
        &["THROTTLE", "permit"],
        &["THROTTLE.PEEK", "str", "1", "1", "1"],
        &["PERMIT", "bucket", "1", "1"],
        &["PERMIT", "str", "1", "1"],
        &["THROTTLE.SET", "permit", "RPS", "1", "BURST", "1", "WINDOW", "1"],
        &["THROTTLE.GET", "permit"],
        &["THROTTLE.RESET", "str"],
        &["THROTTLE.REFUND", "permit", "1"],
        &["THROTTLE.ALL", "1", "k", "1", "1", "1", "permit", "1", "1", "1"],
        &["CL.THROTTLE", "str", "1", "1", "1"],
        &["CL.THROTTLE", "cellnum", "1", "1", "1"],
        &["CL.THROTTLE", "permit", "1", "1", "1", "0"],
    ] {
        v.push(err(WRONGTYPE, args));
    }
    // One limit more than the default throttle.all-max-limits (64).
    let mut all = vec!["THROTTLE.ALL".to_string(), "1".into()];
    for i in 0..65 {
        all.extend([format!("k{i}"), "1".into(), "1".into(), "1".into()]);
    }
    v.push(ErrCall {
        want: "ERR THROTTLE.ALL takes at most 64 limits (config throttle.all-max-limits)",
        on: On::Plain,
        args: all.iter().map(|a| a.as_bytes().to_vec()).collect(),
    });
    v
}

/// Documented error templates (`<placeholders>`), each with concrete
/// examples in the command reference that the calls above produce.
const TEMPLATES: &[&str] = &["ERR invalid <kind> payload: <why>"];

/// Documented errors no client call is meant to produce; their text is
/// checked against the module's source instead.
const NOT_FROM_A_CALL: &[&str] = &[
    "ERR internal error",
    "ERR the server could not hold the client",
];

/// Errors of the server itself (not the module's) that a page quotes,
/// each checked by another suite.
const SERVER_ERRORS: &[&str] = &[
    // docs/compatibility.md; tests/crossversion.rs gets it.
    "ERR DUMP payload version or checksum are wrong",
];

/// The `ERR …` and `WRONGTYPE …` code spans of a page's prose.
fn error_spans(text: &str) -> BTreeSet<String> {
    code_spans(&prose(text))
        .into_iter()
        .filter(|s| s.starts_with("ERR ") || s.starts_with("WRONGTYPE "))
        .collect()
}

/// `text` matches `template`, each `<placeholder>` standing for some
/// non-empty text.
fn matches_template(template: &str, text: &str) -> bool {
    // The literal parts between placeholders.
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('<') {
        let close = rest[open..]
            .find('>')
            .map(|c| open + c)
            .expect("a closed <placeholder>");
        parts.push(&rest[..open]);
        rest = &rest[close + 1..];
    }
    let Some((first, between)) = parts.split_first() else {
        return text == template;
    };
    let Some(mut left) = text.strip_prefix(first) else {
        return false;
    };
    // Each placeholder takes at least one character, then the next part.
    for part in between {
        match left.get(1..).and_then(|l| l.find(part)) {
            Some(at) => left = &left[1 + at + part.len()..],
            None => return false,
        }
    }
    left.len() > rest.len() && left.ends_with(rest)
}

fn prepare_plain(c: &mut Connection) {
    ok(c, &["SET", "str", "hello"]);
    ok(c, &["SET", "cellnum", "99999999999999999999"]);
    ok(c, &["THROTTLE", "bucket", "1", "1", "10"]);
    ok(c, &["PERMIT", "permit", "1000", "1"]);
    ok(c, &["HSET", "hasknobs", "rps", "1"]);
}

/// The command reference is the page with the command table; every error
/// a call gets must be there. Every other page may quote errors too, and
/// each must be one a call gets (or one of the lists above).
#[test]
fn every_documented_error_is_what_the_server_answers() {
    let reference: Vec<Page> = tables_in_pages("command | arity | flags | keys")
        .into_iter()
        .map(|(page, _)| page)
        .collect();
    let documented: BTreeSet<String> = reference
        .iter()
        .flat_map(|p| error_spans(&p.text))
        .collect();
    let quoted: Vec<(String, String)> = pages()
        .iter()
        .flat_map(|p| {
            error_spans(&p.text)
                .into_iter()
                .map(|e| (p.name.clone(), e))
        })
        .collect();
    let mut plain = Server::start();
    let mut clock = Server::builder().module_args(["test-clock", "yes"]).start();
    let mut pc = plain.conn();
    let mut cc = clock.conn();
    prepare_plain(&mut pc);
    ok(
        &mut cc,
        &["CONFIG", "SET", "throttle.apply-from-clients", "yes"],
    );

    let calls = error_calls();
    let mut wrong = Vec::new();
    for e in &calls {
        let con = match e.on {
            On::Plain => &mut pc,
            On::Clock => &mut cc,
        };
        let shown_args: Vec<String> = e
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        match call(con, &e.args) {
            Err(got) if got == e.want => {}
            other => wrong.push(format!(
                "{:?} on {:?}: got {other:?}, want {:?}",
                shown_args, e.on, e.want
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "calls that did not get their error:\n{}",
        wrong.join("\n")
    );

    // Every error a call gets is in the reference, and every error any page
    // quotes is produced by a call (or is a template, an error no call
    // produces, or the server's own).
    let produced: BTreeSet<String> = calls.iter().map(|e| e.want.to_string()).collect();
    let undocumented: Vec<&String> = produced.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "errors the server gives but the command reference does not document: {undocumented:#?}"
    );
    let unproduced: Vec<String> = quoted
        .iter()
        .filter(|(_, d)| !produced.contains(d))
        .filter(|(_, d)| {
            ![TEMPLATES, NOT_FROM_A_CALL, SERVER_ERRORS]
                .iter()
                .any(|list| list.contains(&d.as_str()))
        })
        .map(|(page, d)| format!("{page}: {d}"))
        .collect();
    assert!(
        unproduced.is_empty(),
        "errors the docs quote that no call in error_calls() produces: {unproduced:#?}"
    );
    for t in TEMPLATES {
        assert!(
            documented.contains(*t),
            "the command reference no longer documents {t:?}"
        );
        let examples = documented
            .iter()
            .filter(|d| *d != t && matches_template(t, d))
            .count();
        assert!(
            examples > 0,
            "the command reference gives no example of {t:?}"
        );
    }
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/redis/error.rs"))
            .expect("src/redis/error.rs");
    for e in NOT_FROM_A_CALL {
        assert!(
            documented.contains(*e),
            "the command reference no longer documents {e:?}"
        );
        assert!(
            source.contains(&format!("#[error(\"{e}\")]")),
            "{e:?} is not an error of src/redis/error.rs"
        );
    }
    assert_healthy(&mut plain);
    assert_healthy(&mut clock);
}

#[test]
fn template_matching() {
    let t = "ERR invalid <kind> payload: <why>";
    assert!(matches_template(
        t,
        "ERR invalid rl-bucket payload: truncated"
    ));
    assert!(!matches_template(t, "ERR invalid  payload: truncated"));
    assert!(!matches_template(t, "ERR invalid rl-bucket payload: "));
    assert!(!matches_template(
        t,
        "ERR rps is not a valid decimal number"
    ));
    assert!(matches_template("ERR a <x> b", "ERR a yy b"));
    assert!(!matches_template("ERR a <x> b", "ERR a yy bc"));
}

// ---- configs ---------------------------------------------------------------

/// `CONFIG GET pattern` as name → value (RESP2 flat array or RESP3 map).
fn configs(c: &mut Connection, pattern: &str) -> BTreeMap<String, String> {
    match ok(c, &["CONFIG", "GET", pattern]) {
        Value::Array(flat) => flat
            .chunks(2)
            .map(|kv| (shown(&kv[0]), shown(&kv[1])))
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (shown(k), shown(v))).collect(),
        other => panic!("CONFIG GET {pattern}: {other:?}"),
    }
}

fn config_get(c: &mut Connection, name: &str) -> String {
    configs(c, name)
        .remove(name)
        .unwrap_or_else(|| panic!("CONFIG GET {name}: no such config"))
}

#[test]
fn the_config_table_is_what_the_server_has() {
    for (page, rows) in tables_in_pages("config | type | default | range | mutable") {
        config_table_is_what_the_server_has(&page.name, &rows);
    }
}

/// One config table (`at` names its page), on a fresh server.
fn config_table_is_what_the_server_has(at: &str, rows: &[Vec<String>]) {
    let s = Server::start();
    let mut c = s.conn();
    let server = configs(&mut c, "throttle.*");
    let documented: BTreeSet<String> = rows.iter().map(|r| plain(&r[0])).collect();
    let names: BTreeSet<String> = server.keys().cloned().collect();
    assert_same(
        &documented,
        &names,
        &format!("{at}: the config table vs CONFIG GET throttle.*"),
    );
    for r in rows {
        let (name, default, range, mutable) = (plain(&r[0]), plain(&r[2]), plain(&r[3]), &r[4]);
        assert_eq!(
            server[&name], default,
            "{at}: {name}: the default on a fresh server"
        );
        let set = |c: &mut Connection, v: &str| call(c, &strs(&["CONFIG", "SET", &name, v]));
        let values: Vec<String> = match range.split_once(" to ") {
            Some((lo, hi)) => {
                let (lo, hi): (i64, i64) = (lo.parse().unwrap(), hi.parse().unwrap());
                if mutable == "yes" {
                    for outside in [lo - 1, hi + 1] {
                        assert!(
                            set(&mut c, &outside.to_string()).is_err(),
                            "{at}: {name} {outside} is out of range"
                        );
                    }
                }
                vec![lo.to_string(), hi.to_string()]
            }
            None => {
                assert!(range.is_empty(), "{at}: {name}: range {range:?}");
                assert_eq!(r[1], "`yes` / `no`", "{at}: {name}: a flag without a range");
                vec!["yes".into(), "no".into()]
            }
        };
        for v in values.iter().chain([&default]) {
            match mutable.as_str() {
                "yes" => {
                    set(&mut c, v).unwrap_or_else(|e| panic!("CONFIG SET {name} {v}: {e}"));
                    assert_eq!(config_get(&mut c, &name), *v, "{name} after CONFIG SET");
                }
                m => {
                    assert!(m.starts_with("no"), "{at}: {name}: mutable {m:?}");
                    assert!(
                        set(&mut c, v).is_err(),
                        "CONFIG SET {name} {v} must be refused"
                    );
                }
            }
        }
    }
}

// ---- INFO ------------------------------------------------------------------

#[test]
fn the_info_table_is_what_the_server_prints() {
    for (page, rows) in tables_in_pages("field | section") {
        info_table_is_what_the_server_prints(&page, &rows);
    }
}

/// One INFO table, on a fresh server; its page names each section.
fn info_table_is_what_the_server_prints(page: &Page, rows: &[Vec<String>]) {
    let at = &page.name;
    let documented: BTreeSet<(String, String)> =
        rows.iter().map(|r| (plain(&r[1]), plain(&r[0]))).collect();
    assert_eq!(
        documented.len(),
        rows.len(),
        "{at}: a field twice in the INFO table"
    );
    let s = Server::start();
    let mut c = s.conn();
    let info: String = redis::cmd("INFO")
        .arg("throttle")
        .query(&mut c)
        .expect("INFO throttle");
    let mut printed = BTreeSet::new();
    let mut current = None;
    for line in info.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix("# ") {
            Some(sec) => current = Some(sec.to_string()),
            None => {
                let field = line
                    .split_once(':')
                    .map(|(f, _)| f.to_string())
                    .expect("field:value");
                printed.insert((current.clone().expect("a section before its fields"), field));
            }
        }
    }
    assert_same(
        &documented,
        &printed,
        &format!("{at}: the INFO table (section, field) vs INFO throttle"),
    );
    // The section names the page gives are what INFO <section> prints.
    let sections: BTreeSet<&String> = documented.iter().map(|(sec, _)| sec).collect();
    for sec in sections {
        let one: String = redis::cmd("INFO")
            .arg(sec)
            .query(&mut c)
            .expect("INFO section");
        assert!(one.contains(&format!("# {sec}")), "INFO {sec}: {one}");
        assert!(
            flat(&page.text).contains(&format!("`# {sec}`")),
            "{at} names the section `# {sec}`"
        );
    }
}

// ---- replies ---------------------------------------------------------------

/// Examples the docs give as "`call` → `reply`" on new keys.
const EXAMPLES: &[&str] = &[
    "THROTTLE user:1 5 2 8",
    "CL.THROTTLE user123 15 30 60 1",
    "THROTTLE.ALL 1 {user:42}:per-second 5 1 1 {user:42}:per-minute 1 60 1",
];

#[test]
fn documented_replies_are_what_the_server_answers() {
    let text = all_flat();
    let mut s = Server::start();
    let mut c = s.conn();
    let mut c3 = s.conn_resp3();
    for example in EXAMPLES {
        let args: Vec<&str> = example.split(' ').collect();
        let reply = shown(&ok(&mut c, &args));
        let claim = format!("`{example}` → `{reply}`");
        assert!(text.contains(&claim), "the docs should say {claim}");
    }
    // The switches.
    assert_eq!(
        shown(&ok(&mut c, &["THROTTLE", "sw", "0", "1", "8"])),
        "[0, 0, 8000, 0, 0]"
    );
    assert_eq!(
        shown(&ok(&mut c, &["THROTTLE", "sw", "-1", "1", "8"])),
        "[1, -1, 0, 0, -1]"
    );
    assert!(text.contains("`rps -1` replies `[1, -1, 0, 0, -1]`"));
    // Limits at the documented bounds are accepted.
    ok(&mut c, &["THROTTLE", "tiny", "0.000000001", "1", "1"]);
    assert!(text.contains("`THROTTLE k 0.000000001 1 1`"));
    ok(
        &mut c,
        &["CL.THROTTLE", "big", "1", "8589934592", "8589934592"],
    );
    assert!(text.contains("`CL.THROTTLE k 1 8589934592 8589934592`"));

    // THROTTLE.GET: the documented fields, in order, as a flat array on
    // RESP2 and a map on RESP3; nil for a missing key on both.
    // (PERMIT.GET's table has the same columns: it starts with interval_ms.)
    let (permit_tables, tables): (Vec<(String, Vec<String>)>, Vec<_>) =
        tables_in_pages("field | type | meaning")
            .into_iter()
            .map(|(page, rows)| {
                (
                    page.name,
                    rows.iter().map(|r| plain(&r[0])).collect::<Vec<_>>(),
                )
            })
            .partition(|(_, fields)| fields.first().is_some_and(|f| f == "interval_ms"));
    assert!(!tables.is_empty() && !permit_tables.is_empty());
    ok(&mut c, &["PERMIT", "pg", "250", "3"]);
    let Value::Array(flat_pget) = ok(&mut c, &["PERMIT.GET", "pg"]) else {
        panic!("PERMIT.GET on RESP2 is an array")
    };
    let pnames: Vec<String> = flat_pget.iter().step_by(2).map(shown).collect();
    let Value::Map(pmap) = ok(&mut c3, &["PERMIT.GET", "pg"]) else {
        panic!("PERMIT.GET on RESP3 is a map")
    };
    let pnames3: Vec<String> = pmap.iter().map(|(k, _)| shown(k)).collect();
    for (at, fields) in &permit_tables {
        assert_eq!(&pnames, fields, "{at}: PERMIT.GET fields (RESP2)");
        assert_eq!(&pnames3, fields, "{at}: PERMIT.GET fields (RESP3)");
    }
    ok(&mut c, &["CL.THROTTLE", "c7", "0", "7", "3"]);
    let Value::Array(flat_get) = ok(&mut c, &["THROTTLE.GET", "c7"]) else {
        panic!("THROTTLE.GET on RESP2 is an array")
    };
    let names: Vec<String> = flat_get.iter().step_by(2).map(shown).collect();
    for (at, fields) in &tables {
        assert_eq!(&names, fields, "{at}: THROTTLE.GET fields (RESP2)");
    }
    let rps = flat_get.iter().position(|v| shown(v) == "rps").unwrap() + 1;
    assert_eq!(shown(&flat_get[rps]), "7/3");
    assert!(text.contains("`CL.THROTTLE k 0 7 3` → `7/3`"));
    let Value::Map(map) = ok(&mut c3, &["THROTTLE.GET", "c7"]) else {
        panic!("THROTTLE.GET on RESP3 is a map")
    };
    let names: Vec<String> = map.iter().map(|(k, _)| shown(k)).collect();
    for (at, fields) in &tables {
        assert_eq!(&names, fields, "{at}: THROTTLE.GET fields (RESP3)");
    }
    let burst = map.iter().find(|(k, _)| shown(k) == "burst").unwrap();
    assert_eq!(burst.1, Value::Nil, "burst is nil for a last-call source");
    for con in [&mut c, &mut c3] {
        assert_eq!(ok(con, &["THROTTLE.GET", "missing"]), Value::Nil);
        assert_eq!(ok(con, &["THROTTLE.REFUND", "missing", "1"]), Value::Nil);
    }

    // PERMIT: an immediate permit never expires.
    let Value::Array(p) = ok(&mut c, &["PERMIT", "pp", "1000", "0"]) else {
        panic!("PERMIT replies an array")
    };
    assert_eq!(p[2], Value::Int(NEVER));
    assert!(text.contains(&format!("`[0, now_ms, {NEVER}]`")));
    assert_eq!(ok(&mut c, &["PERMIT", "pp", "1000", "0"]), Value::Nil);
    assert_healthy(&mut s);
}

/// `CLIENT UNBLOCK` on a held BLOCK client: nil, or with `ERROR` the error
/// the docs quote.
#[test]
fn client_unblock_answers_as_documented() {
    let text = all_flat();
    let mut s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["PERMIT", "q", "60000", "5"]);
    for (how, want) in [
        (None, Ok(Value::Nil)),
        (
            Some("ERROR"),
            Err("UNBLOCKED client unblocked via CLIENT UNBLOCK".to_string()),
        ),
    ] {
        let mut held = conn_with_timeout(&s, 10);
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut held).unwrap();
        let waiter = std::thread::spawn(move || {
            call(
                &mut held,
                &strs(&["PERMIT", "q", "60000", "5", "BLOCK", "0"]),
            )
        });
        wait_for(
            std::time::Duration::from_secs(5),
            "the client to be held",
            || (throttle_stat(&mut c, "throttle_blocked_clients") == 1).then_some(()),
        );
        let mut unblock = vec!["CLIENT", "UNBLOCK"];
        let id = id.to_string();
        unblock.push(&id);
        unblock.extend(how);
        assert_eq!(ok(&mut c, &unblock), Value::Int(1));
        assert_eq!(waiter.join().expect("the held client's thread"), want);
        if let Err(e) = &want {
            assert!(text.contains(&format!("`{e}`")), "the docs quote {e:?}");
        }
    }
    assert_healthy(&mut s);
}
