//! Sources: where a stream's frames come from, and the supervisor that keeps
//! them running.
//!
//! Every source runs as its own task (blocking capture on its own thread) and
//! publishes complete JPEGs into its stream's `FrameHub`. The supervisor turns
//! every failure into an "offline" placeholder frame that says why, retries
//! with capped exponential backoff, and resumes by itself: a source never
//! takes the server down or disconnects viewers.
//!
//! With `--capture-on-demand`, a source pauses while nobody watches: between
//! frames, an async source awaits `ctx.hub.wait_for_demand()` and a capture
//! thread calls `ctx.hub.wait_for_demand_blocking(&ctx.cancel)` (false:
//! shutting down). Both return at once while somebody watches. A source that
//! holds a device or a connection may release it before waiting.

pub mod http_client;
pub mod pattern;
mod placeholder;
pub mod relay;
mod sink;
mod spec;
pub mod v4l2;
pub mod yuv;

pub use spec::{PatternSpec, SourceSpec, SpecError};

use crate::hub::FrameHub;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
}

/// First retry delay after a failure; doubled on each further failure.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Retry delay cap, so a returning camera is picked up within this time.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A source that ran this long before failing starts again from `MIN_BACKOFF`.
const STABLE_RUN: Duration = Duration::from_secs(30);
/// How often the placeholder frame is repeated, so clients stay connected.
const PLACEHOLDER_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `spec` until `ctx.cancel` fires, restarting it whenever it fails.
pub async fn supervise(spec: SourceSpec, ctx: SourceContext) {
    let stream = ctx.hub.name().to_owned();
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        let result = run_once(&spec, &ctx).await;
        if ctx.cancel.is_cancelled() {
            return;
        }
        let reason = match result {
            Ok(()) => SourceError::new(format!("{spec} ended")),
            Err(e) => e,
        };
        if started.elapsed() >= STABLE_RUN {
            backoff = MIN_BACKOFF;
        }
        warn!(%stream, source = %spec, "source offline: {reason}; retrying in {backoff:?}");
        show_placeholder(&ctx, &reason, backoff).await;
        if ctx.cancel.is_cancelled() {
            return;
        }
        info!(%stream, source = %spec, "restarting source");
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Runs a source once; `Ok` means it stopped because it was cancelled or its
/// input ended.
async fn run_once(spec: &SourceSpec, ctx: &SourceContext) -> Result<(), SourceError> {
    match spec {
        SourceSpec::Pattern(p) => pattern::run(p.clone(), ctx).await,
        SourceSpec::Relay(r) => relay::run(r, ctx).await,
        SourceSpec::Snapshot(s) => relay::run_snapshot(s, ctx).await,
        SourceSpec::V4l2(v) => v4l2::run(v.clone(), ctx).await,
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
