//! `MemoryRing`: a stream's history in memory, oldest first.
//!
//! Each entry is a copy of a published frame that shares the frame's bytes
//! (no copy of the picture) but not its memory file: the live frame's file
//! is closed as soon as the frame is no longer the newest and no sender
//! holds it, so the history costs memory only, never descriptors.

use super::HistorySettings;
use super::store::{FrameStore, HistoryStats, Span};
use crate::frame::Frame;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Recent frames within a time span and a byte budget.
pub struct MemoryRing {
    settings: HistorySettings,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
}

impl MemoryRing {
    pub fn new(settings: HistorySettings) -> MemoryRing {
        MemoryRing {
            settings,
            held: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // Every step leaves the deque and the byte count consistent, so a
        // lock poisoned by a panic elsewhere is still usable.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `t` in whole microseconds since the epoch: the precision of
/// `X-Timestamp`, so that a client asking for the time a frame was sent
/// with gets that frame.
fn to_micros(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

/// Bytes a frame holds in the history.
fn cost(frame: &Frame) -> usize {
    frame.part_len()
}

impl FrameStore for MemoryRing {
    fn record(&self, frame: &Frame) {
        let copy = Arc::new(frame.without_file());
        let mut held = self.lock();
        held.bytes += cost(&copy);
        let newest = copy.meta.captured_at;
        held.frames.push_back(copy);
        // The span is measured on the monotonic clock, so that a wall clock
        // set back or forward neither empties nor bloats the history.
        while let Some(oldest) = held.frames.front() {
            let too_old =
                newest.saturating_duration_since(oldest.meta.captured_at) > self.settings.span;
            if !(too_old || held.bytes > self.settings.max_bytes) {
                break;
            }
            held.bytes -= cost(oldest);
            held.frames.pop_front();
        }
    }

    fn span(&self) -> Option<Span> {
        let held = self.lock();
        Some(Span {
            oldest: held.frames.front()?.meta.captured,
            newest: held.frames.back()?.meta.captured,
        })
    }

    fn at_or_before(&self, t: SystemTime) -> Option<Arc<Frame>> {
        let held = self.lock();
        let t = to_micros(t);
        let after = held
            .frames
            .partition_point(|f| to_micros(f.meta.captured) <= t);
        after
            .checked_sub(1)
            .and_then(|i| held.frames.get(i).cloned())
    }

    fn next_after(&self, seq: u64) -> Option<Arc<Frame>> {
        let held = self.lock();
        let i = held.frames.partition_point(|f| f.seq <= seq);
        held.frames.get(i).cloned()
    }

    fn range(&self, from: SystemTime, to: SystemTime) -> Vec<Arc<Frame>> {
        let held = self.lock();
        let (from, to) = (to_micros(from), to_micros(to));
        let start = held
            .frames
            .partition_point(|f| to_micros(f.meta.captured) < from);
        let end = held
            .frames
            .partition_point(|f| to_micros(f.meta.captured) <= to);
        held.frames.range(start..end.max(start)).cloned().collect()
    }

    fn stats(&self) -> HistoryStats {
        let held = self.lock();
        let unix = |t: SystemTime| {
            let secs = t
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            (secs * 1e6).round() / 1e6
        };
        let (oldest, newest) = (held.frames.front(), held.frames.back());
        let span_s = match (oldest, newest) {
            (Some(o), Some(n)) => n
                .meta
                .captured_at
                .saturating_duration_since(o.meta.captured_at)
                .as_secs_f64(),
            _ => 0.0,
        };
        HistoryStats {
            span_s: (span_s * 1000.0).round() / 1000.0,
            frames: held.frames.len() as u64,
            bytes: held.bytes as u64,
            oldest: oldest.map(|f| unix(f.meta.captured)),
            newest: newest.map(|f| unix(f.meta.captured)),
            max_span_s: self.settings.span.as_secs_f64(),
            max_bytes: self.settings.max_bytes as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameMeta;
    use std::time::{Duration, Instant};

    /// One monotonic origin for every frame of a test.
    fn base() -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    fn frame(seq: u64, at_ms: u64, len: usize) -> Frame {
        let base = base();
        let meta = FrameMeta {
            captured: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + at_ms),
            captured_at: base + Duration::from_millis(at_ms),
            width: 1,
            height: 1,
        };
        Frame::new(seq, vec![0xAB; len].into(), meta, true)
    }

    #[test]
    fn keeps_the_span_and_the_budget() {
        let ring = MemoryRing::new(HistorySettings {
            span: Duration::from_millis(1000),
            max_bytes: usize::MAX,
        });
        for i in 0..50 {
            ring.record(&frame(i + 1, i * 100, 10));
        }
        // 4.9 s of frames; the last second (11 frames, 3.9 s..4.9 s) stays.
        assert_eq!(ring.stats().frames, 11);
        assert!((ring.stats().span_s - 1.0).abs() < 1e-9);

        let one = cost(&frame(1, 0, 1000));
        let ring = MemoryRing::new(HistorySettings {
            span: Duration::from_secs(60),
            max_bytes: one * 5,
        });
        for i in 0..20 {
            ring.record(&frame(i + 1, i * 100, 1000));
        }
        let s = ring.stats();
        assert_eq!((s.frames, s.bytes), (5, (one * 5) as u64));
        assert_eq!(ring.next_after(0).map(|f| f.seq), Some(16));
    }

    #[test]
    fn lookups_by_time_and_sequence() {
        let ring = MemoryRing::new(HistorySettings {
            span: Duration::from_secs(60),
            max_bytes: usize::MAX,
        });
        for i in 0..10 {
            ring.record(&frame(i + 1, i * 100, 10));
        }
        let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
        assert_eq!(ring.at_or_before(t(250)).map(|f| f.seq), Some(3));
        assert_eq!(ring.at_or_before(t(300)).map(|f| f.seq), Some(4));
        assert!(ring.at_or_before(t(0) - Duration::from_millis(1)).is_none());
        assert_eq!(ring.at_or_before(t(99_999)).map(|f| f.seq), Some(10));
        assert_eq!(ring.next_after(4).map(|f| f.seq), Some(5));
        assert!(ring.next_after(10).is_none());
        let seqs: Vec<u64> = ring.range(t(150), t(400)).iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        let span = ring.span().expect("frames held");
        assert_eq!(span.length(), Duration::from_millis(900));
    }

    #[test]
    fn entries_hold_no_memory_file() {
        let ring = MemoryRing::new(HistorySettings {
            span: Duration::from_secs(60),
            max_bytes: usize::MAX,
        });
        let live = frame(1, 0, 100);
        assert!(live.part_file().is_some(), "memfd available");
        ring.record(&live);
        let past = ring.next_after(0).expect("held");
        assert!(past.part_file().is_none(), "never makes one");
        assert_eq!(past.part_from(0), live.part_from(0));
        assert_eq!(past.jpeg().as_ptr(), live.jpeg().as_ptr(), "bytes shared");
    }
}
