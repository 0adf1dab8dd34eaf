//! `FrameStore`: what the HTTP side may ask of a stream's history, whatever
//! keeps it (memory now; a tier on disk can implement the same trait).

use crate::frame::Frame;
use crate::frame::unix_timestamp;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A stream's past frames. Lookups return frames that share their bytes
/// with the store and hold no memory file: they are written to clients,
/// never sent with `sendfile`.
pub trait FrameStore: Send + Sync {
    /// Keeps `frame` (just published), dropping what falls out of the span
    /// or the budget. Runs on the publishing thread, before clients see the
    /// frame: it must not block (a tier on disk hands frames to a writer
    /// thread of its own, and keeps the newest ones readable meanwhile).
    fn record(&self, frame: &Frame);

    /// The capture times of the oldest and newest frame held.
    fn span(&self) -> Option<Span>;

    /// The frame captured at `t` or just before it; `None` when `t` is
    /// before the oldest frame held (or nothing is held).
    fn at_or_before(&self, t: SystemTime) -> Option<Arc<Frame>>;

    /// The oldest frame held that came after frame `seq`.
    fn next_after(&self, seq: u64) -> Option<Arc<Frame>>;

    /// Every frame captured from `from` through `to`, oldest first. The
    /// caller holds them as long as it needs them, even once the store has
    /// dropped them.
    fn range(&self, from: SystemTime, to: SystemTime) -> Vec<Arc<Frame>>;

    /// What the store holds, for `/status` and `/metrics`.
    fn stats(&self) -> HistoryStats;
}

/// The capture times of the oldest and the newest frame of a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub oldest: SystemTime,
    pub newest: SystemTime,
}

impl Span {
    /// Time between the oldest and the newest frame.
    pub fn length(&self) -> Duration {
        self.newest.duration_since(self.oldest).unwrap_or_default()
    }

    /// `from OLDEST to NEWEST (S s)`, Unix times as in `X-Timestamp`: what a
    /// client that asked outside the span is told.
    pub fn describe(&self) -> String {
        format!(
            "from {} to {} ({:.1} s)",
            unix_timestamp(self.oldest),
            unix_timestamp(self.newest),
            self.length().as_secs_f64()
        )
    }
}

/// A history's size and settings, as `/status` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HistoryStats {
    /// Seconds between the oldest and the newest frame held.
    pub span_s: f64,
    pub frames: u64,
    /// Bytes of the frames held.
    pub bytes: u64,
    /// Unix time of the oldest and the newest frame held.
    pub oldest: Option<f64>,
    pub newest: Option<f64>,
    /// The configured span and budget.
    pub max_span_s: f64,
    pub max_bytes: u64,
}
