//! Client limits: how many connections and stream clients the server takes,
//! per address and in all, and how long a client may stall a write.
//!
//! Limits are counted with guards: a permit is taken when a connection or a
//! stream starts and given back when its guard drops, whatever way the
//! connection ends.
//!
//! Connections are counted as they are accepted (TLS handshakes included),
//! per address as well as in all: by default one address may hold at most
//! half of `--max-connections`, so a single client opening sockets cannot
//! lock everyone else out. A refused connection does not take a slot; it
//! is answered with a 503 (or closed, when that would cost more).

use std::collections::HashMap;
use std::future::Future;
use std::io::IoSlice;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Configured limits; 0 means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in all, TLS handshakes included (more: 503).
    pub max_connections: usize,
    /// Open connections from one address, an IPv6 /64 counting as one
    /// address (more: 503). 0: half of `max_connections`, so that one
    /// address can never hold every slot.
    pub max_connections_per_ip: usize,
    /// Stream clients over all streams (more: 503).
    pub max_clients: usize,
    /// Stream clients from one IP address (more: 503).
    pub max_streams_per_ip: usize,
}

impl Limits {
    /// The per-address connection cap in force (0: none).
    pub fn connections_per_ip(&self) -> usize {
        match (self.max_connections_per_ip, self.max_connections) {
            (0, 0) => 0,
            (0, all) => (all / 2).max(1),
            (per_ip, _) => per_ip,
        }
    }
}

/// Seconds a refused client is told to wait before trying again.
pub const RETRY_AFTER: &str = "2";

/// Refused connections answered with a 503 at the same time; more are closed
/// at once, so refusals cannot hold an unbounded number of descriptors.
pub const MAX_REFUSING: usize = 64;

/// The live counts the limits are checked against.
#[derive(Default)]
pub struct Gate {
    /// Admitted connections (refused ones count in `refusing`).
    connections: AtomicUsize,
    refusing: AtomicUsize,
    streams: AtomicUsize,
    /// Admitted connections per address group.
    connections_per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Stream clients per address group.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a permit was refused (the text of the 503).
pub type Refusal = &'static str;

/// What becomes of a new connection.
pub enum Admission {
    /// Served (`refusal()` is `None`), or answered with a 503 (`Some`).
    Serve(ConnectionPermit),
    /// Closed at once: over a limit, and either no cheap answer is possible
    /// (a TLS handshake would come first) or too many refusals are pending.
    Close(Refusal),
}

/// The address limits count under: IPv4 addresses as they are (an IPv4
/// address mapped into IPv6 too), IPv6 addresses by their /64 (one host
/// commonly has a whole /64 to pick addresses from). `None` for the
/// unspecified address, which clients on a unix socket have.
pub fn address_group(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        ip if ip.is_unspecified() => None,
        IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }),
        v4 => Some(v4),
    }
}

impl Gate {
    /// Decides about a new connection from `ip` as it is accepted, before
    /// any TLS handshake, so handshakes in progress count as connections.
    /// `can_answer`: whether a refusal can be told with a 503 (plain HTTP).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits, can_answer: bool) -> Admission {
        let group = address_group(ip);
        let per_ip = limits.connections_per_ip();
        let mut counted = None;
        let refusal = 'check: {
            if let (Some(g), true) = (group, per_ip > 0) {
                let mut map = lock(&self.connections_per_ip);
                let count = map.entry(g).or_insert(0);
                if *count >= per_ip {
                    break 'check Some("too many connections from this address");
                }
                *count += 1;
                counted = Some(g);
            }
            let n = self.connections.fetch_add(1, Ordering::AcqRel) + 1;
            if limits.max_connections > 0 && n > limits.max_connections {
                self.connections.fetch_sub(1, Ordering::AcqRel);
                if let Some(g) = counted.take() {
                    release(&self.connections_per_ip, g);
                }
                break 'check Some("too many connections");
            }
            None
        };
        let Some(why) = refusal else {
            return Admission::Serve(ConnectionPermit {
                gate: self.clone(),
                refused: None,
                group: counted,
            });
        };
        if !can_answer {
            return Admission::Close(why);
        }
        if self.refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::AcqRel);
            return Admission::Close(why);
        }
        Admission::Serve(ConnectionPermit {
            gate: self.clone(),
            refused: Some(why),
            group: None,
        })
    }

    /// Admitted connections now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Stream clients now, over all streams.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// Takes a stream slot for a client at `ip`. Unspecified addresses
    /// (clients on a unix socket, behind a proxy) have no per-address limit.
    pub fn stream(&self, ip: IpAddr, limits: &Limits) -> Result<StreamPermit<'_>, Refusal> {
        let n = self.streams.fetch_add(1, Ordering::AcqRel) + 1;
        let mut permit = StreamPermit {
            gate: self,
            group: None,
        };
        if limits.max_clients > 0 && n > limits.max_clients {
            return Err("too many stream clients");
        }
        if let (Some(g), true) = (address_group(ip), limits.max_streams_per_ip > 0) {
            let mut per_ip = lock(&self.per_ip);
            let count = per_ip.entry(g).or_insert(0);
            if *count >= limits.max_streams_per_ip {
                return Err("too many streams from this address");
            }
            *count += 1;
            permit.group = Some(g);
        }
        Ok(permit)
    }
}

