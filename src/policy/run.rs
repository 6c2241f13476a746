//! `portcullis test` (and the tests `check` runs): each `[[test]]` judged offline by
//! [`super::judge`], compared with its `expect`, reported like a test runner — text, JSON or
//! JUnit XML — with what differed (status, route, reason: expected vs actual).

use std::fmt::Write;

use serde_json::json;

use super::{OFFLINE_NOTE, Outcome, judge};
use crate::config::{Config, PolicyTest, TestIdentity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum TestFormat {
    #[default]
    Text,
    Json,
    Junit,
}

/// One test's result.
#[derive(Debug)]
pub struct TestResult<'t> {
    pub test: &'t PolicyTest,
    pub actual: Outcome,
    /// What differed: (field, expected, actual).
    pub diffs: Vec<(&'static str, String, String)>,
}

impl TestResult<'_> {
    pub fn passed(&self) -> bool {
        self.diffs.is_empty()
    }
}

/// Runs `tests` against `cfg`, in order.
pub async fn run_tests<'t>(cfg: &Config, tests: &'t [PolicyTest]) -> Vec<TestResult<'t>> {
    let mut out = Vec::with_capacity(tests.len());
    for t in tests {
        let actual = judge(cfg, &t.request, &t.identity).await;
        let mut diffs = Vec::new();
        let status = |s: Option<u16>| s.map_or("endpoint".to_string(), |s| s.to_string());
        if actual.status != Some(t.expect.status) {
            diffs.push(("status", t.expect.status.to_string(), status(actual.status)));
        }
        if let Some(r) = &t.expect.route
            && actual.route.as_deref() != Some(r)
        {
            diffs.push((
                "route",
                r.clone(),
                actual.route.clone().unwrap_or_else(|| "(none)".into()),
            ));
        }
        if let Some(r) = &t.expect.reason
            && actual.reason != Some(r.as_str())
        {
            diffs.push((
                "reason",
                r.clone(),
                actual.reason.unwrap_or("(none: forwarded)").to_string(),
            ));
        }
        out.push(TestResult {
            test: t,
            actual,
            diffs,
        });
    }
    out
}

/// How the identity is described in reports.
pub fn identity_label(who: &TestIdentity) -> String {
    match who {
        TestIdentity::Anonymous => "anonymous".into(),
        TestIdentity::Claims(c) => format!("synthetic {}", serde_json::Value::Object(c.clone())),
        TestIdentity::Token { path, .. } => {
            format!("token file {} (signature not checked)", path.display())
        }
    }
}

/// The report, in `format`.
pub fn report(results: &[TestResult<'_>], format: TestFormat) -> String {
    let failed = results.iter().filter(|r| !r.passed()).count();
    let passed = results.len() - failed;
    match format {
        TestFormat::Text => {
            let mut out = format!(
                "running {} policy test{} ({OFFLINE_NOTE})\n",
                results.len(),
                if results.len() == 1 { "" } else { "s" }
            );
            for r in results {
                let t = r.test;
                let _ = writeln!(
                    out,
                    "{} {}",
                    if r.passed() { "PASS" } else { "FAIL" },
                    t.name
                );
                if !r.passed() {
                    let _ = writeln!(out, "     at {}", t.at);
                    let _ = writeln!(out, "     request: {}", t.request.line());
                    let _ = writeln!(out, "     identity: {}", identity_label(&t.identity));
                    for (what, want, got) in &r.diffs {
                        let _ = writeln!(out, "     {what}: expected {want}, got {got}");
                    }
                    if !r.actual.message.is_empty() {
                        let _ = writeln!(out, "     why: {}", r.actual.message);
                    }
                }
            }
            let _ = writeln!(
                out,
                "\ntest result: {}. {passed} passed; {failed} failed",
                if failed == 0 { "ok" } else { "FAILED" }
            );
            out
        }
        TestFormat::Json => {
            let tests: Vec<_> = results
                .iter()
                .map(|r| {
                    json!({
                        "name": r.test.name,
                        "at": r.test.at,
                        "passed": r.passed(),
                        "request": r.test.request.line(),
                        "identity": identity_label(&r.test.identity),
                        "expected": {
                            "status": r.test.expect.status,
                            "route": r.test.expect.route,
                            "reason": r.test.expect.reason,
                        },
                        "actual": {
                            "status": r.actual.status,
                            "route": r.actual.route,
                            "reason": r.actual.reason,
                            "message": r.actual.message,
                        },
                        "differences": r.diffs.iter().map(|(w, e, a)| json!({
                            "field": w, "expected": e, "actual": a,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let v = json!({
                "offline": true,
                "note": OFFLINE_NOTE,
                "passed": passed,
                "failed": failed,
                "tests": tests,
            });
            format!("{v:#}\n")
        }
        TestFormat::Junit => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            let _ = writeln!(
                out,
                "<testsuites name=\"portcullis policy\" tests=\"{}\" failures=\"{failed}\">",
                results.len()
            );
            let _ = writeln!(
                out,
                "  <testsuite name=\"portcullis policy\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\">",
                results.len()
            );
            let _ = writeln!(
                out,
                "    <properties><property name=\"note\" value=\"{}\"/></properties>",
                xml(OFFLINE_NOTE)
            );
            for r in results {
                let t = r.test;
                let _ = write!(
                    out,
                    "    <testcase name=\"{}\" classname=\"portcullis.policy\" file=\"{}\"",
                    xml(&t.name),
                    xml(&t.at)
                );
                if r.passed() {
                    out.push_str("/>\n");
                    continue;
                }
                let summary: Vec<String> = r
                    .diffs
                    .iter()
                    .map(|(w, e, a)| format!("{w}: expected {e}, got {a}"))
                    .collect();
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"decision\">{}\nrequest: {}\nidentity: {}\nwhy: {}</failure>\n    </testcase>",
                    xml(&summary.join("; ")),
                    xml(&summary.join("\n")),
                    xml(&t.request.line()),
                    xml(&identity_label(&t.identity)),
                    xml(&r.actual.message)
                );
            }
            out.push_str("  </testsuite>\n</testsuites>\n");
            out
        }
    }
}

/// Escapes text for XML content and attribute values.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}
