//! The command line, parsed once into a validated `Config`.

mod security;

pub use security::{AUTH_ENV, TOKEN_SECRET_ENV, token_command};

use crate::http::auth::Access;
use crate::http::limits::Limits;
use crate::listen::ListenAddr;
use crate::source::SourceSpec;
use crate::tls::TlsSettings;
use clap::Parser;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Unix socket paths to listen on (besides `listen`).
    pub listen_unix: Vec<PathBuf>,
    /// Basic credentials and token key (default: open).
    pub access: Access,
    /// HTTPS on the TCP listeners, when given.
    pub tls: Option<TlsSettings>,
    pub limits: Limits,
    /// A client that takes no data for this long is dropped.
    pub send_timeout: Duration,
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
    /// Address to listen on, HOST:PORT, PORT (port 0 picks a free port) or
    /// unix:PATH (a unix socket, for a reverse proxy). Repeat to listen on
    /// several. Anything but loopback exposes the server to the network.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: Vec<ListenAddr>,

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

    #[command(flatten)]
    security: security::SecurityArgs,
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
        Config::from_args_with_env(args, &security::process_env)
    }

    /// `from_args` with secrets' environment variables looked up in `env`.
    fn from_args_with_env<I, T>(args: I, env: security::Env<'_>) -> Result<Config, ConfigError>
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
        let security = cli.security.resolve(env).map_err(ConfigError::Invalid)?;
        let (mut listen, mut listen_unix) = (Vec::new(), Vec::new());
        for addr in cli.listen {
            match addr {
                ListenAddr::Tcp(a) => listen.push(a),
                ListenAddr::Unix(p) => listen_unix.push(p),
            }
        }
        Ok(Config {
            listen,
            streams,
            quality: cli.quality,
            snapshot_timeout: cli.snapshot_timeout,
            header_timeout: cli.header_timeout,
            send_buffer: cli.send_buffer,
            zero_copy: cli.send_method == "sendfile",
            shutdown_grace: Duration::from_millis(500),
            listen_unix,
            access: security.access,
            tls: security.tls,
            limits: security.limits,
            send_timeout: security.send_timeout,
        })
    }
}

/// clap's message without its "error: " prefix and usage block, plus a hint.
fn first_line(msg: &str) -> String {
    let mut lines = msg.lines();
    let line = lines.next().unwrap_or("invalid arguments");
    let mut line = line.strip_prefix("error: ").unwrap_or(line).to_owned();
    // "...were not provided:" lists the arguments on indented lines.
    if line.ends_with(':') {
        for item in lines.take_while(|l| l.starts_with("  ")) {
            line.push(' ');
            line.push_str(item.trim());
        }
    }
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
            &["--frobnicate"],
        ] {
            let msg = invalid(args);
            assert!(!msg.contains('\n'), "{args:?}: {msg}");
            assert!(!msg.is_empty());
        }
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
