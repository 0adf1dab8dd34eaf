//! `mjpeg-bench`: a load generator for MJPEG-over-HTTP servers.
//!
//! Opens N client connections to a stream URL (all at once or ramped), reads
//! and checks every part, and reports per-client frame rates, aggregate
//! throughput, time to first frame, capture-to-receipt latency from
//! `X-Timestamp`, failures and corrupt parts; given a server PID, also that
//! process tree's CPU seconds and peak RSS. Works against any MJPEG server
//! (mjpegd, mjpg-streamer, µStreamer, IP cameras) on any network.

mod client;
mod procmon;
mod report;
mod startup;

use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub url: String,
    pub clients: usize,
    pub duration: Duration,
    pub ramp: Duration,
    pub pid: Option<i32>,
    pub json: bool,
    pub threads: usize,
    pub http10: bool,
    /// `--startup CMD`: measure process start to first frame instead.
    pub startup: Option<String>,
    pub runs: usize,
    /// `--latency-log FILE`: every frame's client, arrival and latency.
    pub latency_log: Option<String>,
}

const USAGE: &str = "usage: mjpeg-bench URL [-c CLIENTS] [-d SECONDS] [--ramp SECONDS] \
[--pid SERVER_PID] [--threads N] [--http10] [--json] [--latency-log FILE]
       mjpeg-bench URL --startup 'SERVER COMMAND' [--runs N]   (process start to first frame)";

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        clients: 1,
        duration: Duration::from_secs(10),
        ramp: Duration::ZERO,
        pid: None,
        json: false,
        threads: 1,
        http10: false,
        startup: None,
        runs: 10,
        latency_log: None,
    };
    let secs = |v: Option<String>, flag: &str| -> Result<Duration, String> {
        let v = v.ok_or(format!("{flag} needs a value"))?;
        match v.parse::<f64>() {
            Ok(s) if (0.0..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
            _ => Err(format!("{flag}: '{v}' is not a number of seconds")),
        }
    };
    let num = |v: Option<String>, flag: &str| -> Result<usize, String> {
        let v = v.ok_or(format!("{flag} needs a value"))?;
        v.parse::<usize>()
            .map_err(|_| format!("{flag}: '{v}' is not a whole number"))
    };
    while let Some(a) = argv.next() {
        match a.as_str() {
            "-u" | "--url" => args.url = argv.next().ok_or("--url needs a value")?,
            "-c" | "--clients" => args.clients = num(argv.next(), "--clients")?.max(1),
            "-d" | "--duration" => args.duration = secs(argv.next(), "--duration")?,
            "--ramp" => args.ramp = secs(argv.next(), "--ramp")?,
            "--pid" => args.pid = Some(num(argv.next(), "--pid")? as i32),
            "--threads" => args.threads = num(argv.next(), "--threads")?.max(1),
            "--json" => args.json = true,
            "--http10" => args.http10 = true,
            "--startup" => args.startup = Some(argv.next().ok_or("--startup needs a command")?),
            "--runs" => args.runs = num(argv.next(), "--runs")?.max(1),
            "--latency-log" => {
                args.latency_log = Some(argv.next().ok_or("--latency-log needs a file")?)
            }
            "-h" | "--help" => return Err(String::new()),
            s if !s.starts_with('-') && args.url.is_empty() => args.url = s.to_owned(),
            s => return Err(format!("unknown argument '{s}'")),
        }
    }
    if args.url.is_empty() {
        return Err("a stream URL is required".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mjpeg-bench: {e} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    let target = match client::Target::parse(&args.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mjpeg-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mjpeg-bench: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    mjpegd::rlimit::raise_fd_limit();
    if let Some(cmd) = &args.startup {
        return match runtime.block_on(startup::measure(cmd, &target, args.runs)) {
            // `measure` returns one figure per run and runs >= 1, so `ms`
            // is never empty.
            Ok(mut ms) => {
                ms.sort_by(f64::total_cmp);
                let median = ms[ms.len() / 2];
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"startup_ms_min": ms[0], "startup_ms_median": median,
                            "startup_ms_max": ms[ms.len() - 1], "runs": ms.len()})
                    );
                } else {
                    println!(
                        "process start → first frame over {} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms",
                        ms.len(),
                        ms[0],
                        median,
                        ms[ms.len() - 1]
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mjpeg-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let report = runtime.block_on(run(args.clone(), target));
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    ExitCode::SUCCESS
}

async fn run(args: Args, target: client::Target) -> report::Report {
    let target = std::sync::Arc::new(target);
    let start = Instant::now();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let end = start + args.duration;
    let monitor = args.pid.map(procmon::Monitor::start);
    let self_cpu0 = procmon::self_cpu_seconds();
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let delay = if args.clients > 1 {
            args.ramp.mul_f64(i as f64 / args.clients as f64)
        } else {
            Duration::ZERO
        };
        let target = target.clone();
        let http10 = args.http10;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            client::run(&target, http10, end.into(), 0).await
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(r) => results.push(r),
            Err(e) => results.push(client::ClientResult::failed(format!("task failed: {e}"))),
        }
    }
    let elapsed = start.elapsed();
    let server = monitor.map(|m| m.stop());
    let client_cpu = procmon::self_cpu_seconds() - self_cpu0;
    if let Some(path) = &args.latency_log
        && let Err(e) = write_latency_log(path, &results)
    {
        eprintln!("mjpeg-bench: cannot write {path}: {e}");
    }
    report::Report::new(&args, results, elapsed, server, client_cpu, started_unix_s)
}

/// One line per frame with a timestamp: client number, arrival (Unix
/// seconds) and latency in milliseconds, to see whether a latency tail
/// belongs to a few clients or to a few moments.
fn write_latency_log(path: &str, results: &[client::ClientResult]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (i, r) in results.iter().enumerate() {
        for (at, ms) in r.received_at.iter().zip(&r.latency_ms) {
            writeln!(out, "{i} {at:.6} {ms:.3}")?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[&str]) -> Result<Args, String> {
        parse_args(s.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let a = parse(&[
            "http://127.0.0.1:8080/stream",
            "-c",
            "500",
            "-d",
            "2.5",
            "--json",
        ])
        .expect("valid");
        assert_eq!(a.clients, 500);
        assert_eq!(a.duration, Duration::from_millis(2500));
        assert!(a.json);
        assert!(parse(&["-c", "5"]).is_err());
        assert!(parse(&["http://x/", "-c", "many"]).is_err());
        assert!(parse(&["http://x/", "--what"]).is_err());
    }
}
