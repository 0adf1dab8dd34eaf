//! mjpegd: serve live camera video as MJPEG over HTTP.
pub mod jpeg;
pub mod mjpeg;
