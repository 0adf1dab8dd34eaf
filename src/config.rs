//! The command line, parsed once into a validated `Config`.

use crate::logging::LogFormat;
use crate::source::SourceSpec;
use clap::Parser;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Validated server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub streams: Vec<StreamConfig>,
    /// JPEG quality for frames the server encodes itself (test pattern,
    /// placeholders).
    pub quality: u8,
    pub snapshot_timeout: Duration,
    pub header_timeout: Duration,
    /// Send stream parts with `sendfile` (zero-copy) rather than `write`.
    pub zero_copy: bool,
    /// SO_SNDBUF of client sockets in bytes (0: the kernel's autotuning).
    pub send_buffer: usize,
    /// How long shutdown waits for open connections and sources to finish.
    pub shutdown_grace: Duration,
    /// Skip frames identical to the previous one (still one a second).
    pub drop_same_frames: bool,
    /// `Access-Control-Allow-Origin` value for every response.
    pub allow_origin: Option<String>,
    /// Pause sources after this long without viewers.
    pub capture_on_demand: Option<Duration>,
    pub log_format: LogFormat,
}

/// One named stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub name: String,
    pub source: SourceSpec,
}

/// Why no `Config` came out of the arguments.
#[derive(Debug)]
pub enum ConfigError {
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
    /// Invalid arguments: print this one line and exit 2.
    Invalid(String),
}

/// mjpegd: stream live video to browsers and players as MJPEG over HTTP.
#[derive(Parser, Debug)]
#[command(name = "mjpegd", version, about, long_about = None)]
struct Cli {
    /// Address to listen on, HOST:PORT or PORT (port 0 picks a free port).
    /// Repeat to listen on several. Anything but loopback exposes the server
    /// to the network.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: Vec<SocketAddr>,

    /// Frame source, [NAME=]SPEC. Repeat for several streams; the first is
    /// served at /stream, each one at /streams/NAME/stream.
    /// SPEC: pattern[:WxH][@FPS] (animated test pattern)
    /// | http[s]://[USER:PASS@]HOST/PATH (relay another MJPEG server)
    /// | snapshot:URL[@FPS] (poll a still image) | v4l2:/dev/videoN[:WxH][@FPS]
    #[arg(long, value_name = "SPEC", default_value = "pattern")]
    source: Vec<String>,

    /// JPEG quality (1-100) of frames mjpegd encodes itself.
    #[arg(long, value_name = "1..100", default_value_t = 80,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,

    /// Seconds /snapshot waits for a frame captured after the request.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    snapshot_timeout: Duration,

    /// Seconds a client has to send its request head (also the keep-alive
    /// idle time).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    header_timeout: Duration,

    /// Kernel send buffer per client, in bytes (0: kernel autotuning). A small
    /// buffer keeps a slow client's picture live: it skips frames instead of
    /// receiving seconds-old ones queued in the kernel.
    #[arg(long, value_name = "BYTES", default_value_t = 131_072)]
    send_buffer: usize,

    /// Do not send a frame identical to the previous one (a still camera, an
    /// unchanged file); the picture is still repeated once a second so
    /// clients keep the connection.
    #[arg(long)]
    drop_same_frames: bool,

    /// Send `Access-Control-Allow-Origin: ORIGIN` (e.g. `*` or
    /// `https://example.com`) with every response and answer CORS preflight
    /// requests, so pages on other origins can fetch snapshots and status.
    #[arg(long, value_name = "ORIGIN", value_parser = parse_origin)]
    allow_origin: Option<String>,

    /// Pause capture when nobody has watched a stream for SECS seconds;
    /// resume when a client connects or asks for a snapshot.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    capture_on_demand: Option<Duration>,

    /// Log line format on stderr (filters: RUST_LOG, e.g. `mjpegd=debug`).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How stream parts reach plain TCP clients: `sendfile` hands the kernel
    /// references to the frame's pages (no copy per client); `write` copies
    /// the shared bytes into each socket.
    #[arg(long, value_name = "METHOD", default_value = "sendfile",
          value_parser = ["sendfile", "write"])]
    send_method: String,
}

impl Config {
    /// Parses and validates `args` (the first item is the program name).
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args).map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                ConfigError::Info(e.to_string())
            }
            _ => ConfigError::Invalid(first_line(&e.to_string())),
        })?;
        let streams = parse_streams(&cli.source).map_err(ConfigError::Invalid)?;
        Ok(Config {
            listen: cli.listen,
            streams,
            quality: cli.quality,
            snapshot_timeout: cli.snapshot_timeout,
            header_timeout: cli.header_timeout,
            send_buffer: cli.send_buffer,
            zero_copy: cli.send_method == "sendfile",
            shutdown_grace: Duration::from_millis(500),
            drop_same_frames: cli.drop_same_frames,
            allow_origin: cli.allow_origin,
            capture_on_demand: cli.capture_on_demand,
            log_format: cli.log_format,
        })
    }
}

