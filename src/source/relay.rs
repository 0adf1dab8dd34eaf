//! Relay sources: frames pulled from another HTTP server.
//!
//! - `http://...` / `https://...`: another MJPEG server's stream
//!   (mjpg-streamer, µStreamer, an IP camera, another mjpegd). Its
//!   `multipart/x-mixed-replace` body is parsed incrementally and each JPEG
//!   is republished as it arrives; a body that is just concatenated JPEGs
//!   (some cameras) is split by walking the JPEG markers.
//! - `snapshot:URL[@FPS]`: a still image fetched every 1/FPS seconds, for
//!   cameras that only serve stills, over one kept-alive connection.
//!
//! Any failure (refused, timed out, bad status, silent upstream, closed
//! stream) ends `run` with the reason; the supervisor then shows the offline
//! placeholder and reconnects with backoff, so viewers stay connected.

use super::http_client::{Client, HttpUrl};
use super::sink::{JpegSink, parse_timestamp};
use super::spec::{RelaySpec, SnapshotSpec};
use super::{SourceContext, SourceError};
use crate::jpeg::JpegSplitter;
use crate::mjpeg::{MultipartParser, boundary_from_content_type};
use bytes::Bytes;
use std::time::{Duration, SystemTime};
use tracing::info;

/// Largest frame accepted from an upstream.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Relays `spec`'s stream until cancelled or the upstream fails.
pub async fn run(spec: &RelaySpec, ctx: &SourceContext) -> Result<(), SourceError> {
    tokio::select! {
        _ = ctx.cancel.cancelled() => Ok(()),
        result = relay(spec, ctx) => result,
    }
}

async fn relay(spec: &RelaySpec, ctx: &SourceContext) -> Result<(), SourceError> {
    let client = Client::new(&spec.timeouts, &spec.tls)?;
    let mut response = client.get(&spec.url).await?;
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let mut frames = Frames::for_content_type(&content_type, &spec.url)?;
    let mut sink = JpegSink::new(ctx.hub.clone(), spec.to_string());
    info!(
        stream = ctx.hub.name(),
        source = %spec,
        "connected to upstream ({})",
        if content_type.is_empty() { "no Content-Type" } else { &content_type }
    );
    loop {
        let Some(data) = response.chunk().await? else {
            return Err(SourceError::new(format!(
                "upstream {} closed the connection",
                spec.url.endpoint()
            )));
        };
        frames.push(&data);
        while let Some(frame) = frames.next_frame() {
            match frame {
                Ok((jpeg, captured)) => {
                    sink.offer(&jpeg, captured);
                }
                Err(why) => sink.reject(&why),
            }
        }
        if frames.is_done() {
            return Err(SourceError::new(format!(
                "upstream {} ended the stream",
                spec.url.endpoint()
            )));
        }
    }
}

/// How the frames are delimited in the upstream body.
enum Frames {
    Multipart(MultipartParser),
    /// JPEGs back to back (or a multipart body whose boundary we do not know).
    Concatenated(JpegSplitter),
}

impl Frames {
    fn for_content_type(ct: &str, url: &HttpUrl) -> Result<Frames, SourceError> {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime.starts_with("multipart/") {
            return Ok(match boundary_from_content_type(ct) {
                Some(b) => Frames::Multipart(MultipartParser::new(&b, MAX_FRAME)),
                None => Frames::Concatenated(JpegSplitter::new(MAX_FRAME)),
            });
        }
        if mime == "image/jpeg" || mime == "image/jpg" {
            return Err(SourceError::new(format!(
                "upstream sent a single JPEG image, not a stream: use snapshot:{url}"
            )));
        }
        if mime.starts_with("text/") || mime == "application/json" {
            return Err(SourceError::new(format!(
                "upstream sent {mime}, not an MJPEG stream"
            )));
        }
        Ok(Frames::Concatenated(JpegSplitter::new(MAX_FRAME)))
    }

    fn push(&mut self, data: &[u8]) {
        match self {
            Frames::Multipart(p) => p.push(data),
            Frames::Concatenated(s) => s.push(data),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Frames::Multipart(p) => p.is_done(),
            Frames::Concatenated(_) => false,
        }
    }

