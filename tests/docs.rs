//! The links of the docs: every relative link and every `#anchor` in
//! README.md and `docs/*.md` resolves, and README.md links every section of
//! every page of `docs/` (but `architecture.md`), so that each is one click
//! away. No server needed.
//!
//! Anchors follow GitHub's rules: a heading's text (its inline code and
//! link text kept, the rest of its Markdown dropped), lower-cased, each
//! space turned into `-`, every character that is not a letter, a digit,
//! `-` or `_` dropped; a second heading with the same anchor gets `-1`, a
//! third `-2`. Headings and links inside code (fenced blocks, inline spans)
//! do not count. A link's anchor into another Markdown file of the
//! repository is checked against that file's headings.
//!
//! `tests/readme.rs` checks what the pages say against live servers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, then every `docs/*.md` in name order, as paths from the root.
fn pages() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| PathBuf::from("docs").join(e.expect("a docs/ entry").file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    let mut all = vec![PathBuf::from("README.md")];
    all.extend(docs);
    all
}

fn read(page: &Path) -> String {
    let path = root().join(page);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- Markdown ----------------------------------------------------------------

/// The text with fenced code blocks blanked (their lines kept, empty), so
/// that line numbers stay right.
fn without_fences(text: &str) -> String {
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

/// The text with each inline code span (a run of backticks up to the next
/// run of as many) replaced by its content (`keep`) or by nothing but its
/// line breaks (so that line numbers stay right).
fn code_spans_replaced(text: &str, keep: bool) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        let ticks = rest[open..].len() - rest[open..].trim_start_matches('`').len();
        let after = &rest[open + ticks..];
        let fence = "`".repeat(ticks);
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
        out.push_str(&rest[..open]);
        let Some(close) = close else {
            // An unclosed run is literal text.
            out.push_str(&rest[open..open + ticks]);
            rest = after;
            continue;
        };
        if keep {
            out.push_str(&after[..close]);
        } else {
            out.extend(after[..close].chars().filter(|&c| c == '\n'));
        }
        rest = &after[close + ticks..];
    }
    out.push_str(rest);
    out
}

/// A link of a page: where it is (1-based line) and its target.
#[derive(Debug)]
struct Link {
    line: usize,
    text: String,
    target: String,
}

/// Every inline link and image (`[text](target "title")`) outside code.
fn links(text: &str) -> Vec<Link> {
    let prose = code_spans_replaced(&without_fences(text), false);
    let bytes = prose.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        // The matching `]`, brackets nested.
        let mut depth = 0usize;
        let mut close = None;
        for (j, &b) in bytes.iter().enumerate().skip(i) {
            match b {
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            i += 1; // an unmatched `[` is text
            continue;
        };
        if bytes.get(close + 1) == Some(&b'(')
            && let Some(end) = prose[close + 2..].find(')')
        {
            let inside = prose[close + 2..close + 2 + end].trim();
            let target = inside.split_whitespace().next().unwrap_or("").to_string();
            found.push(Link {
                line: prose[..i].matches('\n').count() + 1,
                text: prose[i + 1..close]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                target,
            });
            i = close + 2 + end + 1;
            continue;
        }
        i += 1;
    }
    found
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    let text = code_spans_replaced(heading, true);
    // A link in a heading counts by its text.
    let mut plain = String::new();
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        plain.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find("](")
            .and_then(|m| after[m..].find(')').map(|c| (m, m + c)))
        {
            Some((mid, end)) => {
                plain.push_str(&after[..mid]);
                rest = &after[end + 1..];
            }
            None => {
                plain.push('[');
                rest = after;
            }
        }
    }
    plain.push_str(rest);
    plain
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// A heading of a page: its level, text and anchor.
#[derive(Debug)]
struct Heading {
    level: usize,
    text: String,
    anchor: String,
}

/// The ATX headings of a page (outside fenced code), with their anchors
/// numbered as GitHub numbers repeated ones.
fn headings(text: &str) -> Vec<Heading> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for line in without_fences(text).lines() {
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let Some(rest) = line[hashes..].strip_prefix(' ') else {
            continue;
        };
        // A closing run of `#`s is not part of the text.
        let text = rest.trim().trim_end_matches('#').trim().to_string();
        let base = slug(&text);
        let n = seen.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        out.push(Heading {
            level: hashes,
            text,
            anchor,
        });
    }
    out
}

/// `path` (from the root) with `.` and `..` resolved; None if it leaves the
/// repository.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

fn is_external(target: &str) -> bool {
    target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:")
}

