//! Access control: HTTP Basic credentials and signed URL tokens.
//!
//! Browsers cannot send custom headers from an `<img>` tag, so besides Basic
//! auth a request may carry `?token=EXPIRY.SIGNATURE`, an HMAC-SHA256 over the
//! path it was made for and its expiry (unix seconds). A valid token admits
//! requests for that one path until it expires, without Basic credentials.
//!
//! The signed path is the request's *scope* (`token_scope`): for the
//! mjpg-streamer URLs, where `/` serves the page, the stream or a snapshot
//! depending on `?action=`, the action is part of it (`/?action=snapshot`),
//! so a token made for snapshots never opens live video or the page that
//! lists every stream.
//!
//! Secrets never appear in logs or `Debug` output, and every comparison of a
//! secret against client input takes the same time whatever the input.

use super::request::Request;
use super::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// The `realm` of the Basic challenge.
pub const REALM: &str = "mjpegd";

/// Query key that carries a token.
pub const TOKEN_KEY: &str = "token";

/// Domain separation: a MAC of this format is never valid for anything else
/// that might be signed with the same secret.
const TOKEN_CONTEXT: &[u8] = b"mjpegd-token-v1\n";

/// Who may use the server; the default admits everyone.
#[derive(Clone, Default, PartialEq)]
pub struct Access {
    pub basic: Option<Credentials>,
    pub tokens: Option<TokenKey>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("basic", &self.basic.is_some())
            .field("tokens", &self.tokens.is_some())
            .finish()
    }
}

impl Access {
    /// Whether any request needs credentials at all.
    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.tokens.is_none()
    }

    /// Decides whether `req` may proceed: `Err` holds the 401 or 403 answer.
    ///
    /// A `?token=` is only looked at when tokens are configured (otherwise it
    /// is an unknown query key like any cache buster). A token that is present
    /// but invalid is refused even when Basic credentials would be valid: it
    /// says the client meant to use it, and a silent fallback hides mistakes.
    pub fn check(&self, req: &Request, now: SystemTime) -> Result<(), Response> {
        if self.is_open() {
            return Ok(());
        }
        if let (Some(key), Some(token)) = (&self.tokens, req.query(TOKEN_KEY)) {
            return match key.verify(&token_scope(req), token, now) {
                Ok(()) => Ok(()),
                Err(why) => Err(Response::text(403, why)),
            };
        }
        match &self.basic {
            Some(creds) if creds.matches_header(req.header("authorization")) => Ok(()),
            Some(_) => Err(challenge()),
            // Tokens only: there is nothing to log in with.
            None => Err(Response::text(403, "a valid ?token= is required")),
        }
    }
}

/// What a token for `req` must have been signed for: its path, and for the
/// paths whose answer depends on `?action=` (the first one, as the router
/// reads it) that action too.
pub fn token_scope(req: &Request) -> std::borrow::Cow<'_, str> {
    match (req.path.as_str(), req.query("action")) {
        (path @ ("/" | "/index.html"), Some(action)) => format!("{path}?action={action}").into(),
        (path, _) => path.into(),
    }
}

/// Whether `scope` is something a token can be made for: a path, or one of
/// the paths that take `?action=` with that one query key.
pub fn valid_scope(scope: &str) -> bool {
    match scope.split_once('?') {
        None => scope.starts_with('/') && !scope.contains('#'),
        Some((path, query)) => {
            matches!(path, "/" | "/index.html")
                && matches!(query, "action=stream" | "action=snapshot")
        }
    }
}

/// The 401 answer that makes browsers and players ask for credentials.
pub fn challenge() -> Response {
    Response::text(401, "authentication required").header(
        "WWW-Authenticate",
        format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""),
    )
}

/// One `USER:PASSWORD` pair, kept only as its SHA-256 digest so that the
/// comparison with a client's attempt is over fixed-length values.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    digest: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// Parses `USER:PASSWORD` (the user may not contain ':'; the password
    /// may). Surrounding line breaks, as a file ends with, are ignored.
    pub fn parse(s: &str) -> Result<Credentials, String> {
        let s = s.trim_end_matches(['\r', '\n']);
        match s.split_once(':') {
            Some((user, pass)) if !user.is_empty() && !pass.is_empty() => Ok(Credentials {
                digest: Sha256::digest(s.as_bytes()).into(),
            }),
            _ => Err("credentials must be USER:PASSWORD, both non-empty".into()),
        }
    }

    /// Whether an `Authorization` header value carries these credentials.
    pub fn matches_header(&self, header: Option<&str>) -> bool {
        let Some(value) = header else { return false };
        let value = value.trim();
        let Some((scheme, encoded)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let attempt: [u8; 32] = Sha256::digest(&decoded).into();
        attempt.ct_eq(&self.digest).into()
    }
}

/// The secret that signs and verifies tokens.
#[derive(Clone, PartialEq)]
pub struct TokenKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Shortest secret accepted: a short one could be guessed offline from any
/// token seen in a URL.
pub const MIN_SECRET_LEN: usize = 16;

