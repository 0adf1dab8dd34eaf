//! Maps a request to its endpoint and enforces the method rules.

use super::response::Response;
use super::{
    HttpContext, Transport, clip, cors, index, metrics, rendition, request::Request, snapshot,
    status, stream,
};
use crate::hub::FrameHub;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Methods every endpoint allows.
const ALLOW: &str = "GET, HEAD, OPTIONS";

/// What a request asks for.
enum Endpoint {
    Index,
    Stream(Arc<FrameHub>),
    Snapshot(Arc<FrameHub>),
    /// A span of the stream's history as a file (`clip.rs`).
    Clip(Arc<FrameHub>),
    Status,
    Metrics,
    /// Known path or action, but no such stream (or no stream at all).
    NoStream(String),
    NotFound,
}

fn resolve(req: &Request, ctx: &HttpContext) -> Endpoint {
    let default = || ctx.streams.first().cloned();
    let by_name = |name: &str| ctx.stream(name).cloned();
    let path = req.path.as_str();
    let (kind, hub) = match path {
        // mjpg-streamer's URLs, which OctoPrint, Home Assistant and many
        // scripts use; other query keys (cache busters) are ignored.
        "/" | "/index.html" => match req.query("action") {
            None => return Endpoint::Index,
            Some("stream") => ("stream", default()),
            Some("snapshot") => ("snapshot", default()),
            Some(_) => return Endpoint::NotFound,
        },
        "/stream" => ("stream", default()),
        "/snapshot" => ("snapshot", default()),
        "/clip" => ("clip", default()),
        "/status" => return Endpoint::Status,
        "/metrics" => return Endpoint::Metrics,
        _ => match path
            .strip_prefix("/streams/")
            .and_then(|r| r.rsplit_once('/'))
        {
            Some((name, "stream")) => ("stream", by_name(name)),
            Some((name, "snapshot")) => ("snapshot", by_name(name)),
            Some((name, "clip")) => ("clip", by_name(name)),
            _ => return Endpoint::NotFound,
        },
    };
    match (kind, hub) {
        ("stream", Some(h)) => Endpoint::Stream(h),
        ("clip", Some(h)) => Endpoint::Clip(h),
        (_, Some(h)) => Endpoint::Snapshot(h),
        (_, None) => Endpoint::NoStream(path.to_owned()),
    }
}

/// Whether `req` asks for a stream (which the client limits count).
pub(super) fn is_stream(req: &Request, ctx: &HttpContext) -> bool {
    matches!(resolve(req, ctx), Endpoint::Stream(_))
}

/// Answers an `OPTIONS` request that needs no credentials (a CORS preflight,
/// `OPTIONS *`) without looking at its path: the answer is the same for
/// every path, known or not.
pub async fn options<S>(io: &mut S, req: &Request, ctx: &HttpContext) -> bool
where
    S: Transport,
{
    let keep_alive = req.keep_alive() && !req.has_body();
    let response = cors::preflight(
        Response::empty(204).header("Allow", ALLOW),
        req,
        &ctx.options,
    );
    match response
        .write(io, req.minor_version, keep_alive, false)
        .await
    {
        Ok(_) => keep_alive,
        Err(e) => {
            debug!("write error: {e}");
            false
        }
    }
}

/// Answers one request; returns whether the connection may serve another.
pub async fn handle<S>(
    io: &mut S,
    req: &Request,
    ctx: &HttpContext,
    cancel: &CancellationToken,
) -> bool
where
    S: Transport,
{
    // A body would have to be read and skipped; no endpoint takes one, so
    // answer and close instead.
    let keep_alive = req.keep_alive() && !req.has_body();
    let endpoint = resolve(req, ctx);
    let head_only = req.method == "HEAD";
    let response = match (req.method.as_str(), endpoint) {
        (_, Endpoint::NotFound) => Response::text(404, "not found"),
        (_, Endpoint::NoStream(path)) => Response::text(404, &format!("no stream at {path}")),
        ("OPTIONS", _) => cors::preflight(
            Response::empty(204).header("Allow", ALLOW),
            req,
            &ctx.options,
        ),
        ("GET" | "HEAD", Endpoint::Stream(hub)) => {
            match rendition::pick(req, ctx, &hub, true, cancel).await {
                Err(refusal) => refusal,
                Ok(served) => {
                    let batched =
                        ctx.options.zero_copy && ctx.options.batch_sends && io.tcp().is_some();
                    let fanout = batched.then(|| served.fanout(ctx, cancel)).flatten();
                    let hub = served.hub();
                    return stream::serve(io, req, hub, &ctx.options, fanout, cancel, head_only)
                        .await
                        && keep_alive;
                }
            }
        }
        ("GET" | "HEAD", Endpoint::Snapshot(hub)) => {
            if let Some(past) = rendition::past_snapshot(req, ctx, &hub).await {
                past
            } else {
                match rendition::pick(req, ctx, &hub, false, cancel).await {
                    Err(refusal) => refusal,
                    Ok(served) => snapshot::respond(req, served.hub(), &ctx.options, cancel).await,
                }
            }
        }
        ("GET" | "HEAD", Endpoint::Clip(hub)) => {
            match clip::serve(io, req, &hub, &ctx.options, cancel, head_only).await {
                Ok(reusable) => return reusable && keep_alive,
                Err(response) => response,
            }
        }
        ("GET" | "HEAD", Endpoint::Status) => status::respond(ctx),
        ("GET" | "HEAD", Endpoint::Metrics) => metrics::respond(ctx),
        ("GET" | "HEAD", Endpoint::Index) => index::respond(ctx),
        _ => Response::text(405, "method not allowed").header("Allow", ALLOW),
    };
    // Every answer carries the CORS headers (a preflight has them already).
    let response = if req.method == "OPTIONS" {
        response
    } else {
        cors::decorate(response, &ctx.options)
    };
    match response
        .write(io, req.minor_version, keep_alive, head_only)
        .await
    {
        Ok(_) => keep_alive,
        Err(e) => {
            debug!("write error: {e}");
            false
        }
    }
}
