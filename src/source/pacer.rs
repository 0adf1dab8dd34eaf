//! `Pacer`: the frame schedule of sources that make their frames on a
//! thread of their own (the test pattern, a folder of JPEGs).
//!
//! Deadlines are counted from the start, so the rate does not drift; a
//! source that falls behind by more than a frame (a busy machine) skips the
//! missed slots instead of bursting to catch up; and a wait ends within
//! 50 ms of shutdown.

use rustix::event::{PollFd, PollFlags, Timespec};
use std::os::fd::BorrowedFd;
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
        self.wait_watching(cancel, None)
    }

    /// [`wait`](Self::wait), also watching `fd` for input during the wait:
    /// `ready` is set when it became readable. A source that must notice
    /// changes (a watched folder) learns of them in the same system call
    /// that sleeps, instead of asking once more per frame.
    pub fn wait_watching(
        &mut self,
        cancel: &CancellationToken,
        mut watch: Option<(BorrowedFd<'_>, &mut bool)>,
    ) -> Option<u64> {
        loop {
            if cancel.is_cancelled() {
                return None;
            }
            let due = self.start + self.period.mul_f64(self.next as f64);
            let now = Instant::now();
            if due > now {
                let nap = (due - now).min(CANCEL_CHECK);
                match watch.as_mut().filter(|(_, ready)| !**ready) {
                    Some((fd, ready)) => **ready = readable_within(*fd, nap),
                    None => std::thread::sleep(nap),
                }
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

/// Waits up to `nap` for `fd` to become readable; whether it did. An error
/// of `poll` counts as readable, so the caller looks (and sees the error).
fn readable_within(fd: BorrowedFd<'_>, nap: Duration) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    let timeout = Timespec::try_from(nap).ok();
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(n) => n > 0,
        Err(rustix::io::Errno::INTR) => false,
        Err(_) => {
            std::thread::sleep(nap);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

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

    #[test]
    fn a_watched_descriptor_that_becomes_readable_is_reported() {
        let cancel = CancellationToken::new();
        let mut pacer = Pacer::new(20.0);
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let mut ready = false;
        pacer.wait_watching(&cancel, Some((reader.as_fd(), &mut ready)));
        pacer.wait_watching(&cancel, Some((reader.as_fd(), &mut ready)));
        assert!(!ready, "nothing written yet");
        std::io::Write::write_all(&mut writer, b"x").expect("write");
        let started = Instant::now();
        pacer.wait_watching(&cancel, Some((reader.as_fd(), &mut ready)));
        assert!(ready, "seen while waiting");
        // Once seen, the wait keeps the rate (it does not return early).
        pacer.wait_watching(&cancel, Some((reader.as_fd(), &mut ready)));
        assert!(started.elapsed() >= Duration::from_millis(40));
    }
}