    /// The next frame with its upstream capture time, or why it was lost.
    #[allow(clippy::type_complexity)]
    fn next_frame(&mut self) -> Option<Result<(Bytes, Option<SystemTime>), String>> {
        match self {
            Frames::Multipart(p) => Some(match p.next_part()? {
                Ok(part) => {
                    let ts = part.header("x-timestamp").and_then(parse_timestamp);
                    Ok((part.body, ts))
                }
                Err(e) => Err(e.to_string()),
            }),
            Frames::Concatenated(s) => Some(match s.next_frame()? {
                Ok(jpeg) => Ok((jpeg, None)),
                Err(e) => Err(e.to_string()),
            }),
        }
    }
}

/// Polls `spec`'s still image until cancelled or the upstream fails.
pub async fn run_snapshot(spec: &SnapshotSpec, ctx: &SourceContext) -> Result<(), SourceError> {
    tokio::select! {
        _ = ctx.cancel.cancelled() => Ok(()),
        result = poll(spec, ctx) => result,
    }
}

async fn poll(spec: &SnapshotSpec, ctx: &SourceContext) -> Result<(), SourceError> {
    let period = Duration::from_secs_f64(1.0 / spec.fps);
    let client = Client::new(&spec.timeouts, &spec.tls)?;
    let mut sink = JpegSink::new(ctx.hub.clone(), spec.to_string());
    let mut next = tokio::time::Instant::now();
    let mut first = true;
    loop {
        tokio::time::sleep_until(next).await;
        let response = client.get(&spec.url).await?;
        let mime = response
            .header("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        if mime.starts_with("text/") || mime.starts_with("multipart/") {
            return Err(SourceError::new(format!(
                "upstream sent {}, not a JPEG image",
                mime.split(';').next().unwrap_or("")
            )));
        }
        let body = response.body(MAX_FRAME).await?;
        if sink.offer(&body, None) && first {
            info!(stream = ctx.hub.name(), source = %spec, "polling snapshots");
            first = false;
        }
        // Steady schedule; after a slow fetch, start the next one at once
        // instead of bursting to catch up.
        next += period;
        next = next.max(tokio::time::Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::FrameHub;
    use crate::jpeg::testing::small;
    use crate::source::http_client::Timeouts;
    use crate::source::tls_trust::TlsTrust;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    fn ctx() -> SourceContext {
        SourceContext {
            hub: FrameHub::new("t", "test", "relay"),
            cancel: CancellationToken::new(),
            quality: 80,
            subsampling: Default::default(),
        }
    }

    /// Serves `response` (then `hang`s silently) to each connection.
    async fn fake_upstream(response: Vec<u8>) -> HttpUrl {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut io, _)) = listener.accept().await {
                let response = response.clone();
                tokio::spawn(async move {
                    let mut req = [0u8; 4096];
                    let _ = io.read(&mut req).await;
                    let _ = io.write_all(&response).await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        HttpUrl::parse(&format!("http://{addr}/stream")).expect("url")
    }

    /// A relay of `url` that gives up quickly.
    fn quick_relay(url: HttpUrl) -> RelaySpec {
        RelaySpec {
            url,
            timeouts: quick(),
            tls: TlsTrust::default(),
        }
    }

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(500),
            head: Duration::from_millis(300),
            idle: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn silent_upstream_times_out_after_frames() {
        let jpeg = small(5);
        let resp = one_frame_stream("HTTP/1.0 200 OK", &jpeg);
        let spec = quick_relay(fake_upstream(resp).await);
        let ctx = ctx();
        let err = run(&spec, &ctx).await.expect_err("silence is an error");
        assert!(err.0.contains("sent nothing for 0.3 s"), "{err}");
        let frame = ctx.hub.latest().expect("the frame was published");
        assert_eq!(frame.jpeg(), jpeg);
    }

    #[tokio::test]
    async fn upstream_without_head_times_out() {
        let spec = quick_relay(fake_upstream(Vec::new()).await);
        let err = run(&spec, &ctx()).await.expect_err("no head");
        assert!(err.0.contains("sent no response within 0.3 s"), "{err}");
    }

    #[tokio::test]
    async fn statuses_and_content_types_explained() {
        let spec = quick_relay(
            fake_upstream(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec()).await,
        );
        let err = run(&spec, &ctx()).await.expect_err("401");
        assert_eq!(err.0, "upstream answered 401 Unauthorized");

        let spec = quick_relay(
            fake_upstream(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n".to_vec()).await,
        );
        let err = run(&spec, &ctx()).await.expect_err("single image");
        assert!(err.0.contains("use snapshot:http://127.0.0.1:"), "{err}");
    }

    #[tokio::test]
    async fn redirects_are_followed_up_to_a_limit() {
        let target = fake_upstream(
            b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=x\r\n\r\n"
                .to_vec(),
        )
        .await;
        let hop = fake_upstream(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: http://{}/\r\n\r\n",
                target.endpoint()
            )
            .into_bytes(),
        )
        .await;
        let spec = quick_relay(hop);
        // Reaches the stream, which then stays silent.
        let err = run(&spec, &ctx()).await.expect_err("silent");
        assert!(err.0.contains("sent nothing"), "{err}");

        let mut loop_url = fake_upstream(Vec::new()).await;
        for _ in 0..4 {
            loop_url = fake_upstream(
                format!("HTTP/1.1 301 Moved\r\nLocation: {loop_url}\r\n\r\n").into_bytes(),
            )
            .await;
        }
        let spec = quick_relay(loop_url);
        let err = run(&spec, &ctx()).await.expect_err("too many");
        assert!(err.0.contains("redirected more than 3 times"), "{err}");
    }

    /// Answers by request path, as `route` says; unknown paths get a 404.
    async fn routed_upstream(route: fn(&str) -> Option<Vec<u8>>) -> HttpUrl {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut io, _)) = listener.accept().await {
                tokio::spawn(async move {
                    loop {
                        let mut req = [0u8; 4096];
                        let Ok(n @ 1..) = io.read(&mut req).await else {
                            return;
                        };
                        let head = String::from_utf8_lossy(&req[..n]).into_owned();
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        let answer = route(&path).unwrap_or_else(|| {
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
                        });
                        if io.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HttpUrl::parse(&format!("http://{addr}/a/b")).expect("url")
    }

    /// A multipart answer (after `status`) with one `jpeg` in it.
    fn one_frame_stream(status: &str, jpeg: &[u8]) -> Vec<u8> {
        let mut resp = format!(
            "{status}\r\nContent-Type: multipart/x-mixed-replace;boundary=b\r\n\r\n--b\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )
        .into_bytes();
        resp.extend_from_slice(jpeg);
        resp.extend_from_slice(b"\r\n--b\r\n");
        resp
    }

    /// Relays from `url`, which must end up at `one_frame_stream`.
    async fn relays_one_frame(url: HttpUrl) {
        let spec = RelaySpec {
            url,
            timeouts: quick(),
            tls: TlsTrust::default(),
        };
        let ctx = ctx();
        let err = run(&spec, &ctx).await.expect_err("silent after a frame");
        assert!(err.0.contains("sent nothing"), "{err}");
        assert_eq!(ctx.hub.latest().expect("a frame").jpeg(), small(7));
    }

    #[tokio::test]
    async fn redirects_resolve_as_rfc_3986_says() {
        // `?y` keeps the path (`/a/b?y`, not `/a/?y`); dot segments go.
        let url = routed_upstream(|path| match path {
            "/a/b" => {
                Some(b"HTTP/1.1 302 Found\r\nLocation: ?y\r\nContent-Length: 0\r\n\r\n".to_vec())
            }
            "/a/b?y" => Some(
                b"HTTP/1.1 301 Moved\r\nLocation: ../c/./d?z\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ),
            "/c/d?z" => Some(one_frame_stream("HTTP/1.1 200 OK", &small(7))),
            _ => None,
        })
        .await;
        relays_one_frame(url).await;
    }

    #[tokio::test]
    async fn informational_answers_are_skipped() {
        let url = routed_upstream(|path| {
            (path == "/a/b").then(|| {
                one_frame_stream("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK", &small(7))
            })
        })
        .await;
        relays_one_frame(url).await;
    }

    #[tokio::test]
    async fn https_to_a_plain_server_fails_clearly() {
        let url = fake_upstream(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()).await;
        let spec = RelaySpec::parse(&format!("https://{}/", url.endpoint())).expect("spec");
        let spec = quick_relay(spec.url);
        let err = run(&spec, &ctx()).await.expect_err("not TLS");
        assert!(
            err.0.contains("TLS handshake with 127.0.0.1 failed"),
            "{err}"
        );
    }
}
