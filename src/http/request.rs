//! Reading one HTTP/1.x request head from a connection, with a size limit.
//!
//! Only the head is read: this server has no endpoint that takes a body, so a
//! request that announces one is answered and its connection closed.
//!
//! The framing checks that request smuggling relies on are strict: a head
//! whose `Content-Length` values disagree (RFC 9112 §6.3) is refused, and one
//! with `Transfer-Encoding` is refused too, since a body this server does not
//! read would otherwise be taken for the next request by some peer on the way.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Most headers a request may have.
const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path, without the query; `*` for `OPTIONS *`. An
    /// absolute-form target (`http://host/path`) is reduced to its path.
    pub path: String,
    /// Query pairs in order; a key without `=` has an empty value.
    pub query: Vec<(String, String)>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names lower-cased, values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query key `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after the response.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let has = |token: &str| conn.split(',').any(|t| t.trim() == token);
        if self.minor_version == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    /// Whether the request announces a body (which this server never reads).
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection before sending anything (normal end of
    /// a keep-alive connection).
    Closed,
    /// The head is larger than allowed: 431.
    TooLarge,
    /// Not a valid HTTP/1.x request head: 400, with the reason.
    Malformed(String),
    /// A valid head this server cannot serve (a transfer coding): 501.
    NotImplemented(&'static str),
    Io(std::io::Error),
}

/// Reads the next request head. `buf` keeps bytes read past the head (a
/// pipelined next request) for the following call.
pub async fn read_request<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Request, ReadError> {
    loop {
        if !buf.is_empty() {
            match parse(buf)? {
                Some((req, len)) => {
                    buf.advance(len);
                    return Ok(req);
                }
                None if buf.len() >= max_head => return Err(ReadError::TooLarge),
                None => {}
            }
        }
        buf.reserve(1024.min(max_head));
        let n = io.read_buf(buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed in the middle of the request".into())
            });
        }
    }
}

/// Parses a complete head from `buf`: `Ok(None)` when more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::TooLarge),
        Err(e) => return Err(ReadError::Malformed(format!("bad request: {e}"))),
    };
    // httparse fills these in on Complete; missing values would be its bug.
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(ReadError::Malformed("incomplete request line".into()));
    };
    let target = origin_form(method, target)?;
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path, false)
        .ok_or_else(|| ReadError::Malformed("path is not valid UTF-8".into()))?;
    let query = parse_query(raw_query);
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    check_framing(&headers)?;
    let request = Request {
        method: method.to_owned(),
        path,
        query,
        minor_version,
        headers,
    };
    Ok(Some((request, len)))
}

/// The origin-form (`/path?query`) of a request target. The absolute form
/// (`http://host/path`, which proxies send and servers must accept, RFC 9112
/// §3.2.2) is reduced to its path; `*` is kept for `OPTIONS *` only.
fn origin_form<'a>(method: &str, target: &'a str) -> Result<&'a str, ReadError> {
    if target == "*" {
        return match method {
            "OPTIONS" => Ok(target),
            _ => Err(ReadError::Malformed(
                "'*' is a target for OPTIONS only".into(),
            )),
        };
    }
    if target.starts_with('/') {
        return Ok(target);
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return Err(ReadError::Malformed(
            "request target is neither a path nor an http URL".into(),
        ));
    };
    // The authority ends where the path or the query starts.
    Ok(match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        // `http://host?q` means the path `/` with a query; `http://host`
        // means `/`. Both are rare; the query is dropped with the authority.
        _ => "/",
    })
}

/// Refuses heads whose body length is ambiguous: `Content-Length` values
/// (repeated, or a comma-separated list) that are not all the same number,
/// and any `Transfer-Encoding` (with a `Content-Length` too it is a
/// smuggling attempt: 400; alone, a coding we do not read: 501).
fn check_framing(headers: &[(String, String)]) -> Result<(), ReadError> {
    let mut length: Option<&str> = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        for v in value.split(',').map(str::trim) {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::Malformed("invalid Content-Length".into()));
            }
            // Leading zeros spell the same number: compare without them.
            let v = v.trim_start_matches('0');
            match length {
                Some(l) if l != v => {
                    return Err(ReadError::Malformed(
                        "conflicting Content-Length values".into(),
                    ));
                }
                _ => length = Some(v),
            }
        }
    }
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        if length.is_some() {
            return Err(ReadError::Malformed(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        return Err(ReadError::NotImplemented(
            "Transfer-Encoding on requests is not supported",
        ));
    }
    Ok(())
}

/// Client-chosen text (a decoded path) for a log line: control characters
/// (line breaks, terminal escapes) are written as `\xNN` or `\u{N}` escapes,
/// so a request cannot forge or hide log lines.
pub struct Printable<'a>(pub &'a str);

