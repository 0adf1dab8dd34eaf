//! Building and writing responses that have a known length (everything but
//! the stream), and the shared header lines.

use crate::clock::http_date;
use bytes::Bytes;
use std::io::IoSlice;
use std::time::SystemTime;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// `Server` header value.
pub const SERVER: &str = concat!("mjpegd/", env!("CARGO_PKG_VERSION"));

/// Headers of live answers (streams, snapshots, status): browsers and
/// proxies must neither cache them nor hold them back. `X-Accel-Buffering:
/// no` makes nginx pass each stream frame on at once even where its config
/// leaves `proxy_buffering` on.
pub const NO_CACHE: &[(&str, &str)] = &[
    (
        "Cache-Control",
        "no-store, no-cache, must-revalidate, proxy-revalidate, max-age=0",
    ),
    ("Pragma", "no-cache"),
    ("Expires", "Mon, 01 Jan 1990 00:00:00 GMT"),
    ("X-Accel-Buffering", "no"),
];

/// A complete response with a body of known length.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body: body.into(),
        }
    }

    /// A plain-text response whose body is `message` and a newline.
    pub fn text(status: u16, message: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{message}\n"))
    }

    /// An empty response (204, or one whose headers say it all).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn no_cache(mut self) -> Response {
        for (n, v) in NO_CACHE {
            self.headers.push((n, (*v).to_owned()));
        }
        self
    }

    /// Writes the response. `head_only` for HEAD requests: the headers
    /// describe the body, which is not sent.
    pub async fn write<W: AsyncWrite + Unpin>(
        &self,
        io: &mut W,
        minor_version: u8,
        keep_alive: bool,
        head_only: bool,
    ) -> std::io::Result<usize> {
        let mut head = status_line(minor_version, self.status);
        for (name, value) in &self.headers {
            push_header(&mut head, name, value);
        }
        if self.status != 204 {
            push_header(&mut head, "Content-Length", &self.body.len().to_string());
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        push_header(&mut head, "Connection", connection);
        head.push_str("\r\n");
        let body: &[u8] = if head_only { &[] } else { &self.body };
        write_all_vectored(io, &[head.as_bytes(), body]).await?;
        Ok(head.len() + body.len())
    }
}

/// `HTTP/1.x CODE REASON` plus the headers every response carries.
pub fn status_line(minor_version: u8, status: u16) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(if minor_version == 0 {
        "HTTP/1.0 "
    } else {
        "HTTP/1.1 "
    });
    s.push_str(&status.to_string());
    s.push(' ');
    s.push_str(reason(status));
    s.push_str("\r\n");
    push_header(&mut s, "Server", SERVER);
    push_header(&mut s, "Date", &http_date(SystemTime::now()));
    // Browsers must take every answer for its declared type: a text answer
    // that echoes client input must never be sniffed into HTML or script.
    push_header(&mut s, "X-Content-Type-Options", "nosniff");
    s
}

pub fn push_header(head: &mut String, name: &str, value: &str) {
    head.push_str(name);
    head.push_str(": ");
    head.push_str(value);
    head.push_str("\r\n");
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes every byte of `bufs` with as few system calls as the socket allows
/// (one `writev` when it takes everything).
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    bufs: &[&[u8]],
) -> std::io::Result<()> {
    let mut bufs: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
    let mut first = 0;
    while first < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[first..].iter().map(|b| IoSlice::new(b)).collect();
        let mut n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while first < bufs.len() && n >= bufs[first].len() {
            n -= bufs[first].len();
            first += 1;
        }
        if first < bufs.len() {
            bufs[first] = &bufs[first][n..];
        }
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn head_request_has_length_but_no_body() {
        let mut out = Vec::new();
        Response::text(404, "no such stream")
            .write(&mut out, 1, true, true)
            .await
            .expect("writes to a Vec");
        let s = String::from_utf8(out).expect("utf-8");
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("\r\nContent-Length: 15\r\n"));
        assert!(s.ends_with("Connection: keep-alive\r\n\r\n"));
    }

    #[tokio::test]
    async fn vectored_write_survives_partial_writes() {
        // A writer that takes at most 3 bytes per call.
        struct Trickle(Vec<u8>);
        impl AsyncWrite for Trickle {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let n = buf.len().min(3);
                self.0.extend_from_slice(&buf[..n]);
                std::task::Poll::Ready(Ok(n))
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
        let mut w = Trickle(Vec::new());
        write_all_vectored(&mut w, &[b"hello ", b"", b"wide world"])
            .await
            .expect("writes");
        assert_eq!(w.0, b"hello wide world");
    }
}
