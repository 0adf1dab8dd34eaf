//! The HTTP side: one task per connection, reading request heads, routing,
//! and answering. Stream responses are written here directly (not through a
//! general HTTP library) so that each frame is one write of shared bytes and
//! the body is delimited by closing the connection, as MJPEG clients expect.
//!
//! This module sees streams only through their `FrameHub`s.

mod cors;
mod index;
mod metrics;
pub mod request;
pub mod response;
mod router;
mod snapshot;
mod status;
mod stream;

use crate::hub::FrameHub;
use bytes::BytesMut;
use request::{ReadError, read_request};
use response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Longest wait for a complete request head (also the keep-alive idle time).
    pub header_timeout: Duration,
    /// Largest request head accepted (larger: 431).
    pub max_head: usize,
    /// Longest wait for a fresh frame when serving `/snapshot`.
    pub snapshot_timeout: Duration,
    /// `Access-Control-Allow-Origin` for every response (`--allow-origin`).
    pub allow_origin: Option<String>,
    /// Send stream parts to plain TCP clients with `sendfile` from the
    /// frame's memory file (else with `write` from the shared buffer).
    pub zero_copy: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_timeout: Duration::from_secs(5),
            max_head: 16 * 1024,
            snapshot_timeout: Duration::from_secs(1),
            allow_origin: None,
            zero_copy: true,
        }
    }
}

/// Everything a connection needs: the streams (the first is the default) and
/// the settings.
pub struct HttpContext {
    pub streams: Vec<Arc<FrameHub>>,
    pub options: HttpOptions,
    pub started: Instant,
}

impl HttpContext {
    pub fn new(streams: Vec<Arc<FrameHub>>, options: HttpOptions) -> HttpContext {
        HttpContext {
            streams,
            options,
            started: Instant::now(),
        }
    }

    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&Arc<FrameHub>> {
        self.streams.iter().find(|h| h.name() == name)
    }
}

/// A connection's byte stream. Plain TCP connections expose their socket so
/// that stream parts can be handed to the kernel with `sendfile`; other
/// transports (TLS, unix sockets) write the bytes.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Transport for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

/// Serves one connection until the client leaves, an error, or `cancel`.
pub async fn serve_connection<S>(
    mut io: S,
    peer: SocketAddr,
    ctx: Arc<HttpContext>,
    cancel: CancellationToken,
) where
    S: Transport,
{
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(
                ctx.options.header_timeout,
                read_request(&mut io, &mut buf, ctx.options.max_head),
            ) => r,
        };
        let request = match read {
            Ok(Ok(request)) => request,
            Ok(Err(ReadError::Closed)) => return,
            Ok(Err(ReadError::Io(e))) => {
                debug!(%peer, "read error: {e}");
                return;
            }
            Ok(Err(ReadError::TooLarge)) => {
                let resp = Response::text(431, "request head too large");
                let resp = cors::decorate(resp, &ctx.options);
                let _ = resp.write(&mut io, 1, false, false).await;
                return;
            }
            Ok(Err(ReadError::Malformed(why))) => {
                debug!(%peer, "{why}");
                let resp = cors::decorate(Response::text(400, &why), &ctx.options);
                let _ = resp.write(&mut io, 1, false, false).await;
                return;
            }
            Err(_elapsed) => {
                if !buf.is_empty() {
                    let resp = Response::text(408, "request head not received in time");
                    let resp = cors::decorate(resp, &ctx.options);
                    let _ = resp.write(&mut io, 1, false, false).await;
                }
                return;
            }
        };
        debug!(%peer, method = %request.method, path = %request.path, "request");
        let keep_alive = router::handle(&mut io, &request, &ctx, &cancel).await;
        if !keep_alive {
            return;
        }
    }
}
