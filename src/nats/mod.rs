//! Scale-out over NATS: a capture node publishes its streams' frames to a
//! NATS subject, and any number of edge nodes subscribe to it (a
//! `nats://` source) and serve the frames to their own viewers.
//!
//! ```text
//!  camera ─▶ mjpegd (capture) ──publish──▶ NATS ──subscribe──▶ mjpegd (edge) ─▶ viewers
//! ```
//!
//! [`address`] parses `nats://` URLs, [`connect`] opens connections,
//! [`wire`] is the message format, [`publish`] the capture side; the edge
//! side is `source::nats`.

pub mod address;
pub mod connect;
pub mod publish;
pub mod wire;

pub use address::BusAddress;