/// clap's message without its "error: " prefix and usage block, plus a hint.
fn first_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or("invalid arguments");
    let line = line.strip_prefix("error: ").unwrap_or(line);
    format!("{line} (see --help)")
}

/// `[NAME=]SPEC` items into named streams; names must be unique and URL-safe.
fn parse_streams(items: &[String]) -> Result<Vec<StreamConfig>, String> {
    let mut streams: Vec<StreamConfig> = Vec::new();
    for item in items {
        let (name, spec) = match item.split_once('=') {
            Some((name, spec)) if !name.contains(':') => (Some(name), spec),
            _ => (None, item.as_str()),
        };
        let source: SourceSpec = spec
            .parse()
            .map_err(|e| format!("invalid --source '{item}': {e}"))?;
        let name = match name {
            Some(n) => {
                check_name(n)?;
                n.to_owned()
            }
            None => unique_name(source.kind(), &streams),
        };
        if streams.iter().any(|s| s.name == name) {
            return Err(format!("two streams are named '{name}'"));
        }
        streams.push(StreamConfig { name, source });
    }
    Ok(streams)
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

/// `HOST:PORT`, `[V6]:PORT`, `localhost:PORT` or a bare `PORT` (loopback).
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = s.strip_prefix("localhost:").unwrap_or(s);
    port.parse::<u16>()
        .map(|p| SocketAddr::new(loopback, p))
        .map_err(|_| format!("'{s}' is not HOST:PORT or PORT"))
}

/// A CORS origin: `*`, or a visible-ASCII value that cannot split a header.
fn parse_origin(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "'{s}' is not an origin such as * or https://example.com"
        ));
    }
    Ok(s.to_owned())
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("'{s}' is not a number of seconds above 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::PatternSpec;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(std::iter::once("mjpegd").chain(args.iter().copied()))
    }

    fn invalid(args: &[&str]) -> String {
        match parse(args) {
            Err(ConfigError::Invalid(msg)) => msg,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).expect("defaults are valid");
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().expect("addr")]);
        assert_eq!(c.streams.len(), 1);
        assert_eq!(c.streams[0].name, "pattern");
        assert_eq!(
            c.streams[0].source,
            SourceSpec::Pattern(PatternSpec::default())
        );
        assert_eq!(c.quality, 80);
    }

    #[test]
    fn several_named_streams() {
        let c = parse(&[
            "--source",
            "pattern:320x240@10",
            "--source",
            "cam=pattern",
            "--source",
            "pattern@5",
            "--listen",
            "0",
            "--listen",
            "[::1]:9000",
        ])
        .expect("valid");
        let names: Vec<_> = c.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["pattern", "cam", "pattern2"]);
        assert_eq!(c.listen[0].port(), 0);
        assert_eq!(c.listen[1], "[::1]:9000".parse().expect("addr"));
    }

    #[test]
    fn bad_values_give_one_line() {
        for args in [
            &["--quality", "0"][..],
            &["--quality", "101"],
            &["--listen", "nowhere"],
            &["--source", "bogus:1"],
            &["--source", "a=pattern", "--source", "a=pattern"],
            &["--source", "bad/name=pattern"],
            &["--snapshot-timeout", "-1"],
            &["--allow-origin", "a b"],
            &["--allow-origin", ""],
            &["--capture-on-demand", "0"],
            &["--log-format", "xml"],
            &["--frobnicate"],
        ] {
            let msg = invalid(args);
            assert!(!msg.contains('\n'), "{args:?}: {msg}");
            assert!(!msg.is_empty());
        }
    }

    #[test]
    fn operations_options() {
        let c = parse(&[]).expect("defaults are valid");
        assert!(!c.drop_same_frames);
        assert_eq!(c.allow_origin, None);
        assert_eq!(c.capture_on_demand, None);
        assert_eq!(c.log_format, LogFormat::Text);
        let c = parse(&[
            "--drop-same-frames",
            "--allow-origin",
            "*",
            "--capture-on-demand",
            "2.5",
            "--log-format",
            "json",
        ])
        .expect("valid");
        assert!(c.drop_same_frames);
        assert_eq!(c.allow_origin.as_deref(), Some("*"));
        assert_eq!(c.capture_on_demand, Some(Duration::from_millis(2500)));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn help_lists_options_with_defaults() {
        match parse(&["--help"]) {
            Err(ConfigError::Info(text)) => {
                for opt in ["--listen", "--source", "--quality", "127.0.0.1:8080"] {
                    assert!(text.contains(opt), "help lacks {opt}");
                }
            }
            other => panic!("{other:?}"),
        }
    }
}
