//! Sources: where a stream's frames come from, and the supervisor that keeps
//! them running.
//!
//! Every source runs as its own task (blocking capture on its own thread) and
//! publishes complete JPEGs into its stream's `FrameHub`. The supervisor turns
//! every failure into an "offline" placeholder frame that says why, retries
//! with capped exponential backoff, and resumes by itself: a source never
//! takes the server down or disconnects viewers. While a source runs, a
//! watchdog shows the placeholder too if it delivers no valid frame (see
//! `watchdog`). Everything a source logs or shows is scrubbed of the spec's
//! secrets (see `redact`).
//!
//! With `--capture-on-demand`, the supervisor stops any source once nobody
//! has watched for the linger time (closing its camera, connection or child
//! process) and starts it again when a viewer arrives; sources themselves
//! know nothing of it.

mod files;
mod folder_watch;
pub mod http_client;
mod nats;
mod offline_log;
mod output;
mod pacer;
pub mod pattern;
mod pipe;
mod placeholder;
mod redact;
pub mod relay;
mod sink;
mod spec;
pub mod tls_trust;
pub mod v4l2;
mod watch;
mod watchdog;
pub mod yuv;

/// The NO SIGNAL picture, drawn as viewers see it (for tests and tools that
/// check what a placeholder says).
pub use placeholder::render as render_placeholder;
/// The name config errors use for [`redact`].
pub use redact::redact as redact_credentials;
pub use redact::{Secrets, redact};
pub use spec::{DEFAULT_DIR_FPS, DirSpec, PatternSpec, SourceSpec, SpecError, WantedFormat};

use crate::encode::Subsampling;
use crate::hub::FrameHub;
use offline_log::{OfflineLog, Report};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

/// Why a source stopped delivering frames (shown to viewers and in `/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError(pub String);

