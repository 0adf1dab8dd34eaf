//! A minimal HTTP/1.1 GET client for pulling frames from other servers
//! (relay and snapshot sources).
//!
//! Only what those sources need: `http://` and `https://` URLs, credentials
//! in the URL sent as Basic auth, up to [`MAX_REDIRECTS`] redirects, bodies
//! delimited by `Content-Length`, chunked encoding or the end of the
//! connection, keep-alive reuse, and a timeout on every wait. A password
//! never appears in an error message or a log line: URLs display redacted.
//! TLS uses rustls with the `ring` provider and the Mozilla root store, so
//! it builds with nothing but cargo.

use super::SourceError;
use super::redact::{Secrets, percent_decode, redact};
use crate::mjpeg::ChunkedDecoder;
use bytes::{Bytes, BytesMut};
use std::fmt;

use super::tls_trust::TlsTrust;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// How many redirects are followed before giving up.
pub const MAX_REDIRECTS: usize = 3;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 64;
/// Receive buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

/// How long each step may take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From sending the request to a complete response head.
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

/// User name and password from the URL. Never displayed.
#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs and panic messages: redact.
        write!(f, "Credentials({:?}, ***)", self.user)
    }
}

/// An `http://` or `https://` URL, parsed. Its `Debug` and `Display` forms
/// mask the password and secret query values.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    credentials: Option<Credentials>,
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
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("URL must start with http:// or https://"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(bad("URL must start with http:// or https://")),
        };
        if s.chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(bad("URL contains spaces or control characters"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let credentials = userinfo.map(|u| {
            let (user, password) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(percent_decode(pass))),
                None => (u, None),
            };
            Credentials {
                user: percent_decode(user),
                password,
            }
        });
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(hostport, default_port)?;
        Ok(HttpUrl {
            tls,
            host,
            port,
            path,
            credentials,
        })
    }

    /// The password and the secret query values, to be masked wherever
    /// they turn up.
    pub fn secrets(&self) -> Secrets {
        let mut s = Secrets::from_text(&self.path);
        if let Some(p) = self
            .credentials
            .as_ref()
            .and_then(|c| c.password.as_deref())
        {
            s.add(p);
        }
        s
    }

    /// Whether the URL carries a user name (and so Basic auth is sent).
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    fn default_port(&self) -> u16 {
        if self.tls { 443 } else { 80 }
    }

    /// `host[:port]` as the `Host` header wants it.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{host}:{}", self.port)
    }

    /// The `Authorization` header value, if the URL has credentials.
    fn authorization(&self) -> Option<String> {
        let c = self.credentials.as_ref()?;
        let pair = format!("{}:{}", c.user, c.password.as_deref().unwrap_or(""));
        Some(format!("Basic {}", base64(pair.as_bytes())))
    }

    /// Where a `Location` header points, relative to this URL. Credentials
    /// carry over only to the same scheme, host and port.
    fn resolve(&self, location: &str) -> Result<HttpUrl, UrlError> {
        let mut next = if location.contains("://") {
            HttpUrl::parse(location)?
        } else if let Some(rest) = location.strip_prefix("//") {
            let scheme = if self.tls { "https" } else { "http" };
            HttpUrl::parse(&format!("{scheme}://{rest}"))?
        } else {
            let path = if location.starts_with('/') {
                location.to_owned()
            } else {
                // Relative to the current path's directory.
                let base = self.path.split('?').next().unwrap_or("/");
                let dir = base.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                format!("{dir}/{location}")
            };
            HttpUrl {
                path,
                ..self.clone()
            }
        };
        let same_origin = next.tls == self.tls
            && next.host.eq_ignore_ascii_case(&self.host)
            && next.port == self.port;
        if next.credentials.is_none() && same_origin {
            next.credentials = self.credentials.clone();
        }
        Ok(next)
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
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://")?;
        if let Some(c) = &self.credentials {
            write!(f, "{}", percent_encode_userinfo(&c.user))?;
            if c.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}{}", self.authority(), redact(&self.path))
    }
}

fn split_host_port(hostport: &str, default_port: u16) -> Result<(String, u16), UrlError> {
    let bad = |why: String| UrlError(why);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' in URL host".into()))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("junk after ']' in URL host".into()))?,
                ),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("URL has no host".into()));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "-._:%".contains(c);
    if !host.chars().all(ok) {
        return Err(bad(format!("bad host '{host}' in URL")));
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            // Not repeated: in `http://user:pa/ss@host/` it is a password.
            _ => return Err(bad("bad port in URL (expected 1-65535)".into())),
        },
    };
    Ok((host.to_owned(), port))
}

fn percent_encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), for Basic auth.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Anything a connection can run over: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The response head of a successful (200) answer.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    /// HTTP/1.`minor`.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the body uses chunked transfer encoding.
    pub fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    /// `Content-Length`, unless the body is chunked.
    pub fn content_length(&self) -> Option<u64> {
        if self.chunked() {
            return None;
        }
        self.header("content-length")?.trim().parse().ok()
    }

    /// Whether the server keeps the connection open after this response.
    fn keeps_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.minor >= 1 || self.has_token("connection", "keep-alive")
    }
}

