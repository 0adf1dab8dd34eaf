//! `/status`: the server's and every stream's state as JSON.

use super::HttpContext;
use super::response::Response;
use crate::hub::StreamStatus;
use crate::rendition::RenditionStatus;
use serde::Serialize;

#[derive(Serialize)]
struct Status {
    version: &'static str,
    /// The JPEG library this build encodes with.
    encoder: &'static str,
    uptime_s: f64,
    streams: Vec<StreamEntry>,
}

/// A stream's state, with its live renditions.
#[derive(Serialize)]
struct StreamEntry {
    #[serde(flatten)]
    stream: StreamStatus,
    /// One entry per live variant.
    renditions: Vec<RenditionStatus>,
    /// Variant frames encoded for this stream since start, all variants.
    rendition_frames_encoded: u64,
    /// Source frames decoded for the variants since start: one per source
    /// frame however many variants re-encode it.
    rendition_source_decodes: u64,
}

pub fn respond(ctx: &HttpContext) -> Response {
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        encoder: crate::encode::BACKEND,
        uptime_s: (ctx.started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        streams: ctx
            .streams
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let (live, _) = ctx.renditions_at(i);
                StreamEntry {
                    stream: h.status(),
                    renditions: live.map(|r| r.status()).unwrap_or_default(),
                    rendition_frames_encoded: live.map_or(0, |r| r.frames_encoded()),
                    rendition_source_decodes: live.map_or(0, |r| r.source_decodes()),
                }
            })
            .collect(),
    };
    match serde_json::to_vec_pretty(&status) {
        Ok(body) => Response::new(200, "application/json", body).no_cache(),
        Err(e) => Response::text(500, &format!("cannot encode status: {e}")),
    }
}