impl SourceError {
    pub fn new(reason: impl Into<String>) -> SourceError {
        SourceError(reason.into())
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceError {}

/// What a source needs to run: where to publish, when to stop, how to encode.
#[derive(Clone)]
pub struct SourceContext {
    pub hub: Arc<FrameHub>,
    pub cancel: CancellationToken,
    /// JPEG quality for frames this server encodes itself.
    pub quality: u8,
    /// Chroma subsampling of frames encoded from YUYV cameras.
    pub subsampling: Subsampling,
}

/// First retry delay after a failure; doubled on each further failure.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Retry delay cap, so a returning camera is picked up within this time.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A source that ran this long before failing starts again from `MIN_BACKOFF`.
const STABLE_RUN: Duration = Duration::from_secs(30);
/// How often the placeholder frame is repeated, so clients stay connected.
pub(crate) const PLACEHOLDER_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `spec` until `ctx.cancel` fires, restarting it whenever it fails.
pub async fn supervise(spec: SourceSpec, ctx: SourceContext) {
    let stream = ctx.hub.name().to_owned();
    // Collected once; every reason the source gives and every line of its
    // command's output is scrubbed of them before it is logged or shown.
    let secrets = Arc::new(spec.secrets());
    let mut backoff = MIN_BACKOFF;
    let mut log = OfflineLog::default();
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = wait_for_demand(&ctx.hub) => {}
        }
        let started = Instant::now();
        // The source runs under its own token, so that it can be stopped for
        // lack of viewers without stopping anything else.
        let run = SourceContext {
            cancel: ctx.cancel.child_token(),
            ..ctx.clone()
        };
        let idle = ctx
            .hub
            .capture_on_demand()
            .then(|| tokio::spawn(stop_when_idle(ctx.hub.clone(), run.cancel.clone())));
        // A nats:// source watches its own silence: relayed placeholders
        // are what the capture node shows, not a fault of this source.
        let watchdog = (!matches!(spec, SourceSpec::Nats(_))).then(|| {
            AbortOnDropHandle::new(tokio::spawn(watchdog::run(
                run.clone(),
                secrets.clone(),
                started,
            )))
        });
        let result = if log.offline() {
            let running = run_once(&spec, &run, &secrets);
            tokio::pin!(running);
            tokio::select! {
                r = &mut running => r,
                () = online_again(&ctx.hub) => {
                    if let Some(after) = log.recovered(Instant::now()) {
                        info!(%stream, source = %spec, "source back online after {}s", after.as_secs());
                    }
                    running.await
                }
            }
        } else {
            run_once(&spec, &run, &secrets).await
        };
        drop(watchdog);
        if let Some(idle) = idle {
            idle.abort();
        }
        if ctx.cancel.is_cancelled() {
            return;
        }
        if run.cancel.is_cancelled() {
            // Stopped because nobody watches: wait for a viewer, no error.
            backoff = MIN_BACKOFF;
            continue;
        }
        let reason = match result {
            Ok(()) => SourceError::new(format!("{} source ended", spec.kind())),
            Err(e) => SourceError::new(for_viewers(&spec, &secrets, &e.0)),
        };
        if started.elapsed() >= STABLE_RUN {
            backoff = MIN_BACKOFF;
        }
        match log.failed(&reason.0, Instant::now()) {
            Report::Offline => {
                warn!(%stream, source = %spec, "source offline: {reason}; retrying every few seconds")
            }
            Report::Still { failures, for_secs } => warn!(
                %stream, source = %spec,
                "source still offline after {failures} attempts in {for_secs}s: {reason}"
            ),
            Report::Quiet => {
                debug!(%stream, source = %spec, "source offline: {reason}; retrying in {backoff:?}")
            }
        }
        show_placeholder(&ctx, &reason, backoff).await;
        if ctx.cancel.is_cancelled() {
            return;
        }
        debug!(%stream, source = %spec, "restarting source");
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A source's error as it may be shown: scrubbed of secrets, and without
/// an `exec:` command line, which belongs in `/status` `source` and the
/// log, not in the picture every viewer sees.
fn for_viewers(spec: &SourceSpec, secrets: &Secrets, reason: &str) -> String {
    let mut reason = secrets.scrub(reason);
    if let SourceSpec::Exec(cmd) = spec {
        for shown in [spec.to_string(), secrets.scrub(cmd)] {
            // A short command (`cat`) is no command line to hide, and
            // replacing it would garble words that contain it.
            if shown.trim().len() >= 12 && reason.contains(shown.as_str()) {
                reason = reason.replace(shown.as_str(), "the command");
            }
        }
    }
    reason
}

/// Returns once the source publishes a live frame (not a placeholder).
async fn online_again(hub: &FrameHub) {
    let mut frames = hub.subscribe();
    if frames
        .wait_for(|f| f.as_ref().is_some_and(|f| f.online))
        .await
        .is_err()
    {
        // The hub outlives its sources; never report a recovery on error.
        std::future::pending::<()>().await;
    }
}

/// Returns at once while somebody watches; otherwise shows the stream as
/// paused and returns when a viewer arrives.
async fn wait_for_demand(hub: &FrameHub) {
    if hub.demand().has_demand() {
        return;
    }
    info!(stream = hub.name(), "capture paused: no viewers");
    hub.demand().wait().await;
    info!(stream = hub.name(), "capture resumed");
}

/// Cancels `run` once the stream has had no viewers for its linger time.
async fn stop_when_idle(hub: Arc<FrameHub>, run: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        every.tick().await;
        if !hub.demand().has_demand() {
            run.cancel();
            return;
        }
    }
}

/// Runs a source once; `Ok` means it stopped because it was cancelled or its
/// input ended.
async fn run_once(
    spec: &SourceSpec,
    ctx: &SourceContext,
    secrets: &Arc<Secrets>,
) -> Result<(), SourceError> {
    match spec {
        SourceSpec::Pattern(p) => pattern::run(p.clone(), ctx).await,
        SourceSpec::Dir(d) => files::run(d.clone(), ctx).await,
        SourceSpec::File(path) => watch::run(path.clone(), ctx).await,
        SourceSpec::Stdin => pipe::run_stdin(ctx).await,
        SourceSpec::Exec(cmd) => pipe::run_exec(cmd, &spec.to_string(), ctx, secrets.clone()).await,
        SourceSpec::Relay(r) => relay::run(r, ctx).await,
        SourceSpec::Snapshot(s) => relay::run_snapshot(s, ctx).await,
        SourceSpec::V4l2(v) => v4l2::run(v.clone(), ctx).await,
        SourceSpec::Nats(a) => nats::run(a, ctx).await,
    }
}

/// Publishes the offline placeholder now and every `PLACEHOLDER_INTERVAL`
/// until `wait` has passed (or shutdown).
async fn show_placeholder(ctx: &SourceContext, reason: &SourceError, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        placeholder::publish(ctx, &reason.0);
        let next = (tokio::time::Instant::now() + PLACEHOLDER_INTERVAL).min(deadline);
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return;
        }
    }
}

/// Runs blocking capture code on its own named thread and waits for it
/// without blocking the runtime.
pub async fn run_on_thread<F>(name: String, f: F) -> Result<(), SourceError>
where
    F: FnOnce() -> Result<(), SourceError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| SourceError::new(format!("cannot start capture thread: {e}")))?;
    rx.await
        .unwrap_or_else(|_| Err(SourceError::new("capture thread stopped unexpectedly")))
}

/// How often a burst of bad frames that does not end is summarised.
const BURST_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Drops bad frames: counts each one in the stream's `frames_dropped` and
/// logs once per burst instead of once per frame. The first bad frame of a
/// burst is logged with its reason; the rest are summed up ("N more bad
/// frames") when a good frame ends the burst, every `BURST_SUMMARY_EVERY`
/// while it lasts, and when the source stops.
pub struct BadFrames {
    hub: Arc<FrameHub>,
    source: String,
    burst: Burst,
}

impl BadFrames {
    pub fn new(hub: Arc<FrameHub>, source: impl Into<String>) -> BadFrames {
        BadFrames {
            hub,
            // Labels and reasons name paths and URLs from the spec.
            source: redact(&source.into()),
            burst: Burst::default(),
        }
    }

