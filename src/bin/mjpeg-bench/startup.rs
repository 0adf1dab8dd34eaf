//! `--startup CMD`: how long a server takes from process start to delivering
//! its first frame to a client, over several runs.

use crate::client::{self, Target};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One measurement per run, in milliseconds.
pub async fn measure(cmd: &str, target: &Target, runs: usize) -> Result<Vec<f64>, String> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run '{cmd}': {e}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let result = loop {
            // Poll until the port accepts, then read one frame.
            let r = client::run(target, false, deadline, 1).await;
            if r.frames > 0 {
                break r;
            }
            if tokio::time::Instant::now() >= deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let _ = child.kill().await;
        let Some(t) = result.first_frame_at else {
            return Err(format!(
                "no frame within 10 s of starting '{cmd}': {}",
                result.error.unwrap_or_default()
            ));
        };
        times.push(t.duration_since(started.into()).as_secs_f64() * 1000.0);
    }
    Ok(times)
}
