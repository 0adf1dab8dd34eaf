//! mjpegd: serve live camera video as MJPEG over HTTP.
//!
//! ```text
//!  source task ──JPEG──▶ FrameHub (per stream: latest frame wins) ──▶ HTTP clients
//!  (source::*)            watch channel of Arc<Frame>, stats           (http::*)
//! ```
//! Sources and HTTP never see each other; they meet in [`hub::FrameHub`].
//! With `--history`, a hub also keeps its recent frames in a
//! [`history::FrameStore`] for requests about the past.
//! A stream can also be sent to NATS ([`nats`]) and served by other mjpegd
//! instances whose source is `nats://`.
//! [`server::run`] wires them together under one cancellation token.

pub mod canvas;
pub mod children;
pub mod clock;
pub mod config;
pub mod demand;
pub mod encode;
pub mod frame;
pub mod history;
pub mod http;
pub mod hub;
pub mod jpeg;
pub mod latency;
pub mod listen;
pub mod logging;
pub mod memfd;
pub mod mjpeg;
pub mod nats;
pub mod percent;
pub mod rendition;
pub mod rlimit;
pub mod server;
pub mod source;
pub mod systemd;
pub mod tls;