    /// Drops one bad frame: counts it and logs if this starts a burst.
    pub fn drop_frame(&mut self, reason: impl fmt::Display) {
        let reason = reason.to_string();
        // Remembered by the hub for the watchdog, which shows it.
        self.hub.record_bad_frame(&reason);
        if let Some(msg) = self.burst.bad(&reason, Instant::now()) {
            warn!(stream = self.hub.name(), source = %self.source, "{}", redact(&msg));
        }
    }

    /// Whether bad frames came in since the last good one.
    pub fn in_burst(&self) -> bool {
        self.burst.logged_at.is_some()
    }

    /// A good frame arrived: ends the burst, if any.
    pub fn good(&mut self) {
        if let Some(msg) = self.burst.good() {
            warn!(stream = self.hub.name(), source = %self.source, "{}", redact(&msg));
        }
    }
}

impl Drop for BadFrames {
    fn drop(&mut self) {
        self.good();
    }
}

/// The logging decisions of `BadFrames`, apart from the clock and the log.
#[derive(Debug, Default)]
struct Burst {
    /// When the last message was logged, while a burst lasts.
    logged_at: Option<Instant>,
    /// Bad frames since the last message.
    unlogged: u64,
    last_reason: String,
}

impl Burst {
    /// A bad frame at `now`: the message to log, if any.
    fn bad(&mut self, reason: &str, now: Instant) -> Option<String> {
        match self.logged_at {
            None => {
                self.logged_at = Some(now);
                self.unlogged = 0;
                Some(format!("dropped a bad frame: {reason}"))
            }
            Some(at) => {
                self.unlogged += 1;
                self.last_reason.clear();
                self.last_reason.push_str(reason);
                if now.duration_since(at) >= BURST_SUMMARY_EVERY {
                    self.logged_at = Some(now);
                    Some(self.summary("so far"))
                } else {
                    None
                }
            }
        }
    }

    /// A good frame: ends the burst, with a summary if frames went unlogged.
    fn good(&mut self) -> Option<String> {
        self.logged_at.take()?;
        (self.unlogged > 0).then(|| self.summary("in this burst"))
    }

    fn summary(&mut self, when: &str) -> String {
        let n = std::mem::take(&mut self.unlogged);
        let s = if n == 1 { "" } else { "s" };
        format!(
            "dropped {n} more bad frame{s} {when} (last: {})",
            self.last_reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_frames_are_logged_once_per_burst() {
        let t0 = Instant::now();
        let mut b = Burst::default();
        assert_eq!(b.good(), None, "no burst, nothing to say");
        assert_eq!(
            b.bad("truncated", t0).as_deref(),
            Some("dropped a bad frame: truncated")
        );
        for i in 1..50 {
            assert_eq!(b.bad("no SOI marker", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(
            b.good().as_deref(),
            Some("dropped 49 more bad frames in this burst (last: no SOI marker)")
        );
        assert_eq!(b.good(), None);
        // A new burst is reported again; a lone bad frame needs no summary.
        assert!(b.bad("truncated", t0).is_some());
        assert_eq!(b.good(), None);
    }

    #[test]
    fn a_long_burst_is_summarised_every_ten_seconds() {
        let t0 = Instant::now();
        let mut b = Burst::default();
        assert!(b.bad("x", t0).is_some());
        assert_eq!(b.bad("x", t0 + Duration::from_secs(5)), None);
        assert_eq!(
            b.bad("y", t0 + Duration::from_secs(10)).as_deref(),
            Some("dropped 2 more bad frames so far (last: y)")
        );
        assert_eq!(b.bad("y", t0 + Duration::from_secs(11)), None);
        assert_eq!(
            b.good().as_deref(),
            Some("dropped 1 more bad frame in this burst (last: y)")
        );
    }

    #[test]
    fn reasons_shown_to_viewers_hold_no_secret_and_no_command_line() {
        let cmd = "exec:ffmpeg -i rtsp://admin:CamPw12345@h/s1 -f mjpeg -";
        let spec: SourceSpec = cmd.parse().expect("valid");
        let secrets = spec.secrets();
        let why = format!("{cmd} failed: CamPw12345 refused by rtsp://admin:CamPw12345@h/s1");
        assert_eq!(
            for_viewers(&spec, &secrets, &why),
            "the command failed: *** refused by rtsp://admin:***@h/s1"
        );
        let spec: SourceSpec = "exec:cat".parse().expect("valid");
        assert_eq!(
            for_viewers(
                &spec,
                &Secrets::default(),
                "command exited: cat: x.jpg: No such file"
            ),
            "command exited: cat: x.jpg: No such file"
        );
    }

    #[test]
    fn dropped_frames_are_counted() {
        let hub = FrameHub::new("t", "stdin", "stdin");
        let mut bad = BadFrames::new(hub.clone(), "stdin");
        bad.drop_frame("truncated");
        bad.drop_frame("truncated");
        assert!(bad.in_burst());
        bad.good();
        assert!(!bad.in_burst());
        assert_eq!(hub.status().frames_dropped, 2);
    }
}
