//! `Pacer`: the frame schedule of sources that make their frames on a
//! thread of their own (the test pattern, a folder of JPEGs).
//!
//! Deadlines are counted from the start, so the rate does not drift; a
//! source that falls behind by more than a frame (a busy machine) skips the
//! missed slots instead of bursting to catch up; and a wait ends within
//! 50 ms of shutdown.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often a wait looks at the shutdown token.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

pub struct Pacer {
    period: Duration,
    start: Instant,
    /// The number of the next frame.
    next: u64,
}

impl Pacer {
    /// A schedule of `fps` frames a second, starting now.
    pub fn new(fps: f64) -> Pacer {
        Pacer {
            period: Duration::from_secs_f64(1.0 / fps),
            start: Instant::now(),
            next: 0,
        }
    }

    /// Waits for the next frame's time and returns its number (counted from
    /// 0 since the start, missed slots included); `None` on shutdown.
    pub fn wait(&mut self, cancel: &CancellationToken) -> Option<u64> {
        loop {
            if cancel.is_cancelled() {
                return None;
            }
            let due = self.start + self.period.mul_f64(self.next as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(CANCEL_CHECK));
                continue;
            }
            if now - due > self.period {
                self.next = ((now - self.start).as_secs_f64() / self.period.as_secs_f64()) as u64;
            }
            self.next += 1;
            return Some(self.next - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_rate_skips_missed_slots_and_stops_on_shutdown() {
        let cancel = CancellationToken::new();
        let mut pacer = Pacer::new(100.0);
        let started = Instant::now();
        let numbers: Vec<u64> = (0..5).filter_map(|_| pacer.wait(&cancel)).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4]);
        assert!(started.elapsed() >= Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(100));
        let after_stall = pacer.wait(&cancel).expect("a frame");
        assert!(after_stall >= 14, "missed slots skipped: {after_stall}");
        cancel.cancel();
        assert_eq!(pacer.wait(&cancel), None);
    }
}