/// One connection to an upstream server.
pub struct Connection {
    io: Box<dyn Io>,
    /// Received and not yet consumed.
    buf: BytesMut,
    tls: bool,
    host: String,
    port: u16,
    /// The last response allows another request on this connection.
    reusable: bool,
}

impl Connection {
    /// Connects (and does the TLS handshake for `https`).
    pub async fn connect(
        url: &HttpUrl,
        t: &Timeouts,
        trust: &TlsTrust,
    ) -> Result<Connection, SourceError> {
        let endpoint = url.endpoint();
        let connect = async {
            let tcp = TcpStream::connect((url.host.as_str(), url.port))
                .await
                .map_err(|e| SourceError::new(format!("cannot connect to {endpoint}: {e}")))?;
            // Frames are latency-sensitive; requests are tiny.
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = if url.tls {
                Box::new(tls_handshake(tcp, &url.host, trust).await?)
            } else {
                Box::new(tcp)
            };
            Ok::<_, SourceError>(io)
        };
        let io = tokio::time::timeout(t.connect, connect)
            .await
            .map_err(|_| {
                SourceError::new(format!(
                    "cannot connect to {endpoint}: no answer within {}",
                    secs(t.connect)
                ))
            })??;
        Ok(Connection {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            tls: url.tls,
            host: url.host.clone(),
            port: url.port,
            reusable: false,
        })
    }

    /// Whether a request for `url` can go over this connection.
    fn serves(&self, url: &HttpUrl) -> bool {
        self.reusable
            && self.tls == url.tls
            && self.host.eq_ignore_ascii_case(&url.host)
            && self.port == url.port
    }

