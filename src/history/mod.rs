//! History: a stream's recent frames, kept for a time span within a memory
//! budget, so that clients can ask for the past: a snapshot from some
//! seconds ago, a stream that starts in the past and catches up with the
//! live one, a clip of the last minutes.
//!
//! ```text
//!  FrameHub::publish ──▶ FrameStore::record (a copy of the frame that
//!                         shares its bytes but has no memory file)
//!  /snapshot?at=, /stream?from=, /clip ──▶ FrameStore lookups
//! ```
//! The HTTP side sees only the [`FrameStore`] trait. [`MemoryRing`] keeps
//! frames in memory; a tier on disk (segments in a folder with a size
//! budget) is another implementation of the same trait: its frames' bytes
//! can be mapped from the segment files.

mod ring;
mod store;
mod when;

pub use ring::MemoryRing;
pub use store::{FrameStore, HistoryStats, Span};
pub use when::{parse_ago, parse_moment};

use std::time::Duration;

/// How much of a stream's past to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    /// Frames older than this (relative to the newest) are dropped.
    pub span: Duration,
    /// The frames' bytes never exceed this; the oldest go first.
    pub max_bytes: usize,
}

/// Budget of a stream's history when none is configured, in MiB: 720p at
/// 30 fps (about 95 KiB a frame) fits 45 s, 1080p (about 200 KiB) 20 s;
/// enough for "what happened just now" without surprising a small machine.
pub const DEFAULT_MAX_MB: usize = 128;
