//! Listen addresses (TCP or unix socket) and the listeners the binary binds
//! and hands to [`crate::server::run`]. The library never binds by itself.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Where to listen: `HOST:PORT`, `PORT`, or `unix:/PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    /// `none`: no HTTP at all (a capture node that only publishes to NATS).
    Off,
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    /// `HOST:PORT`, `[V6]:PORT`, `localhost:PORT`, a bare `PORT` (loopback),
    /// or `unix:PATH`.
    fn from_str(s: &str) -> Result<ListenAddr, String> {
        if s == "none" {
            return Ok(ListenAddr::Off);
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("'unix:' needs a socket path, as in unix:/run/mjpegd.sock".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(addr));
        }
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let port = s.strip_prefix("localhost:").unwrap_or(s);
        port.parse::<u16>()
            .map(|p| ListenAddr::Tcp(SocketAddr::new(loopback, p)))
            .map_err(|_| format!("'{s}' is not HOST:PORT, PORT or unix:PATH"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Off => f.write_str("none"),
        }
    }
}

/// A bound listener of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Listener {
        Listener::Tcp(l)
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Listener {
        Listener::Unix(l)
    }
}

impl crate::http::Transport for UnixStream {}

/// One accepted connection.
pub enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl Listener {
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, a)| Accepted::Tcp(s, a)),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }
}

/// Who may connect to a unix socket mjpegd creates: its file mode and
/// group (so that a reverse proxy running as another user can connect).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnixPermissions {
    /// File mode bits, e.g. 0o660; `None` leaves what the umask gave.
    pub mode: Option<u32>,
    /// Group id; `None` leaves the process's group.
    pub group: Option<u32>,
}

/// `--unix-mode`: octal permission bits, `660` or `0660`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("'{s}' is not an octal file mode such as 660")),
    }
}

/// `--unix-group`: a group name (looked up now) or a numeric id.
pub fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(s).map_err(|_| format!("bad group name '{s}'"))?;
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r(3) writes only into `group` and `buf`, whose sizes
    // it is given, and sets `found` to `&group` or null.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut group,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(format!("no group named '{s}' on this system"));
    }
    Ok(group.gr_gid)
}

/// The peer address reported for clients on a unix socket: they have no IP
/// address, and per-address limits do not apply to them (they all come
/// through the same reverse proxy).
pub const UNIX_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let tcp = |s: &str| ListenAddr::Tcp(s.parse().expect("addr"));
        assert_eq!("8080".parse(), Ok(tcp("127.0.0.1:8080")));
        assert_eq!("localhost:81".parse(), Ok(tcp("127.0.0.1:81")));
        assert_eq!("0.0.0.0:80".parse(), Ok(tcp("0.0.0.0:80")));
        assert_eq!("[::1]:9000".parse(), Ok(tcp("[::1]:9000")));
        assert_eq!(
            "unix:/run/m.sock".parse(),
            Ok(ListenAddr::Unix("/run/m.sock".into()))
        );
        for bad in ["", "unix:", "host", "1.2.3.4", "99999"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad:?}");
        }
        assert_eq!(ListenAddr::Unix("/a b".into()).to_string(), "unix:/a b");
    }

    #[test]
    fn modes_and_groups() {
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("1777").is_err());
        assert_eq!(parse_group("0"), Ok(0));
        assert_eq!(parse_group("root"), Ok(0));
        assert!(parse_group("no-such-group-here").is_err());
    }
}
