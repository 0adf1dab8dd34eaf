//! `/stream`: the endless `multipart/x-mixed-replace` response.
//!
//! The client task waits for a frame newer than the one it sent last, then
//! writes that frame's shared part bytes whole. While a write is blocked on a
//! slow client, newer frames simply replace older ones in the hub, so the
//! client skips frames and nothing queues up for it.

use super::request::Request;
use super::response::{NO_CACHE, push_header, status_line};
use super::{HttpOptions, cors};
use crate::frame::{BOUNDARY, stream_preamble};
use crate::hub::{ClientGuard, FrameHub};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Streams `hub` to the client until it leaves or `cancel`. Returns false:
/// a stream body ends only by closing the connection.
pub async fn serve<S>(
    io: &mut S,
    req: &Request,
    hub: &Arc<FrameHub>,
    options: &HttpOptions,
    cancel: &CancellationToken,
    head_only: bool,
) -> bool
where
    S: AsyncWrite + Unpin,
{
    let mut head = status_line(req.minor_version, 200);
    push_header(
        &mut head,
        "Content-Type",
        &format!("multipart/x-mixed-replace;boundary={BOUNDARY}"),
    );
    for (name, value) in NO_CACHE {
        push_header(&mut head, name, value);
    }
    cors::push(&mut head, options);
    push_header(&mut head, "Connection", "close");
    head.push_str("\r\n");
    if head_only {
        let _ = io.write_all(head.as_bytes()).await;
        return false;
    }
    head.push_str(&stream_preamble());

    let min_interval = rate_cap(req);
    let mut client = hub.client();
    debug!(stream = hub.name(), "client connected");
    let why = pump(io, &head, hub, &mut client, min_interval, cancel).await;
    debug!(
        stream = hub.name(),
        frames = client.frames(),
        duration_s = format_args!("{:.1}", client.connected_for().as_secs_f64()),
        "client disconnected: {why}"
    );
    false
}

/// Writes the head, then frames until the client leaves or shutdown; returns
/// why it stopped.
async fn pump<S>(
    io: &mut S,
    head: &str,
    hub: &FrameHub,
    client: &mut ClientGuard,
    min_interval: Option<Duration>,
    cancel: &CancellationToken,
) -> String
where
    S: AsyncWrite + Unpin,
{
    const SHUTDOWN: &str = "server shutting down";
    let mut frames = hub.subscribe();
    if let Err(e) = io.write_all(head.as_bytes()).await {
        return format!("write error: {e}");
    }
    client.sent_bytes(head.len());
    let mut next_due = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return SHUTDOWN.into(),
            changed = frames.changed() => if changed.is_err() { return "stream closed".into() },
        }
        if let Some(interval) = min_interval {
            // Capped rate: wait for this client's next slot, then send the
            // newest frame at that moment.
            let now = Instant::now();
            if next_due > now {
                tokio::select! {
                    _ = cancel.cancelled() => return SHUTDOWN.into(),
                    _ = tokio::time::sleep_until(next_due) => {}
                }
            }
            next_due = (next_due + interval).max(Instant::now());
        }
        let Some(frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        let written = tokio::select! {
            _ = cancel.cancelled() => return SHUTDOWN.into(),
            r = io.write_all(frame.part()) => r,
        };
        if let Err(e) = written {
            return format!("client left ({e})");
        }
        client.sent(&frame);
        hub.observe_latency(frame.meta.captured_at.elapsed());
    }
}

/// The `?fps=N` cap as an interval between frames, if given and valid.
fn rate_cap(req: &Request) -> Option<Duration> {
    let fps: f64 = req.query("fps")?.parse().ok()?;
    (fps > 0.0 && fps.is_finite()).then(|| Duration::from_secs_f64(1.0 / fps.min(1000.0)))
}
