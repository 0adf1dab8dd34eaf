//! `/snapshot`: one JPEG, captured after the request arrived (or, with
//! `?at=` or `?ago=`, one from the history: `past.rs`).
//!
//! Waits up to the snapshot timeout for a fresh frame; `?max_age=MS` accepts
//! a frame up to that old at once. A stream whose source is down answers 503
//! with the reason instead of an old picture.
//!
//! A stream that `--capture-on-demand` paused has only a picture from before
//! the pause. The request resumes the source, which may take seconds to
//! start (ffmpeg, rpicam-vid), so such a request waits up to the resume
//! timeout for the first new frame, and never answers with the old picture.

use super::HttpOptions;
use super::request::Request;
use super::response::Response;
use crate::frame::{Frame, unix_timestamp};
use crate::hub::FrameHub;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub async fn respond(
    req: &Request,
    hub: &Arc<FrameHub>,
    options: &HttpOptions,
    cancel: &CancellationToken,
) -> Response {
    if super::past::wants_past(req) {
        return super::past::snapshot(req, hub);
    }
    let asked_at = Instant::now();
    // Decided before registering as a viewer, which ends the pause.
    let resuming = resuming(hub, options.snapshot_timeout);
    // Waiting for a fresh frame is watching: a paused source resumes.
    let _viewer = hub.viewer();
    let max_age = req
        .query("max_age")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let fresh = |f: &Frame| f.meta.captured_at >= asked_at || max_age.is_some_and(|m| f.age() <= m);
    let wait = if resuming {
        options.resume_timeout.max(options.snapshot_timeout)
    } else {
        options.snapshot_timeout
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut frames = hub.subscribe();
    loop {
        let latest = frames.borrow_and_update().clone();
        match latest {
            Some(f) if !f.online => return offline(hub),
            Some(f) if fresh(&f) => return image(hub, &f),
            _ => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return Response::text(503, "server shutting down"),
            _ = tokio::time::sleep_until(deadline) => break,
            changed = frames.changed() => if changed.is_err() { break },
        }
    }
    if resuming {
        return Response::text(
            503,
            &format!(
                "stream {}: the source did not deliver a frame within {}s of resuming",
                hub.name(),
                wait.as_secs_f64()
            ),
        )
        .header("Retry-After", "1");
    }
    // No fresh frame in time (a slow source): the newest one is still the
    // best answer there is.
    match hub.latest() {
        Some(f) if f.online => image(hub, &f),
        Some(_) => offline(hub),
        None => Response::text(503, &format!("stream {}: no frame yet", hub.name()))
            .header("Retry-After", "1"),
    }
}

/// Whether `hub`'s source is paused for lack of viewers, or so recently
/// resumed that its newest frame is from before the pause.
fn resuming(hub: &FrameHub, stale_after: Duration) -> bool {
    hub.capture_on_demand()
        && (hub.demand().paused()
            || hub
                .latest()
                .is_none_or(|f| from_before_pause(hub, &f, stale_after)))
}

/// Whether `f` is a live picture from before a `--capture-on-demand` pause
/// (older than `stale_after`, which a capturing source never lets its
/// newest frame become): not what a viewer who resumed the source should
/// see first. A placeholder ("NO SIGNAL") is never stale: it tells why.
pub(super) fn from_before_pause(hub: &FrameHub, f: &Frame, stale_after: Duration) -> bool {
    hub.capture_on_demand() && f.online && f.age() > stale_after
}

pub(super) fn image(hub: &FrameHub, f: &Frame) -> Response {
    image_of(hub, f, f.jpeg())
}

/// `jpeg` (frame `f`, or a rendition of it) as the snapshot answer.
pub(super) fn image_of(hub: &FrameHub, f: &Frame, jpeg: bytes::Bytes) -> Response {
    hub.stats().count_bytes_out(jpeg.len());
    Response::new(200, "image/jpeg", jpeg)
        .no_cache()
        .header("X-Timestamp", unix_timestamp(f.meta.captured))
        .header("Content-Disposition", "inline; filename=snapshot.jpg")
}

fn offline(hub: &FrameHub) -> Response {
    let why = hub.last_error().unwrap_or_else(|| "source offline".into());
    Response::text(503, &format!("stream {}: {why}", hub.name())).header("Retry-After", "1")
}
