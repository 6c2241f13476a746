//! Config loading (`portcullis::config::load_str`: what `portcullis check`, `run` and a reload
//! call after reading the file), `${VAR}` interpolation included.
//!
//! Input: the TOML text (lossy UTF-8). Leading lines `#!NAME=value` (TOML comments, so line
//! numbers stay true) add variables to the `--env-file` map; `FUZZ_SECRET`, `FUZZ_EMPTY` and
//! `FUZZ_URL` are always set. Properties: never a panic; an error list is never empty and every
//! error carries a location inside the text (line ≥ 1 and at most one past the last line,
//! column ≥ 1 and within its line), names the file, has a message, and renders as
//! `file:line:col: …`.

#![no_main]

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

const FILE: &str = "/fuzz/portcullis.toml";

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let mut env: HashMap<String, String> = [
        ("FUZZ_SECRET", "fuzz-only-5b8e2c7f1a9d4063"),
        ("FUZZ_EMPTY", ""),
        ("FUZZ_URL", "http://127.0.0.1:3000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for line in src.lines() {
        let Some(def) = line.strip_prefix("#!") else {
            break;
        };
        if let Some((k, v)) = def.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let Err(errors) = portcullis::config::load_str(Path::new(FILE), &src, env) else {
        return;
    };
    assert!(!errors.0.is_empty(), "an error result without errors");
    let lines: Vec<&str> = src.split('\n').collect();
    for e in &errors.0 {
        assert_eq!(e.file, Path::new(FILE), "error names another file: {e}");
        assert!(
            !e.message.trim().is_empty(),
            "error without a message: {e:?}"
        );
        assert!(
            e.line >= 1 && e.line <= lines.len() + 1,
            "error without a location in the text (line {} of {}): {e}",
            e.line,
            lines.len()
        );
        let width = lines.get(e.line - 1).map_or(0, |l| l.chars().count());
        assert!(
            e.col >= 1 && e.col <= width + 1,
            "error column {} outside line {} ({} characters): {e}",
            e.col,
            e.line,
            width
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{FILE}:{}:{}: ", e.line, e.col)),
            "error does not render as file:line:col: {shown}"
        );
    }
    let _ = errors.to_string();
});
