//! `/stream`: the endless `multipart/x-mixed-replace` response.
//!
//! The client task waits for a frame newer than the one it sent last, then
//! writes that frame's shared part bytes whole. While a write is blocked on a
//! slow client, newer frames simply replace older ones in the hub, so the
//! client skips frames and nothing queues up for it.

use super::fanout::Fanout;
use super::request::Request;
use super::response::{NO_CACHE, push_header, status_line};
use super::{HttpOptions, Transport, cors};
use crate::frame::Frame;
use crate::frame::{BOUNDARY, stream_preamble};
use crate::hub::{ClientGuard, FrameHub};
use crate::memfd::PartFile;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::net::TcpStream;
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
    fanout: Option<Arc<Fanout>>,
    cancel: &CancellationToken,
    head_only: bool,
) -> bool
where
    S: Transport,
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
    debug!(stream = %hub.name(), "client connected");
    // Rate-capped clients keep their own schedule in their own task.
    let (why, client) = match fanout.filter(|_| min_interval.is_none()) {
        Some(fanout) => pump_batched(io, &head, hub, client, &fanout, options, cancel).await,
        None => {
            let why = pump(io, &head, hub, &mut client, min_interval, options, cancel).await;
            (why, Some(client))
        }
    };
    if let Some(client) = client {
        debug!(
            stream = %hub.name(),
            frames = client.frames(),
            duration_s = format_args!("{:.1}", client.connected_for().as_secs_f64()),
            "client disconnected: {why}"
        );
    }
    false
}

/// Like `pump`, but after the first frame the stream's fanout loop sends
/// the frames; this task only finishes parts the socket did not take whole.
async fn pump_batched<S>(
    io: &mut S,
    head: &str,
    hub: &FrameHub,
    mut client: ClientGuard,
    fanout: &Fanout,
    options: &HttpOptions,
    cancel: &CancellationToken,
) -> (String, Option<ClientGuard>)
where
    S: Transport,
{
    const SHUTDOWN: &str = "server shutting down";
    let mut frames = hub.subscribe();
    if let Err(e) = io.write_all(head.as_bytes()).await {
        return (format!("write error: {e}"), Some(client));
    }
    client.sent_bytes(head.len());
    let shutdown = cancel.cancelled();
    tokio::pin!(shutdown);
    // The newest frame at once (or the first one the source makes), from
    // this task: a new client does not wait for the next frame.
    let first = loop {
        tokio::select! {
            _ = &mut shutdown => return (SHUTDOWN.into(), Some(client)),
            changed = frames.changed() => if changed.is_err() {
                return ("stream closed".into(), Some(client));
            },
        }
        if let Some(frame) = frames.borrow_and_update().clone() {
            break frame;
        }
    };
    if let Err(e) = send_part(io, &first, 0, options).await {
        return (format!("client left ({e})"), Some(client));
    }
    client.sent(&first);
    hub.observe_latency(first.meta.captured_at.elapsed());
    drop(frames);
    let dup = match io.tcp().map(|t| t.as_fd().try_clone_to_owned()) {
        Some(Ok(fd)) => fd,
        // Out of descriptors: this client cannot join the loop; end it
        // rather than serve it differently from the others.
        Some(Err(e)) => return (format!("cannot share the socket: {e}"), Some(client)),
        None => return ("not a TCP connection".into(), Some(client)),
    };
    let slot = fanout.join(dup, client, first.seq);
    let why = loop {
        tokio::select! {
            _ = &mut shutdown => break SHUTDOWN.to_owned(),
            _ = slot.handed_back() => {}
        }
        match slot.take_pending() {
            Err(()) => break "client left".to_owned(),
            Ok(None) => {}
            Ok(Some((frame, offset))) => match send_part(io, &frame, offset, options).await {
                Ok(()) => {
                    hub.observe_latency(frame.meta.captured_at.elapsed());
                    slot.resume(&frame);
                }
                Err(e) => break format!("client left ({e})"),
            },
        }
    };
    (why, fanout.leave(&slot))
}

/// Writes the head, then frames until the client leaves or shutdown; returns
/// why it stopped.
async fn pump<S>(
    io: &mut S,
    head: &str,
    hub: &FrameHub,
    client: &mut ClientGuard,
    min_interval: Option<Duration>,
    options: &HttpOptions,
    cancel: &CancellationToken,
) -> String
where
    S: Transport,
{
    const SHUTDOWN: &str = "server shutting down";
    let mut frames = hub.subscribe();
    if let Err(e) = io.write_all(head.as_bytes()).await {
        return format!("write error: {e}");
    }
    client.sent_bytes(head.len());
    let mut next_due = Instant::now();
    // One shutdown future for the whole stream: it registers with the token
    // once, instead of once per frame.
    let shutdown = cancel.cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return SHUTDOWN.into(),
            changed = frames.changed() => if changed.is_err() { return "stream closed".into() },
        }
        if let Some(interval) = min_interval {
            // Capped rate: wait for this client's next slot, then send the
            // newest frame at that moment.
            let now = Instant::now();
            if next_due > now {
                tokio::select! {
                    _ = &mut shutdown => return SHUTDOWN.into(),
                    _ = tokio::time::sleep_until(next_due) => {}
                }
            }
            next_due = (next_due + interval).max(Instant::now());
        }
        let Some(frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        let written = tokio::select! {
            _ = &mut shutdown => return SHUTDOWN.into(),
            r = send_part(io, &frame, 0, options) => r,
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

/// Writes one frame's part whole: by `sendfile` from the frame's memory file
/// on plain TCP, else by writing the shared bytes (the connection's
/// `StallGuard` then enforces the send timeout).
async fn send_part<S: Transport>(
    io: &mut S,
    frame: &Frame,
    offset: usize,
    options: &HttpOptions,
) -> io::Result<()> {
    if options.zero_copy
        && let (Some(tcp), Some(file)) = (io.tcp(), frame.part_file())
    {
        return sendfile_all(tcp, file, offset, options.send_timeout).await;
    }
    io.write_all(frame.part().get(offset..).unwrap_or_default())
        .await
}

/// `sendfile` until the socket has taken the whole file, waiting for the
/// socket to become writable whenever it is full; a client whose socket
/// takes nothing for `send_timeout` is given up.
async fn sendfile_all(
    tcp: &TcpStream,
    file: &PartFile,
    mut offset: usize,
    send_timeout: Duration,
) -> io::Result<()> {
    while offset < file.len() {
        tokio::time::timeout(send_timeout, tcp.writable())
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client took no data within the send timeout",
                )
            })??;
        match tcp.try_io(Interest::WRITABLE, || file.send_to(tcp.as_raw_fd(), offset)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => offset += n,
            // Readiness was stale; `try_io` cleared it, so wait again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
