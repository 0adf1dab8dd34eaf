//! The command line and the optional TOML file (`--config`), parsed once
//! into a validated `Config`. Flags given on the command line override the
//! file's settings; `--source` flags replace the file's streams.

mod hints;
mod security;

pub use security::{AUTH_ENV, TOKEN_SECRET_ENV};

use crate::encode::Subsampling;
use crate::history::{DEFAULT_MAX_MB, HistorySettings};
use crate::http::auth::Access;
use crate::http::limits::Limits;
use crate::listen::{ListenAddr, UnixPermissions, parse_group, parse_mode};
use crate::logging::LogFormat;
use crate::nats::BusAddress;
use crate::rendition::{DEFAULT_MAX_RENDITIONS, NamedRendition};
use crate::source::tls_trust::TlsTrust;
use crate::source::v4l2::WantedFormat;
use crate::source::{SourceSpec, redact_credentials};
use crate::tls::TlsSettings;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Validated server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub streams: Vec<StreamConfig>,
    /// JPEG quality for frames the server encodes itself (test pattern,
    /// placeholders).
    pub quality: u8,
    /// Chroma subsampling of JPEGs encoded from YUYV cameras.
    pub subsampling: Subsampling,
    pub snapshot_timeout: Duration,
    /// How long `/snapshot` waits for the first frame of a source that
    /// `capture_on_demand` paused and a request resumed (cameras and
    /// encoders take seconds to start).
    pub resume_timeout: Duration,
    pub header_timeout: Duration,
    /// Send stream parts with `sendfile` (zero-copy) rather than `write`.
    pub zero_copy: bool,
    /// With `zero_copy`: one loop per stream sends each frame to all its
    /// clients, instead of each client's own task.
    pub batch_sends: bool,
    /// SO_SNDBUF of client sockets in bytes (0: the kernel's autotuning).
    pub send_buffer: usize,
    /// Threads that serve HTTP clients (0: one per core).
    pub workers: usize,
    /// Send loops per stream (0: one per HTTP worker thread).
    pub send_loops: usize,
    /// How long shutdown waits for open connections and sources to finish.
    pub shutdown_grace: Duration,
    /// Unix socket paths to listen on (besides `listen`).
    pub listen_unix: Vec<PathBuf>,
    /// Mode and group of the unix sockets mjpegd creates.
    pub unix_permissions: UnixPermissions,
    /// Basic credentials and token key (default: open).
    pub access: Access,
    /// HTTPS on the TCP listeners, when given.
    pub tls: Option<TlsSettings>,
    pub limits: Limits,
    /// A client that takes no data for this long is dropped.
    pub send_timeout: Duration,
    /// Skip frames identical to the previous one (still one a second).
    pub drop_same_frames: bool,
    /// `Access-Control-Allow-Origin` value for every response.
    pub allow_origin: Option<String>,
    /// Pause sources after this long without viewers.
    pub capture_on_demand: Option<Duration>,
    pub log_format: LogFormat,
    /// Seconds of recent frames every stream keeps (`None`: none).
    pub history: Option<Duration>,
    /// Memory budget of each stream's history, in MiB.
    pub history_max_mb: usize,
}

/// One named stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub name: String,
    pub source: SourceSpec,
    /// JPEG quality of frames encoded for this stream, when it differs from
    /// the global `quality`.
    pub quality: Option<u8>,
    /// This stream's history span, when it differs from the global one
    /// (`Some(ZERO)`: none for this stream).
    pub history: Option<Duration>,
    /// This stream's history budget in MiB, when it differs from the global one.
    pub history_max_mb: Option<usize>,
    /// Renditions by name (`[[stream.rendition]]`).
    pub renditions: Vec<NamedRendition>,
    /// Most ad-hoc renditions (`?width=`...) live at once.
    pub max_renditions: usize,
    /// Where the stream's frames are also sent (`publish = "nats://..."`).
    pub publish: Option<BusAddress>,
}

impl Config {
    /// How much of `stream`'s past to keep, if any.
    pub fn history_of(&self, stream: &StreamConfig) -> Option<HistorySettings> {
        let span = stream.history.or(self.history)?;
        let mb = stream.history_max_mb.unwrap_or(self.history_max_mb);
        (!span.is_zero()).then_some(HistorySettings {
            span,
            max_bytes: mb.saturating_mul(1 << 20),
        })
    }
}

/// Why no `Config` came out of the arguments.
#[derive(Debug)]
pub enum ConfigError {
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
    /// Invalid arguments: print this one line and exit 2.
    Invalid(String),
}

