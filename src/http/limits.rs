//! Client limits: how many connections and stream clients the server takes,
//! per address and in all, and how long a client may stall a write.
//!
//! Limits are counted with guards: a permit is taken when a connection or a
//! stream starts and given back when its guard drops, whatever way the
//! connection ends.

use std::collections::HashMap;
use std::future::Future;
use std::io::IoSlice;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Configured limits; 0 means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in all (more: 503 after reading the request).
    pub max_connections: usize,
    /// Stream clients over all streams (more: 503).
    pub max_clients: usize,
    /// Stream clients from one IP address (more: 503).
    pub max_streams_per_ip: usize,
}

/// Seconds a refused client is told to wait before trying again.
pub const RETRY_AFTER: &str = "2";

/// The live counts the limits are checked against.
#[derive(Default)]
pub struct Gate {
    connections: AtomicUsize,
    streams: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a permit was refused (the text of the 503).
pub type Refusal = &'static str;

impl Gate {
    /// Counts a new connection; `Err` when over `max_connections`. The
    /// connection still counts until the returned guard drops either way, so
    /// that refused connections are visible as load.
    pub fn connection(&self, limits: &Limits) -> (ConnectionPermit<'_>, Result<(), Refusal>) {
        let n = self.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = ConnectionPermit { gate: self };
        let over = limits.max_connections > 0 && n > limits.max_connections;
        (
            permit,
            if over {
                Err("too many connections")
            } else {
                Ok(())
            },
        )
    }

    /// Open connections now.
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
            ip: None,
        };
        if limits.max_clients > 0 && n > limits.max_clients {
            return Err("too many stream clients");
        }
        if limits.max_streams_per_ip > 0 && !ip.is_unspecified() {
            let mut per_ip = self.lock_per_ip();
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= limits.max_streams_per_ip {
                return Err("too many streams from this address");
            }
            *count += 1;
            permit.ip = Some(ip);
        }
        Ok(permit)
    }

    fn lock_per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map stays consistent even if a holder panicked: each update is
        // a single insert or decrement.
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open connection; released on drop.
pub struct ConnectionPermit<'a> {
    gate: &'a Gate,
}

impl Drop for ConnectionPermit<'_> {
    fn drop(&mut self) {
        self.gate.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One stream client; released on drop.
pub struct StreamPermit<'a> {
    gate: &'a Gate,
    ip: Option<IpAddr>,
}

impl Drop for StreamPermit<'_> {
    fn drop(&mut self) {
        self.gate.streams.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut per_ip = self.gate.lock_per_ip();
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    // Keep the map as small as the set of current clients.
                    per_ip.remove(&ip);
                }
            }
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

    #[test]
    fn permits_count_and_release() {
        let gate = Gate::default();
        let limits = Limits {
            max_connections: 1,
            max_clients: 2,
            max_streams_per_ip: 1,
        };
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "10.0.0.3".parse().expect("ip");
        let (c1, ok1) = gate.connection(&limits);
        let (c2, ok2) = gate.connection(&limits);
        assert!(ok1.is_ok() && ok2.is_err());
        drop((c1, c2));
        assert_eq!(gate.connections(), 0);

        let s1 = gate.stream(a, &limits).expect("first from a");
        assert!(gate.stream(a, &limits).is_err(), "second from a");
        let s2 = gate.stream(b, &limits).expect("first from b");
        assert!(gate.stream(c, &limits).is_err(), "over max_clients");
        assert_eq!(gate.streams(), 2);
        drop(s1);
        let s3 = gate.stream(a, &limits).expect("a again after release");
        drop((s2, s3));
        assert_eq!(gate.streams(), 0);
        assert!(gate.lock_per_ip().is_empty());

        // Clients on a unix socket share the unspecified address.
        let unspecified: IpAddr = "0.0.0.0".parse().expect("ip");
        let _u1 = gate.stream(unspecified, &limits).expect("unix 1");
        let _u2 = gate.stream(unspecified, &limits).expect("unix 2");
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
