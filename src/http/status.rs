//! `/status`: the server's and every stream's state as JSON.

use super::HttpContext;
use super::response::Response;
use crate::hub::StreamStatus;
use serde::Serialize;

#[derive(Serialize)]
struct Status {
    version: &'static str,
    /// The JPEG library this build encodes with.
    encoder: &'static str,
    uptime_s: f64,
    streams: Vec<StreamStatus>,
}

pub fn respond(ctx: &HttpContext) -> Response {
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        encoder: crate::encode::BACKEND,
        uptime_s: (ctx.started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        streams: ctx.streams.iter().map(|h| h.status()).collect(),
    };
    match serde_json::to_vec_pretty(&status) {
        Ok(body) => Response::new(200, "application/json", body).no_cache(),
        Err(e) => Response::text(500, &format!("cannot encode status: {e}")),
    }
}
