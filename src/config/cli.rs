//! The command line as clap parses it: flags, their defaults and help, the
//! subcommands, and the value parsers that flags and config-file keys share.

use super::ConfigError;
use super::hints;
use super::security;
use crate::encode::Subsampling;
use crate::history::DEFAULT_MAX_MB;
use crate::listen::{ListenAddr, parse_group, parse_mode};
use crate::logging::LogFormat;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// mjpegd: stream live video to browsers and players as MJPEG over HTTP.
#[derive(Parser, Debug)]
#[command(
    name = "mjpegd",
    version,
    about,
    long_about = None,
    // `mjpegd token --listen 0` is a mistake, not a server option.
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Commands (without one, mjpegd serves)"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Option<Command>,

    /// Address to listen on, HOST:PORT, PORT (port 0 picks a free port) or
    /// unix:PATH (a unix socket, for a reverse proxy). Repeat to listen on
    /// several. Anything but loopback exposes the server to the network.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(super) listen: Vec<ListenAddr>,

    /// Frame source, [NAME=]SPEC. Repeat for several streams; the first is
    /// served at /stream, each one at /streams/NAME/stream.
    /// SPEC: pattern[:WxH][@FPS] (animated test pattern)
    /// | dir:PATH[@FPS] (the JPEG files of a folder, looped)
    /// | file:PATH (a file another program keeps replacing)
    /// | stdin (MJPEG on standard input)
    /// | exec:COMMAND (MJPEG on the standard output of `sh -c COMMAND`)
    /// | http[s]://[USER:PASS@]HOST/PATH (relay another MJPEG server)
    /// | snapshot:URL[@FPS] (poll a still image)
    /// | v4l2:/dev/videoN[:FORMAT][:WxH][@FPS] (camera; FORMAT: MJPEG, YUYV, NV12, NV12M)
    #[arg(long, value_name = "SPEC", default_value = "pattern")]
    pub(super) source: Vec<String>,

    /// Also send the first stream's frames to NATS, nats://HOST:4222/SUBJECT
    /// (`publish` in a config file's [[stream]]); edges serve them with a
    /// nats:// source.
    #[arg(long, value_name = "URL")]
    pub(super) publish: Option<String>,

    /// TOML file with streams and options (see examples/mjpegd.toml); flags
    /// override its settings, and --source flags replace its streams.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,

    /// JPEG quality (1-100) of frames mjpegd encodes itself.
    #[arg(long, value_name = "1..100", default_value_t = 80,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub(super) quality: u8,

    /// Chroma subsampling of JPEGs encoded from YUYV cameras: 4:2:0 (smaller
    /// frames, less CPU) or 4:2:2 (the camera's chroma kept whole).
    #[arg(long, value_name = "4:2:0|4:2:2", default_value = "4:2:0", value_parser = parse_subsampling)]
    pub(super) subsampling: Subsampling,

    /// Seconds /snapshot waits for a frame captured after the request.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub(super) snapshot_timeout: Duration,

    /// File mode of unix sockets (--listen unix:PATH), in octal: 660 lets
    /// the --unix-group (e.g. the reverse proxy's, www-data) connect.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub(super) unix_mode: Option<u32>,

    /// Group of unix sockets (a name or a number), e.g. www-data for nginx.
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    pub(super) unix_group: Option<u32>,

    /// Seconds /snapshot waits for the first frame of a source resuming
    /// after --capture-on-demand paused it (slow-starting cameras).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub(super) resume_timeout: Duration,

    /// Seconds a client has to send its request head (also the keep-alive
    /// idle time).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub(super) header_timeout: Duration,

    /// Kernel send buffer per client, in bytes (0: kernel autotuning). A small
    /// buffer keeps a slow client's picture live: it skips frames instead of
    /// receiving seconds-old ones queued in the kernel.
    #[arg(long, value_name = "BYTES", default_value_t = 131_072)]
    pub(super) send_buffer: usize,

    /// Do not send a frame identical to the previous one (a still camera, an
    /// unchanged file); the picture is still repeated once a second so
    /// clients keep the connection.
    #[arg(long)]
    pub(super) drop_same_frames: bool,

    /// Send `Access-Control-Allow-Origin: ORIGIN` (e.g. `*` or
    /// `https://example.com`) with every response and answer CORS preflight
    /// requests, so pages on other origins can fetch snapshots and status.
    #[arg(long, value_name = "ORIGIN", value_parser = parse_origin)]
    pub(super) allow_origin: Option<String>,

    /// Pause capture when nobody has watched a stream for SECS seconds;
    /// resume when a client connects or asks for a snapshot.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(super) capture_on_demand: Option<Duration>,

    /// Log line format on stderr (filters: RUST_LOG, e.g. `mjpegd=debug`).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(super) log_format: LogFormat,

    /// How stream parts reach plain TCP clients: `sendfile` hands the kernel
    /// references to the frame's pages (no copy per client); `write` copies
    /// the shared bytes into each socket.
    #[arg(long, value_name = "METHOD", default_value = "sendfile",
          value_parser = ["sendfile", "sendfile-per-client", "write"])]
    pub(super) send_method: String,

    /// Threads serving HTTP clients (0: one per CPU core). Capture and
    /// encoding run on threads of their own.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub(super) workers: u16,

    /// Send loops per stream with `--send-method sendfile` (0: one per HTTP
    /// worker thread); a stream's clients are spread over them, so one
    /// stream with many clients uses every core.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub(super) send_loops: u16,

    /// Keep each stream's last SECS seconds of frames (0: none), for
    /// /snapshot?at=, /stream?from= and /clip.
    #[arg(long, value_name = "SECS", value_parser = parse_history)]
    pub(super) history: Option<Duration>,

    /// Memory budget of each stream's history in MiB; the oldest frames go
    /// first when it is reached.
    #[arg(long, value_name = "MB", default_value_t = DEFAULT_MAX_MB,
          value_parser = parse_history_mb)]
    pub(super) history_max_mb: usize,

    #[command(flatten)]
    pub(super) security: security::SecurityArgs,
}

