//! `/`: an HTML page with every stream live in an `<img>`, its links and its
//! numbers (refreshed from `/status` by a few lines of script).

use super::HttpContext;
use super::response::Response;
use crate::rendition::RenditionSettings;

const PAGE: &str = include_str!("index.html");

pub fn respond(ctx: &HttpContext) -> Response {
    let mut cards = String::new();
    for (i, hub) in ctx.streams.iter().enumerate() {
        // Stream names are restricted to [A-Za-z0-9_.-] by the configuration,
        // so they need no escaping in HTML or URLs. Links are relative, so the
        // page also works behind a reverse proxy under a sub-path.
        let name = hub.name();
        cards.push_str(&format!(
            r#"<div class="stream" data-stream="{name}">
<h2>{name} <span class="state" id="state-{name}"></span></h2>
<div class="message" id="message-{name}" hidden></div>
<img src="streams/{name}/stream" alt="live stream {name}" data-src="streams/{name}/stream">
<div class="stats" id="stats-{name}"></div>
<div class="stats"><a href="streams/{name}/stream">stream</a> &middot; <a href="streams/{name}/snapshot">snapshot</a></div>
<div class="history" id="history-{name}" data-stream="{name}" hidden><label>last minute <input type="range" min="-60" max="0" step="0.5" value="0"></label> <span class="when">live</span> &middot; <a class="clip" href="streams/{name}/clip?from=-60" download>save clip</a><img class="past" alt="{name} in the past" hidden></div>
{renditions}</div>
"#,
            renditions = rendition_links(name, ctx.renditions_at(i).1)
        ));
    }
    let page = PAGE.replace("{{STREAMS}}", &cards);
    Response::new(200, "text/html; charset=utf-8", page).no_cache()
}

/// A line linking each configured rendition of stream `name` (rendition
/// names are restricted like stream names, so they need no escaping).
fn rendition_links(name: &str, settings: Option<&RenditionSettings>) -> String {
    let named = settings.map(|s| s.named.as_slice()).unwrap_or_default();
    if named.is_empty() {
        return String::new();
    }
    let links: Vec<String> = named
        .iter()
        .map(|r| {
            let size = match (r.width, r.height) {
                (Some(w), Some(h)) => format!("{w}x{h}"),
                (Some(w), None) => format!("{w} wide"),
                (None, Some(h)) => format!("{h} high"),
                (None, None) => "full size".to_owned(),
            };
            let q = r.quality.map(|q| format!(", quality {q}")).unwrap_or_default();
            let r = &r.name;
            format!(
                r#"{r} ({size}{q}): <a href="streams/{name}/stream?rendition={r}">stream</a> <a href="streams/{name}/snapshot?rendition={r}">snapshot</a>"#
            )
        })
        .collect();
    format!(
        "<div class=\"stats renditions\">renditions: {}</div>\n",
        links.join(" &middot; ")
    )
}
