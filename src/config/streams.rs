//! Streams: `--source` items and `[[stream]]` tables into named
//! `StreamConfig`s (unique, URL-safe names; unnamed ones after their kind),
//! with the per-stream keys of the file.

use super::file::{ConfigFile, FileStream, history, history_mb, quality};
use super::{ConfigError, StreamConfig};
use crate::nats::BusAddress;
use crate::rendition::{DEFAULT_MAX_RENDITIONS, NamedRendition};
use crate::source::tls_trust::TlsTrust;
use crate::source::{SourceSpec, WantedFormat, redact_credentials};

impl ConfigFile {
    /// The file's `[[stream]]` tables.
    pub(super) fn streams(&self) -> Result<Vec<StreamConfig>, ConfigError> {
        let mut streams = Vec::new();
        for entry in &self.settings.stream {
            let src = &entry.source;
            let mut source = self.value("source", src, |spec| {
                spec.parse::<SourceSpec>()
                    .map_err(|e| redact_credentials(&e.to_string()))
            })?;
            if let Some(fps) = &entry.fps {
                let rate = *fps.get_ref();
                if let Some(in_spec) = explicit_rate(src.get_ref()) {
                    // Two rates for one stream: which one was meant is a
                    // guess either way, so ask.
                    return self.error(
                        fps.span(),
                        format_args!(
                            "'fps = {rate}' and the '@{in_spec}' in source both set the frame rate; keep one"
                        ),
                    );
                }
                self.value("fps", fps, |rate| match rate {
                    r if *r > 0.0 && *r <= 240.0 => Ok(()),
                    r => Err(format!("{r} (expected a number above 0, at most 240)")),
                })?;
                match &mut source {
                    SourceSpec::Pattern(p) => p.fps = rate,
                    SourceSpec::Dir(d) => d.fps = rate,
                    SourceSpec::Snapshot(snap) => snap.fps = rate,
                    SourceSpec::V4l2(v) => v.fps = Some(rate),
                    other => {
                        return self.error(
                            fps.span(),
                            format_args!("'fps' does not apply to {} sources", other.kind()),
                        );
                    }
                }
            }
            self.apply_tls_trust(entry, &mut source)?;
            if let Some(format) = &entry.format {
                let SourceSpec::V4l2(v) = &mut source else {
                    return self.error(
                        format.span(),
                        format_args!("'format' does not apply to {} sources", source.kind()),
                    );
                };
                v.format = Some(self.value("format", format, |f| {
                    WantedFormat::parse(f)
                        .ok_or_else(|| format!("'{f}' (expected {})", WantedFormat::NAMES))
                })?);
            }
            let quality = self.optional("quality", &entry.quality, quality)?;
            let name = entry.name.as_ref();
            if let Err(e) = add_stream(
                &mut streams,
                name.map(|n| n.get_ref().as_str()),
                source,
                quality,
            ) {
                let span = name.map_or_else(|| src.span(), |n| n.span());
                return self.error(span, e);
            }
            let publish = self.optional("publish", &entry.publish, |url| {
                BusAddress::parse(url).map_err(|e| e.to_string())
            })?;
            if let Some(added) = streams.last_mut() {
                added.history = self.optional("history", &entry.history, history)?;
                added.history_max_mb =
                    self.optional("history_max_mb", &entry.history_max_mb, history_mb)?;
                added.publish = publish;
                self.apply_renditions(entry, added)?;
            }
        }
        Ok(streams)
    }

