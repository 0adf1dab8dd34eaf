//! `/clip?from=-30&to=now` (and `/streams/NAME/clip`): a span of a stream's
//! history as an AVI file of its JPEGs (MJPEG) with their real timing, for
//! download (`Content-Disposition: attachment`).
//!
//! The frames of the span are taken from the history when the request
//! arrives (the clip keeps them until it is sent, even if the history drops
//! them meanwhile), so the whole layout is known up front: the response
//! has a `Content-Length`, and is written frame by frame straight from the
//! frames' shared bytes, never assembled in memory.

use super::avi::{AviLayout, Slot, chunk_head, pad};
use super::past;
use super::request::Request;
use super::response::{NO_CACHE, Response, push_header, status_line, write_all_vectored};
use super::{HttpOptions, Transport, cors};
use crate::clock::file_time;
use crate::frame::Frame;
use crate::history::parse_moment;
use crate::hub::FrameHub;
use crate::jpeg;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The span when `from=` is not given: the last half minute.
const DEFAULT_FROM: &str = "-30";

/// Sends the clip `req` asks for. `Ok(whether the connection is still
/// usable)` once written; `Err` with the answer to send instead (a bad
/// query, no history, nothing in the span).
pub async fn serve<S: Transport>(
    io: &mut S,
    req: &Request,
    hub: &FrameHub,
    options: &HttpOptions,
    cancel: &CancellationToken,
    head_only: bool,
) -> Result<bool, Response> {
    let Some(store) = hub.history() else {
        return Err(past::no_history(hub));
    };
    let now = SystemTime::now();
    let moment = |key: &str, default: &str| {
        parse_moment(req.query(key).unwrap_or(default), now)
            .map_err(|why| Response::text(400, &format!("{key}: {why}")))
    };
    let (from, to) = (moment("from", DEFAULT_FROM)?, moment("to", "now")?);
    if to <= from {
        return Err(Response::text(400, "to must be after from"));
    }
    let frames = store.range(from, to);
    let Some(first) = frames.first() else {
        return Err(past::out_of_range(hub, store.as_ref(), from));
    };
    let (width, height) = size_of(first);
    let Some(avi) = AviLayout::new(&frames, width, height) else {
        return Err(Response::text(
            400,
            &format!(
                "the clip would be larger than {} MiB: ask for a shorter span",
                super::avi::MAX_FILE >> 20
            ),
        ));
    };

    let mut head = status_line(req.minor_version, 200);
    push_header(&mut head, "Content-Type", "video/x-msvideo");
    push_header(&mut head, "Content-Length", &avi.len.to_string());
    push_header(
        &mut head,
        "Content-Disposition",
        &format!(
            "attachment; filename=\"{}-{}.avi\"",
            hub.name(),
            file_time(first.meta.captured)
        ),
    );
    push_header(&mut head, "X-Frames", &frames.len().to_string());
    for (name, value) in NO_CACHE {
        push_header(&mut head, name, value);
    }
    cors::push(&mut head, options);
    let keep_alive = req.keep_alive() && !req.has_body();
    push_header(
        &mut head,
        "Connection",
        if keep_alive { "keep-alive" } else { "close" },
    );
    head.push_str("\r\n");
    let sent = tokio::select! {
        _ = cancel.cancelled() => return Ok(false),
        r = write_clip(io, &head, &avi, &frames, head_only) => r,
    };
    match sent {
        Ok(n) => {
            hub.stats().count_bytes_out(n);
            Ok(keep_alive)
        }
        Err(e) => {
            debug!(stream = %hub.name(), "clip not sent whole: {e}");
            Ok(false)
        }
    }
}

/// Writes the head, then the file, chunk by chunk; returns the bytes sent.
async fn write_clip<S: Transport>(
    io: &mut S,
    head: &str,
    avi: &AviLayout,
    frames: &[Arc<Frame>],
    head_only: bool,
) -> std::io::Result<usize> {
    if head_only {
        write_all_vectored(io, &[head.as_bytes()]).await?;
        return Ok(head.len());
    }
    write_all_vectored(io, &[head.as_bytes(), &avi.header]).await?;
    for slot in &avi.slots {
        let jpeg = match slot {
            Slot::Frame(i) => frames[*i].jpeg(),
            Slot::Empty => bytes::Bytes::new(),
        };
        let chunk = chunk_head(jpeg.len());
        write_all_vectored(io, &[&chunk, &jpeg, pad(jpeg.len())]).await?;
    }
    write_all_vectored(io, &[&avi.index]).await?;
    Ok(head.len() + avi.len as usize)
}

/// The picture size of a clip: the first frame's, as its source reported it
/// or else as its JPEG header says.
fn size_of(frame: &Frame) -> (u16, u16) {
    if frame.meta.width != 0 {
        return (frame.meta.width, frame.meta.height);
    }
    jpeg::check(&frame.jpeg()).map_or((0, 0), |info| (info.width, info.height))
}