/// What a command line asks for: serve, or one of the subcommands.
#[derive(Debug)]
pub enum Invocation {
    Serve(Box<Config>),
    /// `mjpegd token ...`: print this token.
    Token(String),
    /// `mjpegd devices`: list cameras.
    Devices,
}

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
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on, HOST:PORT, PORT (port 0 picks a free port) or
    /// unix:PATH (a unix socket, for a reverse proxy). Repeat to listen on
    /// several. Anything but loopback exposes the server to the network.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: Vec<ListenAddr>,

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
    source: Vec<String>,

    /// Also send the first stream's frames to NATS, nats://HOST:4222/SUBJECT
    /// (`publish` in a config file's [[stream]]); edges serve them with a
    /// nats:// source.
    #[arg(long, value_name = "URL")]
    publish: Option<String>,

    /// TOML file with streams and options (see examples/mjpegd.toml); flags
    /// override its settings, and --source flags replace its streams.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// JPEG quality (1-100) of frames mjpegd encodes itself.
    #[arg(long, value_name = "1..100", default_value_t = 80,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,

    /// Chroma subsampling of JPEGs encoded from YUYV cameras: 4:2:0 (smaller
    /// frames, less CPU) or 4:2:2 (the camera's chroma kept whole).
    #[arg(long, value_name = "4:2:0|4:2:2", default_value = "4:2:0", value_parser = parse_subsampling)]
    subsampling: Subsampling,

    /// Seconds /snapshot waits for a frame captured after the request.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    snapshot_timeout: Duration,

    /// File mode of unix sockets (--listen unix:PATH), in octal: 660 lets
    /// the --unix-group (e.g. the reverse proxy's, www-data) connect.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    unix_mode: Option<u32>,

    /// Group of unix sockets (a name or a number), e.g. www-data for nginx.
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    unix_group: Option<u32>,

    /// Seconds /snapshot waits for the first frame of a source resuming
    /// after --capture-on-demand paused it (slow-starting cameras).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    resume_timeout: Duration,

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
          value_parser = ["sendfile", "sendfile-per-client", "write"])]
    send_method: String,

    /// Threads serving HTTP clients (0: one per CPU core). Capture and
    /// encoding run on threads of their own.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    workers: u16,

    /// Send loops per stream with `--send-method sendfile` (0: one per HTTP
    /// worker thread); a stream's clients are spread over them, so one
    /// stream with many clients uses every core.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    send_loops: u16,

    /// Keep each stream's last SECS seconds of frames (0: none), for
    /// /snapshot?at=, /stream?from= and /clip.
    #[arg(long, value_name = "SECS", value_parser = parse_history)]
    history: Option<Duration>,

    /// Memory budget of each stream's history in MiB; the oldest frames go
    /// first when it is reached.
    #[arg(long, value_name = "MB", default_value_t = DEFAULT_MAX_MB,
          value_parser = parse_history_mb)]
    history_max_mb: usize,

    #[command(flatten)]
    security: security::SecurityArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print a ?token= value that admits requests for one path until it
    /// expires (see `mjpegd token --help`)
    Token(security::TokenArgs),
    /// List cameras (V4L2 devices) with their formats, sizes and frame rates
    Devices,
}

/// Parses a whole command line (the first item is the program name): the
/// server's configuration, or a subcommand to run.
pub fn command_line<I, T>(args: I) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    command_line_with_env(args, &security::process_env, std::time::SystemTime::now())
}

fn command_line_with_env<I, T>(
    args: I,
    env: security::Env<'_>,
    now: std::time::SystemTime,
) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Cli::command()
        .try_get_matches_from(args)
        .map_err(clap_error)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(clap_error)?;
    match cli.command.take() {
        Some(Command::Token(args)) => security::make_token(args, env, now).map(Invocation::Token),
        Some(Command::Devices) => Ok(Invocation::Devices),
        None => Config::from_cli(cli, &matches, env).map(|c| Invocation::Serve(Box::new(c))),
    }
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
        match command_line_with_env(args, env, std::time::SystemTime::now())? {
            Invocation::Serve(config) => Ok(*config),
            _ => Err(ConfigError::Invalid(
                "a command (token, devices) where server options were expected".into(),
            )),
        }
    }

    fn from_cli(
        cli: Cli,
        matches: &clap::ArgMatches,
        env: security::Env<'_>,
    ) -> Result<Config, ConfigError> {
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let file = match &cli.config {
            Some(path) => Some(ConfigFile::load(path).map_err(ConfigError::Invalid)?),
            None => None,
        };
        let mut security_args = cli.security;
        if let Some(file) = &file {
            file.apply_security(&mut security_args, &given)?;
        }
        let security = security_args.resolve(env).map_err(ConfigError::Invalid)?;
        let (listen, listen_unix) = split_listen(cli.listen);
        let mut config = Config {
            listen,
            streams: Vec::new(),
            quality: cli.quality,
            subsampling: cli.subsampling,
            snapshot_timeout: cli.snapshot_timeout,
            resume_timeout: cli.resume_timeout,
            header_timeout: cli.header_timeout,
            send_buffer: cli.send_buffer,
            zero_copy: cli.send_method != "write",
            batch_sends: cli.send_method == "sendfile",
            workers: usize::from(cli.workers),
            send_loops: usize::from(cli.send_loops),
            shutdown_grace: Duration::from_millis(500),
            listen_unix,
            unix_permissions: UnixPermissions {
                mode: cli.unix_mode,
                group: cli.unix_group,
            },
            access: security.access,
            tls: security.tls,
            limits: security.limits,
            send_timeout: security.send_timeout,
            drop_same_frames: cli.drop_same_frames,
            allow_origin: cli.allow_origin,
            capture_on_demand: cli.capture_on_demand,
            log_format: cli.log_format,
            history: cli.history.filter(|d| !d.is_zero()),
            history_max_mb: cli.history_max_mb,
        };
        let mut file_streams = Vec::new();
        if let Some(file) = &file {
            file_streams = file.apply(&mut config, &given)?;
        }
        config.streams = if given("source") || file_streams.is_empty() {
            parse_streams(&cli.source).map_err(ConfigError::Invalid)?
        } else {
            file_streams
        };
        if let Some(url) = &cli.publish {
            let bus = BusAddress::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("invalid --publish: {e}")))?;
            config.streams[0].publish = Some(bus);
        }
        check_bus_files(&config.streams).map_err(ConfigError::Invalid)?;
        Ok(config)
    }
}

