use super::*;
use http::header::HeaderMap;

fn cfg() -> config::Session {
    config::Session {
        secret: config::Secret::new("s".repeat(40)),
        previous_secrets: vec![],
        store: config::SessionStore::Cookie,
        cookie_name: "portcullis".into(),
        lifetime: std::time::Duration::from_secs(3600),
        idle_timeout: std::time::Duration::from_secs(600),
        local_cache: std::time::Duration::from_secs(1),
        refresh: true,
        post_logout_redirect: "/".into(),
        cookie_domain: None,
    }
}

fn data(big: usize) -> SessionData {
    SessionData {
        id: crypto::random_token(),
        provider: "p".into(),
        iss: Some("https://op.example".into()),
        sub: "alice".into(),
        email: Some("alice@example.com".into()),
        name: None,
        preferred_username: None,
        roles: vec!["admin".into()],
        roles_rule: None,
        claims: Map::new(),
        access_token: "x".repeat(big),
        refresh_token: None,
        id_token: None,
        sid: Some("sid1".into()),
        created_at: now(),
        created_ms: now_ms(),
        last_seen: now(),
        access_expires_at: None,
        access_issued_at: now(),
        identity: Default::default(),
    }
}

/// Turns Set-Cookie values into a Cookie request header (in the given order).
fn as_request(set: &[HeaderValue]) -> Vec<(String, String)> {
    set.iter()
        .filter_map(|v| {
            let s = v.to_str().ok()?;
            let first = s.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            (!v.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn headers(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    h.insert(COOKIE, HeaderValue::from_str(&v).unwrap());
    h
}

const PLAIN: CookieAttrs<'static> = CookieAttrs::PLAIN;

#[tokio::test]
async fn small_session_one_cookie_round_trip() {
    let s = Sessions::new(&cfg()).unwrap();
    let d = data(100);
    let set = s.save(&d, None, &[], PLAIN).await.unwrap();
    assert_eq!(set.len(), 1);
    let v = set[0].to_str().unwrap();
    assert!(
        v.starts_with("portcullis=")
            && v.contains("HttpOnly")
            && v.contains("SameSite=Lax")
            && v.contains("Path=/")
    );
    assert!(!v.contains("Secure"));
    let got = s
        .load(&headers(&as_request(&set)), PLAIN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*got.data, d);
}

#[tokio::test]
async fn https_uses_host_prefix_and_secure() {
    let s = Sessions::new(&cfg()).unwrap();
    let tls = CookieAttrs {
        secure: true,
        domain: None,
    };
    let set = s.save(&data(10), None, &[], tls).await.unwrap();
    let v = set[0].to_str().unwrap();
    assert!(
        v.starts_with("__Host-portcullis=") && v.contains("; Secure"),
        "{v}"
    );
    // a plain-HTTP name does not read it
    assert!(
        s.load(&headers(&as_request(&set)), PLAIN)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn large_session_is_chunked_and_reassembled() {
    let s = Sessions::new(&cfg()).unwrap();
    let d = data(9000);
    let set = s.save(&d, None, &[], PLAIN).await.unwrap();
    assert!(set.len() >= 3, "{}", set.len());
    for v in &set {
        assert!(v.len() < 4000);
    }
    let pairs = as_request(&set);
    assert_eq!(pairs[1].0, "portcullis.1");
    assert_eq!(
        *s.load(&headers(&pairs), PLAIN).await.unwrap().unwrap().data,
        d
    );

    // missing last chunk
    let mut truncated = pairs.clone();
    truncated.pop();
    assert!(s.load(&headers(&truncated), PLAIN).await.unwrap().is_none());
    // reordered chunk values
    let mut swapped = pairs.clone();
    let v1 = swapped[1].1.clone();
    swapped[1].1 = swapped[2].1.clone();
    swapped[2].1 = v1;
    assert!(s.load(&headers(&swapped), PLAIN).await.unwrap().is_none());
    // one byte changed in a middle chunk
    let mut tampered = pairs.clone();
    let mut b = tampered[1].1.clone().into_bytes();
    b[10] = if b[10] == b'a' { b'b' } else { b'a' };
    tampered[1].1 = String::from_utf8(b).unwrap();
    assert!(s.load(&headers(&tampered), PLAIN).await.unwrap().is_none());
    // a truncated chunk
    let mut cut = pairs.clone();
    cut[0].1.truncate(100);
    assert!(s.load(&headers(&cut), PLAIN).await.unwrap().is_none());
}

#[tokio::test]
async fn shrinking_session_clears_stale_chunks() {
    let s = Sessions::new(&cfg()).unwrap();
    let big = s.save(&data(9000), None, &[], PLAIN).await.unwrap();
    let present: Vec<String> = as_request(&big).into_iter().map(|(k, _)| k).collect();
    let small = s.save(&data(10), None, &present, PLAIN).await.unwrap();
    let cleared: Vec<&str> = small
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.contains("Max-Age=0"))
        .collect();
    assert_eq!(cleared.len(), present.len() - 1, "{small:?}");
}

#[tokio::test]
async fn other_secret_refused_previous_secret_accepted() {
    let old = Sessions::new(&cfg()).unwrap();
    let set = old.save(&data(10), None, &[], PLAIN).await.unwrap();
    let h = headers(&as_request(&set));

    let mut other = cfg();
    other.secret = config::Secret::new("o".repeat(40));
    assert!(
        Sessions::new(&other)
            .unwrap()
            .load(&h, PLAIN)
            .await
            .unwrap()
            .is_none()
    );

    other.previous_secrets = vec![config::Secret::new("s".repeat(40))];
    assert!(
        Sessions::new(&other)
            .unwrap()
            .load(&h, PLAIN)
            .await
            .unwrap()
            .is_some()
    );
}

#[test]
fn expiry_and_refresh_windows() {
    let c = cfg();
    let mut d = data(1);
    let t = now();
    d.created_at = t - 3599;
    d.last_seen = t;
    assert!(d.is_live(&c, t));
    assert!(!d.is_live(&c, t + 1), "absolute lifetime");
    d.created_at = t;
    d.last_seen = t - 600;
    assert!(!d.is_live(&c, t), "idle timeout");

    d.refresh_token = Some("r".into());
    d.access_issued_at = t;
    d.access_expires_at = Some(t + 300);
    assert!(!d.needs_refresh(t));
    assert!(d.needs_refresh(t + 240));
    d.access_expires_at = Some(t + 20);
    assert!(!d.needs_refresh(t + 9));
    assert!(d.needs_refresh(t + 10));
    d.refresh_token = None;
    assert!(!d.needs_refresh(t + 100));
}

/// Only the names this proxy writes are chunks: `base.N` with N in 1..=MAX_CHUNKS, digits
/// without sign or leading zero; a gap ends the value, and every chunk is named for clearing.
#[test]
fn chunk_names_are_exact() {
    let c = [
        ("p", "A"),
        ("p.+1", "X"),
        ("p.01", "Y"),
        ("p.1", "B"),
        ("p.3", "D"),
    ];
    assert_eq!(chunked_value(&c, "p").as_deref(), Some("AB"));
    assert_eq!(chunk_names(&c, "p"), ["p", "p.1", "p.3"]);
    assert_eq!(chunked_value(&[("p", "A")], "p").as_deref(), Some("A"));
    assert_eq!(chunked_value(&[("p.1", "B")], "p"), None);
}

/// A session cookie or chunk name sent twice, in either order, yields no session: which copy
/// is genuine cannot be told.
#[test]
fn a_name_sent_twice_is_no_session() {
    assert_eq!(session_value(&[("p", "A"), ("p", "B")], "p"), Err("p"));
    assert_eq!(
        session_value(&[("p", "B"), ("x", "1"), ("p", "A")], "p"),
        Err("p")
    );
    let c = [("p", "A"), ("p.1", "B"), ("p.2", "C"), ("p.1", "B")];
    assert_eq!(session_value(&c, "p"), Err("p.1"));
    assert_eq!(chunked_value(&c, "p"), None);
    // also beyond a gap, or without the base cookie
    assert_eq!(
        session_value(&[("p", "A"), ("p.3", "D"), ("p.3", "D")], "p"),
        Err("p.3")
    );
    assert_eq!(
        session_value(&[("p.1", "B"), ("p.1", "B")], "p"),
        Err("p.1")
    );
    // names that are not the session's are not counted
    let c = [
        ("p", "A"),
        ("p.01", "Y"),
        ("p.01", "Y"),
        ("px", "1"),
        ("px", "2"),
        ("P", "Q"),
    ];
    assert_eq!(session_value(&c, "p").unwrap().as_deref(), Some("A"));
}

/// A memo is derived once, forgotten by `clear` and by a clone.
#[test]
fn memo_clears() {
    let mut m = crate::identity::Memo::<u32>::default();
    assert_eq!(*m.get_or_init(|| 1), 1);
    assert_eq!(*m.get_or_init(|| 2), 1);
    assert_eq!(*m.clone().get_or_init(|| 3), 3);
    m.clear();
    assert_eq!(*m.get_or_init(|| 4), 4);
}

#[test]
fn revocation_list() {
    let r = Revocations::default();
    let d = data(1);
    assert!(!r.is_revoked(&d));
    r.revoke("p", Ended::Sid("other"), now_ms(), now() + 100);
    assert!(!r.is_revoked(&d));
    r.revoke("p", Ended::Sid("sid1"), now_ms(), now() + 100);
    assert!(r.is_revoked(&d));
    let r = Revocations::default();
    r.revoke("p", Ended::Sub("alice"), d.created_ms - 1, now() + 100);
    assert!(
        !r.is_revoked(&d),
        "a session created after the logout is not revoked"
    );
}

/// A reload that lengthens `lifetime` keeps revocations as much longer: the sessions they
/// match live that much longer too.
#[test]
fn revocations_extended_for_a_longer_lifetime() {
    let r = Revocations::default();
    let d = data(1);
    r.revoke_session(&d.id, now() - 1);
    r.extend(100);
    // a later write forgets what has expired: the extended entry has not
    r.revoke_session("other", now() + 100);
    assert!(r.is_revoked(&d), "forgotten before its session's new end");
}

/// Attack: a back-channel logout at one provider naming the `sid` or `sub` of another
/// provider's session ended that session too (the keys were `sid:<sid>`, not per provider).
#[test]
fn revocations_are_per_provider() {
    let r = Revocations::default();
    let d = data(1);
    r.revoke("other", Ended::Sid("sid1"), now_ms() + 1, now() + 100);
    r.revoke("other", Ended::Sub("alice"), now_ms() + 1, now() + 100);
    assert!(!r.is_revoked(&d), "another provider's logout");
    r.revoke("p", Ended::Sub("alice"), now_ms() + 1, now() + 100);
    assert!(r.is_revoked(&d));
}

/// Logout revokes the session by id: every version of its cookie (same id) is refused, other
/// sessions of the same user are not; expired entries are forgotten.
#[test]
fn logout_revokes_by_session_id() {
    let r = Revocations::default();
    let d = data(1);
    let mut slid = d.clone();
    slid.last_seen += 61;
    let mut other = data(1);
    other.sid = None;
    r.revoke_session(&d.id, now() + 100);
    assert!(r.is_revoked(&d) && r.is_revoked(&slid));
    assert!(!r.is_revoked(&other));
    let r = Revocations::default();
    r.revoke_session(&d.id, now() - 1);
    r.revoke_session("another", now() + 100);
    assert!(!r.is_revoked(&d), "an entry past its lifetime is forgotten");
}

/// A session written before sessions recorded their issuer takes it from its stored ID token.
#[tokio::test]
async fn legacy_session_gets_its_issuer_from_the_id_token() {
    let s = Sessions::new(&cfg()).unwrap();
    let mut d = data(10);
    d.iss = None;
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"iss":"https://legacy.example","sub":"alice"}"#,
    );
    d.id_token = Some(format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig"));
    let set = s.save(&d, None, &[], PLAIN).await.unwrap();
    let got = s
        .load(&headers(&as_request(&set)), PLAIN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data.iss.as_deref(), Some("https://legacy.example"));
}

/// The cache of opened sessions changes nothing observable: a second load (a cache hit) gives
/// the same data, a revocation after the first load still refuses the session, an altered
/// value still fails, and the value opens only under the cookie name it was sealed for.
#[tokio::test]
async fn opened_cache_keeps_every_check() {
    let s = Sessions::new(&cfg()).unwrap();
    let d = data(100);
    let set = s.save(&d, None, &[], PLAIN).await.unwrap();
    let pairs = as_request(&set);
    for _ in 0..2 {
        let got = s.load(&headers(&pairs), PLAIN).await.unwrap().unwrap();
        assert_eq!(*got.data, d);
    }
    // the same sealed value under the __Host- name (another AAD) does not open
    let secure = CookieAttrs {
        secure: true,
        domain: None,
    };
    let renamed = vec![(format!("__Host-{}", pairs[0].0), pairs[0].1.clone())];
    assert!(s.load(&headers(&renamed), secure).await.unwrap().is_none());
    // one character changed: no session, cached or not
    let mut altered = pairs.clone();
    let last = altered[0].1.pop().unwrap();
    altered[0].1.push(if last == 'A' { 'B' } else { 'A' });
    assert!(s.load(&headers(&altered), PLAIN).await.unwrap().is_none());
    // back-channel logout after the value was cached
    s.revocations
        .revoke("p", Ended::Sid("sid1"), now_ms() + 1, now() + 3600);
    assert!(s.load(&headers(&pairs), PLAIN).await.unwrap().is_none());
}

/// A changed session (here: slid) saved under a new cookie is what the previous cookie opens
/// to from then on in this process, so a client that keeps sending the previous cookie does
/// not make every request change (and seal) the session again. Checks still apply to it.
#[tokio::test]
async fn a_superseded_cookie_opens_to_the_changed_session() {
    let s = Sessions::new(&cfg()).unwrap();
    let mut d = data(100);
    d.last_seen -= 120;
    let set = s.save(&d, None, &[], PLAIN).await.unwrap();
    let previous = headers(&as_request(&set));
    let loaded = s.load(&previous, PLAIN).await.unwrap().unwrap();
    assert_eq!(loaded.data.last_seen, d.last_seen);
    let mut changed = loaded.data;
    Arc::make_mut(&mut changed).last_seen = now();
    let _ = s.save(&changed, None, &[], PLAIN).await.unwrap();
    s.supersede(&previous, PLAIN, &changed);
    let again = s.load(&previous, PLAIN).await.unwrap().unwrap();
    assert_eq!(again.data.last_seen, changed.last_seen);
    // a back-channel logout still ends it
    s.revocations
        .revoke("p", Ended::Sid("sid1"), now_ms() + 1, now() + 3600);
    assert!(s.load(&previous, PLAIN).await.unwrap().is_none());
}

#[test]
fn cookie_pairs_split_like_the_header_grammar() {
    let pairs = |s: &[u8]| -> Vec<Vec<u8>> { super::cookie_pairs(s).map(<[u8]>::to_vec).collect() };
    assert_eq!(pairs(b"a=1; b=2"), vec![b"a=1".to_vec(), b"b=2".to_vec()]);
    assert_eq!(pairs(b""), vec![Vec::<u8>::new()]);
    assert_eq!(pairs(b"a=1;"), vec![b"a=1".to_vec(), Vec::new()]);
    assert_eq!(
        pairs(b" ;; a=1 "),
        vec![Vec::new(), Vec::new(), b"a=1".to_vec()]
    );
    // one cookie with obs-text does not hide the session cookie next to it
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_bytes(b"pref=caf\xe9; portcullis=abc; x=\"q\"").unwrap(),
    );
    assert_eq!(
        super::request_cookies(&h),
        vec![("portcullis", "abc"), ("x", "q")]
    );
    // Names are trimmed of SP/HTAB only: Unicode whitespace stays part of the name (a browser
    // keeps `\u{a0}portcullis` as a cookie of its own).
    h.insert(
        COOKIE,
        HeaderValue::from_bytes(
            b"\xc2\xa0portcullis=a; portcullis\xe3\x80\x80=b;\t portcullis \t= c ",
        )
        .unwrap(),
    );
    let cookies = super::request_cookies(&h);
    assert_eq!(
        cookies,
        vec![
            ("\u{a0}portcullis", "a"),
            ("portcullis\u{3000}", "b"),
            ("portcullis", "c")
        ]
    );
    assert_eq!(super::cookie(&cookies, "portcullis"), Some("c"));
    // a name sent twice counts as absent: either copy may be planted
    let twice = [("p", "a"), ("q", "x"), ("p", "b")];
    assert_eq!(super::cookie(&twice, "p"), None);
    assert_eq!(super::cookie(&twice, "q"), Some("x"));
    assert_eq!(
        super::trim_ows(b" \t\xc2\xa0x\xc2\xa0\t "),
        b"\xc2\xa0x\xc2\xa0"
    );
    assert_eq!(super::trim_ows(b" \t "), b"");
}
