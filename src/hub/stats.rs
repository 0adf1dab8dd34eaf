//! `HubStats`: one stream's traffic counters, measured frame rates and
//! capture-to-send latency, for `/status` and `/metrics`. Sources and
//! senders update them without locks (the rates take a lock once a second).

use crate::frame::Frame;
use crate::latency::{LatencyHistogram, LatencySnapshot, LatencyTally};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// What a stream's source produced and its clients were sent.
#[derive(Default)]
pub struct HubStats {
    pub(super) captured: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) skipped: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) clients: AtomicU64,
    pub(super) unchanged: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) replaced: AtomicU64,
    rates: Mutex<Rates>,
    /// Capture-to-send times of frames written to stream clients.
    latency: LatencyHistogram,
}

/// Frame rates measured over the last tick interval.
#[derive(Clone, Copy, Default)]
struct Rates {
    at: Option<Instant>,
    captured_total: u64,
    delivered_total: u64,
    captured_fps: f64,
    delivered_fps: f64,
}

impl HubStats {
    /// Counts a frame sent to a NATS bus.
    pub fn record_published(&self) {
        self.published.fetch_add(1, Relaxed);
    }

    /// Counts `n` frames that newer ones replaced before the source could
    /// publish them.
    pub fn record_replaced(&self, n: u64) {
        self.replaced.fetch_add(n, Relaxed);
    }

    /// Counts a frame the source produced but that was not a valid JPEG.
    pub fn record_dropped(&self) {
        self.corrupt.fetch_add(1, Relaxed);
    }

    /// Adds what one send pass delivered: frames, bytes, skipped frames and
    /// their capture-to-send times.
    pub fn record_sent(&self, sent: &SendTally, latency: &LatencyTally) {
        self.count_sent(sent);
        self.latency.merge(latency);
    }

    /// Adds one frame written whole to a client whose previous frame was
    /// `prev_seq` (0: none yet), and its capture-to-send time.
    pub fn record_one_sent(&self, frame: &Frame, prev_seq: u64) {
        self.count_sent(&SendTally::of(frame, prev_seq));
        self.latency.observe(frame.meta.captured_at.elapsed());
    }

    /// Adds frames sent without a capture-to-send time (history replays).
    pub(super) fn count_sent(&self, sent: &SendTally) {
        self.delivered.fetch_add(sent.frames, Relaxed);
        self.bytes_out.fetch_add(sent.bytes, Relaxed);
        if sent.skipped > 0 {
            self.skipped.fetch_add(sent.skipped, Relaxed);
        }
    }

    /// Counts bytes sent outside of stream parts (response heads, snapshots).
    pub fn count_bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// The capture-to-send latency histogram.
    pub fn latency(&self) -> LatencySnapshot {
        self.latency.snapshot()
    }

    /// Updates the measured frame rates; called about once a second.
    pub fn tick(&self) {
        let now = Instant::now();
        let captured = self.captured.load(Relaxed);
        let delivered = self.delivered.load(Relaxed);
        let mut r = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = r.at {
            let dt = now.duration_since(at).as_secs_f64();
            if dt > 0.0 {
                r.captured_fps = (captured - r.captured_total) as f64 / dt;
                r.delivered_fps = (delivered - r.delivered_total) as f64 / dt;
            }
        }
        *r = Rates {
            at: Some(now),
            captured_total: captured,
            delivered_total: delivered,
            ..*r
        };
    }

    /// Captured and delivered frames a second, as of the last tick.
    pub(super) fn rates(&self) -> (f64, f64) {
        // Plain numbers: a panic while the lock was held cannot leave them
        // inconsistent, so a poisoned lock is still usable.
        let r = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        (r.captured_fps, r.delivered_fps)
    }
}

/// Frames written whole to stream clients, counted by a sender and added to
/// the stream's counters at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendTally {
    pub frames: u64,
    pub bytes: u64,
    /// Frames a client did not get because a newer one replaced them.
    pub skipped: u64,
}

impl SendTally {
    /// One `frame` sent to a client whose previous frame was `prev_seq`.
    pub(super) fn of(frame: &Frame, prev_seq: u64) -> SendTally {
        let mut sent = SendTally::default();
        sent.add(frame, prev_seq);
        sent
    }

    /// Counts `frame` sent to a client whose previous frame was `prev_seq`
    /// (0: none yet).
    pub fn add(&mut self, frame: &Frame, prev_seq: u64) {
        self.frames += 1;
        self.bytes += frame.part_len() as u64;
        if prev_seq != 0 && frame.seq > prev_seq + 1 {
            self.skipped += frame.seq - prev_seq - 1;
        }
    }
}
