//! Processes started for `exec:` sources, and whatever those start: none may
//! outlive its source or the server.
//!
//! A command runs in a process group of its own, which is killed when its
//! source ends. A descendant that left the group (`setsid`, a tool that
//! daemonizes) would escape that, so the tree under the command is read
//! from /proc before the group is killed, and killed as well.
//!
//! A descendant whose parent exited first is no longer in that tree. The
//! binary therefore makes itself a child subreaper: such orphans become its
//! children instead of init's, are reaped when they exit (else they would
//! stay zombies, since nothing else waits for them), and are killed at exit
//! with every other child left.
//! Commands the runtime itself waits for are registered here, so that they
//! are never reaped behind its back.

use rustix::process::{Pid, Signal, WaitOptions};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Children the async runtime waits for (the `sh` of each `exec:` source).
static SPAWNED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn spawned() -> MutexGuard<'static, BTreeSet<u32>> {
    // A set of numbers stays consistent whatever a panicking holder did.
    SPAWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes this process the reaper of its orphaned descendants (Linux 3.4+).
/// Returns whether that worked.
pub fn become_subreaper() -> bool {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_ok()
}

/// Runs `spawn` (which starts one child and returns its pid) so that no
/// reaping happens between the start and the registration of the child.
pub fn spawn_registered<T>(spawn: impl FnOnce() -> (T, Option<u32>)) -> T {
    let mut set = spawned();
    let (value, pid) = spawn();
    if let Some(pid) = pid {
        set.insert(pid);
    }
    value
}

/// The runtime has waited for child `pid`: its number may be reused.
pub fn waited(pid: u32) {
    spawned().remove(&pid);
}

/// One process, told apart from a later one with the same pid by its start
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    start: u64,
}

/// The fields of `/proc/PID/stat` this module needs.
struct Stat {
    state: u8,
    ppid: i32,
    start: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after
    // its closing parenthesis (field 3, `state`, comes first).
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: *fields.first()?.as_bytes().first()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process on the system with its stat fields.
fn all_processes() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// Every process below `root` (not `root` itself), wherever it moved to in
/// sessions and process groups.
pub fn descendants(root: u32) -> Vec<Proc> {
    let Ok(root) = i32::try_from(root) else {
        return Vec::new();
    };
    let mut children: HashMap<i32, Vec<Proc>> = HashMap::new();
    for (pid, st) in all_processes() {
        children.entry(st.ppid).or_default().push(Proc {
            pid,
            start: st.start,
        });
    }
    let mut found = Vec::new();
    let mut todo = vec![root];
    while let Some(parent) = todo.pop() {
        for p in children.remove(&parent).unwrap_or_default() {
            todo.push(p.pid);
            found.push(p);
        }
    }
    found
}

/// Sends `signal` to each of `procs` that is still the same process.
pub fn signal(procs: &[Proc], signal: Signal) {
    for p in procs {
        if stat(p.pid).is_some_and(|st| st.start == p.start)
            && let Some(pid) = Pid::from_raw(p.pid)
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// Our children whose pid passes `keep`.
fn children_where(keep: impl Fn(i32, &Stat) -> bool) -> Vec<(i32, Stat)> {
    let me = std::process::id() as i32;
    all_processes()
        .into_iter()
        .filter(|(pid, st)| st.ppid == me && keep(*pid, st))
        .collect()
}

/// Reaps adopted orphans that have exited; returns how many.
pub fn reap_adopted() -> usize {
    // Holding the registry keeps a command from being started (and so
    // mistaken for an orphan) while the zombies are collected.
    let spawned = spawned();
    let zombies = children_where(|pid, st| st.state == b'Z' && !spawned.contains(&(pid as u32)));
    for (pid, _) in &zombies {
        reap(*pid);
    }
    zombies.len()
}

fn reap(pid: i32) {
    // One child of ours that nobody else waits for; does not block.
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
    }
}

/// At exit, once the runtime (and with it every source) has stopped: kills
/// every child still there (adopted orphans, a command whose source did not
/// finish) and all below it, and reaps them. Returns how many there were.
pub fn kill_all_children() -> usize {
    let left = children_where(|_, _| true);
    for (pid, st) in &left {
        let mut tree = descendants(*pid as u32);
        tree.push(Proc {
            pid: *pid,
            start: st.start,
        });
        signal(&tree, Signal::KILL);
    }
    // A killed process exits at once unless stuck in the kernel; do not
    // let one of those hold the exit.
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let children = children_where(|_, _| true);
        children.iter().for_each(|(pid, _)| reap(*pid));
        if children.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    left.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_include_those_in_other_sessions() {
        // sh starts a grandchild in a session of its own, then waits.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 30 & sleep 30; wait"])
            .spawn()
            .expect("sh");
        let deadline = Instant::now() + Duration::from_secs(5);
        let tree = loop {
            let tree = descendants(child.id());
            if tree.len() >= 2 || Instant::now() > deadline {
                break tree;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(tree.len(), 2, "{tree:?}");
        signal(&tree, Signal::KILL);
        let _ = child.kill();
        let _ = child.wait();
        for p in &tree {
            let deadline = Instant::now() + Duration::from_secs(5);
            while stat(p.pid).is_some_and(|st| st.state != b'Z' && st.start == p.start) {
                assert!(Instant::now() < deadline, "{} survived", p.pid);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
