//! The HTTP client of the relay and snapshot sources, on `reqwest`.
//!
//! Why `reqwest` rather than `hyper-util`'s client (which it is built on):
//! beyond hyper's HTTP/1.1 (chunked bodies, `1xx` answers, keep-alive
//! pooling) these sources need redirects resolved as RFC 3986 says (the
//! `url` crate, dot segments included), credentials from the URL sent as
//! Basic auth and dropped when a redirect leaves the server, and a body
//! read chunk by chunk. `reqwest` does all of these; on `hyper-util` alone
//! each would be ours to write and keep. It is set up for HTTP/1.1 only
//! (what cameras speak), with no proxy from the environment and rustls
//! trusting what the stream's [`TlsTrust`] says.
//!
//! What stays ours: the URL's redacted display (a password never appears in
//! an error message or a log line), the timeouts, and error messages that
//! say which step failed.

use super::SourceError;
use super::redact::{Secrets, redact};
use super::tls_trust::TlsTrust;
use bytes::{Bytes, BytesMut};
use reqwest::Url;
use reqwest::redirect::Policy;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;
use tokio_rustls::rustls;

/// How many redirects are followed before giving up.
pub const MAX_REDIRECTS: usize = 3;

/// How long each step may take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From sending the request to a complete response head. A request
    /// that must first connect waits at most `connect + head` in all.
    pub head: Duration,
    /// Longest silence while reading a body.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            head: Duration::from_secs(5),
            idle: Duration::from_secs(10),
        }
    }
}

/// An `http://` or `https://` URL, parsed. Its `Debug` and `Display` forms
/// mask the password and secret query values.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https`.
    pub tls: bool,
    url: Url,
}

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl HttpUrl {
    /// Parses an absolute `http://` or `https://` URL. Error messages never
    /// repeat the URL, since it may hold a password.
    pub fn parse(s: &str) -> Result<HttpUrl, UrlError> {
        let bad = |why: &str| UrlError(why.to_owned());
        let scheme = s.split_once("://").map(|(scheme, _)| scheme);
        if !scheme
            .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        {
            return Err(bad("URL must start with http:// or https://"));
        }
        // The URL parser would drop these silently; here they are a typo.
        if s.chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(bad("URL contains spaces or control characters"));
        }
        let mut url = Url::parse(s).map_err(|e| UrlError(format!("bad URL: {e}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("URL has no host"));
        }
        if url.port() == Some(0) {
            return Err(bad("bad port in URL (expected 1-65535)"));
        }
        url.set_fragment(None);
        Ok(HttpUrl {
            tls: url.scheme() == "https",
            url,
        })
    }

    /// Host name or IP address (IPv6 in brackets).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The port, the scheme's default if the URL names none.
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or_default()
    }

    /// Path and query, starting with `/`.
    pub fn path(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// The password and the secret query values, to be masked wherever
    /// they turn up.
    pub fn secrets(&self) -> Secrets {
        let mut s = Secrets::from_text(&self.path());
        if let Some(p) = self.url.password() {
            s.add(p);
        }
        s
    }

    /// Whether the URL carries a user name (and so Basic auth is sent).
    pub fn has_credentials(&self) -> bool {
        !self.url.username().is_empty() || self.url.password().is_some()
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({:?})", self.to_string())
    }
}

/// Displays the URL with the password and secret query values replaced by
/// `***`.
impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.url.scheme())?;
        if self.has_credentials() {
            f.write_str(self.url.username())?;
            if self.url.password().is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        f.write_str(self.host())?;
        if let Some(port) = self.url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(&redact(&self.path()))
    }
}

/// The client of one source: connections are kept alive and reused
/// between its requests.
pub struct Client {
    http: reqwest::Client,
    timeouts: Timeouts,
}

impl Client {
    /// A client with these timeouts and this TLS trust.
    pub fn new(timeouts: &Timeouts, trust: &TlsTrust) -> Result<Client, SourceError> {
        let tls = rustls::ClientConfig::clone(&*trust.client_config()?);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            // Some cameras match header names case-sensitively.
            .http1_title_case_headers()
            .user_agent(concat!("mjpegd/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .connect_timeout(timeouts.connect)
            .tcp_nodelay(true)
            .redirect(Policy::custom(|attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    let last = HttpUrl {
                        tls: attempt.url().scheme() == "https",
                        url: attempt.url().clone(),
                    };
                    attempt.error(RedirectLimit(last))
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| {
                SourceError::new(format!("cannot set up the HTTP client: {}", cause(&e)))
            })?;
        Ok(Client {
            http,
            timeouts: *timeouts,
        })
    }

    /// Sends `GET url`, following redirects, and returns the 200 answer
    /// with its body still to be read.
    pub async fn get(&self, url: &HttpUrl) -> Result<Response, SourceError> {
        let t = &self.timeouts;
        let endpoint = url.endpoint();
        let sent = tokio::time::timeout(t.connect + t.head, self.http.get(url.url.clone()).send());
        let answer = match sent.await {
            Err(_) => {
                return Err(SourceError::new(format!(
                    "upstream {endpoint} sent no response within {}",
                    secs(t.head)
                )));
            }
            Ok(Err(e)) => return Err(failure(&e, url, t)),
            Ok(Ok(answer)) => answer,
        };
        let status = answer.status();
        if status != reqwest::StatusCode::OK {
            let reason = status.canonical_reason().unwrap_or("");
            let why = if status.is_redirection() {
                " without a usable Location"
            } else {
                ""
            };
            return Err(SourceError::new(format!(
                "upstream answered {} {reason}{why}",
                status.as_u16()
            )));
        }
        Ok(Response {
            inner: answer,
            idle: t.idle,
        })
    }
}

/// A 200 answer whose body is read as it arrives.
pub struct Response {
    inner: reqwest::Response,
    idle: Duration,
}

impl Response {
    /// The first header with this name (case-insensitive), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name)?.to_str().ok()
    }

    /// The next piece of the body; `None` at its end. Fails when nothing
    /// comes for the idle timeout.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        match tokio::time::timeout(self.idle, self.inner.chunk()).await {
            Err(_) => Err(SourceError::new(format!(
                "upstream sent nothing for {}",
                secs(self.idle)
            ))),
            Ok(Err(e)) => Err(SourceError::new(format!(
                "upstream read failed: {}",
                cause(&e)
            ))),
            Ok(Ok(data)) => Ok(data),
        }
    }

