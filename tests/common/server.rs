//! The server running inside the test process, on an ephemeral port or on
//! a socket the test keeps.

use mjpegd::config::Config;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A server running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts the server with command-line `args` on 127.0.0.1:0.
    pub async fn start(args: &[&str]) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        TestServer::start_with(listener, args)
    }

    /// Starts the server on a copy of `socket`, which the test keeps open:
    /// stopped and started again on it, the server keeps its port, and no
    /// other process can take it meanwhile (while the server is down,
    /// connections wait unanswered in the backlog). There is no start on a
    /// port by number: between a stop and a new bind, another process may
    /// take the port.
    pub fn start_on(socket: &std::net::TcpListener, args: &[&str]) -> TestServer {
        let copy = socket.try_clone().expect("copy of the socket");
        copy.set_nonblocking(true).expect("nonblocking");
        TestServer::start_with(TcpListener::from_std(copy).expect("listener"), args)
    }

    fn start_with(listener: TcpListener, args: &[&str]) -> TestServer {
        let config = match Config::from_args(std::iter::once("mjpegd").chain(args.iter().copied()))
        {
            Ok(c) => c,
            Err(e) => panic!("bad test config {args:?}: {e:?}"),
        };
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(mjpegd::server::run(
            config,
            vec![listener],
            shutdown.clone(),
        ));
        TestServer {
            addr,
            shutdown,
            done,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.done)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic");
    }
}
