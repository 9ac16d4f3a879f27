//! The one summary at the end of `cargo xtask test`: totals over every test
//! binary, each failing test named with its binary, binaries that ended
//! without a result (crashed or killed), and cargo's rerun hints.
//!
//! Read from cargo's own lines (stdout and stderr merged, in order):
//! `Running <source> (<binary>)` / `Doc-tests <crate>` start a binary,
//! `test <name> ... FAILED` names a failure, `test result: …` ends it, and
//! `error: test failed, to rerun pass <args>` is cargo's verdict on it.
use std::fmt::Write as _;

#[derive(Debug, Default)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// (binary, test) for every `... FAILED` line.
    pub failed_tests: Vec<(String, String)>,
    /// Binaries that started but printed no `test result:` line.
    pub crashed: Vec<String>,
    /// cargo's `to rerun pass …` arguments of each failing target.
    pub rerun: Vec<String>,
    /// The binary running now, and whether its result line came.
    current: Option<(String, bool)>,
}

impl Summary {
    pub fn feed(&mut self, line: &str) {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            self.start(binary_label(rest));
        } else if let Some(krate) = trimmed.strip_prefix("Doc-tests ") {
            self.start(format!("{krate} (doc-tests)"));
        } else if let Some(rest) = trimmed.strip_prefix("test result: ") {
            self.passed += count(rest, "passed");
            self.failed += count(rest, "failed");
            self.ignored += count(rest, "ignored");
            if let Some((_, done)) = &mut self.current {
                *done = true;
            }
        } else if let Some(name) = trimmed
            .strip_prefix("test ")
            .and_then(|t| t.strip_suffix(" ... FAILED"))
        {
            let binary = self.current_name();
            self.failed_tests.push((binary, name.to_string()));
        } else if let Some(args) = trimmed.strip_prefix("error: test failed, to rerun pass ") {
            self.rerun.push(args.trim_matches('`').to_string());
        }
    }

    /// True when nothing failed or crashed.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.failed_tests.is_empty() && self.crashed().is_empty()
    }

    /// The whole summary, ending with a newline.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n==> test summary");
        let _ = writeln!(
            out,
            "tests: {} passed, {} failed, {} ignored",
            self.passed, self.failed, self.ignored
        );
        for (binary, test) in &self.failed_tests {
            let _ = writeln!(out, "  FAILED {binary}: {test}");
        }
        for binary in self.crashed() {
            let _ = writeln!(
                out,
                "  FAILED {binary}: ended without a result (crashed or killed; its output is above)"
            );
        }
        for args in &self.rerun {
            let _ = writeln!(out, "  rerun: cargo test {args}");
        }
        out
    }

    /// One line for the error message.
    pub fn failures_line(&self) -> String {
        let crashed = self.crashed();
        let mut names: Vec<String> = self
            .failed_tests
            .iter()
            .map(|(b, t)| format!("{b}: {t}"))
            .collect();
        names.extend(crashed.iter().map(|b| format!("{b}: crashed")));
        if names.is_empty() {
            "no test failed (a build or harness error; see above)".to_string()
        } else {
            format!("{} failing: {}", names.len(), names.join("; "))
        }
    }

    fn start(&mut self, label: String) {
        self.finish_current();
        self.current = Some((label, false));
    }

    fn finish_current(&mut self) {
        if let Some((label, false)) = self.current.take() {
            self.crashed.push(label);
        }
    }

    fn current_name(&self) -> String {
        self.current
            .as_ref()
            .map_or_else(|| "?".to_string(), |(l, _)| l.clone())
    }

    /// Crashed binaries, counting the one still running at the end.
    fn crashed(&self) -> Vec<String> {
        let mut all = self.crashed.clone();
        if let Some((label, false)) = &self.current {
            all.push(label.clone());
        }
        all
    }
}

/// `tests/mesh.rs (target/debug/deps/mesh-0a1b)` → `mesh (tests/mesh.rs)`;
/// `unittests src/lib.rs (target/debug/deps/mesh_agent-0a1b)` →
/// `mesh_agent (unittests src/lib.rs)`.
fn binary_label(running: &str) -> String {
    let Some((source, binary)) = running.rsplit_once(" (") else {
        return running.to_string();
    };
    let file = binary
        .trim_end_matches(')')
        .rsplit('/')
        .next()
        .unwrap_or("");
    let stem = file.rsplit_once('-').map_or(file, |(stem, _hash)| stem);
    format!("{stem} ({source})")
}

/// The number before `label` in "ok. 7 passed; 0 failed; …".
fn count(summary: &str, label: &str) -> u64 {
    let summary = summary
        .trim_start_matches("ok.")
        .trim_start_matches("FAILED.");
    summary
        .split(';')
        .find_map(|part| part.trim().strip_suffix(label)?.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_cargo_summaries() {
        let line =
            "ok. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.5s";
        assert_eq!(count(line, "passed"), 7);
        assert_eq!(count(line, "failed"), 2);
        assert_eq!(count("FAILED. 3 passed; 1 failed; 0 ignored", "failed"), 1);
    }

    /// What `cargo test --no-fail-fast` prints when one test fails, one
    /// binary crashes and the rest pass.
    const RUN: &str = "\
     Running unittests src/lib.rs (target/debug/deps/mesh_agent-0123abcd)
running 2 tests
test a ... ok
test b ... ok
test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
     Running tests/agent_capabilities.rs (target/debug/deps/agent_capabilities-89ab)
running 2 tests
test with_perfmon_instead_of_sys_admin_enrolment_still_fails ... FAILED
test agent_works ... ok
failures:
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3s
error: test failed, to rerun pass `-p mesh-e2e --test agent_capabilities`
     Running tests/capture.rs (target/debug/deps/capture-cdef)
running 1 test
error: test failed, to rerun pass `-p mesh-e2e --test capture`
Caused by:
  process didn't exit successfully: `capture-cdef` (signal: 6, SIGABRT: process abort signal)
     Running tests/mesh.rs (target/debug/deps/mesh-4567)
running 3 tests
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9s
   Doc-tests mesh_xds
running 0 tests
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
error: 2 targets failed:
";

    #[test]
    fn every_binary_runs_into_one_summary_naming_each_failure() {
        let mut s = Summary::default();
        RUN.lines().for_each(|l| s.feed(l));
        assert_eq!((s.passed, s.failed, s.ignored), (6, 1, 1));
        assert_eq!(
            s.failed_tests,
            vec![(
                "agent_capabilities (tests/agent_capabilities.rs)".to_string(),
                "with_perfmon_instead_of_sys_admin_enrolment_still_fails".to_string()
            )]
        );
        assert_eq!(s.crashed(), vec!["capture (tests/capture.rs)".to_string()]);
        assert_eq!(s.rerun.len(), 2);
        assert!(!s.ok());
        let report = s.report();
        assert!(
            report.contains("tests: 6 passed, 1 failed, 1 ignored"),
            "{report}"
        );
        assert!(report.contains("FAILED capture (tests/capture.rs): ended without a result"));
        assert!(
            s.failures_line().starts_with("2 failing: "),
            "{}",
            s.failures_line()
        );
    }

    #[test]
    fn a_clean_run_is_ok() {
        let mut s = Summary::default();
        RUN.lines()
            .take(5)
            .chain(RUN.lines().skip(17))
            .for_each(|l| s.feed(l));
        assert!(s.ok(), "{s:?}");
        assert_eq!(s.passed, 5);
    }
}