/// Stops at start-up on a credentials or certificate file that a `nats://`
/// source or `publish` names and that cannot be read.
fn check_bus_files(streams: &[StreamConfig]) -> Result<(), String> {
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

/// TCP addresses and unix socket paths, apart (`none` is neither).
fn split_listen(addrs: Vec<ListenAddr>) -> (Vec<SocketAddr>, Vec<PathBuf>) {
    let (mut tcp, mut unix) = (Vec::new(), Vec::new());
    for addr in addrs {
        match addr {
            ListenAddr::Tcp(a) => tcp.push(a),
            ListenAddr::Unix(p) => unix.push(p),
            ListenAddr::Off => {}
        }
    }
    (tcp, unix)
}

fn clap_error(e: clap::Error) -> ConfigError {
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp
        | clap::error::ErrorKind::DisplayVersion
        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ConfigError::Info(e.to_string())
        }
        _ => ConfigError::Invalid(first_line(&e.to_string())),
    }
}

/// The `--config` file as written: every key optional, unknown keys are
/// errors. Values keep their place in the file for error messages.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    /// `"HOST:PORT"`, `PORT`, or a list of them.
    listen: Option<Spanned<toml::Value>>,
    quality: Option<Spanned<i64>>,
    subsampling: Option<Spanned<String>>,
    snapshot_timeout: Option<Spanned<f64>>,
    resume_timeout: Option<Spanned<f64>>,
    /// Octal mode of unix sockets: `"660"` or `0o660`.
    unix_mode: Option<Spanned<toml::Value>>,
    unix_group: Option<Spanned<String>>,
    header_timeout: Option<Spanned<f64>>,
    send_buffer: Option<Spanned<i64>>,
    send_method: Option<Spanned<String>>,
    drop_same_frames: Option<Spanned<bool>>,
    allow_origin: Option<Spanned<String>>,
    /// Seconds without viewers before capture pauses.
    capture_on_demand: Option<Spanned<f64>>,
    /// `"text"` or `"json"`.
    log_format: Option<Spanned<String>>,
    /// Security: secrets only by file, so the config file holds no secret.
    auth_file: Option<Spanned<String>>,
    token_secret_file: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_ip: Option<Spanned<i64>>,
    max_clients: Option<Spanned<i64>>,
    max_streams_per_ip: Option<Spanned<i64>>,
    send_timeout: Option<Spanned<f64>>,
    /// Seconds of recent frames every stream keeps.
    history: Option<Spanned<f64>>,
    history_max_mb: Option<Spanned<i64>>,
    #[serde(default)]
    stream: Vec<FileStream>,
}

/// One `[[stream]]` table.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileStream {
    name: Option<Spanned<String>>,
    source: Spanned<String>,
    /// Frame rate, for the sources that produce frames on a schedule.
    fps: Option<Spanned<f64>>,
    /// Pixel format asked of a camera (`MJPEG`, `YUYV`, `NV12`).
    format: Option<Spanned<String>>,
    quality: Option<Spanned<i64>>,
    /// HTTPS upstreams: a PEM file of the CA that issued the camera's
    /// certificate.
    tls_ca: Option<Spanned<String>>,
    /// HTTPS upstreams: the camera's own certificate (a file, or
    /// `sha256:HEX`), trusted whatever signed it.
    tls_pin: Option<Spanned<String>>,
    /// Seconds of recent frames this stream keeps (0: none).
    history: Option<Spanned<f64>>,
    history_max_mb: Option<Spanned<i64>>,
    /// Most ad-hoc renditions live at once.
    max_renditions: Option<Spanned<i64>>,
    /// `[[stream.rendition]]` tables.
    #[serde(default)]
    rendition: Vec<FileRendition>,
    /// `nats://HOST:4222/SUBJECT`: also send the frames to NATS.
    publish: Option<Spanned<String>>,
}

/// One `[[stream.rendition]]` table.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileRendition {
    name: Spanned<String>,
    width: Option<Spanned<i64>>,
    height: Option<Spanned<i64>>,
    quality: Option<Spanned<i64>>,
}

/// A parsed config file, with its name and text for error messages.
struct ConfigFile {
    path: String,
    text: String,
    settings: FileSettings,
}

