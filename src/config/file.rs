//! The `--config` TOML file: its schema, loading with one-line errors that
//! name file, line and key, and the overlay that lays its settings under the
//! command line's.

use super::cli::{Cli, parse_history, parse_history_mb, parse_origin, parse_secs};
use super::{ConfigError, hints};
use crate::encode::Subsampling;
use crate::listen::{ListenAddr, parse_group, parse_mode};
use crate::logging::LogFormat;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The `--config` file as written: every key optional, unknown keys are
/// errors. Values keep their place in the file for error messages.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSettings {
    /// `"HOST:PORT"`, `PORT`, or a list of them.
    pub(super) listen: Option<Spanned<toml::Value>>,
    pub(super) quality: Option<Spanned<i64>>,
    pub(super) subsampling: Option<Spanned<String>>,
    pub(super) snapshot_timeout: Option<Spanned<f64>>,
    pub(super) resume_timeout: Option<Spanned<f64>>,
    /// Octal mode of unix sockets: `"660"` or `0o660`.
    pub(super) unix_mode: Option<Spanned<toml::Value>>,
    pub(super) unix_group: Option<Spanned<String>>,
    pub(super) header_timeout: Option<Spanned<f64>>,
    pub(super) send_buffer: Option<Spanned<i64>>,
    pub(super) send_method: Option<Spanned<String>>,
    pub(super) drop_same_frames: Option<Spanned<bool>>,
    pub(super) allow_origin: Option<Spanned<String>>,
    /// Seconds without viewers before capture pauses.
    pub(super) capture_on_demand: Option<Spanned<f64>>,
    /// `"text"` or `"json"`.
    pub(super) log_format: Option<Spanned<String>>,
    /// Security: secrets only by file, so the config file holds no secret.
    pub(super) auth_file: Option<Spanned<String>>,
    pub(super) token_secret_file: Option<Spanned<String>>,
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) max_connections_per_ip: Option<Spanned<i64>>,
    pub(super) max_clients: Option<Spanned<i64>>,
    pub(super) max_streams_per_ip: Option<Spanned<i64>>,
    pub(super) send_timeout: Option<Spanned<f64>>,
    /// Seconds of recent frames every stream keeps.
    pub(super) history: Option<Spanned<f64>>,
    pub(super) history_max_mb: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) stream: Vec<FileStream>,
}

/// One `[[stream]]` table.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStream {
    pub(super) name: Option<Spanned<String>>,
    pub(super) source: Spanned<String>,
    /// Frame rate, for the sources that produce frames on a schedule.
    pub(super) fps: Option<Spanned<f64>>,
    /// Pixel format asked of a camera (`MJPEG`, `YUYV`, `NV12`).
    pub(super) format: Option<Spanned<String>>,
    pub(super) quality: Option<Spanned<i64>>,
    /// HTTPS upstreams: a PEM file of the CA that issued the camera's
    /// certificate.
    pub(super) tls_ca: Option<Spanned<String>>,
    /// HTTPS upstreams: the camera's own certificate (a file, or
    /// `sha256:HEX`), trusted whatever signed it.
    pub(super) tls_pin: Option<Spanned<String>>,
    /// Seconds of recent frames this stream keeps (0: none).
    pub(super) history: Option<Spanned<f64>>,
    pub(super) history_max_mb: Option<Spanned<i64>>,
    /// Most ad-hoc renditions live at once.
    pub(super) max_renditions: Option<Spanned<i64>>,
    /// `[[stream.rendition]]` tables.
    #[serde(default)]
    pub(super) rendition: Vec<FileRendition>,
    /// `nats://HOST:4222/SUBJECT`: also send the frames to NATS.
    pub(super) publish: Option<Spanned<String>>,
}

/// One `[[stream.rendition]]` table.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRendition {
    pub(super) name: Spanned<String>,
    pub(super) width: Option<Spanned<i64>>,
    pub(super) height: Option<Spanned<i64>>,
    pub(super) quality: Option<Spanned<i64>>,
}

/// A parsed config file, with its name and text for error messages.
pub(super) struct ConfigFile {
    path: String,
    text: String,
    pub(super) settings: FileSettings,
}

/// Flags that set what a file key sets, besides the flag of the key's own
/// name: a secret or a certificate given on the command line wins whole.
const SAME_SETTING: [(&str, &str); 4] = [
    ("auth_file", "auth"),
    ("token_secret_file", "token_secret"),
    ("tls_cert", "tls_key"),
    ("tls_key", "tls_cert"),
];

