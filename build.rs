//! Build metadata for `portcullis version`: the git commit and the build date, as the
//! compile-time variables PORTCULLIS_GIT_COMMIT and PORTCULLIS_BUILD_DATE.
//!
//! Sources, first found wins:
//! * commit: the environment variable PORTCULLIS_GIT_COMMIT (a Docker or tarball build, where
//!   there is no .git: `--build-arg GIT_COMMIT=$(git rev-parse HEAD)`), else
//!   `git rev-parse HEAD` when the crate is the root of a git checkout (with `-dirty` when
//!   tracked files differ; a tarball unpacked inside another checkout does not count), else
//!   "unknown". A missing `git` binary or a tree without .git is not an error.
//! * date: SOURCE_DATE_EPOCH (reproducible builds; the release workflow sets it to the
//!   commit's time), else the time the build script ran. UTC, `YYYY-MM-DD`.
//!
//! Release builds re-run when HEAD moves. Debug builds do not watch git: a changed build-script
//! output rebuilds the whole library and every test binary, which a commit alone should not
//! cost; a debug binary's commit is the one of its last full build.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PORTCULLIS_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let commit = std::env::var("PORTCULLIS_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PORTCULLIS_GIT_COMMIT={commit}");

    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=PORTCULLIS_BUILD_DATE={}", date(epoch));

    if std::env::var("PROFILE").as_deref() == Ok("release") {
        watch_head();
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn git_commit() -> Option<String> {
    // only this repository's commit: an unpacked tarball inside some other git checkout
    // must not report that checkout's
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var_os("CARGO_MANIFEST_DIR")?;
    if std::fs::canonicalize(top).ok()? != std::fs::canonicalize(here).ok()? {
        return None;
    }
    let head = git(&["rev-parse", "HEAD"])?;
    // `git diff --quiet` exits 1 when tracked files differ; anything else (no git) counts as clean
    let dirty = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--"])
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .status()
        .is_ok_and(|s| s.code() == Some(1));
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// Re-run when HEAD or the branch it names moves (paths from git itself: worktrees keep HEAD
/// and refs in different folders).
fn watch_head() {
    let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) else {
        return;
    };
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let abs = |p: String| {
        if Path::new(&p).is_absolute() {
            p
        } else {
            format!("{root}/{p}")
        }
    };
    println!("cargo:rerun-if-changed={}", abs(head));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(r) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={}", abs(r));
    }
    if let Some(p) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        println!("cargo:rerun-if-changed={}", abs(p));
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time (Howard Hinnant's days-to-civil).
fn date(epoch: u64) -> String {
    let z = (epoch / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
