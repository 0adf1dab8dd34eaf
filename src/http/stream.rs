//! `/stream`: the endless `multipart/x-mixed-replace` response.
//!
//! The client task waits for a frame newer than the one it sent last, then
//! writes that frame's shared part bytes whole (or, on plain TCP by default,
//! sends the first frame and leaves the rest to the stream's send loops,
//! `fanout/`). While a write is blocked on a slow client, newer frames
//! simply replace older ones in the hub, so the client skips frames, nothing
//! queues up for it, and when it can take data again it gets the newest one.
//! While it waits, the task watches the connection, so a viewer who closes
//! the page is gone at once even when no frame comes for a long time.
//! With `?from=`, the task first plays the stream's history (`replay.rs`),
//! then goes on as above.

use super::fanout::Fanout;
use super::replay::{self, Replay};
use super::request::Request;
use super::response::{NO_CACHE, Response, push_header, status_line};
use super::{HttpOptions, Transport, cors};
use crate::frame::Frame;
use crate::frame::{BOUNDARY, stream_preamble};
use crate::hub::{ClientGuard, FrameHub, Latest};
use crate::memfd::PartFile;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::sync::WaitForCancellationFuture;
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
    let planned = rate_cap(req)
        .map_err(|why| Response::text(400, &why))
        .and_then(|cap| Ok((cap, replay::plan(req, hub)?)));
    let (min_interval, replay) = match planned {
        Ok(planned) => planned,
        Err(resp) => {
            let resp = cors::decorate(resp, options);
            let _ = resp.write(io, req.minor_version, false, head_only).await;
            return false;
        }
    };
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

    if let Some(tcp) = io.tcp() {
        // Best effort: without it a slow client gets older pictures.
        let _ = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(QUEUE_AHEAD);
    }
    let mut client = hub.client();
    debug!(stream = %hub.name(), "client connected");
    if let Err(e) = io.write_all(head.as_bytes()).await {
        debug!(stream = %hub.name(), "client disconnected: write error: {e}");
        return false;
    }
    client.sent_bytes(head.len());
    let since = Instant::now();
    // Rate-capped clients keep their own schedule in their own task.
    let (why, frames) = match fanout.filter(|_| min_interval.is_none()) {
        Some(fanout) => pump_batched(io, hub, client, &fanout, replay, options, cancel).await,
        None => {
            let why = pump(io, hub, &mut client, min_interval, replay, options, cancel).await;
            (why, client.frames())
        }
    };
    debug!(
        stream = %hub.name(),
        frames,
        duration_s = format_args!("{:.1}", since.elapsed().as_secs_f64()),
        "client disconnected: {why}"
    );
    false
}

pub(super) const SHUTDOWN: &str = "server shutting down";

/// Most bytes of a stream the kernel may hold for a client before they are
/// on their way (`TCP_NOTSENT_LOWAT`); a send stops there and the client's
/// socket reports room again when it has sent most of them. Without the
/// cap, a client that reads more slowly than the stream goes had up to the
/// whole send buffer of parts queued in the kernel, seconds old by the time
/// they arrived; with it little waits in the kernel, and frames that came
/// meanwhile are skipped in the server, as they should be. Measured here
/// (2000 clients at 720p, the load client on the same two cores): latency
/// p99 800–840 ms without the cap, 240–380 ms with 4, 16 or 64 KiB, the
/// same frames delivered.
const QUEUE_AHEAD: u32 = 64 * 1024;