    /// Sends `GET url` and reads the response head.
    async fn request(
        &mut self,
        url: &HttpUrl,
        t: &Timeouts,
        keep_alive: bool,
    ) -> Result<Head, SourceError> {
        self.reusable = false;
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mjpegd/{}\r\nAccept: */*\r\n",
            url.path,
            url.authority(),
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(auth) = url.authorization() {
            req.push_str(&format!("Authorization: {auth}\r\n"));
        }
        req.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        let endpoint = url.endpoint();
        let exchange = async {
            self.io
                .write_all(req.as_bytes())
                .await
                .map_err(|e| SourceError::new(format!("cannot send request to {endpoint}: {e}")))?;
            self.read_head(&endpoint).await
        };
        tokio::time::timeout(t.head, exchange).await.map_err(|_| {
            SourceError::new(format!(
                "upstream {endpoint} sent no response within {}",
                secs(t.head)
            ))
        })?
    }

    async fn read_head(&mut self, endpoint: &str) -> Result<Head, SourceError> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut fields);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(used)) => {
                    let head = Head {
                        status: resp.code.unwrap_or(0),
                        reason: resp.reason.unwrap_or("").to_owned(),
                        minor: resp.version.unwrap_or(0),
                        headers: resp
                            .headers
                            .iter()
                            .map(|h| {
                                let v = String::from_utf8_lossy(h.value).trim().to_owned();
                                (h.name.to_owned(), v)
                            })
                            .collect(),
                    };
                    let _ = self.buf.split_to(used);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(SourceError::new(format!(
                        "upstream {endpoint} sent a response head over {MAX_HEAD} bytes"
                    )));
                }
                Err(e) => {
                    return Err(SourceError::new(format!(
                        "upstream {endpoint} did not answer with HTTP ({e})"
                    )));
                }
            }
            if self.fill().await? == 0 {
                return Err(SourceError::new(format!(
                    "upstream {endpoint} closed the connection without answering"
                )));
            }
        }
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    async fn fill(&mut self) -> Result<usize, SourceError> {
        self.buf.reserve(READ_CHUNK);
        self.io
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| SourceError::new(format!("upstream read failed: {e}")))
    }

    /// Returns the body bytes received so far, reading when none are
    /// buffered; `None` when the upstream closed the connection. Used for
    /// endless (streamed) bodies.
    pub async fn read_raw(&mut self, idle: Duration) -> Result<Option<Bytes>, SourceError> {
        if self.buf.is_empty() && self.fill_within(idle).await? == 0 {
            return Ok(None);
        }
        Ok(Some(self.buf.split().freeze()))
    }

    /// Reads a whole body of at most `max` bytes, as `head` delimits it.
    /// Afterwards the connection is reusable if the server allows it.
    pub async fn read_body(
        &mut self,
        head: &Head,
        max: usize,
        idle: Duration,
    ) -> Result<Bytes, SourceError> {
        let too_big = || SourceError::new(format!("upstream body larger than {max} bytes"));
        if let Some(len) = head.content_length() {
            let len = usize::try_from(len).map_err(|_| too_big())?;
            if len > max {
                return Err(too_big());
            }
            while self.buf.len() < len {
                self.fill_or_fail(idle).await?;
            }
            let body = self.buf.split_to(len).freeze();
            self.reusable = head.keeps_alive();
            return Ok(body);
        }
        if head.chunked() {
            let mut decoder = ChunkedDecoder::new();
            let mut body = BytesMut::new();
            loop {
                let data = self.buf.split();
                decoder
                    .push(&data, &mut body)
                    .map_err(|e| SourceError::new(format!("bad chunked body: {e}")))?;
                if body.len() > max {
                    return Err(too_big());
                }
                if decoder.is_done() {
                    // The decoder ignores what follows the body, so the
                    // connection cannot be reused safely if anything did.
                    self.reusable = head.keeps_alive() && self.buf.is_empty();
                    return Ok(body.freeze());
                }
                self.fill_or_fail(idle).await?;
            }
        }
        // Delimited by the end of the connection.
        loop {
            if self.buf.len() > max {
                return Err(too_big());
            }
            if self.fill_within(idle).await? == 0 {
                return Ok(self.buf.split().freeze());
            }
        }
    }

    async fn fill_or_fail(&mut self, idle: Duration) -> Result<(), SourceError> {
        if self.fill_within(idle).await? == 0 {
            return Err(SourceError::new("upstream closed the connection mid-body"));
        }
        Ok(())
    }

    /// Reads more bytes (0: the upstream closed), failing when none come
    /// for `idle`.
    async fn fill_within(&mut self, idle: Duration) -> Result<usize, SourceError> {
        tokio::time::timeout(idle, self.fill())
            .await
            .map_err(|_| SourceError::new(format!("upstream sent nothing for {}", secs(idle))))?
    }
}

/// Sends `GET url`, following redirects, and returns the head of the 200
/// answer with `conn` positioned at its body. An open, reusable `conn` to
/// the same server is used first (and replaced by a new connection if it
/// turns out to be closed).
pub async fn get(
    conn: &mut Option<Connection>,
    url: &HttpUrl,
    t: &Timeouts,
    trust: &TlsTrust,
    keep_alive: bool,
) -> Result<Head, SourceError> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let head = request_once(conn, &url, t, trust, keep_alive).await?;
        match head.status {
            200 => return Ok(head),
            301 | 302 | 303 | 307 | 308 => {
                // The redirect's body is not read: start afresh.
                *conn = None;
                let location = head.header("location").ok_or_else(|| {
                    SourceError::new(format!(
                        "upstream answered {} {} without a Location",
                        head.status, head.reason
                    ))
                })?;
                url = url.resolve(location).map_err(|e| {
                    SourceError::new(format!("upstream redirected to a bad URL: {e}"))
                })?;
            }
            _ => {
                *conn = None;
                return Err(SourceError::new(format!(
                    "upstream answered {} {}",
                    head.status, head.reason
                )));
            }
        }
    }
    Err(SourceError::new(format!(
        "upstream redirected more than {MAX_REDIRECTS} times (last to {url})"
    )))
}

async fn request_once(
    conn: &mut Option<Connection>,
    url: &HttpUrl,
    t: &Timeouts,
    trust: &TlsTrust,
    keep_alive: bool,
) -> Result<Head, SourceError> {
    if let Some(c) = conn.as_mut().filter(|c| c.serves(url)) {
        // A kept-alive connection may have been closed by the server in the
        // meantime; that is not an error, just a reason to reconnect.
        if let Ok(head) = c.request(url, t, keep_alive).await {
            return Ok(head);
        }
    }
    *conn = None;
    let c = conn.insert(Connection::connect(url, t, trust).await?);
    c.request(url, t, keep_alive).await
}

async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    trust: &TlsTrust,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SourceError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| SourceError::new(format!("bad TLS server name '{host}': {e}")))?;
    tokio_rustls::TlsConnector::from(trust.client_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| SourceError::new(format!("TLS handshake with {host} failed: {e}")))
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
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "cam.local", 8080));
        assert_eq!(u.path, "/?action=stream");
        assert_eq!(u.to_string(), "http://cam.local:8080/?action=stream");
        let u = HttpUrl::parse("HTTPS://example.com").expect("valid");
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/"));
        let u = HttpUrl::parse("http://[::1]:81/x#frag").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 81, "/x")
        );
        assert_eq!(u.authority(), "[::1]:81");
        let u = HttpUrl::parse("http://h?q=1").expect("valid");
        assert_eq!(u.path, "/?q=1");
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
        // "admin:s3cr@t" in base64.
        assert_eq!(u.authorization().as_deref(), Some("Basic YWRtaW46czNjckB0"));
        let u = HttpUrl::parse("http://user@cam/").expect("valid");
        assert_eq!(u.to_string(), "http://user@cam/");
        assert_eq!(u.authorization().as_deref(), Some("Basic dXNlcjo="));
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn resolves_redirects() {
        let base = HttpUrl::parse("http://u:p@cam:81/a/b?x").expect("valid");
        let r = base.resolve("/c").expect("valid");
        assert_eq!(r.to_string(), "http://u:***@cam:81/c");
        let r = base.resolve("d?y").expect("valid");
        assert_eq!(r.path, "/a/d?y");
        // Credentials do not travel to another host.
        let r = base.resolve("http://other/").expect("valid");
        assert!(!r.has_credentials());
        let r = base.resolve("//cam:81/z").expect("valid");
        assert!(r.has_credentials());
    }
}
