//! RESP2 replies on the Redis store's invalidation subscription
//! (`portcullis::session::pubsub::parse`).
//!
//! Input: the bytes a Redis server (or anything posing as one on the network path) sends on the
//! subscription connection. Read as the subscriber reads them — one value after another — with
//! these properties:
//! - never a panic, and the parser stops (bounded length, items and nesting);
//! - a complete value consumes at least one byte and never more than it was given;
//! - the bytes of a complete value parse to the same value on their own, and any shorter prefix
//!   of them is "not complete yet", never a value or an error (a reply split across reads is
//!   read whole).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::session::pubsub::parse;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        let (value, used) = match parse(rest) {
            Ok(Some(v)) => v,
            Ok(None) | Err(_) => break,
        };
        assert!(
            used > 0 && used <= rest.len(),
            "consumed {used} of {}",
            rest.len()
        );
        let alone = parse(&rest[..used]);
        assert_eq!(
            alone.as_ref().map(|o| o.as_ref().map(|(v, n)| (v, *n))),
            Ok(Some((&value, used))),
            "the value's own bytes read differently: {:?}",
            String::from_utf8_lossy(&rest[..used])
        );
        // one shorter prefix, chosen by the input: not complete yet
        let cut = usize::from(rest[0]) % used;
        assert_eq!(
            parse(&rest[..cut]),
            Ok(None),
            "a prefix of {cut} of {used} bytes: {:?}",
            String::from_utf8_lossy(&rest[..used])
        );
        at += used;
    }
});