#[derive(clap::Subcommand, Debug)]
pub(super) enum Command {
    /// Print a ?token= value that admits requests for one path until it
    /// expires (see `mjpegd token --help`)
    Token(security::TokenArgs),
    /// List cameras (V4L2 devices) with their formats, sizes and frame rates
    Devices,
}

pub(super) fn clap_error(e: clap::Error) -> ConfigError {
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp
        | clap::error::ErrorKind::DisplayVersion
        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ConfigError::Info(e.to_string())
        }
        _ => ConfigError::Invalid(first_line(&e.to_string())),
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
    match hints::clap_tip(msg) {
        Some(tip) => format!("{line}; {tip} (see --help)"),
        None => format!("{line} (see --help)"),
    }
}

/// A CORS origin: `*`, or a visible-ASCII value that cannot split a header.
pub(super) fn parse_origin(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "'{s}' is not an origin such as * or https://example.com"
        ));
    }
    Ok(s.to_owned())
}

fn parse_subsampling(s: &str) -> Result<Subsampling, String> {
    Subsampling::parse(s).ok_or_else(|| format!("expected {}", Subsampling::NAMES))
}

/// Longest history span: a day.
const MAX_HISTORY_SECS: f64 = 86_400.0;

/// A history span in seconds; 0 means none.
pub(super) fn parse_history(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=MAX_HISTORY_SECS).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "'{s}' is not a number of seconds from 0 (none) to {MAX_HISTORY_SECS}"
        )),
    }
}

/// A history budget in MiB: 1 to 1 TiB.
pub(super) fn parse_history_mb(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if (1..=1 << 20).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of MiB from 1 to {}",
            1 << 20
        )),
    }
}

pub(super) fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("'{s}' is not a number of seconds above 0")),
    }
}
