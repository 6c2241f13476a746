//! Writes the generated seeds of `fuzz/corpus`: session cookies genuinely sealed under the
//! `session_cookie` target's fixed secret (one cookie, several chunks in one header, chunks
//! over several headers, the `__Host-` name) and the `jwt_verify` programs (a valid token per
//! algorithm, one program per kind of mutation). Run from anywhere:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make_seeds`. The other seeds are written
//! by hand.

#[path = "common/jwt_diff.rs"]
mod jwt_diff;
#[path = "common/session.rs"]
mod session;

use std::path::Path;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    let dir = corpus.join("session_cookie");
    let sessions = session::sessions(session::SECRET);
    let sealed = |big: bool, secure: bool| {
        let set =
            session::ready(sessions.save(&session::sample(big), None, &[], session::attrs(secure)))
                .expect("seal");
        session::cookie_header_for(&set)
    };
    let single = sealed(false, false);
    let chunked = sealed(true, false);
    assert!(chunked.windows(12).any(|w| w == b"portcullis.2"));
    let seed = |name: &str, mode: u8, body: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(body);
        write(&dir, name, &v);
    };
    seed(
        "sealed-single",
        0,
        &[b"theme=dark; ", &single[..], b"; lang=en"].concat(),
    );
    seed("sealed-chunked", 0, &chunked);
    // Chunks in reverse order, one Cookie header each.
    let mut lines: Vec<&[u8]> = chunked
        .split(|b| *b == b';')
        .map(|p| p.trim_ascii())
        .collect();
    lines.reverse();
    seed("sealed-chunked-headers", 0, &lines.join(&b"\n"[..]));
    seed("sealed-host", 2, &sealed(false, true));
    seed("round-trip-small", 1, b"\x00\x10alice");
    seed(
        "round-trip-chunks",
        1,
        b"\x1b\x58bob \xe2\x98\x83 \"quoted\" \\ \x01",
    );

    let dir = corpus.join("jwt_verify");
    for (name, program) in jwt_diff::seed_programs() {
        write(&dir, &name, &program);
    }
    println!("seeds written under {}", corpus.display());
}