impl ConfigFile {
    fn load(path: &Path) -> Result<ConfigFile, String> {
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
    fn error<T>(
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

    /// Applies the file's global settings that the command line did not
    /// give, and returns its streams.
    fn apply(
        &self,
        config: &mut Config,
        given: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<StreamConfig>, ConfigError> {
        let s = &self.settings;
        if let Some(v) = &s.listen
            && !given("listen")
        {
            (config.listen, config.listen_unix) = split_listen(self.listen(v)?);
        }
        if let Some(v) = &s.quality
            && !given("quality")
        {
            config.quality = self.quality(v, "quality")?;
        }
        if let Some(v) = &s.subsampling
            && !given("subsampling")
        {
            config.subsampling = match Subsampling::parse(v.get_ref()) {
                Some(sub) => sub,
                None => self.error(
                    v.span(),
                    format_args!(
                        "bad value for 'subsampling': {:?} (expected {})",
                        v.get_ref(),
                        Subsampling::NAMES
                    ),
                )?,
            };
        }
        if let Some(v) = &s.snapshot_timeout
            && !given("snapshot_timeout")
        {
            config.snapshot_timeout = self.secs(v, "snapshot_timeout")?;
        }
        if let Some(v) = &s.unix_mode
            && !given("unix_mode")
        {
            let mode = match v.get_ref() {
                toml::Value::String(text) => parse_mode(text),
                toml::Value::Integer(n) => u32::try_from(*n)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| format!("{n} is not a file mode such as 0o660")),
                _ => Err("expected an octal mode such as \"660\"".to_owned()),
            };
            config.unix_permissions.mode = Some(mode.or_else(|e| {
                self.error(v.span(), format_args!("bad value for 'unix_mode': {e}"))
            })?);
        }
        if let Some(v) = &s.unix_group
            && !given("unix_group")
        {
            config.unix_permissions.group = Some(parse_group(v.get_ref()).or_else(|e| {
                self.error(v.span(), format_args!("bad value for 'unix_group': {e}"))
            })?);
        }
        if let Some(v) = &s.resume_timeout
            && !given("resume_timeout")
        {
            config.resume_timeout = self.secs(v, "resume_timeout")?;
        }
        if let Some(v) = &s.header_timeout
            && !given("header_timeout")
        {
            config.header_timeout = self.secs(v, "header_timeout")?;
        }
        if let Some(v) = &s.send_buffer
            && !given("send_buffer")
        {
            config.send_buffer = match usize::try_from(*v.get_ref()) {
                Ok(n) => n,
                Err(_) => {
                    return self.error(
                        v.span(),
                        "bad value for 'send_buffer': expected bytes, 0 or more",
                    );
                }
            };
        }
        if let Some(v) = &s.send_method
            && !given("send_method")
        {
            (config.zero_copy, config.batch_sends) = match v.get_ref().as_str() {
                "sendfile" => (true, true),
                "sendfile-per-client" => (true, false),
                "write" => (false, false),
                other => {
                    return self.error(
                        v.span(),
                        format_args!(
                            "bad value for 'send_method': '{other}' \
                             (expected sendfile, sendfile-per-client or write)"
                        ),
                    );
                }
            };
        }
        self.apply_operations(config, given)?;
        let mut streams = Vec::new();
        for entry in &s.stream {
            let src = &entry.source;
            let mut source: SourceSpec = match src.get_ref().parse() {
                Ok(spec) => spec,
                Err(e) => {
                    return self.error(
                        src.span(),
                        format_args!(
                            "bad value for 'source': {}",
                            redact_credentials(&e.to_string())
                        ),
                    );
                }
            };
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
                if !(rate > 0.0 && rate <= 240.0) {
                    return self.error(
                        fps.span(),
                        format_args!(
                            "bad value for 'fps': {rate} (expected a number above 0, at most 240)"
                        ),
                    );
                }
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
                match WantedFormat::parse(format.get_ref()) {
                    Some(f) => v.format = Some(f),
                    None => {
                        return self.error(
                            format.span(),
                            format_args!(
                                "bad value for 'format': '{}' (expected {})",
                                format.get_ref(),
                                WantedFormat::NAMES
                            ),
                        );
                    }
                }
            }
            let quality = match &entry.quality {
                Some(q) => Some(self.quality(q, "quality")?),
                None => None,
            };
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
            let publish = match &entry.publish {
                Some(url) => Some(BusAddress::parse(url.get_ref()).or_else(|e| {
                    self.error(url.span(), format_args!("bad value for 'publish': {e}"))
                })?),
                None => None,
            };
            if let Some(added) = streams.last_mut() {
                added.history = self.history(&entry.history)?;
                added.history_max_mb = self.history_mb(&entry.history_max_mb)?;
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
            stream.max_renditions = match usize::try_from(*v.get_ref()) {
                Ok(n) if n <= 64 => n,
                _ => {
                    return self.error(
                        v.span(),
                        format_args!(
                            "bad value for 'max_renditions': {} (expected 0 to 64)",
                            v.get_ref()
                        ),
                    );
                }
            };
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
            let side = |v: &Option<Spanned<i64>>, key: &str| match v {
                None => Ok(None),
                Some(v) => match u16::try_from(*v.get_ref()) {
                    Ok(n) if n >= 1 => Ok(Some(n)),
                    _ => self.error(
                        v.span(),
                        format_args!(
                            "bad value for '{key}': {} (expected 1 to 65535 pixels)",
                            v.get_ref()
                        ),
                    ),
                },
            };
            let width = side(&r.width, "width")?;
            let height = side(&r.height, "height")?;
            let quality = match &r.quality {
                Some(q) => Some(self.quality(q, "quality")?),
                None => None,
            };
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
        let trust = if key == "tls_ca" {
            TlsTrust::ca_file(value.get_ref())
        } else {
            TlsTrust::pin(value.get_ref())
        }
        .or_else(|e| self.error(value.span(), format_args!("bad value for '{key}': {e}")))?;
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

    fn listen(&self, v: &Spanned<toml::Value>) -> Result<Vec<ListenAddr>, ConfigError> {
        let bad = |what: &str| self.error(v.span(), format_args!("bad value for 'listen': {what}"));
        let one = |item: &toml::Value| match item {
            toml::Value::String(s) => s.parse::<ListenAddr>(),
            toml::Value::Integer(port) => u16::try_from(*port)
                .map(|p| ListenAddr::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)))
                .map_err(|_| format!("{port} is not a port")),
            _ => Err("expected \"HOST:PORT\", a port, or a list of them".to_owned()),
        };
        match v.get_ref() {
            toml::Value::Array(items) if items.is_empty() => bad("the list is empty"),
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match one(item) {
                        Ok(a) => out.push(a),
                        Err(e) => return bad(&e),
                    }
                }
                Ok(out)
            }
            item => match one(item) {
                Ok(a) => Ok(vec![a]),
                Err(e) => bad(&e),
            },
        }
    }

    fn quality(&self, v: &Spanned<i64>, key: &str) -> Result<u8, ConfigError> {
        match u8::try_from(*v.get_ref()) {
            Ok(q @ 1..=100) => Ok(q),
            _ => self.error(
                v.span(),
                format_args!("bad value for '{key}': {} (expected 1 to 100)", v.get_ref()),
            ),
        }
    }

