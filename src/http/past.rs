//! A stream's past (`--history`): `/snapshot?at=UNIX_TIME` and
//! `?ago=SECONDS`, and the answers every history endpoint shares for a
//! stream without history and for a moment outside it.

use super::request::Request;
use super::response::Response;
use super::snapshot;
use crate::frame::{Frame, unix_timestamp};
use crate::history::{FrameStore, parse_ago, parse_moment};
use crate::hub::FrameHub;
use std::sync::Arc;
use std::time::SystemTime;

/// Whether `req` asks for a snapshot from the past.
pub fn wants_past(req: &Request) -> bool {
    req.query("at").is_some() || req.query("ago").is_some()
}

/// The frame captured at the moment asked for, or just before it.
pub fn snapshot(req: &Request, hub: &FrameHub) -> Response {
    match frame(req, hub) {
        Ok(frame) => snapshot::image(hub, &frame),
        Err(refusal) => refusal,
    }
}

/// The past frame `req` asks for (`at=` or `ago=`), or the answer saying
/// why there is none.
pub fn frame(req: &Request, hub: &FrameHub) -> Result<Arc<Frame>, Response> {
    let Some(store) = hub.history() else {
        return Err(no_history(hub));
    };
    let now = SystemTime::now();
    let at = match (req.query("at"), req.query("ago")) {
        (Some(at), None) => parse_moment(at, now),
        (None, Some(ago)) => parse_ago(ago, now),
        _ => Err("give at or ago, not both".to_owned()),
    };
    let at = match at {
        Ok(at) => at,
        Err(why) => return Err(Response::text(400, &why)),
    };
    match store.at_or_before(at).filter(|_| at <= now) {
        Some(frame) => Ok(frame),
        None => Err(out_of_range(hub, store.as_ref(), at)),
    }
}

/// 404: the stream keeps no frames of the past.
pub fn no_history(hub: &FrameHub) -> Response {
    Response::text(
        404,
        &format!(
            "stream {} keeps no history (see --history and the history key)",
            hub.name()
        ),
    )
}

/// 404 for `at`, outside what `store` holds: says what it holds, in the
/// body and in `X-History-Oldest` / `X-History-Newest` (Unix times).
pub fn out_of_range(hub: &FrameHub, store: &dyn FrameStore, at: SystemTime) -> Response {
    let asked = unix_timestamp(at);
    match store.span() {
        Some(span) => Response::text(
            404,
            &format!(
                "stream {}: no frame at {asked}; the history holds frames {}",
                hub.name(),
                span.describe()
            ),
        )
        .header("X-History-Oldest", unix_timestamp(span.oldest))
        .header("X-History-Newest", unix_timestamp(span.newest)),
        None => Response::text(
            404,
            &format!(
                "stream {}: no frame at {asked}; the history holds no frames yet",
                hub.name()
            ),
        ),
    }
}
