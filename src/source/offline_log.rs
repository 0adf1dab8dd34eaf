//! When to log a source that stays offline: at once when it goes offline or
//! its reason changes, then ever more rarely while nothing changes (a camera
//! unplugged for a week must not fill the journal), and once when it is
//! back. The supervisor retries every few seconds regardless; only the log
//! slows down.

use std::time::{Duration, Instant};

/// First "still offline" reminder after going offline; each next one comes
/// after twice the wait before it.
const FIRST_REMINDER: Duration = Duration::from_secs(60);
/// Longest wait between reminders.
const MAX_REMINDER: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
pub(super) struct OfflineLog {
    episode: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    reason: String,
    since: Instant,
    failures: u64,
    next_reminder: Instant,
    wait: Duration,
}

/// What the supervisor should log about a failure.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// Went offline, or offline for a different reason now: a warning.
    Offline,
    /// The same reason for a long time: a reminder line.
    Still { failures: u64, for_secs: u64 },
    /// Nothing new.
    Quiet,
}

impl OfflineLog {
    /// Whether the source is offline (failed and not seen delivering since).
    pub(super) fn offline(&self) -> bool {
        self.episode.is_some()
    }

    /// The source failed with `reason` at `now`.
    pub(super) fn failed(&mut self, reason: &str, now: Instant) -> Report {
        match &mut self.episode {
            Some(e) if e.reason == reason => {
                e.failures += 1;
                if now < e.next_reminder {
                    return Report::Quiet;
                }
                e.wait = (e.wait * 2).min(MAX_REMINDER);
                e.next_reminder = now + e.wait;
                Report::Still {
                    failures: e.failures,
                    for_secs: now.duration_since(e.since).as_secs(),
                }
            }
            _ => {
                let since = self.episode.as_ref().map_or(now, |e| e.since);
                self.episode = Some(Episode {
                    reason: reason.to_owned(),
                    since,
                    failures: 1,
                    next_reminder: now + FIRST_REMINDER,
                    wait: FIRST_REMINDER,
                });
                Report::Offline
            }
        }
    }

    /// The source delivers frames again: how long it was offline, once.
    pub(super) fn recovered(&mut self, now: Instant) -> Option<Duration> {
        self.episode.take().map(|e| now.duration_since(e.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_on_change_then_ever_more_rarely() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut log = OfflineLog::default();
        assert!(!log.offline());
        assert_eq!(log.failed("refused", at(0)), Report::Offline);
        // Retries every 10 s: quiet until the first reminder at 60 s.
        let mut said = Vec::new();
        for s in (10..=8 * 3600).step_by(10) {
            match log.failed("refused", at(s)) {
                Report::Quiet => {}
                Report::Still { for_secs, .. } => said.push(for_secs),
                Report::Offline => panic!("same reason is no change"),
            }
        }
        assert_eq!(&said[..5], [60, 180, 420, 900, 1860]);
        assert!(said.len() < 14, "eight hours offline: {said:?}");
        // A different reason is news at once.
        assert_eq!(log.failed("not found", at(8 * 3600 + 5)), Report::Offline);
        assert_eq!(
            log.recovered(at(8 * 3600 + 20)),
            Some(Duration::from_secs(8 * 3600 + 20))
        );
        assert_eq!(log.recovered(at(8 * 3600 + 30)), None);
        assert_eq!(log.failed("refused", at(9 * 3600)), Report::Offline);
    }
}
