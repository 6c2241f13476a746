//! JWT screening and verification, differential against jsonwebtoken: see
//! `fuzz/common/jwt_diff.rs` for the program format and the property (portcullis never accepts
//! a token jsonwebtoken rejects; when both accept, the same claims). The input as text is also
//! screened as a token of its own (no panic). Divergences already known and reported
//! (`jwt_diff::KNOWN_LOOSER`) are skipped unless `JWT_DIFF_STRICT=1`.

#![no_main]

#[path = "../common/jwt_diff.rs"]
mod jwt_diff;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static HARNESS: LazyLock<jwt_diff::Harness> = LazyLock::new(jwt_diff::Harness::new);

/// `JWT_DIFF_STRICT=1`: also fail on the known divergences (`jwt_diff::KNOWN_LOOSER`).
static STRICT: LazyLock<bool> = LazyLock::new(|| std::env::var_os("JWT_DIFF_STRICT").is_some());

fuzz_target!(|data: &[u8]| {
    jwt_diff::screen(&String::from_utf8_lossy(data));
    let verdict = HARNESS.run(data);
    if let Some(why) = HARNESS.violation(&verdict) {
        let known = verdict.ours.is_ok()
            && verdict.theirs.is_err()
            && jwt_diff::looser_class(&verdict.token)
                .is_some_and(|c| jwt_diff::KNOWN_LOOSER.contains(&c));
        if !known || *STRICT {
            panic!("{why}");
        }
    }
});
