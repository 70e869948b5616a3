//! The real `visionfleet-operator run` binary as a child process, with its
//! resident memory sampled from `/proc` and its metrics read over HTTP.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Time between two resident memory samples.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// A running operator. Dropping it kills the process and waits for it.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Child,
    pid: u32,
    metrics_port: u16,
    peak_sampled_kib: Arc<AtomicU64>,
    sampler: JoinHandle<()>,
}

impl OperatorProcess {
    /// Starts the operator on `namespace` without leader election, with its
    /// metrics on 127.0.0.1 and its logs in `log_file`.
    pub async fn start(
        binary: &Path,
        namespace: &str,
        model_cache: &Path,
        log_file: &Path,
    ) -> Result<Self> {
        let metrics_port = free_port().await?;
        let log = std::fs::File::create(log_file)
            .with_context(|| format!("failed to create {}", log_file.display()))?;

        let child = Command::new(binary)
            .args(["run", "--no-leader-election", "--log-format", "text"])
            .arg("--watch-namespace")
            .arg(namespace)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--model-cache-dir")
            .arg(model_cache)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let pid = child.id();

        let peak_sampled_kib = Arc::new(AtomicU64::new(0));
        let sampler = tokio::spawn(sample_rss(pid, Arc::clone(&peak_sampled_kib)));
        Ok(Self {
            child,
            pid,
            metrics_port,
            peak_sampled_kib,
            sampler,
        })
    }

    /// Waits until `/readyz` returns 200, which means the watch caches have synced.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the operator exited with {status} before it was ready");
            }
            if let Ok(response) = http_get(self.metrics_port, "/readyz").await
                && response.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the operator was not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Returns the sum of the operator's `visionfleet_operator_reconciles_total`.
    pub async fn reconciles(&self) -> Result<f64> {
        let response = http_get(self.metrics_port, "/metrics").await?;
        Ok(response
            .lines()
            .filter(|line| line.starts_with("visionfleet_operator_reconciles_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Resident memory now, from `/proc/PID/status` (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid, "VmRSS:")
    }

    /// Peak resident memory so far: the kernel's high-water mark (VmHWM),
    /// in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid, "VmHWM:")
    }

    /// Largest VmRSS sample, in KiB, as a cross-check of VmHWM.
    pub fn peak_sampled_kib(&self) -> u64 {
        self.peak_sampled_kib.load(Ordering::Relaxed)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.sampler.abort();
        if let Err(error) = self.child.kill() {
            tracing::warn!(pid = self.pid, %error, "Failed to kill the operator");
        }
        let _ = self.child.wait();
    }
}

async fn sample_rss(pid: u32, peak: Arc<AtomicU64>) {
    let mut interval = tokio::time::interval(RSS_SAMPLE_INTERVAL);
    loop {
        interval.tick().await;
        match proc_status_kib(pid, "VmRSS:") {
            Ok(kib) => {
                peak.fetch_max(kib, Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("failed to read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("/proc/{pid}/status has no {field}"))?;
    let kib = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib)
}

async fn free_port() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// Sends a plain HTTP/1.1 GET to 127.0.0.1 and returns the whole response.
async fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}
