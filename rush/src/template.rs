//! Templates for keys, URLs, headers and bodies.
//!
//! A template is text with placeholders:
//! - `{n}`: a number drawn from the key range (`--keys`), the same for every
//!   template of one call, so `THROTTLE user:{n} ...` and an HTTP header
//!   `X-API-Key: key-{n}` name one limiter per `n`;
//! - `{worker}`: the worker's index (0-based);
//! - `{call}`: the call's index within its worker (0-based);
//! - `{run}`: an id drawn once per run (8 hex digits), for fresh keys:
//!   `THROTTLE rush:{run}:{n} ...` never meets a bucket left by a past run.
//!
//! Spaces inside the braces are ignored (`{ n }` is `{n}`; the help source
//! writes it that way because clap turns a literal `{n}` into a newline, and
//! [`crate::cli::clap_text`] prints it back as `{n}`).
//! `{{` and `}}` are literal braces (a Redis Cluster hash tag `{user}` is
//! written `{{user}}`). Any other use of a brace is an error, so a typo never
//! silently becomes a constant key.

use std::fmt;

/// Values substituted into a template for one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vars {
    pub n: u64,
    pub worker: u64,
    pub call: u64,
    pub run: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    N,
    Worker,
    Call,
    Run,
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

/// Why a template was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad template {:?}: {}", self.template, self.reason)
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    /// Parses `text`; see the module doc for the syntax.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let err = |reason: String| TemplateError {
            template: text.to_string(),
            reason,
        };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => {
                    return Err(err(
                        "unmatched '}' (write '}}' for a literal brace)".to_string()
                    ));
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(err(
                            "unclosed '{' (write '{{' for a literal brace)".to_string()
                        ));
                    }
                    let part = match name.trim() {
                        "n" => Part::N,
                        "worker" => Part::Worker,
                        "call" => Part::Call,
                        "run" => Part::Run,
                        other => {
                            return Err(err(format!(
                                "unknown placeholder {{{other}}} (known: {{n}}, {{worker}}, {{call}}, {{run}}; \
                                 write '{{{{' for a literal brace)"
                            )));
                        }
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(part);
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            parts,
            source: text.to_string(),
        })
    }

    /// A template that is exactly `text` (no placeholders are interpreted).
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Lit(text.to_string())],
            source: text.replace('{', "{{").replace('}', "}}"),
        }
    }

    /// The template as written.
    pub fn render_pattern(&self) -> String {
        self.source.clone()
    }

    /// True when the template uses `{n}`.
    pub fn uses_n(&self) -> bool {
        self.parts.contains(&Part::N)
    }

    /// True when the template has no placeholder at all.
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The text when the template is constant.
    pub fn constant(&self) -> Option<String> {
        if self.is_constant() {
            Some(self.render(Vars::default()))
        } else {
            None
        }
    }

    /// Substitutes `vars`.
    pub fn render(&self, vars: Vars) -> String {
        let mut out = String::new();
        self.render_into(vars, &mut out);
        out
    }

    /// Appends the rendering to `out`.
    pub fn render_into(&self, vars: Vars, out: &mut String) {
        use std::fmt::Write;
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                // Writing into a String cannot fail.
                Part::N => {
                    let _ = write!(out, "{}", vars.n);
                }
                Part::Worker => {
                    let _ = write!(out, "{}", vars.worker);
                }
                Part::Call => {
                    let _ = write!(out, "{}", vars.call);
                }
                Part::Run => {
                    let _ = write!(out, "{:08x}", vars.run);
                }
            }
        }
    }
}

/// How `{n}` is drawn for each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyRange {
    /// First value (inclusive).
    pub start: u64,
    /// Last value (inclusive).
    pub end: u64,
}

impl KeyRange {
    /// Parses `N`, `A..B` (B excluded) or `A..=B` (B included).
    pub fn parse(text: &str) -> Result<KeyRange, String> {
        let num = |s: &str| -> Result<u64, String> {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("bad key range {text:?}: {s:?} is not a non-negative integer"))
        };
        let (start, end) = if let Some((a, b)) = text.split_once("..=") {
            (num(a)?, num(b)?)
        } else if let Some((a, b)) = text.split_once("..") {
            let (a, b) = (num(a)?, num(b)?);
            if b <= a {
                return Err(format!(
                    "bad key range {text:?}: empty (write A..B with B > A)"
                ));
            }
            (a, b - 1)
        } else {
            let n = num(text)?;
            (n, n)
        };
        if end < start {
            return Err(format!("bad key range {text:?}: end is before start"));
        }
        Ok(KeyRange { start, end })
    }

    /// Number of values in the range (saturating at u64::MAX).
    pub fn len(&self) -> u64 {
        (self.end - self.start).saturating_add(1)
    }

    /// Always false: a range holds at least one value.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`-th value, wrapping around (for sequential drawing).
    pub fn nth_wrapping(&self, i: u64) -> u64 {
        self.start + i % self.len()
    }

    /// A uniformly random value.
    pub fn random(&self, rng: &mut impl rand::Rng) -> u64 {
        rand::RngExt::random_range(rng, self.start..=self.end)
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}..={}", self.start, self.end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(n: u64) -> Vars {
        Vars {
            n,
            worker: 3,
            call: 7,
            run: 0xab,
        }
    }

    #[test]
    fn renders_placeholders() {
        let t = Template::parse("user:{n}:w{worker}:c{call}:{run}").unwrap();
        assert_eq!(t.render(vars(42)), "user:42:w3:c7:000000ab");
        assert_eq!(Template::parse("u:{ n }").unwrap().render(vars(1)), "u:1");
        assert!(t.uses_n());
        assert!(!t.is_constant());
    }

    #[test]
    fn double_braces_are_literal() {
        let t = Template::parse("{{user:{n}}}").unwrap();
        assert_eq!(t.render(vars(5)), "{user:5}");
        assert_eq!(
            Template::parse("a{{b}}").unwrap().constant().unwrap(),
            "a{b}"
        );
    }

    #[test]
    fn rejects_unknown_and_unbalanced() {
        assert!(
            Template::parse("user:{id}")
                .unwrap_err()
                .reason
                .contains("unknown")
        );
        assert!(
            Template::parse("user:{n")
                .unwrap_err()
                .reason
                .contains("unclosed")
        );
        assert!(
            Template::parse("user:n}")
                .unwrap_err()
                .reason
                .contains("unmatched")
        );
        assert!(Template::parse("{}").is_err());
    }

    #[test]
    fn key_ranges() {
        assert_eq!(KeyRange::parse("7").unwrap(), KeyRange { start: 7, end: 7 });
        assert_eq!(
            KeyRange::parse("1..4").unwrap(),
            KeyRange { start: 1, end: 3 }
        );
        assert_eq!(
            KeyRange::parse("1..=4").unwrap(),
            KeyRange { start: 1, end: 4 }
        );
        assert_eq!(KeyRange::parse("1..=4").unwrap().len(), 4);
        assert!(KeyRange::parse("4..4").is_err());
        assert!(KeyRange::parse("5..=4").is_err());
        assert!(KeyRange::parse("x").is_err());
        assert!(KeyRange::parse("-1..3").is_err());
        let full = KeyRange::parse(&format!("0..={}", u64::MAX)).unwrap();
        assert_eq!(full.len(), u64::MAX);
        assert_eq!(KeyRange::parse("10..=12").unwrap().nth_wrapping(4), 11);
    }
}
