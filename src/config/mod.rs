//! The command line and the optional TOML file (`--config`), parsed once
//! into a validated `Config`. Flags given on the command line override the
//! file's settings; `--source` flags replace the file's streams.

mod cli;
mod file;
mod hints;
mod security;
mod streams;
#[cfg(test)]
mod tests;

pub use security::{AUTH_ENV, TOKEN_SECRET_ENV};

use crate::encode::Subsampling;
use crate::history::HistorySettings;
use crate::http::auth::Access;
use crate::http::limits::Limits;
use crate::listen::{ListenAddr, UnixPermissions};
use crate::logging::LogFormat;
use crate::nats::BusAddress;
use crate::rendition::NamedRendition;
use crate::source::SourceSpec;
use crate::tls::TlsSettings;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, clap_error};
use file::ConfigFile;
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
        mut cli: Cli,
        matches: &clap::ArgMatches,
        env: security::Env<'_>,
    ) -> Result<Config, ConfigError> {
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let file = match &cli.config {
            Some(path) => Some(ConfigFile::load(path).map_err(ConfigError::Invalid)?),
            None => None,
        };
        if let Some(file) = &file {
            file.overlay(&mut cli, &given)?;
        }
        let security = cli.security.resolve(env).map_err(ConfigError::Invalid)?;
        let file_streams = match &file {
            Some(file) => file.streams()?,
            None => Vec::new(),
        };
        let mut streams = if given("source") || file_streams.is_empty() {
            streams::parse_streams(&cli.source).map_err(ConfigError::Invalid)?
        } else {
            file_streams
        };
        if let Some(url) = &cli.publish {
            let bus = BusAddress::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("invalid --publish: {e}")))?;
            streams[0].publish = Some(bus);
        }
        streams::check_bus_files(&streams).map_err(ConfigError::Invalid)?;
        let (listen, listen_unix) = split_listen(cli.listen);
        Ok(Config {
            listen,
            streams,
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
        })
    }
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
