//! `/stream?from=-30` (or `from=UNIX_TIME`): a stream that starts in the
//! past and continues into the live one.
//!
//! The client's own task plays the history from the frame shown at that
//! moment, at the pace the frames were captured, until it reaches the
//! moment of the request; frames captured since then are played faster
//! (`?catchup=`, twice the pace by default), so that the replay reaches the
//! newest frame. Then the client joins the live stream with the frame after
//! the last one it got: every frame once, in order, none left out (unless
//! a very slow client falls out of the history's span).

use super::past;
use super::request::Request;
use super::response::Response;
use super::stream::{PeerWatch, SHUTDOWN, send_part};
use super::{HttpOptions, Transport};
use crate::frame::Frame;
use crate::history::{FrameStore, parse_moment};
use crate::hub::{ClientGuard, FrameHub};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;

/// How much faster than captured the frames recorded after the request are
/// played, unless `?catchup=` says otherwise.
const DEFAULT_CATCHUP: f64 = 2.0;

/// Range of `?catchup=`.
const CATCHUP_RANGE: std::ops::RangeInclusive<f64> = 1.1..=16.0;

/// A client that behind its schedule by more than this (a slow socket)
/// keeps the original spacing from where it is, instead of getting the
/// late frames in a burst.
const BEHIND_SLACK: Duration = Duration::from_millis(200);

/// Where a replay starts and how it catches up.
pub struct Replay {
    store: Arc<dyn FrameStore>,
    first: Arc<Frame>,
    /// The moment of the request on the monotonic clock: frames captured
    /// later are played `catchup` times faster.
    asked_at: std::time::Instant,
    catchup: f64,
}

/// The replay `req` asks for: `None` without `from=`, or when the history
/// holds no frame yet (the client gets the live stream); an error answer
/// for a bad value or a stream without history.
pub fn plan(req: &Request, hub: &FrameHub) -> Result<Option<Replay>, Response> {
    let Some(raw) = req.query("from") else {
        return Ok(None);
    };
    let Some(store) = hub.history() else {
        return Err(past::no_history(hub));
    };
    if req.query("fps").is_some() {
        return Err(Response::text(400, "give fps or from, not both"));
    }
    let now = SystemTime::now();
    let from = parse_moment(raw, now).map_err(|why| Response::text(400, &why))?;
    if from > now {
        return Err(Response::text(400, "from is in the future"));
    }
    let catchup = match req.query("catchup") {
        None => DEFAULT_CATCHUP,
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|c| CATCHUP_RANGE.contains(c))
            .ok_or_else(|| {
                Response::text(
                    400,
                    &format!(
                        "catchup must be a number from {} to {}",
                        CATCHUP_RANGE.start(),
                        CATCHUP_RANGE.end()
                    ),
                )
            })?,
    };
    // Before the oldest frame held: the replay starts with the oldest.
    let first = store.at_or_before(from).or_else(|| store.next_after(0));
    Ok(first.map(|first| Replay {
        store: store.clone(),
        first,
        asked_at: std::time::Instant::now(),
        catchup,
    }))
}

impl Replay {
    /// Plays the history to the client until it has the newest frame held;
    /// returns that frame's sequence number, or why the client is gone.
    pub async fn play<S: Transport>(
        self,
        io: &mut S,
        client: &mut ClientGuard,
        options: &HttpOptions,
        shutdown: &mut std::pin::Pin<&mut WaitForCancellationFuture<'_>>,
        watch: &mut PeerWatch,
    ) -> Result<u64, String> {
        let mut frame = self.first;
        let mut due = Instant::now();
        loop {
            if due > Instant::now() {
                tokio::select! {
                    _ = shutdown.as_mut() => return Err(SHUTDOWN.into()),
                    why = watch.gone(io) => return Err(why),
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            let written = tokio::select! {
                _ = shutdown.as_mut() => return Err(SHUTDOWN.into()),
                r = send_part(io, &frame, 0, options, false) => r,
            };
            if let Err(e) = written {
                return Err(format!("client left ({e})"));
            }
            client.replayed(&frame);
            let Some(next) = self.store.next_after(frame.seq) else {
                return Ok(frame.seq);
            };
            let gap = next
                .meta
                .captured_at
                .saturating_duration_since(frame.meta.captured_at);
            due += if next.meta.captured_at <= self.asked_at {
                gap
            } else {
                gap.div_f64(self.catchup)
            };
            if let Some(floor) = Instant::now().checked_sub(BEHIND_SLACK) {
                due = due.max(floor);
            }
            frame = next;
        }
    }
}

/// For a client that finished its replay and sent frame `last`: the frame
/// it needs next before it may take live frames, if the history holds one
/// (frames published while it joined).
pub fn next_held(hub: &FrameHub, last: u64) -> Option<Arc<Frame>> {
    hub.history()?.next_after(last)
}