    /// The whole body, of at most `max` bytes.
    pub async fn body(mut self, max: usize) -> Result<Bytes, SourceError> {
        let too_big = || SourceError::new(format!("upstream body larger than {max} bytes"));
        let expected = self.inner.content_length().unwrap_or(0);
        if expected > max as u64 {
            return Err(too_big());
        }
        let mut body = BytesMut::with_capacity(expected as usize);
        while let Some(data) = self.chunk().await? {
            if body.len() + data.len() > max {
                return Err(too_big());
            }
            body.extend_from_slice(&data);
        }
        Ok(body.freeze())
    }
}

/// Raised by the redirect policy past [`MAX_REDIRECTS`].
#[derive(Debug)]
struct RedirectLimit(HttpUrl);

impl fmt::Display for RedirectLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upstream redirected more than {MAX_REDIRECTS} times (last to {})",
            self.0
        )
    }
}

impl StdError for RedirectLimit {}

/// Why a request failed, in words that name the step (connect, TLS,
/// redirect) and never the URL.
fn failure(e: &reqwest::Error, url: &HttpUrl, t: &Timeouts) -> SourceError {
    if let Some(limit) = causes(e).find_map(|c| c.downcast_ref::<RedirectLimit>()) {
        return SourceError::new(limit.to_string());
    }
    // The host that failed may be a redirect's.
    let (host, endpoint) = match e.url().and_then(|u| HttpUrl::parse(u.as_str()).ok()) {
        Some(at) => (at.host().to_owned(), at.endpoint()),
        None => (url.host().to_owned(), url.endpoint()),
    };
    // TLS errors travel wrapped in I/O errors, whose `source` skips them.
    let tls = causes(e).find_map(|c| {
        let mut c: &(dyn StdError + 'static) = c;
        while let Some(io) = c.downcast_ref::<std::io::Error>() {
            c = io.get_ref()?;
        }
        c.downcast_ref::<rustls::Error>()
    });
    if let Some(tls) = tls {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return SourceError::new(format!("TLS handshake with {host} failed: {tls}"));
    }
    if e.is_connect() && e.is_timeout() {
        return SourceError::new(format!(
            "cannot connect to {endpoint}: no answer within {}",
            secs(t.connect)
        ));
    }
    if e.is_connect() {
        return SourceError::new(format!("cannot connect to {endpoint}: {}", cause(e)));
    }
    if e.is_redirect() {
        return SourceError::new(format!("upstream redirected to a bad URL: {}", cause(e)));
    }
    SourceError::new(format!("upstream {endpoint} failed: {}", cause(e)))
}

/// The errors behind `e`, outermost first.
fn causes<'a>(e: &'a reqwest::Error) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(e.source(), |&c| c.source())
}

/// The innermost reason for `e`: the one that says what happened (reqwest's
/// own message names the URL, which may hold a password).
fn cause(e: &reqwest::Error) -> String {
    causes(e)
        .last()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "request failed".to_owned())
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = HttpUrl::parse("http://cam.local:8080/?action=stream").expect("valid");
        assert_eq!((u.tls, u.host(), u.port()), (false, "cam.local", 8080));
        assert_eq!(u.path(), "/?action=stream");
        assert_eq!(u.to_string(), "http://cam.local:8080/?action=stream");
        let u = HttpUrl::parse("HTTPS://example.com").expect("valid");
        assert_eq!((u.tls, u.port(), u.path().as_str()), (true, 443, "/"));
        let u = HttpUrl::parse("http://[::1]:81/x#frag").expect("valid");
        assert_eq!((u.host(), u.port(), u.path().as_str()), ("[::1]", 81, "/x"));
        assert_eq!(u.endpoint(), "[::1]:81");
        let u = HttpUrl::parse("http://h?q=1").expect("valid");
        assert_eq!(u.path(), "/?q=1");
        for bad in [
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://h x/",
            "http://[::1/",
            "cam.local/stream",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_never_display() {
        let u = HttpUrl::parse("http://admin:s3cr%40t@cam:81/video").expect("valid");
        assert_eq!(u.to_string(), "http://admin:***@cam:81/video");
        assert!(!format!("{u:?}").contains("s3cr"));
        assert_eq!(format!("{:?}", u.secrets()), "Secrets(2)");
        let u = HttpUrl::parse("http://user@cam/").expect("valid");
        assert_eq!(u.to_string(), "http://user@cam/");
        assert!(u.has_credentials());
        let e = HttpUrl::parse("http://admin:s3cret@cam:0/").expect_err("port 0");
        assert!(!e.0.contains("s3cret"), "{e}");
    }
}
