//! Regexes from Istio configuration, compiled as Envoy compiles them.
//!
//! Envoy matches `safe_regex` with RE2 and refuses programs over
//! `re2.max_program_size.error_level`. Envoy's own default is 100
//! instructions, which refuses everyday patterns such as
//! `[a-z0-9-]{1,63}`; Istio's bootstrap raises it to 32768, and that is
//! what our users' configuration is written against. The limit keeps a
//! VirtualService or AuthorizationPolicy from making a proxy spend
//! unbounded memory compiling, or CPU matching, one pattern. The control plane checks
//! every regex with [`compile`] before it serves a configuration and the
//! waypoint compiles what it receives with the same function, so both agree
//! on what is accepted.
//!
//! Two differences from the `regex` crate are bridged here:
//! - RE2's `\w`, `\d`, `\s` (and negations) are ASCII; the crate's are
//!   Unicode and compile 10–50× larger. [`re2_pattern`] rewrites them to
//!   their ASCII classes, so `\w+` means what it means in Envoy and costs
//!   what it costs there.
//! - RE2 counts instructions, the crate bytes of compiled program:
//!   [`PROGRAM_SIZE_LIMIT`] is the measured equivalent of Istio's limit.
use regex_syntax::ast::{self, Ast, ClassPerlKind, ClassSetItem, Visitor};

/// The RE2 program-size limit Istio gives its proxies
/// (`re2.max_program_size.error_level` in Istio's bootstrap).
pub const ISTIO_MAX_PROGRAM_SIZE: usize = 32_768;

/// The same budget for the `regex` crate, in bytes of compiled program.
/// Measured on regex 1.x with [`re2_pattern`]: ASCII literals and classes
/// cost about 35 bytes per RE2 instruction, a Unicode `.` somewhat more per
/// instruction of its UTF-8 expansion. 32 bytes per instruction (1 MiB)
/// admits what Istio's limit admits within a small factor and refuses
/// what it refuses (`(a{1000}){100}`: 100 000 instructions).
pub const PROGRAM_SIZE_LIMIT: usize = ISTIO_MAX_PROGRAM_SIZE * 32;

/// The lazy DFA's cache per regex: matching stays linear; a full cache
/// makes the search slower, never bigger.
pub const DFA_SIZE_LIMIT: usize = 256 * 1024;

/// RE2 refuses counted repetitions above this (`a{1001}` is a syntax error
/// in Envoy).
pub const RE2_MAX_REPEAT: u32 = 1000;

/// Why a pattern is refused.
#[derive(Debug, thiserror::Error)]
pub enum RegexError {
    #[error(
        "regex {pattern:?} is over the program-size budget ({limit} bytes compiled, the \
         equivalent of Istio's limit of {ISTIO_MAX_PROGRAM_SIZE} RE2 instructions): simplify it"
    )]
    TooBig { pattern: String, limit: usize },
    /// `error` points into the pattern as the configuration wrote it.
    #[error("regex {pattern:?} is not a valid RE2 regex: {error}")]
    Invalid { pattern: String, error: String },
}

/// How a configured regex must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchoring {
    /// The whole input (Envoy's `safe_regex` matchers).
    Full,
    /// Anywhere in the input (`regex_rewrite`, searches).
    Search,
}

/// Compiles `pattern` with RE2's semantics ([`re2_pattern`]) and the budget.
pub fn compile(pattern: &str, anchoring: Anchoring) -> Result<regex::Regex, RegexError> {
    let invalid = |error: String| RegexError::Invalid {
        pattern: pattern.to_string(),
        error,
    };
    // Syntax errors are reported against the pattern as written, not the
    // rewritten and anchored one the engine sees.
    regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(count) = largest_repetition(pattern).filter(|&n| n > RE2_MAX_REPEAT) {
        return Err(invalid(format!(
            "repetition count {count} is over RE2's limit of {RE2_MAX_REPEAT}"
        )));
    }
    let re2 = re2_pattern(pattern);
    let engine = match anchoring {
        Anchoring::Full => format!("^(?:{re2})$"),
        Anchoring::Search => re2,
    };
    regex::RegexBuilder::new(&engine)
        .size_limit(PROGRAM_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|error| match error {
            regex::Error::CompiledTooBig(limit) => RegexError::TooBig {
                pattern: pattern.to_string(),
                limit,
            },
            error => invalid(error.to_string()),
        })
}

/// `pattern` with every Perl class (`\w \W \d \D \s \S`) replaced by the
/// ASCII class RE2 gives it. A pattern that does not parse is returned as
/// it is (compiling it reports the error).
pub fn re2_pattern(pattern: &str) -> String {
    let Ok(parsed) = ast::parse::Parser::new().parse(pattern) else {
        return pattern.to_string();
    };
    let Ok(mut found) = ast::visit(&parsed, PerlClasses::default()) else {
        return pattern.to_string();
    };
    found.0.sort_by_key(|c| c.start);
    let mut out = String::with_capacity(pattern.len() + 16 * found.0.len());
    let mut at = 0;
    for class in found.0 {
        out.push_str(&pattern[at..class.start]);
        out.push_str(class.replacement);
        at = class.end;
    }
    out.push_str(&pattern[at..]);
    out
}