impl TokenKey {
    /// A key from `secret` (trailing line breaks, as a file ends with, are
    /// ignored).
    pub fn new(secret: &str) -> Result<TokenKey, String> {
        let secret = secret.trim_end_matches(['\r', '\n']);
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the token secret must be at least {MIN_SECRET_LEN} characters"
            ));
        }
        Ok(TokenKey {
            secret: secret.as_bytes().to_vec(),
        })
    }

    fn mac(&self, path: &str, expires: u64) -> Hmac<Sha256> {
        // Any key length is valid for HMAC.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(TOKEN_CONTEXT);
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// A token for `path` that expires at unix time `expires`.
    pub fn sign(&self, path: &str, expires: u64) -> String {
        let sig = self.mac(path, expires).finalize().into_bytes();
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// A token for `path` valid for `ttl` from `now`.
    pub fn sign_for(&self, path: &str, ttl: Duration, now: SystemTime) -> String {
        let expires = unix_secs(now).saturating_add(ttl.as_secs().max(1));
        self.sign(path, expires)
    }

    /// Checks `token` for `path` at `now`; `Err` says why not, for the 403.
    pub fn verify(&self, path: &str, token: &str, now: SystemTime) -> Result<(), &'static str> {
        const FORGED: &str = "invalid token";
        let (expires, sig) = token.split_once('.').ok_or(FORGED)?;
        // Exactly the digits `sign` writes: no sign, no leading zeros, so
        // one expiry has one spelling.
        let canonical = !expires.is_empty()
            && expires.bytes().all(|b| b.is_ascii_digit())
            && (expires == "0" || !expires.starts_with('0'));
        let expires: u64 = match expires.parse() {
            Ok(e) if canonical => e,
            _ => return Err(FORGED),
        };
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| FORGED)?;
        // `verify_slice` compares in constant time.
        self.mac(path, expires)
            .verify_slice(&sig)
            .map_err(|_| FORGED)?;
        if unix_secs(now) >= expires {
            return Err("token expired");
        }
        Ok(())
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parses a time to live: `90`, `90s`, `15m`, `2h`, `7d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 && scale > 0 => n
            .checked_mul(scale)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("time to live '{s}' is too long")),
        _ => Err(format!(
            "'{s}' is not a time to live like 90s, 15m, 2h or 7d"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "0123456789abcdef-secret";

    fn key() -> TokenKey {
        TokenKey::new(SECRET).expect("long enough")
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn request(target: &str, auth: Option<&str>) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: "GET".into(),
            path: path.into(),
            query: super::super::request::parse_query(query),
            minor_version: 1,
            headers: auth
                .map(|a| vec![("authorization".to_owned(), a.to_owned())])
                .unwrap_or_default(),
        }
    }

    fn basic(userpass: &str) -> String {
        format!("Basic {}", STANDARD.encode(userpass))
    }

    #[test]
    fn tokens_verify_only_for_their_path_until_expiry() {
        let k = key();
        let t = k.sign("/stream", 1000);
        assert_eq!(k.verify("/stream", &t, at(999)), Ok(()));
        assert_eq!(k.verify("/stream", &t, at(1000)), Err("token expired"));
        assert_eq!(k.verify("/snapshot", &t, at(10)), Err("invalid token"));
        let other = TokenKey::new("another-secret-of-16").expect("long enough");
        assert_eq!(other.verify("/stream", &t, at(10)), Err("invalid token"));
        // Moving the expiry invalidates the signature.
        let (_, sig) = t.split_once('.').expect("dot");
        assert!(k.verify("/stream", &format!("2000.{sig}"), at(10)).is_err());
        assert!(
            k.verify("/stream", &format!("01000.{sig}"), at(10))
                .is_err()
        );
        for bad in ["", ".", "1000", "1000.", "x.y", "-1.AAAA", "1000.!!"] {
            assert_eq!(k.verify("/stream", bad, at(10)), Err("invalid token"));
        }
    }

    #[test]
    fn mjpg_streamer_tokens_are_scoped_to_their_action() {
        let both = Access {
            basic: None,
            tokens: Some(key()),
        };
        let now = at(500);
        let admits = |signed: &str, target: &str| {
            let t = key().sign(signed, 600);
            let sep = if target.contains('?') { '&' } else { '?' };
            both.check(&request(&format!("{target}{sep}token={t}"), None), now)
                .is_ok()
        };
        assert!(admits("/?action=snapshot", "/?action=snapshot&1234"));
        assert!(!admits("/?action=snapshot", "/?action=stream"));
        assert!(!admits("/?action=snapshot", "/"));
        assert!(!admits("/", "/?action=stream"));
        assert!(!admits("/", "/?action=snapshot"));
        assert!(admits("/", "/"));
        // The router reads the first `action`; so does the scope.
        assert!(!admits(
            "/?action=snapshot",
            "/?action=stream&action=snapshot"
        ));
        assert!(valid_scope("/?action=stream") && valid_scope("/streams/a/snapshot"));
        for bad in [
            "stream",
            "/?action=x",
            "/stream?fps=1",
            "/?action=stream&x",
            "/#",
        ] {
            assert!(!valid_scope(bad), "{bad}");
        }
    }

    #[test]
    fn sign_for_adds_the_ttl() {
        let t = key().sign_for("/s", Duration::from_secs(3600), at(100));
        assert!(t.starts_with("3700."), "{t}");
    }

    #[test]
    fn short_secrets_and_bad_credentials_are_refused() {
        assert!(TokenKey::new("short").is_err());
        assert!(TokenKey::new(&format!("{SECRET}\n")).is_ok());
        for bad in ["", "user", ":pw", "user:", "user:\n"] {
            assert!(Credentials::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Credentials::parse("u:p:w\n").expect("valid"),
            Credentials::parse("u:p:w").expect("valid")
        );
    }

    #[test]
    fn basic_header_matching() {
        let c = Credentials::parse("admin:s3cret:x").expect("valid");
        assert!(c.matches_header(Some(&basic("admin:s3cret:x"))));
        assert!(c.matches_header(Some(&format!(
            "basic  {}",
            STANDARD.encode("admin:s3cret:x")
        ))));
        for bad in [
            None,
            Some(basic("admin:s3cret").as_str()),
            Some(basic("admin:s3cret:xy").as_str()),
            Some("Bearer abc"),
            Some("Basic"),
            Some("Basic !!!"),
        ] {
            assert!(!c.matches_header(bad), "{bad:?}");
        }
        assert_eq!(format!("{c:?}"), "Credentials(<redacted>)");
    }

    #[test]
    fn access_decisions() {
        let now = at(500);
        let open = Access::default();
        assert!(open.check(&request("/stream", None), now).is_ok());

        let both = Access {
            basic: Some(Credentials::parse("u:p").expect("valid")),
            tokens: Some(key()),
        };
        let status = |r: Result<(), Response>| r.err().map(|resp| resp.status);
        assert_eq!(
            status(both.check(&request("/stream", None), now)),
            Some(401)
        );
        let ok = basic("u:p");
        assert_eq!(status(both.check(&request("/x", Some(&ok)), now)), None);
        let t = key().sign("/stream", 600);
        let with = format!("/stream?fps=2&token={t}");
        assert_eq!(status(both.check(&request(&with, None), now)), None);
        let expired = format!("/stream?token={}", key().sign("/stream", 400));
        assert_eq!(
            status(both.check(&request(&expired, Some(&ok)), now)),
            Some(403)
        );
        let elsewhere = format!("/snapshot?token={t}");
        assert_eq!(
            status(both.check(&request(&elsewhere, None), now)),
            Some(403)
        );

        let tokens_only = Access {
            basic: None,
            tokens: Some(key()),
        };
        assert_eq!(
            status(tokens_only.check(&request("/stream", None), now)),
            Some(403)
        );
        assert_eq!(status(tokens_only.check(&request(&with, None), now)), None);

        // Without a token key, ?token= is just an unknown query key.
        let basic_only = Access {
            basic: Some(Credentials::parse("u:p").expect("valid")),
            tokens: None,
        };
        assert_eq!(
            status(basic_only.check(&request(&with, None), now)),
            Some(401)
        );
        assert_eq!(
            status(basic_only.check(&request(&with, Some(&ok)), now)),
            None
        );
        let challenge = basic_only
            .check(&request("/", None), now)
            .expect_err("needs auth");
        assert!(
            challenge
                .headers
                .iter()
                .any(|(n, v)| *n == "WWW-Authenticate" && v.starts_with("Basic realm=\"mjpegd\""))
        );
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "0", "h", "1w", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn signed_tokens_round_trip(path in "/[ -~]{0,40}", expires in 1u64..1 << 41, now in 0u64..1 << 40) {
            let k = key();
            let t = k.sign(&path, expires);
            prop_assert_eq!(k.verify(&path, &t, at(now)).is_ok(), now < expires);
        }

        #[test]
        fn arbitrary_tokens_never_verify(token in "[ -~]{0,80}", path in "/[a-z]{0,10}") {
            prop_assert!(key().verify(&path, &token, at(0)).is_err());
        }

        #[test]
        fn tampered_tokens_never_verify(pos in 0usize..64, byte in 0x21u8..0x7f) {
            let k = key();
            let t = k.sign("/stream", 4_000_000_000);
            let mut bytes = t.into_bytes();
            let i = pos % bytes.len();
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            let tampered = String::from_utf8(bytes).expect("ASCII");
            prop_assert!(k.verify("/stream", &tampered, at(0)).is_err());
        }

        #[test]
        fn arbitrary_authorization_headers_never_panic(h in "\\PC{0,100}") {
            let c = Credentials::parse("u:p").expect("valid");
            let _ = c.matches_header(Some(&h));
        }
    }
}
