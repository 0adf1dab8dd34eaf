//! `?width=`, `?height=`, `?quality=` and `?rendition=NAME` on `/stream`,
//! `/snapshot` and the mjpg-streamer URLs: which hub a request is served
//! from. A variant's hub is served exactly like a stream's, through send
//! loops of its own, while the request holds its lease.

use super::fanout::Fanout;
use super::request::Request;
use super::response::Response;
use super::{HttpContext, stream};
use crate::hub::FrameHub;
use crate::rendition::{Choice, Lease, Wanted};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The hub that serves a request, and the lease that keeps it running.
pub(super) struct Served {
    hub: Arc<FrameHub>,
    lease: Option<Lease>,
}

impl Served {
    pub(super) fn hub(&self) -> &Arc<FrameHub> {
        &self.hub
    }

    /// The send loops of the served hub, started on first use.
    pub(super) fn fanout(
        &self,
        ctx: &HttpContext,
        shutdown: &CancellationToken,
    ) -> Option<Arc<Fanout>> {
        match &self.lease {
            None => ctx.fanout(&self.hub, shutdown),
            Some(lease) => lease
                .sender(|| {
                    Arc::new(Fanout::start_or_warn(
                        lease.hub().clone(),
                        &ctx.options,
                        &ctx.tasks,
                        lease.stopped().clone(),
                    ))
                })
                .and_then(|fanout| (*fanout).clone()),
        }
    }
}

/// `/snapshot?at=` (or `ago=`) with a rendition: that one past frame
/// encoded once at the size and quality asked for (snapped as a live
/// variant would be). `None`: the request is not one of these.
pub(super) async fn past_snapshot(
    req: &Request,
    ctx: &HttpContext,
    hub: &Arc<FrameHub>,
) -> Option<Response> {
    if !super::past::wants_past(req) {
        return None;
    }
    let wanted = match Wanted::from_query(|k| req.query(k)) {
        Ok(None) => return None,
        Ok(Some(w)) => w,
        Err(why) => return Some(Response::text(400, &why)),
    };
    let renditions = ctx.renditions(hub)?;
    let frame = match super::past::frame(req, hub) {
        Ok(frame) => frame,
        Err(refusal) => return Some(refusal),
    };
    Some(match renditions.render_past(&wanted, frame.clone()).await {
        Ok(None) => super::snapshot::image(hub, &frame),
        Ok(Some(jpeg)) => super::snapshot::image_of(hub, &frame, jpeg.into()),
        Err((code, why)) => Response::text(code, &why),
    })
}

/// The hub for `req` on stream `hub`: the stream's own when the request
/// asks for no rendition (or the one it asks for is the source), else a
/// live variant's. `Err`: the answer to a bad request.
pub(super) async fn pick(
    req: &Request,
    ctx: &HttpContext,
    hub: &Arc<FrameHub>,
    is_stream: bool,
    cancel: &CancellationToken,
) -> Result<Served, Response> {
    let source = || Served {
        hub: hub.clone(),
        lease: None,
    };
    let wanted = match Wanted::from_query(|k| req.query(k)) {
        Ok(None) => return Ok(source()),
        Ok(Some(w)) => w,
        Err(why) => return Err(Response::text(400, &why)),
    };
    if is_stream && req.query("from").is_some() {
        return Err(Response::text(
            400,
            "a replay (from=) is served at the source's size only: \
             drop width/height/quality/rendition, or use /snapshot?at= with them",
        ));
    }
    let cap = if is_stream {
        stream::rate_cap(req).map_err(|why| Response::text(400, &why))?
    } else {
        None
    };
    let Some(renditions) = ctx.renditions(hub) else {
        return Ok(source());
    };
    let wait = ctx.options.snapshot_timeout.max(ctx.options.resume_timeout);
    match renditions.choose(&wanted, cap, wait, cancel).await {
        Ok(Choice::Source) => Ok(source()),
        Ok(Choice::Variant(lease)) => Ok(Served {
            hub: lease.hub().clone(),
            lease: Some(lease),
        }),
        Err((code, why)) => {
            let resp = Response::text(code, &why);
            Err(if code == 503 {
                resp.header("Retry-After", "1")
            } else {
                resp
            })
        }
    }
}