    /// The operations settings: frame dropping, CORS, capture on demand, logs.
    /// The security keys, into the arguments before they are resolved;
    /// flags given on the command line win.
    fn apply_security(
        &self,
        args: &mut security::SecurityArgs,
        given: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let s = &self.settings;
        let path = |v: &Option<Spanned<String>>| v.as_ref().map(|p| PathBuf::from(p.get_ref()));
        let count = |v: &Option<Spanned<i64>>, key: &str| -> Result<Option<usize>, ConfigError> {
            let Some(n) = v else { return Ok(None) };
            match usize::try_from(*n.get_ref()) {
                Ok(n) => Ok(Some(n)),
                Err(_) => self.error(
                    n.span(),
                    format_args!("bad value for '{key}': expected 0 or more"),
                ),
            }
        };
        let send_timeout = match &s.send_timeout {
            None => None,
            Some(v) => match parse_secs(&v.get_ref().to_string()) {
                Ok(t) => Some(t),
                Err(e) => {
                    return self.error(v.span(), format_args!("bad value for 'send_timeout': {e}"));
                }
            },
        };
        let file = security::FileSecurity {
            auth_file: path(&s.auth_file),
            token_secret_file: path(&s.token_secret_file),
            tls_cert: path(&s.tls_cert),
            tls_key: path(&s.tls_key),
            max_connections: count(&s.max_connections, "max_connections")?,
            max_connections_per_ip: count(&s.max_connections_per_ip, "max_connections_per_ip")?,
            max_clients: count(&s.max_clients, "max_clients")?,
            max_streams_per_ip: count(&s.max_streams_per_ip, "max_streams_per_ip")?,
            send_timeout,
        };
        args.apply_file(file, given);
        Ok(())
    }

    fn apply_operations(
        &self,
        config: &mut Config,
        given: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let s = &self.settings;
        if let Some(v) = &s.drop_same_frames
            && !given("drop_same_frames")
        {
            config.drop_same_frames = *v.get_ref();
        }
        if let Some(v) = &s.allow_origin
            && !given("allow_origin")
        {
            config.allow_origin = Some(parse_origin(v.get_ref()).or_else(|e| {
                self.error(v.span(), format_args!("bad value for 'allow_origin': {e}"))
            })?);
        }
        if let Some(v) = &s.capture_on_demand
            && !given("capture_on_demand")
        {
            config.capture_on_demand = Some(self.secs(v, "capture_on_demand")?);
        }
        if !given("history")
            && let Some(span) = self.history(&s.history)?
        {
            config.history = (!span.is_zero()).then_some(span);
        }
        if !given("history_max_mb")
            && let Some(mb) = self.history_mb(&s.history_max_mb)?
        {
            config.history_max_mb = mb;
        }
        if let Some(v) = &s.log_format
            && !given("log_format")
        {
            config.log_format = match v.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return self.error(
                        v.span(),
                        format_args!(
                            "bad value for 'log_format': '{other}' (expected text or json)"
                        ),
                    );
                }
            };
        }
        Ok(())
    }

    /// A `history` value: seconds, 0 for none.
    fn history(&self, v: &Option<Spanned<f64>>) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        parse_history(&v.get_ref().to_string())
            .map(Some)
            .or_else(|e| self.error(v.span(), format_args!("bad value for 'history': {e}")))
    }

    /// A `history_max_mb` value.
    fn history_mb(&self, v: &Option<Spanned<i64>>) -> Result<Option<usize>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        parse_history_mb(&v.get_ref().to_string())
            .map(Some)
            .or_else(|e| {
                self.error(
                    v.span(),
                    format_args!("bad value for 'history_max_mb': {e}"),
                )
            })
    }

    fn secs(&self, v: &Spanned<f64>, key: &str) -> Result<Duration, ConfigError> {
        parse_secs(&v.get_ref().to_string())
            .or_else(|e| self.error(v.span(), format_args!("bad value for '{key}': {e}")))
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

/// A CORS origin: `*`, or a visible-ASCII value that cannot split a header.
fn parse_origin(s: &str) -> Result<String, String> {
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
fn parse_history(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=MAX_HISTORY_SECS).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "'{s}' is not a number of seconds from 0 (none) to {MAX_HISTORY_SECS}"
        )),
    }
}

