//! The HTTP side: one task per connection, reading request heads, routing,
//! and answering. Stream responses are written here directly (not through a
//! general HTTP library) so that each frame is one vectored write of shared
//! bytes and the body is delimited by closing the connection, as MJPEG
//! clients expect.
//!
//! This module sees streams only through their `FrameHub`s.

pub mod auth;
mod avi;
mod clip;
mod cors;
mod fanout;
mod index;
pub mod limits;
mod metrics;
mod past;
mod rendition;
mod replay;
pub mod request;
pub mod response;
mod router;
mod snapshot;
mod status;
mod stream;

use crate::hub::FrameHub;
use crate::rendition::{RenditionSettings, Renditions};
use auth::Access;
use bytes::BytesMut;
pub use fanout::LOOP_BYTES_PER_FRAME;
use limits::{ConnectionPermit, Gate, Limits, StallGuard};
use request::{Printable, ReadError, read_request};
use response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
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
    /// Longest wait for the first frame of a paused source that a snapshot
    /// request resumed (`--resume-timeout`).
    pub resume_timeout: Duration,
    /// Who may make requests (default: everyone).
    pub access: Access,
    /// Connection and stream client limits (default: none).
    pub limits: Limits,
    /// A client that takes no byte of a response for this long is dropped.
    pub send_timeout: Duration,
    /// `Access-Control-Allow-Origin` for every response (`--allow-origin`).
    pub allow_origin: Option<String>,
    /// Send stream parts to plain TCP clients with `sendfile` from the
    /// frame's memory file (else with `write` from the shared buffer).
    pub zero_copy: bool,
    /// With `zero_copy`: each stream's frames go to its plain-TCP clients
    /// from send loops (`fanout/`) rather than from every client's task.
    pub batch_sends: bool,
    /// Send loops per stream with `batch_sends` (at least 1).
    pub send_loops: usize,
    /// Bytes a pass of a stream's send loop sends before the stream's next
    /// loop is opened (1: spread over all of them from the first client).
    pub loop_bytes_per_frame: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_timeout: Duration::from_secs(5),
            max_head: 16 * 1024,
            snapshot_timeout: Duration::from_secs(1),
            resume_timeout: Duration::from_secs(10),
            access: Access::default(),
            limits: Limits::default(),
            send_timeout: Duration::from_secs(10),
            allow_origin: None,
            zero_copy: true,
            batch_sends: true,
            send_loops: 1,
            loop_bytes_per_frame: fanout::LOOP_BYTES_PER_FRAME,
        }
    }
}

/// Everything a connection needs: the streams (the first is the default) and
/// the settings.
pub struct HttpContext {
    pub streams: Vec<Arc<FrameHub>>,
    pub options: HttpOptions,
    pub started: Instant,
    /// Live connection and stream client counts for `options.limits`.
    pub gate: Arc<Gate>,
    /// Each stream's send loops, started with its first client.
    fanouts: Vec<std::sync::OnceLock<Option<Arc<fanout::Fanout>>>>,
    /// Tracks the send loops, so shutdown waits for them.
    tasks: TaskTracker,
    /// Each stream's rendition settings, and its live variants (made on
    /// first use, with `tasks`).
    rendition_settings: Vec<RenditionSettings>,
    renditions: Vec<std::sync::OnceLock<Arc<Renditions>>>,
}

