//! The systemd service protocol, without libsystemd: sockets passed by
//! socket activation (`LISTEN_FDS`), readiness, status and watchdog messages
//! to `NOTIFY_SOCKET` (`Type=notify`, `WatchdogSec=`). Each is a few lines
//! of documented protocol (sd_listen_fds(3), sd_notify(3)); outside systemd
//! the variables are unset and all of this does nothing.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The first descriptor systemd passes (after stdin, stdout, stderr).
const FIRST_FD: RawFd = 3;

/// A listening socket systemd passed us.
pub enum Inherited {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Takes the sockets of socket activation, if they are meant for this
/// process (`LISTEN_PID`), and clears the variables so that children
/// (`exec:` sources) do not think they are for them. Call it before any
/// other thread starts: it changes the environment.
pub fn take_listen_fds() -> std::io::Result<Vec<Inherited>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    // SAFETY: called at start-up, before the runtime or any other thread
    // exists, so nothing reads the environment concurrently.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let ours = pid.and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count: RawFd = match count.and_then(|n| n.parse().ok()) {
        Some(n) if ours && n > 0 => n,
        _ => return Ok(Vec::new()),
    };
    (FIRST_FD..FIRST_FD + count)
        .map(|fd| {
            // SAFETY: systemd passed descriptors FIRST_FD.. as ours, open and
            // owned by nobody else in this process.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            classify(owned)
        })
        .collect()
}

/// A passed descriptor as a TCP or unix listener, or an error naming it.
fn classify(fd: OwnedFd) -> std::io::Result<Inherited> {
    let socket = socket2::Socket::from(fd);
    let domain = socket.domain()?;
    if !socket.is_listener()? {
        return Err(std::io::Error::other(
            "a passed socket is not listening (use ListenStream= in the .socket unit)",
        ));
    }
    socket.set_nonblocking(true)?;
    if domain == socket2::Domain::UNIX {
        Ok(Inherited::Unix(socket.into()))
    } else if domain == socket2::Domain::IPV4 || domain == socket2::Domain::IPV6 {
        Ok(Inherited::Tcp(socket.into()))
    } else {
        Err(std::io::Error::other(
            "a passed socket is neither TCP nor unix",
        ))
    }
}

/// Sends service-manager messages to `NOTIFY_SOCKET`, if set.
pub struct Notifier {
    socket: UnixDatagram,
    addr: NotifyAddr,
}

enum NotifyAddr {
    Path(std::path::PathBuf),
    /// `@name`: an abstract socket.
    Abstract(Vec<u8>),
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, or `None` when not run by systemd
    /// with `Type=notify` (or the variable names no usable socket).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str());
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => NotifyAddr::Abstract(name.to_vec()),
            None if bytes.starts_with(b"/") => NotifyAddr::Path(value.into()),
            None => return None,
        };
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier { socket, addr })
    }

    /// Sends `state` (e.g. `READY=1`, `STATUS=...`, `WATCHDOG=1`); a
    /// service manager that cannot be reached is logged, never fatal.
    pub fn notify(&self, state: &str) {
        let sent = match &self.addr {
            NotifyAddr::Path(p) => self.socket.send_to(state.as_bytes(), p),
            NotifyAddr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| self.socket.send_to_addr(state.as_bytes(), &a))
            }
        };
        if let Err(e) = sent {
            tracing::debug!("cannot notify the service manager: {e}");
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WatchdogSec=` (as sd_watchdog_enabled(3)
/// advises), when the watchdog is on for this process.
pub fn watchdog_interval() -> Option<Duration> {
    // Set when the watchdog is meant for one process of several.
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifies_a_datagram_socket() {
        let dir = std::env::temp_dir().join(format!("mjpegd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            socket: UnixDatagram::unbound().expect("socket"),
            addr: NotifyAddr::Path(path.clone()),
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = receiver.recv(&mut buf).expect("message");
        assert_eq!(&buf[..len], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