impl std::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                c if (c as u32) < 0x80 && c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Splits `a=1&b&c=x%20y` into pairs; undecodable pairs are skipped, since
/// unknown query keys (cache busters) are ignored anyway.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as space in queries); `None` if the result
/// is not UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    String::from_utf8(crate::percent::decode(s, plus_is_space)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        let mut io = bytes;
        let mut buf = BytesMut::new();
        read_request(&mut io, &mut buf, 8192).await
    }

    #[tokio::test]
    async fn parses_mjpg_streamer_style_urls() {
        let r = read(b"GET /?action=snapshot&1595805826022 HTTP/1.0\r\n\r\n")
            .await
            .expect("valid");
        assert_eq!(r.path, "/");
        assert_eq!(r.query("action"), Some("snapshot"));
        assert_eq!(r.query("1595805826022"), Some(""));
        assert!(!r.keep_alive());
    }

    #[tokio::test]
    async fn keep_alive_rules() {
        let r = read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("valid");
        assert!(r.keep_alive());
        let r = read(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
            .await
            .expect("valid");
        assert!(!r.keep_alive());
        let r = read(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .expect("valid");
        assert!(r.keep_alive());
    }

    #[tokio::test]
    async fn errors() {
        assert!(matches!(read(b"").await, Err(ReadError::Closed)));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\n").await,
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            read(b"\x00\x01garbage\r\n\r\n").await,
            Err(ReadError::Malformed(_))
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(matches!(
            read(big.as_bytes()).await,
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            read(b"GET /%ff%fe HTTP/1.1\r\n\r\n").await,
            Err(ReadError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn ambiguous_framing_is_refused() {
        let head = |extra: &str| format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        for bad in [
            "Content-Length: 1\r\nContent-Length: 2\r\n",
            "Content-Length: 1, 2\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: \r\n",
            "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
        ] {
            let r = read(head(bad).as_bytes()).await;
            assert!(matches!(r, Err(ReadError::Malformed(_))), "{bad:?}: {r:?}");
        }
        let r = read(head("Transfer-Encoding: chunked\r\n").as_bytes()).await;
        assert!(matches!(r, Err(ReadError::NotImplemented(_))), "{r:?}");
        for good in [
            "Content-Length: 7\r\nContent-Length: 007\r\n",
            "Content-Length: 0, 0\r\n",
        ] {
            assert!(read(head(good).as_bytes()).await.is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn target_forms() {
        let path = |target: &str| {
            let raw = format!("OPTIONS {target} HTTP/1.1\r\n\r\n");
            async move { read(raw.as_bytes()).await.map(|r| (r.path, r.query)) }
        };
        let (p, q) = path("http://cam:8080/streams/a/snapshot?max_age=5")
            .await
            .expect("absolute");
        assert_eq!((p.as_str(), q.len()), ("/streams/a/snapshot", 1));
        assert_eq!(path("HTTPS://cam").await.expect("no path").0, "/");
        assert_eq!(path("*").await.expect("asterisk").0, "*");
        assert!(path("cam/stream").await.is_err());
        assert!(read(b"GET * HTTP/1.1\r\n\r\n").await.is_err());
    }

    #[test]
    fn printable_escapes_control_characters() {
        let shown = Printable("/a\r\nB\x1b[0m\\\u{85}é").to_string();
        assert_eq!(shown, "/a\\x0d\\x0aB\\x1b[0m\\\\\\u{85}é");
    }

    #[tokio::test]
    async fn pipelined_requests_stay_in_the_buffer() {
        let mut io: &[u8] = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let mut buf = BytesMut::new();
        let a = read_request(&mut io, &mut buf, 8192).await.expect("first");
        let b = read_request(&mut io, &mut buf, 8192).await.expect("second");
        assert_eq!((a.path.as_str(), b.path.as_str()), ("/a", "/b"));
    }

    #[test]
    fn query_decoding() {
        let q = parse_query("fps=5&name=a%20b+c&&flag");
        assert_eq!(
            q,
            vec![
                ("fps".into(), "5".into()),
                ("name".into(), "a b c".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(percent_decode("100%", false).as_deref(), Some("100%"));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Percent-encodes everything but unreserved characters.
        fn encode(s: &str) -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        }

        fn method() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("GET".to_owned()),
                Just("HEAD".to_owned()),
                Just("OPTIONS".to_owned()),
                "[A-Z]{1,10}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
                let _ = parse(&data);
                let mut prefixed = b"GET /".to_vec();
                prefixed.extend_from_slice(&data);
                let _ = parse(&prefixed);
            }

            #[test]
            fn any_query_never_panics(q in "\\PC{0,200}", raw in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse_query(&q);
                let _ = parse_query(&String::from_utf8_lossy(&raw));
            }

            #[test]
            fn query_pairs_round_trip(pairs in proptest::collection::vec(("\\PC{1,12}", "\\PC{0,12}"), 0..6)) {
                let q: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                let parsed = parse_query(&q.join("&"));
                prop_assert_eq!(parsed, pairs);
            }

            #[test]
            fn valid_requests_round_trip(
                method in method(),
                segments in proptest::collection::vec("\\PC{1,8}", 0..4),
                query in proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,8}"), 0..4),
                minor in 0u8..2,
                headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,30}"), 0..10),
                pipelined in proptest::collection::vec(any::<u8>(), 0..20),
            ) {
                let path = format!("/{}", segments.join("/"));
                let target = format!(
                    "/{}{}{}",
                    segments.iter().map(|s| encode(s)).collect::<Vec<_>>().join("/"),
                    if query.is_empty() { "" } else { "?" },
                    query
                        .iter()
                        .map(|(k, v)| format!("{k}={}", encode(v)))
                        .collect::<Vec<_>>()
                        .join("&"),
                );
                let mut raw = format!("{method} {target} HTTP/1.{minor}\r\n");
                for (n, v) in &headers {
                    raw.push_str(&format!("{n}: {v}\r\n"));
                }
                raw.push_str("\r\n");
                let head_len = raw.len();
                let mut bytes = raw.into_bytes();
                bytes.extend_from_slice(&pipelined);
                let (req, len) = parse(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                    .ok_or_else(|| TestCaseError::fail("incomplete"))?;
                prop_assert_eq!(len, head_len);
                prop_assert_eq!(req.method, method);
                prop_assert_eq!(req.path, path);
                prop_assert_eq!(req.query, query);
                prop_assert_eq!(req.minor_version, minor);
                let want: Vec<(String, String)> = headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                prop_assert_eq!(req.headers, want);
                // Any prefix of the head is incomplete, never an error.
                for cut in [0, head_len / 2, head_len - 1] {
                    prop_assert!(matches!(parse(&bytes[..cut]), Ok(None)), "cut {}", cut);
                }
            }
        }
    }
}
