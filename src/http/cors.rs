//! CORS (`--allow-origin`): the `Access-Control-*` headers that let pages on
//! other origins use the streams from scripts (fetch a snapshot, read
//! `/status`, draw frames on a canvas). Plain `<img>` tags need none of this.

use super::HttpOptions;
use super::request::Request;
use super::response::{Response, push_header};

/// Methods a preflight may ask for.
const METHODS: &str = "GET, HEAD, OPTIONS";
/// Request headers allowed when the preflight does not list any.
const DEFAULT_HEADERS: &str = "Authorization, Cache-Control";
/// Response headers a script may read besides the simple ones.
const EXPOSE: &str = "X-Timestamp, Retry-After";

/// Adds the CORS headers to `resp` when `--allow-origin` is set.
pub fn decorate(resp: Response, options: &HttpOptions) -> Response {
    match &options.allow_origin {
        Some(origin) => resp
            .header("Access-Control-Allow-Origin", origin.clone())
            .header("Access-Control-Expose-Headers", EXPOSE),
        None => resp,
    }
}

/// The same headers for a response head written by hand (`/stream`).
pub fn push(head: &mut String, options: &HttpOptions) {
    if let Some(origin) = &options.allow_origin {
        push_header(head, "Access-Control-Allow-Origin", origin);
        push_header(head, "Access-Control-Expose-Headers", EXPOSE);
    }
}

/// Headers that answer a preflight `OPTIONS` request: the methods, and the
/// request headers it asked for (a list of header names, echoed when it is
/// one) so that e.g. `Authorization` can be sent.
pub fn preflight(resp: Response, req: &Request, options: &HttpOptions) -> Response {
    if options.allow_origin.is_none() {
        return resp;
    }
    let asked = req
        .header("access-control-request-headers")
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.bytes().all(is_header_list_byte));
    let resp = resp
        .header("Access-Control-Allow-Methods", METHODS)
        .header(
            "Access-Control-Allow-Headers",
            asked.unwrap_or(DEFAULT_HEADERS),
        )
        .header("Access-Control-Max-Age", "600");
    decorate(resp, options)
}

/// Bytes of a comma-separated list of header names.
fn is_header_list_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_, ".contains(&b)
}