    /// A stream's `max_renditions` and `[[stream.rendition]]` tables.
    fn apply_renditions(
        &self,
        entry: &FileStream,
        stream: &mut StreamConfig,
    ) -> Result<(), ConfigError> {
        if let Some(v) = &entry.max_renditions {
            stream.max_renditions =
                self.value("max_renditions", v, |n| match usize::try_from(*n) {
                    Ok(n) if n <= 64 => Ok(n),
                    _ => Err(format!("{n} (expected 0 to 64)")),
                })?;
        }
        for r in &entry.rendition {
            let name = r.name.get_ref();
            if let Err(e) = check_name(name) {
                return self.error(r.name.span(), e.replace("stream name", "rendition name"));
            }
            if stream.renditions.iter().any(|x| x.name == *name) {
                return self.error(
                    r.name.span(),
                    format_args!(
                        "two renditions of stream '{}' are named '{name}'",
                        stream.name
                    ),
                );
            }
            let side = |n: &i64| match u16::try_from(*n) {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!("{n} (expected 1 to 65535 pixels)")),
            };
            let width = self.optional("width", &r.width, side)?;
            let height = self.optional("height", &r.height, side)?;
            let quality = self.optional("quality", &r.quality, quality)?;
            if width.is_none() && height.is_none() && quality.is_none() {
                return self.error(
                    r.name.span(),
                    format_args!("rendition '{name}' needs a width, a height or a quality"),
                );
            }
            stream.renditions.push(NamedRendition {
                name: name.clone(),
                width,
                height,
                quality,
            });
        }
        Ok(())
    }

    /// A stream's `tls_ca` or `tls_pin`, for sources that fetch over HTTPS.
    fn apply_tls_trust(
        &self,
        entry: &FileStream,
        source: &mut SourceSpec,
    ) -> Result<(), ConfigError> {
        let (key, value) = match (&entry.tls_ca, &entry.tls_pin) {
            (None, None) => return Ok(()),
            (Some(_), Some(pin)) => {
                return self.error(pin.span(), "give tls_ca or tls_pin, not both");
            }
            (Some(ca), None) => ("tls_ca", ca),
            (None, Some(pin)) => ("tls_pin", pin),
        };
        let trust = self.value(key, value, |v| {
            if key == "tls_ca" {
                TlsTrust::ca_file(v)
            } else {
                TlsTrust::pin(v)
            }
        })?;
        let (slot, https) = match source {
            SourceSpec::Relay(r) => (&mut r.tls, r.url.tls),
            SourceSpec::Snapshot(s) => (&mut s.tls, s.url.tls),
            other => {
                let kind = other.kind();
                return self.error(
                    value.span(),
                    format_args!("'{key}' applies to https:// relays only, not {kind} sources"),
                );
            }
        };
        if !https {
            return self.error(
                value.span(),
                format_args!("'{key}' needs an https:// URL in source"),
            );
        }
        *slot = trust;
        Ok(())
    }
}

/// The `@FPS` a source spec ends with, when it has one of its own (as in
/// `dir:/x@5` or `pattern:640x480@30`).
fn explicit_rate(spec: &str) -> Option<&str> {
    let (head, rate) = spec.rsplit_once('@')?;
    rate.parse::<f64>().ok()?;
    // `snapshot:http://user:pass@host` has an `@` that is no rate: the part
    // before it must be a valid spec on its own.
    head.parse::<SourceSpec>().ok()?;
    Some(rate)
}

/// `[NAME=]SPEC` items into named streams; names must be unique and URL-safe.
pub(super) fn parse_streams(items: &[String]) -> Result<Vec<StreamConfig>, String> {
    let mut streams: Vec<StreamConfig> = Vec::new();
    for item in items {
        let (name, spec) = match item.split_once('=') {
            Some((name, spec)) if !name.contains(':') => (Some(name), spec),
            _ => (None, item.as_str()),
        };
        let source: SourceSpec = spec
            .parse()
            .map_err(|e| redact_credentials(&format!("invalid --source '{item}': {e}")))?;
        add_stream(&mut streams, name, source, None)?;
    }
    Ok(streams)
}

/// Adds a stream named `name`, or after its kind when unnamed.
fn add_stream(
    streams: &mut Vec<StreamConfig>,
    name: Option<&str>,
    source: SourceSpec,
    quality: Option<u8>,
) -> Result<(), String> {
    let name = match name {
        Some(n) => {
            check_name(n)?;
            n.to_owned()
        }
        None => unique_name(source.kind(), streams),
    };
    if streams.iter().any(|s| s.name == name) {
        return Err(format!("two streams are named '{name}'"));
    }
    streams.push(StreamConfig {
        name,
        source,
        quality,
        history: None,
        history_max_mb: None,
        renditions: Vec::new(),
        max_renditions: DEFAULT_MAX_RENDITIONS,
        publish: None,
    });
    Ok(())
}

fn check_name(n: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    if n.is_empty() || n.len() > 64 || n.starts_with('.') || !n.chars().all(ok_char) {
        return Err(format!(
            "invalid stream name '{n}': use 1-64 letters, digits, '_', '-' or '.'"
        ));
    }
    Ok(())
}

/// `kind`, or `kind2`, `kind3`... when taken.
fn unique_name(kind: &str, streams: &[StreamConfig]) -> String {
    let taken = |n: &str| streams.iter().any(|s| s.name == n);
    if !taken(kind) {
        return kind.to_owned();
    }
    (2..)
        .map(|i| format!("{kind}{i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| kind.to_owned())
}

/// Stops at start-up on a credentials or certificate file that a `nats://`
/// source or `publish` names and that cannot be read.
pub(super) fn check_bus_files(streams: &[StreamConfig]) -> Result<(), String> {
    for s in streams {
        let source = match &s.source {
            SourceSpec::Nats(bus) => Some(bus),
            _ => None,
        };
        for bus in source.into_iter().chain(&s.publish) {
            bus.check_files()
                .map_err(|e| format!("stream '{}': {bus}: {e}", s.name))?;
        }
    }
    Ok(())
}