/// A history budget in MiB: 1 to 1 TiB.
fn parse_history_mb(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if (1..=1 << 20).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of MiB from 1 to {}",
            1 << 20
        )),
    }
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

    /// Writes `text` to a fresh file and parses `args` with `--config FILE`.
    fn with_file(text: &str, args: &[&str]) -> Result<Config, ConfigError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("mjpegd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("config{}.toml", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&path, text).expect("write config");
        let path = path.to_str().expect("UTF-8 path").to_owned();
        let mut argv = vec!["--config", path.as_str()];
        argv.extend_from_slice(args);
        let result = parse(&argv);
        let _ = std::fs::remove_file(&path);
        // Error messages name the file; make them independent of where it is.
        result.map_err(|e| match e {
            ConfigError::Invalid(m) => ConfigError::Invalid(m.replace(&path, "config.toml")),
            other => other,
        })
    }

    fn file_error(text: &str) -> String {
        match with_file(text, &[]) {
            Err(ConfigError::Invalid(msg)) => msg,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn history_settings() {
        let c = parse(&[]).expect("defaults");
        assert_eq!(c.history_of(&c.streams[0]), None, "off by default");
        let c = parse(&["--history", "60"]).expect("valid");
        assert_eq!(
            c.history_of(&c.streams[0]),
            Some(HistorySettings {
                span: Duration::from_secs(60),
                max_bytes: DEFAULT_MAX_MB << 20
            })
        );
        let text = "history = 10\nhistory_max_mb = 32\n\
            [[stream]]\nname = \"a\"\nsource = \"pattern\"\n\
            [[stream]]\nname = \"b\"\nsource = \"pattern\"\nhistory = 0\n\
            [[stream]]\nname = \"c\"\nsource = \"pattern\"\nhistory = 2.5\nhistory_max_mb = 4\n";
        let c = with_file(text, &[]).expect("valid");
        let of = |i: usize| c.history_of(&c.streams[i]);
        assert_eq!(
            of(0),
            Some(HistorySettings {
                span: Duration::from_secs(10),
                max_bytes: 32 << 20
            })
        );
        assert_eq!(of(1), None);
        assert_eq!(
            of(2),
            Some(HistorySettings {
                span: Duration::from_millis(2500),
                max_bytes: 4 << 20
            })
        );
        // The command line overrides the file.
        let c = with_file(text, &["--history-max-mb", "8"]).expect("valid");
        assert_eq!(
            c.history_of(&c.streams[0]).map(|h| h.max_bytes),
            Some(8 << 20)
        );
        assert!(invalid(&["--history", "90000"]).contains("--history"));
        assert!(invalid(&["--history-max-mb", "0"]).contains("--history-max-mb"));
        assert_eq!(
            file_error("history_max_mb = 0\n"),
            "config.toml:1: bad value for 'history_max_mb': '0' is not a number of MiB from 1 to 1048576"
        );
        assert!(
            file_error("[[stream]]\nsource = \"pattern\"\nhistory = -3\n")
                .starts_with("config.toml:3: bad value for 'history'")
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mjpegd.toml");
        let c = parse(&["--config", path]).expect("example config is valid");
        let names: Vec<_> = c.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["main", "small", "frames"]);
        assert_eq!(
            c.streams[1].source,
            SourceSpec::Pattern(PatternSpec {
                width: 320,
                height: 240,
                fps: 10.0
            })
        );
        assert_eq!(c.streams[1].quality, Some(60));
        assert_eq!(c.streams[0].quality, None);
        assert_eq!(c.history_of(&c.streams[0]), None);
        assert_eq!(
            c.history_of(&c.streams[1]).map(|h| h.span),
            Some(Duration::from_secs(30))
        );
        assert_eq!(c.streams[2].source.kind(), "dir");
        assert_eq!(c.streams[0].renditions[0].name, "thumb");
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().expect("addr")]);
    }

    #[test]
    fn renditions_in_the_config_file() {
        let text = "[[stream]]\nname = \"cam\"\nsource = \"pattern\"\nmax_renditions = 2\n\
                    [[stream.rendition]]\nname = \"small\"\nwidth = 640\nquality = 70\n\
                    [[stream.rendition]]\nname = \"tall\"\nheight = 90\n\
                    [[stream]]\nname = \"other\"\nsource = \"pattern\"\n";
        let c = with_file(text, &[]).expect("valid");
        assert_eq!(c.streams[0].max_renditions, 2);
        assert_eq!(
            c.streams[0].renditions,
            [
                NamedRendition {
                    name: "small".into(),
                    width: Some(640),
                    height: None,
                    quality: Some(70)
                },
                NamedRendition {
                    name: "tall".into(),
                    width: None,
                    height: Some(90),
                    quality: None
                }
            ]
        );
        assert_eq!(c.streams[1].max_renditions, DEFAULT_MAX_RENDITIONS);
        assert!(c.streams[1].renditions.is_empty());
        let head = "[[stream]]\nsource = \"pattern\"\n";
        for (bad, says) in [
            (
                "[[stream.rendition]]\nname = \"a\"\nwidth = 0\n",
                "bad value for 'width'",
            ),
            (
                "[[stream.rendition]]\nname = \"a\"\nquality = 101\n",
                "bad value for 'quality'",
            ),
            (
                "[[stream.rendition]]\nname = \"a b\"\nwidth = 9\n",
                "invalid rendition name",
            ),
            (
                "[[stream.rendition]]\nname = \"a\"\n",
                "needs a width, a height or a quality",
            ),
            (
                "[[stream.rendition]]\nname = \"a\"\nwidth = 9\n[[stream.rendition]]\nname = \"a\"\nwidth = 8\n",
                "two renditions",
            ),
            ("[[stream.rendition]]\nname = \"a\"\nwdth = 9\n", "wdth"),
            ("max_renditions = -1\n", "bad value for 'max_renditions'"),
        ] {
            let msg = file_error(&format!("{head}{bad}"));
            assert!(msg.contains(says), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn the_deployment_examples_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
        let pi = parse(&["--config", &format!("{dir}raspberry-pi.toml")]).expect("valid");
        assert_eq!(pi.listen, vec!["0.0.0.0:8080".parse().expect("addr")]);
        assert_eq!(pi.capture_on_demand, Some(Duration::from_secs(30)));
        assert_eq!(pi.streams.len(), 1);
        assert_eq!(pi.streams[0].name, "cam");
        assert_eq!(pi.streams[0].source.kind(), "exec");
        assert!(pi.streams[0].source.to_string().contains("rpicam-vid"));
        let deb = concat!(env!("CARGO_MANIFEST_DIR"), "/debian/mjpegd.toml");
        let packaged = parse(&["--config", deb]).expect("the packaged config is valid");
        assert_eq!(
            packaged.listen,
            vec!["127.0.0.1:8080".parse().expect("addr")]
        );
        assert_eq!(packaged.streams[0].source.kind(), "pattern");
        let ip = parse(&["--config", &format!("{dir}ip-camera.toml")]).expect("valid");
        let names: Vec<_> = ip.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["door", "garage", "garden"]);
        let kinds: Vec<_> = ip.streams.iter().map(|s| s.source.kind()).collect();
        assert_eq!(kinds, ["relay", "relay", "snapshot"]);
        assert!(ip.drop_same_frames);
        assert_eq!(ip.allow_origin.as_deref(), Some("*"));
    }

    #[test]
    fn operations_settings_in_the_file() {
        let text = r#"
drop_same_frames = true
allow_origin = "https://example.com"
capture_on_demand = 10
resume_timeout = 20
log_format = "json"
unix_mode = "660"
unix_group = "root"
"#;
        let c = with_file(text, &[]).expect("valid");
        assert_eq!(
            c.unix_permissions,
            UnixPermissions {
                mode: Some(0o660),
                group: Some(0)
            }
        );
        assert_eq!(
            with_file("unix_mode = 0o640\n", &[])
                .expect("valid")
                .unix_permissions
                .mode,
            Some(0o640)
        );
        assert_eq!(c.resume_timeout, Duration::from_secs(20));
        assert!(c.drop_same_frames);
        assert_eq!(c.allow_origin.as_deref(), Some("https://example.com"));
        assert_eq!(c.capture_on_demand, Some(Duration::from_secs(10)));
        assert_eq!(c.log_format, LogFormat::Json);
        let c = with_file(
            text,
            &[
                "--allow-origin",
                "*",
                "--capture-on-demand",
                "2",
                "--log-format",
                "text",
            ],
        )
        .expect("valid");
        assert_eq!(c.allow_origin.as_deref(), Some("*"), "flags override");
        assert_eq!(c.capture_on_demand, Some(Duration::from_secs(2)));
        assert_eq!(c.log_format, LogFormat::Text);
        for (bad, key) in [
            ("allow_origin = \"a b\"", "allow_origin"),
            ("capture_on_demand = 0", "capture_on_demand"),
            ("log_format = \"xml\"", "log_format"),
            ("drop_same_frames = 1", "drop_same_frames"),
        ] {
            let msg = file_error(bad);
            assert!(msg.starts_with("config.toml:1:"), "{bad}: {msg}");
            assert!(msg.contains(key), "{bad}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn file_settings_and_command_line_overrides() {
        let text = r#"
listen = ["127.0.0.1:9001", 9002]
quality = 55
subsampling = "4:2:2"
snapshot_timeout = 2
header_timeout = 2.5
send_buffer = 0
send_method = "write"

[[stream]]
source = "dir:/srv/a"
fps = 4

[[stream]]
name = "b"
source = "pattern"
quality = 90
"#;
        let c = with_file(text, &[]).expect("valid");
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen[1], "127.0.0.1:9002".parse().expect("addr"));
        assert_eq!(c.quality, 55);
        assert_eq!(c.subsampling, Subsampling::Yuv422);
        assert_eq!(c.snapshot_timeout, Duration::from_secs(2));
        assert_eq!(c.header_timeout, Duration::from_millis(2500));
        assert_eq!(c.send_buffer, 0);
        assert!(!c.zero_copy);
        assert_eq!(c.streams[0].name, "dir");
        assert_eq!(c.streams[0].source.to_string(), "dir:/srv/a@4");
        assert_eq!(c.streams[1].quality, Some(90));

        // Flags win over the file; --source replaces the file's streams.
        let c = with_file(text, &["--quality", "70", "--source", "x=stdin"]).expect("valid");
        assert_eq!(c.quality, 70);
        assert_eq!(c.subsampling, Subsampling::Yuv422);
        assert_eq!(c.snapshot_timeout, Duration::from_secs(2));
        assert_eq!(c.streams.len(), 1);
        assert_eq!(c.streams[0].name, "x");
        let c = with_file(text, &["--subsampling", "420"]).expect("valid");
        assert_eq!(c.subsampling, Subsampling::Yuv420);
        assert_eq!(
            file_error("subsampling = \"4:4:4\"\n"),
            "config.toml:1: bad value for 'subsampling': \"4:4:4\" (expected 4:2:0 or 4:2:2)"
        );
        let c = with_file(text, &["--listen", "0"]).expect("valid");
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.listen[0].port(), 0);

        // A file without streams keeps the default stream.
        let c = with_file("quality = 50\n", &[]).expect("valid");
        assert_eq!(c.streams[0].name, "pattern");
    }

    #[test]
    fn camera_formats_in_the_config_file() {
        let c = with_file(
            "[[stream]]\nsource = \"v4l2:0:640x480\"\nformat = \"nv12\"\nfps = 15\n",
            &[],
        )
        .expect("valid");
        let SourceSpec::V4l2(v) = &c.streams[0].source else {
            panic!("{:?}", c.streams[0].source)
        };
        assert_eq!(v.to_string(), "v4l2:/dev/video0:NV12:640x480@15");
        assert_eq!(
            file_error("[[stream]]\nsource = \"v4l2:0\"\nformat = \"H264\"\n"),
            "config.toml:3: bad value for 'format': 'H264' (expected MJPEG, YUYV, NV12, NV12M)"
        );
        assert_eq!(
            file_error("[[stream]]\nsource = \"pattern\"\nformat = \"YUYV\"\n"),
            "config.toml:3: 'format' does not apply to pattern sources"
        );
    }

    #[test]
    fn file_errors_name_file_line_and_key() {
        let stream = "quality = 80\n\n[[stream]]\nname = \"a\"\nsource = \"pattern\"\n";
        assert_eq!(
            file_error(&format!("{stream}fsp = 5\n")),
            "config.toml:6: unknown key 'fsp' in [[stream]]; did you mean 'fps'?"
        );
        assert_eq!(
            file_error("\nlisten = \"0\"\nqualty = 5\n"),
            "config.toml:3: unknown key 'qualty' at the top level; did you mean 'quality'?"
        );
        assert_eq!(
            file_error("quality = 500\n"),
            "config.toml:1: bad value for 'quality': 500 (expected 1 to 100)"
        );
        assert!(
            file_error("quality = \"high\"\n")
                .starts_with("config.toml:1: bad value for 'quality': invalid type: string"),
        );
        assert_eq!(
            file_error(&format!("{stream}fps = 0\n")),
            "config.toml:6: bad value for 'fps': 0 (expected a number above 0, at most 240)"
        );
        assert_eq!(
            file_error("[[stream]]\nsource = \"stdin\"\nfps = 5\n"),
            "config.toml:3: 'fps' does not apply to stdin sources"
        );
        assert_eq!(
            file_error("[[stream]]\nsource = \"dir:\"\n"),
            "config.toml:2: bad value for 'source': dir: needs a path (dir:PATH[@FPS])"
        );
        assert_eq!(
            file_error(&format!("{stream}{stream}")),
            "config.toml:9: two streams are named 'a'"
        );
        assert_eq!(
            file_error("quality = 5\n[[stream]]\nname = \"a\"\n"),
            "config.toml:2: missing key 'source' in [[stream]]"
        );
        assert!(file_error("quality = \n").starts_with("config.toml:1: "));
        assert!(
            file_error("listen = [\"nowhere\"]\n")
                .starts_with("config.toml:1: bad value for 'listen'")
        );
        match parse(&["--config", "/nonexistent/mjpegd.toml"]) {
            Err(ConfigError::Invalid(m)) => {
                assert!(
                    m.starts_with("cannot read /nonexistent/mjpegd.toml: "),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        for text in [
            "quality = 500\n",
            "bogus = 1\n",
            "[[stream]]\nsource = \"x\"\n",
        ] {
            assert!(!file_error(text).contains('\n'), "one line for {text:?}");
        }
    }

    #[test]
    fn hints_for_common_mistakes() {
        assert_eq!(
            file_error("[stream]\nsource = \"pattern\"\n"),
            "config.toml:1: [stream] must be [[stream]] (double brackets: one table per stream)"
        );
        let m = file_error("auth = \"viewer:secret\"\n");
        assert!(m.contains("auth_file") && !m.contains("secret\""), "{m}");
        assert_eq!(
            file_error("[[stream]]\nsource = \"pattern\"\nfsp = 3\n"),
            "config.toml:3: unknown key 'fsp' in [[stream]]; did you mean 'fps'?"
        );
        assert_eq!(
            file_error("lisen = 8080\n"),
            "config.toml:1: unknown key 'lisen' at the top level; did you mean 'listen'?"
        );
        assert_eq!(
            file_error("[[stream]]\nsource = \"dir:/x@5\"\nfps = 10\n"),
            "config.toml:3: 'fps = 10' and the '@5' in source both set the frame rate; keep one"
        );
        // A password in a URL is no rate.
        let c = with_file(
            "[[stream]]\nsource = \"snapshot:http://u:p@cam.local/s.jpg\"\nfps = 2\n",
            &[],
        )
        .expect("valid");
        assert!(c.streams[0].source.to_string().ends_with("@2"));
        assert!(invalid(&["--lisen", "0"]).contains("did you mean '--listen'?"));
        assert!(invalid(&["devics"]).contains("did you mean 'devices'?"));
    }

    #[test]
    fn subcommands_are_strict_and_listed() {
        let run =
            |args: &[&str]| command_line(std::iter::once("mjpegd").chain(args.iter().copied()));
        assert!(matches!(run(&["devices"]), Ok(Invocation::Devices)));
        assert!(matches!(
            run(&["devices", "--bogus"]),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            run(&["--listen", "0", "devices"]),
            Err(ConfigError::Invalid(_))
        ));
        for args in [&["help"][..], &["--help"], &["help", "token"]] {
            match run(args) {
                Err(ConfigError::Info(text)) => assert!(text.contains("Usage"), "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        match run(&["--help"]) {
            Err(ConfigError::Info(text)) => {
                assert!(text.contains("token") && text.contains("devices"), "{text}")
            }
            other => panic!("{other:?}"),
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

    #[test]
    fn nats_publish_listen_none_and_the_examples() {
        let c = parse(&[
            "--listen",
            "none",
            "--source",
            "cam=pattern",
            "--publish",
            "nats://a:4222,b/cams.front",
        ])
        .expect("valid");
        assert!(c.listen.is_empty() && c.listen_unix.is_empty());
        let bus = c.streams[0].publish.as_ref().expect("publish");
        assert_eq!(bus.to_string(), "nats://a:4222,b:4222/cams.front");
        let e = invalid(&["--publish", "nats://u:Sekr1t@h/s"]);
        assert!(e.contains("password_file") && !e.contains("Sekr1t"), "{e}");
        let e = invalid(&["--source", "nats://h/s?creds_file=/nonexistent/x.creds"]);
        assert!(e.contains("creds_file /nonexistent/x.creds"), "{e}");
        assert!(
            file_error("[[stream]]\nsource = \"pattern\"\npublish = \"nats://h\"\n")
                .starts_with("config.toml:3: bad value for 'publish'")
        );
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
        let capture = parse(&["--config", &format!("{dir}nats-capture.toml")]).expect("valid");
        assert!(capture.listen.is_empty());
        assert!(capture.streams.iter().all(|s| s.publish.is_some()));
        let edge = parse(&["--config", &format!("{dir}nats-edge.toml")]).expect("valid");
        assert!(edge.streams.iter().all(|s| s.source.kind() == "nats"));
    }
}
