//! `Demand`: whether anybody wants a stream's frames right now, so that a
//! source can pause capture (`--capture-on-demand SECS`) and resume the
//! moment a viewer arrives.
//!
//! Viewers are stream clients and snapshot requests in progress; each holds a
//! registration for as long as it is interested. Demand lasts while there is
//! at least one viewer and for `linger` after the last one left (and for
//! `linger` after start, so a stream shows its first picture and resolution
//! before pausing). Without a linger (the default) there is always demand.
//!
//! Each stream's hub holds one (`hub.demand()`); its viewer guards register
//! and unregister. The source supervisor awaits [`Demand::wait`] before it
//! starts a source (it returns the moment a viewer registers) and stops the
//! source once demand ends; sources themselves never wait for demand.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One stream's viewers and whether its source may pause.
pub struct Demand {
    /// Pause after this long without viewers; 0 means never pause.
    linger_ms: AtomicU64,
    viewers: watch::Sender<u64>,
    /// When the last viewer left, in ms since `base`.
    last_left_ms: AtomicU64,
    base: Instant,
    paused: AtomicBool,
}

impl Default for Demand {
    fn default() -> Self {
        Demand {
            linger_ms: AtomicU64::new(0),
            viewers: watch::Sender::new(0),
            last_left_ms: AtomicU64::new(0),
            base: Instant::now(),
            paused: AtomicBool::new(false),
        }
    }
}

impl Demand {
    /// Enables pausing after `linger` without viewers (`None`: never pause).
    pub fn set_linger(&self, linger: Option<Duration>) {
        let ms = linger.map_or(0, |d| (d.as_millis() as u64).max(1));
        self.linger_ms.store(ms, Relaxed);
    }

    /// Whether pausing is enabled at all.
    pub fn enabled(&self) -> bool {
        self.linger_ms.load(Relaxed) != 0
    }

    /// A viewer arrived.
    pub fn join(&self) {
        self.viewers.send_modify(|n| *n += 1);
    }

    /// A viewer left.
    pub fn leave(&self) {
        // Record the time before the count drops, so that nobody can see zero
        // viewers together with an old departure time.
        self.last_left_ms.store(self.now_ms(), Relaxed);
        self.viewers.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Viewers registered now.
    pub fn viewers(&self) -> u64 {
        *self.viewers.borrow()
    }

    /// Whether the source should be capturing.
    pub fn has_demand(&self) -> bool {
        let linger = self.linger_ms.load(Relaxed);
        linger == 0
            || self.viewers() > 0
            || self.now_ms() < self.last_left_ms.load(Relaxed).saturating_add(linger)
    }

    /// Whether a source is waiting in [`wait`](Self::wait) right now.
    pub fn paused(&self) -> bool {
        self.paused.load(Relaxed)
    }

    /// Returns at once while there is demand; otherwise marks the stream
    /// paused and returns when a viewer arrives. Cancel-safe: dropping the
    /// future clears the paused mark.
    pub async fn wait(&self) {
        if self.has_demand() {
            return;
        }
        let _paused = PausedMark::set(&self.paused);
        let mut rx = self.viewers.subscribe();
        // The sender lives in `self`, which outlives this borrow, so the
        // channel cannot close here; an error would only end the wait early.
        let _ = rx.wait_for(|&n| n > 0).await;
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }
}

/// Sets a flag for its lifetime.
struct PausedMark<'a>(&'a AtomicBool);

impl<'a> PausedMark<'a> {
    fn set(flag: &'a AtomicBool) -> Self {
        flag.store(true, Relaxed);
        PausedMark(flag)
    }
}

impl Drop for PausedMark<'_> {
    fn drop(&mut self) {
        self.0.store(false, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_demand_when_disabled() {
        let d = Demand::default();
        assert!(d.has_demand());
        assert!(!d.paused());
    }

    #[test]
    fn demand_lingers_after_the_last_viewer() {
        let d = Demand::default();
        d.set_linger(Some(Duration::from_millis(100)));
        assert!(d.has_demand(), "lingers after start");
        std::thread::sleep(Duration::from_millis(150));
        assert!(!d.has_demand());
        d.join();
        d.join();
        assert!(d.has_demand());
        d.leave();
        assert!(d.has_demand());
        d.leave();
        assert!(d.has_demand(), "lingers after the last viewer left");
        std::thread::sleep(Duration::from_millis(150));
        assert!(!d.has_demand());
    }

    #[tokio::test]
    async fn wait_returns_when_a_viewer_arrives_and_marks_pause() {
        let d = std::sync::Arc::new(Demand::default());
        d.set_linger(Some(Duration::from_millis(1)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(d.paused());
        assert!(!waiter.is_finished());
        d.join();
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("wait ends when a viewer arrives")
            .expect("no panic");
        assert!(!d.paused());
    }
}
