//! The systemd service protocol without systemd as PID 1: the sockets come
//! from `systemd-socket-activate` (a TCP port and a unix socket, as
//! contrib/mjpegd.socket declares them), readiness, status and watchdog
//! messages go to a notify socket made here, and the credentials directory
//! (`LoadCredential=`) supplies the password. Fails if
//! `systemd-socket-activate` is missing (Debian package `systemd`).

mod common;

use common::*;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A GET over a fresh connection; returns the status code.
fn status_of(
    connect: impl FnOnce() -> std::io::Result<Box<dyn ReadWrite>>,
    auth: Option<&str>,
) -> u16 {
    let mut io = connect().expect("connect");
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
    let req = format!("GET /snapshot HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    io.write_all(req.as_bytes()).expect("send");
    let mut all = Vec::new();
    io.read_to_end(&mut all).expect("read");
    common::split_response(&all).0
}

trait ReadWrite: Read + std::io::Write {}
impl<T: Read + std::io::Write> ReadWrite for T {}

#[test]
fn socket_activation_notify_watchdog_and_credentials() {
    let tool = require("systemd-socket-activate");
    let dir = std::env::temp_dir().join(format!("mjpegd-systemd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("credentials")).expect("dirs");
    std::fs::write(dir.join("credentials/auth"), "viewer:from-credential\n").expect("auth");
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let unix = dir.join("mjpegd.sock");
    // The tool binds the port itself and takes no port 0: a free port is
    // picked, and should another process take it first, the tool exits
    // and another port is tried.
    let (mut child, port) = (0..5)
        .find_map(|_| {
            let port = free_port();
            let mut child = Command::new(&tool)
                .arg(format!("--listen=127.0.0.1:{port}"))
                .arg(format!("--listen={}", unix.display()))
                .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
                .arg("--setenv=WATCHDOG_USEC=400000")
                .arg(format!(
                    "--setenv=CREDENTIALS_DIRECTORY={}",
                    dir.join("credentials").display()
                ))
                .arg(env!("CARGO_BIN_EXE_mjpegd"))
                .args(["--source", "pattern:160x120@10"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run systemd-socket-activate");
            // It starts mjpegd on the first connection, which waits in the
            // backlog.
            let mut exited = false;
            eventually_blocking(Duration::from_secs(10), "the sockets", || {
                exited = child.try_wait().expect("wait").is_some();
                exited || unix.exists()
            });
            (!exited).then_some((child, port))
        })
        .expect("a port systemd-socket-activate could bind");
    let tcp = move || -> std::io::Result<Box<dyn ReadWrite>> {
        Ok(Box::new(std::net::TcpStream::connect(("127.0.0.1", port))?))
    };
    assert_eq!(
        status_of(tcp, None),
        401,
        "the credential's password is required"
    );

    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    while !messages.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        let n = notify.recv(&mut buf).expect("a notify message within 20 s");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        messages[0].starts_with("READY=1\nSTATUS=serving 1 stream on 2 listeners"),
        "{messages:?}"
    );

    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode("viewer:from-credential");
    assert_eq!(status_of(tcp, Some(&token)), 200);
    let unix_path = unix.clone();
    let over_unix = move || -> std::io::Result<Box<dyn ReadWrite>> {
        Ok(Box::new(std::os::unix::net::UnixStream::connect(
            &unix_path,
        )?))
    };
    assert_eq!(
        status_of(over_unix, Some(&token)),
        200,
        "the passed unix socket serves"
    );

    // SAFETY: kill(2) on our own child (mjpegd, exec'd in its place).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("exit");
    assert_eq!(status.code(), Some(0));
    let last = loop {
        let n = notify.recv(&mut buf).expect("STOPPING=1");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m != "WATCHDOG=1" {
            break m;
        }
    };
    assert_eq!(last, "STOPPING=1");
    let _ = std::fs::remove_dir_all(&dir);
}