impl ConfigFile {
    pub(super) fn load(path: &Path) -> Result<ConfigFile, String> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
        let settings = toml::from_str(&text).map_err(|e| describe_toml_error(&name, &text, &e))?;
        Ok(ConfigFile {
            path: name,
            text,
            settings,
        })
    }

    /// `file:LINE: message` for the value at `span`.
    pub(super) fn error<T>(
        &self,
        span: std::ops::Range<usize>,
        msg: impl std::fmt::Display,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid(format!(
            "{}:{}: {msg}",
            self.path,
            line_of(&self.text, span.start)
        )))
    }

    /// The value of `key` through `parse`; a value it refuses is
    /// `file:LINE: bad value for 'key': why`.
    pub(super) fn value<V, T>(
        &self,
        key: &str,
        v: &Spanned<V>,
        parse: impl FnOnce(&V) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        parse(v.get_ref())
            .or_else(|e| self.error(v.span(), format_args!("bad value for '{key}': {e}")))
    }

    /// `value` of an optional key.
    pub(super) fn optional<V, T>(
        &self,
        key: &str,
        v: &Option<Spanned<V>>,
        parse: impl FnOnce(&V) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        v.as_ref().map(|v| self.value(key, v, parse)).transpose()
    }

    /// Lays the file's global settings under the command line: every value
    /// in the file is checked, and lands in `cli` unless a flag that sets the
    /// same thing was given there.
    pub(super) fn overlay(
        &self,
        cli: &mut Cli,
        given: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let s = &self.settings;
        let o = Overlay { file: self, given };
        let path = |p: &String| Ok(Some(PathBuf::from(p)));
        let count = |n: &i64| usize::try_from(*n).map_err(|_| "expected 0 or more".to_owned());
        let sec = &mut cli.security;
        o.set("auth_file", &s.auth_file, &mut sec.auth_file, path)?;
        o.set(
            "token_secret_file",
            &s.token_secret_file,
            &mut sec.token_secret_file,
            path,
        )?;
        o.set("tls_cert", &s.tls_cert, &mut sec.tls_cert, path)?;
        o.set("tls_key", &s.tls_key, &mut sec.tls_key, path)?;
        o.set(
            "max_connections",
            &s.max_connections,
            &mut sec.max_connections,
            count,
        )?;
        o.set(
            "max_connections_per_ip",
            &s.max_connections_per_ip,
            &mut sec.max_connections_per_ip,
            count,
        )?;
        o.set("max_clients", &s.max_clients, &mut sec.max_clients, count)?;
        o.set(
            "max_streams_per_ip",
            &s.max_streams_per_ip,
            &mut sec.max_streams_per_ip,
            count,
        )?;
        o.set("send_timeout", &s.send_timeout, &mut sec.send_timeout, secs)?;
        o.set("listen", &s.listen, &mut cli.listen, listen)?;
        o.set("quality", &s.quality, &mut cli.quality, quality)?;
        o.set("subsampling", &s.subsampling, &mut cli.subsampling, |v| {
            Subsampling::parse(v).ok_or_else(|| format!("{v:?} (expected {})", Subsampling::NAMES))
        })?;
        let timeouts = [
            (
                "snapshot_timeout",
                &s.snapshot_timeout,
                &mut cli.snapshot_timeout,
            ),
            ("resume_timeout", &s.resume_timeout, &mut cli.resume_timeout),
            ("header_timeout", &s.header_timeout, &mut cli.header_timeout),
        ];
        for (key, value, slot) in timeouts {
            o.set(key, value, slot, secs)?;
        }
        o.set("unix_mode", &s.unix_mode, &mut cli.unix_mode, |v| {
            unix_mode(v).map(Some)
        })?;
        o.set("unix_group", &s.unix_group, &mut cli.unix_group, |v| {
            parse_group(v).map(Some)
        })?;
        o.set("send_buffer", &s.send_buffer, &mut cli.send_buffer, |n| {
            usize::try_from(*n).map_err(|_| "expected bytes, 0 or more".to_owned())
        })?;
        o.set(
            "send_method",
            &s.send_method,
            &mut cli.send_method,
            |m| match m.as_str() {
                "sendfile" | "sendfile-per-client" | "write" => Ok(m.clone()),
                _ => Err(format!(
                    "'{m}' (expected sendfile, sendfile-per-client or write)"
                )),
            },
        )?;
        o.set(
            "drop_same_frames",
            &s.drop_same_frames,
            &mut cli.drop_same_frames,
            |on| Ok(*on),
        )?;
        o.set(
            "allow_origin",
            &s.allow_origin,
            &mut cli.allow_origin,
            |v| parse_origin(v).map(Some),
        )?;
        o.set(
            "capture_on_demand",
            &s.capture_on_demand,
            &mut cli.capture_on_demand,
            |v| secs(v).map(Some),
        )?;
        o.set("history", &s.history, &mut cli.history, |v| {
            history(v).map(Some)
        })?;
        o.set(
            "history_max_mb",
            &s.history_max_mb,
            &mut cli.history_max_mb,
            history_mb,
        )?;
        o.set(
            "log_format",
            &s.log_format,
            &mut cli.log_format,
            |v| match v.as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(format!("'{v}' (expected text or json)")),
            },
        )
    }
}