/// Like `pump`, but after the first frame the stream's send loops send the
/// frames; this task sends the frames that came while the client joined,
/// then only watches the connection, so that a client that leaves is gone
/// at once. Returns why
/// it stopped and how many frames the client got. With a `replay`, the
/// history comes first, then the frames published while the client joined
/// the loops.
async fn pump_batched<S>(
    io: &mut S,
    hub: &FrameHub,
    mut client: ClientGuard,
    fanout: &Arc<Fanout>,
    replay: Option<Replay>,
    options: &HttpOptions,
    cancel: &CancellationToken,
) -> (String, u64)
where
    S: Transport,
{
    let mut frames = hub.subscribe();
    let shutdown = cancel.cancelled();
    tokio::pin!(shutdown);
    let mut watch = PeerWatch::default();
    let replayed = replay.is_some();
    let last_seq = match replay {
        Some(replay) => {
            match replay
                .play(io, &mut client, options, &mut shutdown, &mut watch)
                .await
            {
                Ok(seq) => seq,
                Err(why) => return (why, client.frames()),
            }
        }
        None => match send_first(io, hub, &mut frames, options, &mut shutdown, &mut watch).await {
            Ok(first) => {
                client.sent(&first);
                first.seq
            }
            Err(why) => return (why, 0),
        },
    };
    drop(frames);
    let last_frames = client.frames();
    let dup = match io.tcp().map(|t| t.as_fd().try_clone_to_owned()) {
        Some(Ok(fd)) => fd,
        // Out of descriptors: this client cannot join a loop; end it rather
        // than serve it differently from the others.
        Some(Err(e)) => {
            return (format!("cannot share the socket: {e}"), client.frames());
        }
        None => return ("not a TCP connection".into(), client.frames()),
    };
    // From here on the membership's drop removes the client from its loop,
    // however this task ends.
    let member = match fanout.join(dup, client, last_seq) {
        Ok(member) => member,
        Err(e) => return (format!("cannot watch the socket: {e}"), last_frames),
    };
    let slot = member.slot();
    // A frame published between the last send and the join went to the
    // loop's clients before this one was among them: catch up now. A
    // replaying client gets every such frame from the history (the task
    // keeps the socket until it has them all); a live one the newest.
    let mut joining = replayed;
    let mut next_frame = || {
        while joining {
            if let Some(held) = replay::next_held(hub, slot.last_seq()) {
                return Some(held);
            }
            if slot.give_back(hub).is_none() {
                joining = false;
            }
            // Else a frame came meanwhile and the task has the socket
            // again: the frame is in the history, sent from there.
        }
        slot.give_back(hub)
    };
    let mut next = next_frame();
    let why = loop {
        if let Some(frame) = next.take() {
            let written = tokio::select! {
                _ = &mut shutdown => break SHUTDOWN.to_owned(),
                r = send_part(io, &frame, 0, options, false) => r,
            };
            if let Err(e) = written {
                break format!("client left ({e})");
            }
            slot.sent_by_task(hub, &frame);
            next = next_frame();
            continue;
        }
        // The loops send from here on; this task only notices the end.
        tokio::select! {
            _ = &mut shutdown => break SHUTDOWN.to_owned(),
            why = watch.gone(io) => break why,
            _ = slot.dropped() => break "client dropped (send failed or stalled)".to_owned(),
        }
    };
    (why, member.frames())
}

/// Sends the newest frame at once (or the first one the source makes), from
/// the client's task: a new client does not wait for the next frame.
async fn send_first<S: Transport>(
    io: &mut S,
    hub: &FrameHub,
    frames: &mut watch::Receiver<Latest>,
    options: &HttpOptions,
    shutdown: &mut Pin<&mut WaitForCancellationFuture<'_>>,
    watch: &mut PeerWatch,
) -> Result<Arc<Frame>, String> {
    let first = loop {
        tokio::select! {
            _ = shutdown.as_mut() => return Err(SHUTDOWN.into()),
            why = watch.gone(io) => return Err(why),
            changed = frames.changed() => if changed.is_err() {
                return Err("stream closed".into());
            },
        }
        // Not a picture from before a capture-on-demand pause: the resumed
        // source's first frame is on its way.
        if let Some(frame) = frames.borrow_and_update().clone()
            && !super::snapshot::from_before_pause(hub, &frame, options.snapshot_timeout)
        {
            break frame;
        }
    };
    let written = tokio::select! {
        _ = shutdown.as_mut() => return Err(SHUTDOWN.into()),
        r = send_part(io, &first, 0, options, false) => r,
    };
    match written {
        Ok(()) => Ok(first),
        Err(e) => Err(format!("client left ({e})")),
    }
}

/// Writes frames (after the replay, if any) until the client leaves or
/// shutdown; returns why it stopped.
async fn pump<S>(
    io: &mut S,
    hub: &FrameHub,
    client: &mut ClientGuard,
    min_interval: Option<Duration>,
    replay: Option<Replay>,
    options: &HttpOptions,
    cancel: &CancellationToken,
) -> String
where
    S: Transport,
{
    let mut frames = hub.subscribe();
    let mut next_due = Instant::now();
    // One shutdown future for the whole stream: it registers with the token
    // once, instead of once per frame.
    let shutdown = cancel.cancelled();
    tokio::pin!(shutdown);
    let mut watch = PeerWatch::default();
    // The newest frame the client has, and whether it has just finished a
    // replay and must first get the frames published since.
    let (mut last_seq, mut joining) = match replay {
        None => (0, false),
        Some(replay) => match replay
            .play(io, client, options, &mut shutdown, &mut watch)
            .await
        {
            Ok(seq) => (seq, true),
            Err(why) => return why,
        },
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => return SHUTDOWN.into(),
            why = watch.gone(io) => return why,
            changed = frames.changed() => if changed.is_err() { return "stream closed".into() },
        }
        let Some(mut frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        if client.frames() == 0
            && super::snapshot::from_before_pause(hub, &frame, options.snapshot_timeout)
        {
            continue; // the resumed source's first frame is on its way
        }
        if frame.seq <= last_seq {
            continue; // the replay sent it
        }
        if let Some(interval) = min_interval {
            // Capped rate: wait for this client's next slot, then send the
            // newest frame at that moment. The slot is used only by a frame
            // that is sent: a client that arrived before the first frame
            // gets it at once, not one interval later.
            let now = Instant::now();
            if next_due > now {
                tokio::select! {
                    _ = &mut shutdown => return SHUTDOWN.into(),
                    why = watch.gone(io) => return why,
                    _ = tokio::time::sleep_until(next_due) => {}
                }
                if let Some(newer) = frames.borrow_and_update().clone() {
                    frame = newer;
                }
            }
            next_due = (next_due + interval).max(Instant::now());
        }
        while joining {
            match replay::next_held(hub, last_seq).filter(|held| held.seq < frame.seq) {
                Some(held) => {
                    let written = tokio::select! {
                        _ = &mut shutdown => return SHUTDOWN.into(),
                        r = send_part(io, &held, 0, options, false) => r,
                    };
                    if let Err(e) = written {
                        return format!("client left ({e})");
                    }
                    client.sent(&held);
                    last_seq = held.seq;
                }
                None => joining = false,
            }
        }
        let written = tokio::select! {
            _ = &mut shutdown => return SHUTDOWN.into(),
            r = send_part(io, &frame, 0, options, true) => r,
        };
        if let Err(e) = written {
            return format!("client left ({e})");
        }
        client.sent(&frame);
        last_seq = frame.seq;
    }
}

