//! How the binary ends: every signal whose default action kills a process
//! shuts it down cleanly instead (exit 0, `exec:` commands and what they
//! started in other sessions killed, socket files removed); a broken stdout
//! at start is one line; a socket file another server took over is left.

mod common;

use common::*;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "?",
    }
}

/// Sends `sig` and waits up to 10 s; returns the exit status and how long
/// Whether process `pid` still runs (a zombie has ended).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn signals_shut_down_cleanly_and_leave_no_process_or_socket_behind() {
    for sig in [libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGTERM] {
        let name = signal_name(sig);
        let sock = temp_path("sig.sock");
        let leader_pid = temp_path("leader.pid");
        let escaped_pid = temp_path("escaped.pid");
        // The command starts a grandchild in a session of its own (out of
        // the command's process group), then waits without output.
        let command = format!(
            "exec:setsid sh -c 'echo $$ > {}; exec sleep 300' & echo $$ > {}; exec sleep 300",
            escaped_pid.display(),
            leader_pid.display()
        );
        let unix = format!("unix:{}", sock.display());
        let mut d = Daemon::start(
            &[
                "--listen",
                "127.0.0.1:0",
                "--listen",
                &unix,
                "--source",
                &command,
            ],
            &[],
            2,
        );
        let started = format!("{name}: the command started");
        eventually_blocking(Duration::from_secs(10), &started, || {
            read_pid(&leader_pid).is_some() && read_pid(&escaped_pid).is_some()
        });
        let leader = read_pid(&leader_pid).expect("pid");
        let escaped = read_pid(&escaped_pid).expect("pid");
        let fds = d.open_fds();
        let (status, took) = d.signal_and_wait(sig);
        // Killed processes are gone at once; allow the kernel a moment.
        let gone = Instant::now() + Duration::from_secs(2);
        while (alive(leader) || alive(escaped)) && Instant::now() < gone {
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "{name}: {status:?} after {took:?} (fds before: {fds}); command {leader} alive: {}, \
             setsid grandchild {escaped} alive: {}, socket file left: {}",
            alive(leader),
            alive(escaped),
            sock.exists()
        );
        let (leader_alive, escaped_alive) = (alive(leader), alive(escaped));
        // Never leave a stray sleep behind, whatever the outcome.
        for pid in [leader, escaped] {
            // SAFETY: kill(2) of a process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for f in [&leader_pid, &escaped_pid] {
            let _ = std::fs::remove_file(f);
        }
        assert_eq!(status, Some(0), "{name}: {status:?}");
        assert!(took < Duration::from_secs(3), "{name}: took {took:?}");
        assert!(!leader_alive, "{name}: the exec command survived");
        assert!(!escaped_alive, "{name}: the setsid grandchild survived");
        assert!(!sock.exists(), "{name}: the socket file was left");
        assert!(
            d.stderr_text().contains(&format!("{name} received")),
            "{name}: {}",
            d.stderr_text()
        );
    }
}

#[test]
fn a_signal_right_after_the_listening_line_is_handled() {
    let mut by_code = std::collections::BTreeMap::new();
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        let mut d = Daemon::serve(&["--source", "pattern:160x120@5"]);
        let (status, _) = d.signal_and_wait(sig);
        *by_code.entry(format!("{status:?}")).or_insert(0) += 1;
        assert_eq!(status, Some(0), "{}: {status:?}", signal_name(sig));
    }
    println!("6 signals sent at once after the listening line: {by_code:?}");
}

#[test]
fn a_broken_stdout_at_start_is_one_line_not_a_panic() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = binary()
        .args(["--listen", "127.0.0.1:0", "--source", "pattern:160x120@5"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mjpegd");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{}; stderr: {stderr:?}", out.status);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("mjpegd:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("standard output"), "{stderr}");
}

#[test]
fn a_socket_file_taken_over_by_another_server_is_left_alone() {
    let sock = temp_path("taken.sock");
    let unix = format!("unix:{}", sock.display());
    let mut d = Daemon::start(
        &["--listen", &unix, "--source", "pattern:160x120@5"],
        &[],
        1,
    );
    // Another server replaces the file (as a restart with a new instance
    // might) while the first one still runs.
    std::fs::remove_file(&sock).expect("remove");
    let other = std::os::unix::net::UnixListener::bind(&sock).expect("bind the path again");
    let code = d.terminate();
    assert_eq!(code, Some(0));
    let left = sock.exists();
    println!("after exit: the other server's socket file exists: {left}");
    assert!(left, "the other server's socket file was removed");
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    drop(other);
    let _ = std::fs::remove_file(&sock);
}