/// The file under the command line: a file value counts only where no flag
/// set the same thing.
struct Overlay<'a> {
    file: &'a ConfigFile,
    given: &'a dyn Fn(&str) -> bool,
}

impl Overlay<'_> {
    /// Checks `key`'s value, if the file has one, and puts it in `slot`
    /// unless the command line gave the setting.
    fn set<V, T>(
        &self,
        key: &str,
        value: &Option<Spanned<V>>,
        slot: &mut T,
        parse: impl FnOnce(&V) -> Result<T, String>,
    ) -> Result<(), ConfigError> {
        let Some(value) = self.file.optional(key, value, parse)? else {
            return Ok(());
        };
        let flags = SAME_SETTING.iter().filter(|&&(k, _)| k == key);
        let given = (self.given)(key) || flags.into_iter().any(|&(_, flag)| (self.given)(flag));
        if !given {
            *slot = value;
        }
        Ok(())
    }
}

/// `listen`: `"HOST:PORT"`, a port, or a list of them.
fn listen(v: &toml::Value) -> Result<Vec<ListenAddr>, String> {
    let one = |item: &toml::Value| match item {
        toml::Value::String(s) => s.parse::<ListenAddr>(),
        toml::Value::Integer(port) => u16::try_from(*port)
            .map(|p| ListenAddr::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)))
            .map_err(|_| format!("{port} is not a port")),
        _ => Err("expected \"HOST:PORT\", a port, or a list of them".to_owned()),
    };
    match v {
        toml::Value::Array(items) if items.is_empty() => Err("the list is empty".to_owned()),
        toml::Value::Array(items) => items.iter().map(one).collect(),
        item => one(item).map(|a| vec![a]),
    }
}

/// `unix_mode`: `"660"` or `0o660`.
fn unix_mode(v: &toml::Value) -> Result<u32, String> {
    match v {
        toml::Value::String(text) => parse_mode(text),
        toml::Value::Integer(n) => u32::try_from(*n)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("{n} is not a file mode such as 0o660")),
        _ => Err("expected an octal mode such as \"660\"".to_owned()),
    }
}

/// A JPEG quality, 1 to 100.
pub(super) fn quality(v: &i64) -> Result<u8, String> {
    match u8::try_from(*v) {
        Ok(q @ 1..=100) => Ok(q),
        _ => Err(format!("{v} (expected 1 to 100)")),
    }
}

/// Seconds, as the flags take them.
fn secs(v: &f64) -> Result<Duration, String> {
    parse_secs(&v.to_string())
}

/// A `history` span in seconds, 0 for none.
pub(super) fn history(v: &f64) -> Result<Duration, String> {
    parse_history(&v.to_string())
}

/// A `history_max_mb` budget.
pub(super) fn history_mb(v: &i64) -> Result<usize, String> {
    parse_history_mb(&v.to_string())
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// One line out of a TOML or serde error: `FILE:LINE: unknown key 'fsp' in
/// [[stream]]`, `FILE:LINE: bad value for 'quality': ...`.
fn describe_toml_error(file: &str, text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map_or(0, |s| s.start);
    let line_no = line_of(text, at);
    let msg = e.message().lines().next().unwrap_or("invalid TOML").trim();
    // The table the error is in: the nearest header line above it, or on
    // its line (a missing key points at the table's header).
    let line_end = text
        .get(at..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| at + i);
    let table = text
        .get(..line_end)
        .unwrap_or(text)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.split('#').next().unwrap_or(l).trim().to_owned());
    let place = table
        .as_ref()
        .map_or_else(|| "at the top level".to_owned(), |t| format!("in {t}"));
    // The key on the error's line, for value errors.
    let key = text
        .lines()
        .nth(line_no - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().trim_matches('"').to_owned());
    let backticked = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let what = if let Some(k) = backticked("unknown field `") {
        match hints::unknown_key(&k, e.message()) {
            Some(hint) => format!("unknown key '{k}' {place}; {hint}"),
            None => format!("unknown key '{k}' {place}"),
        }
    } else if msg.contains("expected a sequence")
        && table
            .as_deref()
            .is_some_and(|t| t.trim_matches(['[', ']']) == "stream")
    {
        "[stream] must be [[stream]] (double brackets: one table per stream)".to_owned()
    } else if let Some(k) = backticked("missing field `") {
        format!("missing key '{k}' {place}")
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        match key {
            Some(k) => format!("bad value for '{k}': {msg}"),
            None => msg.to_owned(),
        }
    } else {
        msg.to_owned()
    };
    format!("{file}:{line_no}: {what}")
}