fn lock(map: &Mutex<HashMap<IpAddr, usize>>) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
    // The map stays consistent even if a holder panicked: each update is a
    // single insert or decrement.
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives back one count of `group`; the map keeps only groups with a count,
/// so it is as small as the set of current clients.
fn release(map: &Mutex<HashMap<IpAddr, usize>>, group: IpAddr) {
    let mut map = lock(map);
    if let Some(count) = map.get_mut(&group) {
        *count -= 1;
        if *count == 0 {
            map.remove(&group);
        }
    }
}

/// One open connection, admitted or being refused; released on drop.
pub struct ConnectionPermit {
    gate: Arc<Gate>,
    refused: Option<Refusal>,
    group: Option<IpAddr>,
}

impl ConnectionPermit {
    /// Why this connection is only answered with a 503, if it is.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refused
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if self.refused.is_some() {
            self.gate.refusing.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        self.gate.connections.fetch_sub(1, Ordering::AcqRel);
        if let Some(g) = self.group {
            release(&self.gate.connections_per_ip, g);
        }
    }
}

/// One stream client; released on drop.
pub struct StreamPermit<'a> {
    gate: &'a Gate,
    group: Option<IpAddr>,
}

impl Drop for StreamPermit<'_> {
    fn drop(&mut self) {
        self.gate.streams.fetch_sub(1, Ordering::AcqRel);
        if let Some(g) = self.group {
            release(&self.gate.per_ip, g);
        }
    }
}

