//! mjpegd: serve live camera video as MJPEG over HTTP.