/// The largest count of any `{n}`, `{n,}` or `{n,m}` in `pattern`.
fn largest_repetition(pattern: &str) -> Option<u32> {
    struct Largest(Option<u32>);
    impl Visitor for Largest {
        type Output = Option<u32>;
        type Err = ();
        fn finish(self) -> Result<Option<u32>, ()> {
            Ok(self.0)
        }
        fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
            if let Ast::Repetition(rep) = ast {
                if let ast::RepetitionKind::Range(range) = &rep.op.kind {
                    let n = match *range {
                        ast::RepetitionRange::Exactly(n) | ast::RepetitionRange::AtLeast(n) => n,
                        ast::RepetitionRange::Bounded(m, n) => m.max(n),
                    };
                    self.0 = Some(self.0.map_or(n, |o| o.max(n)));
                }
            }
            Ok(())
        }
    }
    let parsed = ast::parse::Parser::new().parse(pattern).ok()?;
    ast::visit(&parsed, Largest(None)).ok().flatten()
}

/// One Perl class in the pattern: its byte span and RE2's ASCII class for
/// it (`\d` = `[0-9]`, `\s` = `[\t\n\f\r ]`, `\w` = `[0-9A-Za-z_]`). The
/// replacement is a bracketed class, valid both alone and nested inside a
/// set (`[\w.-]` → `[[0-9A-Za-z_].-]`), where it keeps its meaning whatever
/// surrounds it.
#[derive(Debug)]
struct PerlClass {
    start: usize,
    end: usize,
    replacement: &'static str,
}

impl PerlClass {
    fn new(class: &ast::ClassPerl) -> Self {
        let replacement = match (&class.kind, class.negated) {
            (ClassPerlKind::Digit, false) => "[0-9]",
            (ClassPerlKind::Digit, true) => "[^0-9]",
            (ClassPerlKind::Space, false) => r"[\t\n\f\r ]",
            (ClassPerlKind::Space, true) => r"[^\t\n\f\r ]",
            (ClassPerlKind::Word, false) => "[0-9A-Za-z_]",
            (ClassPerlKind::Word, true) => "[^0-9A-Za-z_]",
        };
        PerlClass {
            start: class.span.start.offset,
            end: class.span.end.offset,
            replacement,
        }
    }
}

#[derive(Default)]
struct PerlClasses(Vec<PerlClass>);

impl Visitor for PerlClasses {
    type Output = Self;
    type Err = ();

    fn finish(self) -> Result<Self, ()> {
        Ok(self)
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
        if let Ast::ClassPerl(class) = ast {
            self.0.push(PerlClass::new(class));
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), ()> {
        if let ClassSetItem::Perl(class) = item {
            self.0.push(PerlClass::new(class));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(p: &str) -> regex::Regex {
        compile(p, Anchoring::Full).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn perl_classes_are_ascii_as_in_re2() {
        assert_eq!(
            re2_pattern(r"/api/\w+/\d{2}"),
            "/api/[0-9A-Za-z_]+/[0-9]{2}"
        );
        assert_eq!(re2_pattern(r"[\w.-]+"), "[[0-9A-Za-z_].-]+");
        assert_eq!(re2_pattern(r"\S+\s\D"), r"[^\t\n\f\r ]+[\t\n\f\r ][^0-9]");
        // Escaped backslashes and classes inside sets stay what they are.
        assert_eq!(re2_pattern(r"\\w"), r"\\w");
        assert!(full(r"\w+").is_match("abc_09"));
        assert!(!full(r"\w+").is_match("é"), "RE2's \\w is ASCII");
        assert!(full(r"\W").is_match("é"));
        assert!(full(r"[^\w]").is_match("é"));
        assert!(!full(r"\d").is_match("٣"), "RE2's \\d is ASCII");
    }

    #[test]
    fn what_istio_accepts_compiles() {
        for p in [
            r".*Firefox.*",
            r"/product/[0-9]+",
            r"/api/v[0-9]+/.*",
            r"^/(users|orders)/\w+/items/\d+$",
            r"(?i)bearer [a-z0-9._-]+",
            r"\w+@\w+\.com",
            r"/[a-z0-9-]{1,63}",
            r"/static/[a-zA-Z0-9._-]{0,200}/.*",
            r".{1,100}",
            r"\w{3,8}",
        ] {
            full(p);
        }
    }

    #[test]
    fn what_istios_limit_refuses_is_refused() {
        for p in [
            r"(a{1000}){100}",
            r"(.{1,1000}){10}",
            r"(\w{1,100}){1,1000}",
            r"([a-z]{1000}){50}",
        ] {
            match compile(p, Anchoring::Full) {
                Err(RegexError::TooBig { pattern, .. }) => assert_eq!(pattern, p),
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn repetitions_over_re2s_limit_are_invalid() {
        full("a{1000}");
        for p in ["a{1001}", r"\w{5000}", "(ab){2,1001}", "x{1001,}"] {
            match compile(p, Anchoring::Full) {
                Err(RegexError::Invalid { error, .. }) => {
                    assert!(error.contains("over RE2's limit of 1000"), "{p}: {error}")
                }
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_patterns_name_the_pattern() {
        let err = compile("(", Anchoring::Search).unwrap_err();
        assert!(
            matches!(&err, RegexError::Invalid { pattern, .. } if pattern == "("),
            "{err}"
        );
    }
}