/// A link's target as (file from the root, anchor), relative to `page`;
/// an error if the file does not exist or the anchor is not one of its
/// headings.
fn resolve(page: &Path, target: &str) -> Result<(PathBuf, Option<String>), String> {
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a.to_string())),
        None => (target, None),
    };
    let file = if path.is_empty() {
        page.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        normalize(Path::new(from_root)).ok_or("outside the repository")?
    } else {
        let dir = page.parent().unwrap_or(Path::new(""));
        normalize(&dir.join(path)).ok_or("outside the repository")?
    };
    let full = root().join(&file);
    if !full.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    if let Some(anchor) = &anchor {
        if file.extension().is_none_or(|x| x != "md") {
            return Err(format!(
                "an anchor into {}, not a Markdown file",
                file.display()
            ));
        }
        let text = read(&file);
        if !headings(&text).iter().any(|h| &h.anchor == anchor) {
            return Err(format!(
                "{} has no heading with the anchor #{anchor}",
                file.display()
            ));
        }
    }
    Ok((file, anchor))
}

// ---- the tests -----------------------------------------------------------------

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        for link in links(&read(&page)) {
            if is_external(&link.target) {
                continue;
            }
            checked += 1;
            if let Err(why) = resolve(&page, &link.target) {
                broken.push(format!(
                    "{}:{}: [{}]({}): {why}",
                    page.display(),
                    link.line,
                    link.text,
                    link.target
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 50,
        "only {checked} relative links found: is the parser right?"
    );
}

#[test]
fn readme_links_every_section_of_the_docs() {
    let readme = Path::new("README.md");
    let linked: BTreeSet<(PathBuf, Option<String>)> = links(&read(readme))
        .iter()
        .filter(|l| !is_external(&l.target))
        .filter_map(|l| resolve(readme, &l.target).ok())
        .collect();
    let mut unlinked = Vec::new();
    for page in pages().into_iter().filter(|p| p.starts_with("docs")) {
        if page == Path::new("docs/architecture.md") {
            continue; // the lead's map of the code; README links the page
        }
        assert!(
            linked.contains(&(page.clone(), None)),
            "README.md does not link {}",
            page.display()
        );
        for h in headings(&read(&page)) {
            // A page's title is reached by the link to the page.
            if h.level == 1 {
                continue;
            }
            if !linked.contains(&(page.clone(), Some(h.anchor.clone()))) {
                unlinked.push(format!("{}#{} ({})", page.display(), h.anchor, h.text));
            }
        }
    }
    assert!(
        unlinked.is_empty(),
        "sections README.md does not link (add them to its map of the docs):\n{}",
        unlinked.join("\n")
    );
}

#[test]
fn anchors_follow_githubs_rules() {
    for (heading, anchor) in [
        ("From Node.js", "from-nodejs"),
        (
            "Held clients (WAIT and BLOCK)",
            "held-clients-wait-and-block",
        ),
        ("--cluster during a failover", "--cluster-during-a-failover"),
        (
            "THROTTLE.CLOCK FREEZE unix_us | ADVANCE us | REAL | GET",
            "throttleclock-freeze-unix_us--advance-us--real--get",
        ),
        (
            "THROTTLE.ALL tokens key rps burst window [key rps burst window ...]",
            "throttleall-tokens-key-rps-burst-window-key-rps-burst-window-",
        ),
        (
            "Sustained load stays within the bound, near the ideal",
            "sustained-load-stays-within-the-bound-near-the-ideal",
        ),
        ("The `WAIT` option", "the-wait-option"),
        ("See [rush](rush/README.md) ×2", "see-rush-2"),
    ] {
        assert_eq!(slug(heading), anchor, "{heading:?}");
    }
    let hs = headings("# A\n\n```sh\n# not a heading\n```\n\n## A\n### A ##\n#nospace\n");
    let anchors: Vec<&str> = hs.iter().map(|h| h.anchor.as_str()).collect();
    assert_eq!(anchors, ["a", "a-1", "a-2"]);
}

#[test]
fn links_are_found_outside_code_only() {
    let text = "See [the\nreference](docs/commands.md#the-clock \"title\") and `[no](x.md)`.\n\
                ```md\n[no](y.md)\n```\n[`code` text](#a) [not a link] (z)\n";
    let found = links(text);
    let found: Vec<(usize, &str, &str)> = found
        .iter()
        .map(|l| (l.line, l.text.as_str(), l.target.as_str()))
        .collect();
    let want = vec![
        (1, "the reference", "docs/commands.md#the-clock"),
        (6, "text", "#a"),
    ];
    assert_eq!(found, want);
}