/// Lowest and highest `?fps=` a client may ask for.
const FPS_RANGE: std::ops::RangeInclusive<f64> = 0.01..=1000.0;

/// The `?fps=N` cap as an interval between frames (`None`: no cap), or why
/// the value is refused.
pub(super) fn rate_cap(req: &Request) -> Result<Option<Duration>, String> {
    let Some(raw) = req.query("fps") else {
        return Ok(None);
    };
    match raw.trim().parse::<f64>() {
        Ok(fps) if FPS_RANGE.contains(&fps) => Ok(Some(Duration::from_secs_f64(1.0 / fps))),
        _ => Err(format!(
            "fps must be a number from {} to {}",
            FPS_RANGE.start(),
            FPS_RANGE.end()
        )),
    }
}

/// Most bytes a stream client may send after its request; a client that
/// sends more is not a viewer and is dropped.
const MAX_CLIENT_CHATTER: usize = 64 * 1024;

/// Watches a stream connection's read side while the task waits: a stream
/// client sends nothing after its request, so end of input (the viewer
/// closed the tab) or a reset means it is gone, now rather than at the next
/// frame, which may be minutes away.
#[derive(Default)]
pub(super) struct PeerWatch {
    read: usize,
}

impl PeerWatch {
    /// Resolves when the client has gone; returns why. Reading is cancel-safe,
    /// so this can race other futures in a `select!`.
    pub(super) async fn gone<S: AsyncRead + Unpin>(&mut self, io: &mut S) -> String {
        let mut scratch = [0u8; 512];
        loop {
            match io.read(&mut scratch).await {
                Ok(0) => return "client closed the connection".into(),
                Ok(n) => {
                    self.read += n;
                    if self.read > MAX_CLIENT_CHATTER {
                        return "client sent data while streaming".into();
                    }
                }
                Err(e) => return format!("client left ({e})"),
            }
        }
    }
}

/// Writes one frame's part whole: by `sendfile` from the frame's memory file
/// on plain TCP, else by writing the shared bytes (the connection's
/// `StallGuard` then enforces the send timeout).
/// `make_file`: make the frame's memory file if no sender has yet (else
/// use it only if it exists).
pub(super) async fn send_part<S: Transport>(
    io: &mut S,
    frame: &Frame,
    offset: usize,
    options: &HttpOptions,
    make_file: bool,
) -> io::Result<()> {
    let tcp = io.tcp().filter(|_| options.zero_copy);
    let file = match (tcp, make_file) {
        (None, _) => None,
        (Some(_), true) => frame.part_file(),
        (Some(_), false) => frame.built_part_file(),
    };
    if let (Some(tcp), Some(file)) = (tcp, file) {
        return sendfile_all(tcp, file, offset, options.send_timeout).await;
    }
    write_pieces(io, frame.part_from(offset)).await
}

/// Writes every byte of `pieces`, several pieces per system call where the
/// transport takes vectored writes.
async fn write_pieces<S: Transport>(io: &mut S, mut pieces: [&[u8]; 3]) -> io::Result<()> {
    loop {
        let iov = pieces.map(io::IoSlice::new);
        let first = pieces.iter().position(|p| !p.is_empty());
        let Some(first) = first else { return Ok(()) };
        let n = io.write_vectored(&iov[first..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut skip = n;
        for piece in &mut pieces {
            let cut = skip.min(piece.len());
            *piece = &piece[cut..];
            skip -= cut;
        }
    }
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
        match tcp.try_io(Interest::WRITABLE, || file.sendfile_to(tcp.as_fd(), offset)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => offset += n,
            // Readiness was stale; `try_io` cleared it, so wait again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