impl HttpContext {
    pub fn new(streams: Vec<Arc<FrameHub>>, options: HttpOptions) -> HttpContext {
        let streams_len = streams.len();
        HttpContext {
            streams,
            options,
            started: Instant::now(),
            gate: Arc::default(),
            fanouts: (0..streams_len)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            tasks: TaskTracker::new(),
            rendition_settings: vec![RenditionSettings::default(); streams_len],
            renditions: (0..streams_len)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }

    /// Sets each stream's renditions (in the order of the streams).
    pub fn with_renditions(mut self, settings: Vec<RenditionSettings>) -> HttpContext {
        for (slot, s) in self.rendition_settings.iter_mut().zip(settings) {
            *slot = s;
        }
        self
    }

    /// The renditions of the `i`th stream, if any request has asked for
    /// one (else there are none live), and its settings.
    fn renditions_at(&self, i: usize) -> (Option<&Arc<Renditions>>, Option<&RenditionSettings>) {
        (
            self.renditions.get(i).and_then(|r| r.get()),
            self.rendition_settings.get(i),
        )
    }

    /// The renditions of `hub` (a stream of this context).
    fn renditions(&self, hub: &Arc<FrameHub>) -> Option<Arc<Renditions>> {
        let i = self.streams.iter().position(|h| Arc::ptr_eq(h, hub))?;
        Some(
            self.renditions[i]
                .get_or_init(|| {
                    Renditions::new(
                        hub.clone(),
                        self.rendition_settings[i].clone(),
                        self.tasks.clone(),
                    )
                })
                .clone(),
        )
    }

    /// Tracks the tasks this context starts with `tasks` (the server's).
    pub fn with_tasks(mut self, tasks: TaskTracker) -> HttpContext {
        self.tasks = tasks;
        self
    }

    /// The send loops of `hub`, started on first use; they end with `shutdown`.
    fn fanout(
        &self,
        hub: &Arc<FrameHub>,
        shutdown: &CancellationToken,
    ) -> Option<Arc<fanout::Fanout>> {
        let i = self.streams.iter().position(|h| Arc::ptr_eq(h, hub))?;
        let cell = self.fanouts.get(i)?;
        cell.get_or_init(|| {
            fanout::Fanout::start_or_warn(hub.clone(), &self.options, &self.tasks, shutdown.clone())
        })
        .clone()
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

/// Longest wait for the request of a connection that is only to be told
/// 503: a refused client must not hold its socket for the whole head timeout.
const REFUSED_WAIT: Duration = Duration::from_secs(1);

/// Serves one connection until the client leaves, an error, or `cancel`,
/// first taking its place under the limits (a connection over them is
/// closed at once, or answered 503).
pub async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    ctx: Arc<HttpContext>,
    cancel: CancellationToken,
) where
    S: Transport,
{
    if let limits::Admission::Serve(connection) =
        ctx.gate.admit(peer.ip(), &ctx.options.limits, true)
    {
        serve_admitted(io, peer, ctx, cancel, connection).await;
    }
}

/// Serves one connection until the client leaves, an error, or `cancel`.
/// `connection` is its place under the limits, taken when it was accepted
/// (held until this returns); a refused one is answered 503 whatever it asks.
pub async fn serve_admitted<S>(
    io: S,
    peer: SocketAddr,
    ctx: Arc<HttpContext>,
    cancel: CancellationToken,
    connection: ConnectionPermit,
) where
    S: Transport,
{
    let mut io = StallGuard::new(io, ctx.options.send_timeout);
    let admitted = connection.refusal().map_or(Ok(()), Err);
    let head_timeout = match admitted {
        Ok(()) => ctx.options.header_timeout,
        Err(_) => ctx.options.header_timeout.min(REFUSED_WAIT),
    };
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(
                head_timeout,
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
                if resp.write(&mut io, 1, false, false).await.is_ok() {
                    linger_close(&mut io, &cancel).await;
                }
                return;
            }
            Ok(Err(ReadError::Malformed(why))) => {
                debug!(%peer, "{why}");
                let resp = cors::decorate(Response::text(400, &why), &ctx.options);
                if resp.write(&mut io, 1, false, false).await.is_ok() {
                    linger_close(&mut io, &cancel).await;
                }
                return;
            }
            Ok(Err(ReadError::NotImplemented(why))) => {
                debug!(%peer, "{why}");
                let resp = cors::decorate(Response::text(501, why), &ctx.options);
                if resp.write(&mut io, 1, false, false).await.is_ok() {
                    linger_close(&mut io, &cancel).await;
                }
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
        debug!(%peer, method = %request.method, path = %Printable(&request.path), "request");
        // Refusals come before any work; the stream permit (if any) lives as
        // long as the stream does.
        // Browsers send a CORS preflight without credentials, and `OPTIONS *`
        // asks about the server as a whole: both are answered without
        // credentials and the same for every path, so they reveal nothing
        // (not even which stream names exist).
        let preflight = ctx.options.allow_origin.is_some()
            && request.method == "OPTIONS"
            && request.header("access-control-request-method").is_some();
        let anonymous = preflight || (request.method == "OPTIONS" && request.path == "*");
        let permit = admitted
            .map_err(refuse_busy)
            .and_then(|()| match anonymous {
                true => Ok(None),
                false => ctx
                    .options
                    .access
                    .check(&request, SystemTime::now())
                    .and_then(|()| stream_permit(&request, peer, &ctx)),
            });
        let keep_alive = match permit {
            Ok(_) if anonymous => router::options(&mut io, &request, &ctx).await,
            Ok(_permit) => router::handle(&mut io, &request, &ctx, &cancel).await,
            Err(response) => {
                let response = cors::decorate(response, &ctx.options);
                let keep_alive = admitted.is_ok() && request.keep_alive() && !request.has_body();
                let head_only = request.method == "HEAD";
                let written = response
                    .write(&mut io, request.minor_version, keep_alive, head_only)
                    .await;
                if written.is_ok() && !keep_alive {
                    linger_close(&mut io, &cancel).await;
                }
                keep_alive && written.is_ok()
            }
        };
        if !keep_alive {
            return;
        }
    }
}

/// Most time and input a refused connection may take after its answer.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Closes after an error answer without losing it: closing a socket with
/// unread input makes the kernel send a reset, which can destroy the answer
/// before the client reads it. So: end our side, then read and discard what
/// the client still sends, for a bounded time and amount.
/// Shutdown does not wait for it.
async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, cancel: &CancellationToken) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match io.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        std::io::Result::Ok(())
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::timeout(LINGER_TIME, drain) => {}
    }
}

/// A 503 for a client over a limit: it may come back soon.
fn refuse_busy(why: limits::Refusal) -> Response {
    Response::text(503, why).header("Retry-After", limits::RETRY_AFTER)
}

/// A stream slot for `req` when it asks for a stream (other requests need
/// none); a 503 when the stream limits are reached.
fn stream_permit<'a>(
    req: &request::Request,
    peer: SocketAddr,
    ctx: &'a HttpContext,
) -> Result<Option<limits::StreamPermit<'a>>, Response> {
    if req.method != "GET" || !router::is_stream(req, ctx) {
        return Ok(None);
    }
    ctx.gate
        .stream(peer.ip(), &ctx.options.limits)
        .map(Some)
        .map_err(refuse_busy)
}