/// An I/O stream whose writes fail with `TimedOut` once the peer has taken
/// no byte for `timeout`: a client that stops reading is dropped instead of
/// holding its task and socket forever. Reads pass through untouched (the
/// request head has its own deadline).
pub struct StallGuard<S> {
    io: S,
    timeout: Duration,
    /// Armed while a write is pending; allocated once per connection.
    stall: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<S> StallGuard<S> {
    pub fn new(io: S, timeout: Duration) -> StallGuard<S> {
        StallGuard {
            io,
            timeout,
            stall: None,
            armed: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Called with the inner result of a write-side poll: disarms on
    /// progress, arms (or checks) the deadline while pending.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        inner: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match inner {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = Instant::now() + self.timeout;
                let sleep = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !self.armed {
                    sleep.as_mut().reset(deadline);
                    self.armed = true;
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.armed = false;
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "client took no data within the send timeout",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// `sendfile` on the socket bypasses the guard's writes; the stream's send
/// loop applies the same timeout to its waits for the socket.
impl<S: super::Transport> super::Transport for StallGuard<S> {
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        self.io.tcp()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let inner = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, inner)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let inner = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, inner)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let inner = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, inner)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let inner = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn permits_count_and_release() {
        let gate = Gate::default();
        let limits = Limits {
            max_connections: 0,
            max_connections_per_ip: 0,
            max_clients: 2,
            max_streams_per_ip: 1,
        };
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        let s1 = gate.stream(a, &limits).expect("first from a");
        assert!(gate.stream(a, &limits).is_err(), "second from a");
        let s2 = gate.stream(b, &limits).expect("first from b");
        assert!(gate.stream(c, &limits).is_err(), "over max_clients");
        assert_eq!(gate.streams(), 2);
        drop(s1);
        let s3 = gate.stream(a, &limits).expect("a again after release");
        drop((s2, s3));
        assert_eq!(gate.streams(), 0);
        assert!(lock(&gate.per_ip).is_empty());

        // Clients on a unix socket share the unspecified address.
        let unspecified = ip("0.0.0.0");
        let _u1 = gate.stream(unspecified, &limits).expect("unix 1");
        let _u2 = gate.stream(unspecified, &limits).expect("unix 2");
    }

    fn served(a: Admission) -> Option<ConnectionPermit> {
        match a {
            Admission::Serve(p) if p.refusal().is_none() => Some(p),
            _ => None,
        }
    }

    #[test]
    fn one_address_keeps_a_share_of_connections_for_others() {
        let gate = Arc::new(Gate::default());
        let limits = Limits {
            max_connections: 4,
            ..Limits::default()
        };
        assert_eq!(limits.connections_per_ip(), 2);
        let a = ip("10.0.0.1");
        let held: Vec<_> = (0..2)
            .filter_map(|_| served(gate.admit(a, &limits, true)))
            .collect();
        assert_eq!(held.len(), 2);
        // The third from `a` is refused and takes no slot.
        let refused = match gate.admit(a, &limits, true) {
            Admission::Serve(p) => p,
            Admission::Close(_) => panic!("a refusal can be answered"),
        };
        assert!(refused.refusal().is_some());
        assert!(matches!(gate.admit(a, &limits, false), Admission::Close(_)));
        assert_eq!(gate.connections(), 2);
        let b1 = served(gate.admit(ip("10.0.0.2"), &limits, true)).expect("b");
        let c1 = served(gate.admit(ip("10.0.0.3"), &limits, true)).expect("c");
        // Full: anyone else is refused.
        assert!(served(gate.admit(ip("10.0.0.4"), &limits, true)).is_none());
        drop((held, refused, b1, c1));
        assert_eq!(gate.connections(), 0);
        assert!(lock(&gate.connections_per_ip).is_empty());
        assert_eq!(gate.refusing.load(Ordering::Acquire), 0);
    }

    #[test]
    fn refusals_pending_at_once_are_bounded() {
        let gate = Arc::new(Gate::default());
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let _one = served(gate.admit(ip("10.0.0.1"), &limits, true)).expect("first");
        let pending: Vec<_> = (0..MAX_REFUSING + 5)
            .filter_map(|_| match gate.admit(ip("10.0.0.2"), &limits, true) {
                Admission::Serve(p) => Some(p),
                Admission::Close(_) => None,
            })
            .collect();
        assert_eq!(pending.len(), MAX_REFUSING);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let g = |s: &str| address_group(ip(s));
        assert_eq!(g("2001:db8:1:2:aaaa::1"), g("2001:db8:1:2:bbbb::9"));
        assert_ne!(g("2001:db8:1:2::1"), g("2001:db8:1:3::1"));
        assert_eq!(g("::ffff:10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(g("0.0.0.0"), None);
        assert_eq!(g("::"), None);

        let gate = Arc::new(Gate::default());
        let limits = Limits {
            max_connections_per_ip: 1,
            ..Limits::default()
        };
        let _a = served(gate.admit(ip("2001:db8::1"), &limits, true)).expect("first");
        assert!(served(gate.admit(ip("2001:db8::2"), &limits, true)).is_none());
        assert!(served(gate.admit(ip("2001:db9::1"), &limits, true)).is_some());
    }

    #[tokio::test]
    async fn stalled_writes_time_out_and_progress_resets_the_clock() {
        // A pipe of 16 bytes whose reader never reads: the second write of
        // 16 bytes stalls.
        let (mut reader, writer) = tokio::io::duplex(16);
        let timeout = Duration::from_millis(400);
        let mut w = StallGuard::new(writer, timeout);
        w.write_all(&[0; 16]).await.expect("fits the pipe");
        let t = Instant::now();
        let err = w.write_all(&[0; 16]).await.expect_err("stalls");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= timeout, "{:?}", t.elapsed());

        // A slow reader that takes a few bytes every 100 ms is never cut,
        // though the whole write takes twice the timeout.
        let mut buf = [0u8; 64];
        use tokio::io::AsyncReadExt;
        reader.read_exact(&mut buf[..16]).await.expect("drain");
        let slow = tokio::spawn(async move {
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut one = [0u8; 4];
                if reader.read_exact(&mut one).await.is_err() {
                    break;
                }
            }
            reader
        });
        let t = Instant::now();
        w.write_all(&[1; 16 + 16])
            .await
            .expect("slow progress is progress");
        assert!(t.elapsed() >= timeout, "{:?}", t.elapsed());
        let _ = slow.await;
    }
}
