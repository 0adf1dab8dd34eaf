//! CPU time and resident memory of a server's process tree, from /proc.
//!
//! CPU time is read per thread from `/proc/PID/task/TID/schedstat`
//! (nanoseconds on the CPU). `utime + stime` in `/proc/PID/stat` is only
//! given in clock ticks (10 ms): a server that streams one client for 8 s
//! uses a few tens of milliseconds, so ticks alone would make a 1-client
//! cell a matter of rounding. Threads that exit during the run take their
//! schedstat with them; then the run falls back to the tick counts, which
//! include exited threads.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the monitored process tree used during the run.
#[derive(Debug, Clone, Copy)]
pub struct ServerUsage {
    pub cpu_s: f64,
    pub rss_peak_kib: u64,
}

/// Samples a process tree's RSS every 250 ms until stopped.
pub struct Monitor {
    pid: i32,
    cpu0: CpuReading,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl Monitor {
    pub fn start(pid: i32) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(tree(pid).iter().map(|&p| rss_kib(p)).sum());
                std::thread::sleep(Duration::from_millis(250));
            }
            peak
        });
        Monitor {
            pid,
            cpu0: CpuReading::of_tree(pid),
            stop,
            sampler,
        }
    }

    pub fn stop(self) -> ServerUsage {
        let cpu = CpuReading::of_tree(self.pid).since(&self.cpu0);
        let rss_now: u64 = tree(self.pid).iter().map(|&p| rss_kib(p)).sum();
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.sampler.join().unwrap_or(0);
        ServerUsage {
            cpu_s: cpu,
            rss_peak_kib: peak.max(rss_now),
        }
    }
}

/// `pid` and all its descendants.
fn tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let children =
                    std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                all.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
        i += 1;
    }
    all
}

/// CPU time of a process tree at one moment: per thread (precise) and per
/// process in ticks (includes threads that have exited).
struct CpuReading {
    thread_ns: HashMap<(i32, i32), u64>,
    ticks_s: f64,
}

impl CpuReading {
    fn of_tree(pid: i32) -> CpuReading {
        let mut thread_ns = HashMap::new();
        let mut ticks_s = 0.0;
        for p in tree(pid) {
            ticks_s += cpu_seconds(p);
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let Some(tid) = t.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if let Some(ns) = std::fs::read_to_string(t.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                {
                    thread_ns.insert((p, tid), ns);
                }
            }
        }
        CpuReading { thread_ns, ticks_s }
    }

    /// CPU seconds used since `start`: thread by thread when every thread of
    /// `start` is still there (new ones count whole), else from the ticks.
    fn since(&self, start: &CpuReading) -> f64 {
        if start
            .thread_ns
            .keys()
            .all(|k| self.thread_ns.contains_key(k))
        {
            let ns: u64 = self
                .thread_ns
                .iter()
                .map(|(k, &now)| now.saturating_sub(start.thread_ns.get(k).copied().unwrap_or(0)))
                .sum();
            ns as f64 / 1e9
        } else {
            self.ticks_s - start.ticks_s
        }
    }
}

/// utime + stime of one process, in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 11 and 12 after the name.
    let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// This process's own CPU seconds (all threads, user and system).
pub fn self_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}
