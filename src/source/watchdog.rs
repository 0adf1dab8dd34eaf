//! The watchdog of a running source: a source can run without failing and
//! still show nothing (`exec:sleep 1000`, a command writing raw video, a
//! text file as `file:`, a relay sending garbage or endless part headers).
//! Viewers would get a connection and no picture, and `/status` no reason.
//!
//! While a source runs, the watchdog looks at its stream's frame health and
//! puts up the NO SIGNAL placeholder with the reason
//!
//! - at once when the source's first frames are all bad ("no valid JPEG
//!   yet: no SOI marker"),
//! - after [`NO_FRAME_LIMIT`] without any frame since it started ("no JPEG
//!   in the last 5 s"),
//! - after [`NO_FRAME_LIMIT`] of only bad frames since its last good one.
//!
//! A source that delivered good frames and then goes quiet is left alone:
//! an unchanged `file:`, a slow `dir:` or a still camera are not faults.
//! The first good frame replaces the placeholder by itself.

use super::{PLACEHOLDER_INTERVAL, SourceContext, placeholder};
use crate::hub::FrameHealth;
use crate::source::Secrets;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a running source may deliver no valid frame before its stream
/// shows why.
pub const NO_FRAME_LIMIT: Duration = Duration::from_secs(5);
/// How often the frame health is looked at; also how soon a first bad
/// frame shows.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Watches the source started at `started` until aborted (the supervisor
/// aborts it when the run ends).
pub async fn run(ctx: SourceContext, secrets: Arc<Secrets>, started: Instant) {
    let stream = ctx.hub.name().to_owned();
    // When the watchdog last published the placeholder, while it shows.
    let mut shown: Option<Instant> = None;
    let mut next = Instant::now();
    loop {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        let health = ctx.hub.frame_health();
        next = now + CHECK_EVERY;
        match verdict(&health, started, now) {
            Some(reason) => {
                if shown.is_some_and(|at| now.duration_since(at) < PLACEHOLDER_INTERVAL) {
                    continue;
                }
                let reason = secrets.scrub(&reason);
                if shown.is_none() {
                    warn!(%stream, "{reason}");
                }
                placeholder::publish(&ctx, &reason);
                shown = Some(now);
            }
            None => {
                if shown.take().is_some() {
                    info!(%stream, "valid frames again");
                }
                // After a good frame nothing can change the verdict before
                // the limit has passed since it: a source delivering frames
                // wakes the watchdog every few seconds, not five times one.
                if let Some(good) = health.last_good.filter(|t| *t >= started) {
                    next = next.max(good + NO_FRAME_LIMIT);
                }
            }
        }
    }
}

/// Why the stream should show the placeholder, if it should.
fn verdict(health: &FrameHealth, started: Instant, now: Instant) -> Option<String> {
    let good = health.last_good.filter(|t| *t >= started);
    // Only bad frames after the last good one (or since the start) count.
    let bad = health
        .last_bad
        .as_ref()
        .filter(|(at, _)| *at >= good.unwrap_or(started))
        .map(|(_, why)| why.as_str());
    let quiet_for = now.saturating_duration_since(good.unwrap_or(started));
    let limit = NO_FRAME_LIMIT.as_secs();
    match (good, bad) {
        (_, Some(why)) if quiet_for >= NO_FRAME_LIMIT => {
            Some(format!("no JPEG in the last {limit} s: {why}"))
        }
        (None, Some(why)) => Some(format!("no valid JPEG yet: {why}")),
        (None, None) if quiet_for >= NO_FRAME_LIMIT => {
            Some(format!("no JPEG in the last {limit} s"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(good: Option<Instant>, bad: Option<(Instant, &str)>) -> FrameHealth {
        FrameHealth {
            last_good: good,
            last_bad: bad.map(|(t, w)| (t, w.to_owned())),
        }
    }

    #[test]
    fn silence_from_the_start_shows_after_the_limit() {
        let t0 = Instant::now();
        let h = health(None, None);
        assert_eq!(verdict(&h, t0, t0 + Duration::from_secs(4)), None);
        assert_eq!(
            verdict(&h, t0, t0 + NO_FRAME_LIMIT).as_deref(),
            Some("no JPEG in the last 5 s")
        );
    }

    #[test]
    fn a_first_bad_frame_shows_at_once() {
        let t0 = Instant::now();
        let h = health(
            None,
            Some((t0 + Duration::from_millis(10), "no SOI marker")),
        );
        assert_eq!(
            verdict(&h, t0, t0 + Duration::from_millis(20)).as_deref(),
            Some("no valid JPEG yet: no SOI marker")
        );
        assert_eq!(
            verdict(&h, t0, t0 + Duration::from_secs(6)).as_deref(),
            Some("no JPEG in the last 5 s: no SOI marker")
        );
    }

    #[test]
    fn bad_frames_after_good_ones_show_after_the_limit() {
        let t0 = Instant::now();
        let g = t0 + Duration::from_secs(1);
        let h = health(Some(g), Some((g + Duration::from_secs(1), "truncated")));
        assert_eq!(verdict(&h, t0, g + Duration::from_secs(2)), None);
        assert_eq!(
            verdict(&h, t0, g + NO_FRAME_LIMIT).as_deref(),
            Some("no JPEG in the last 5 s: truncated")
        );
        // Quiet after good frames (a still scene): no fault.
        let h = health(Some(g), None);
        assert_eq!(verdict(&h, t0, g + Duration::from_secs(60)), None);
        // A bad frame before the last good one is history.
        let h = health(Some(g), Some((t0, "truncated")));
        assert_eq!(verdict(&h, t0, g + Duration::from_secs(60)), None);
    }

    #[test]
    fn a_previous_run_does_not_count() {
        let t0 = Instant::now();
        let started = t0 + Duration::from_secs(10);
        let h = health(Some(t0), Some((t0, "truncated")));
        assert_eq!(verdict(&h, started, started + Duration::from_secs(1)), None);
        assert!(verdict(&h, started, started + NO_FRAME_LIMIT).is_some());
    }
}
