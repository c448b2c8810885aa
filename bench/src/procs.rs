//! The processes a benchmark run needs: the test control plane and the operator binary, plus
//! what the kernel says about the operator (resident memory, CPU time).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// A running test control plane (tests/cluster); it exits when this is dropped.
pub struct Cluster {
    _child: Child,
    _stdin: ChildStdin,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts the control plane in a fresh directory and waits for READY.
    pub async fn start(binary: &Path, dir: &Path) -> Result<Cluster, String> {
        let mut child = Command::new(binary)
            .arg("--dir")
            .arg(dir)
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(path) = line.strip_prefix("READY ") {
                    return Some(PathBuf::from(path.trim()));
                }
            }
            None
        })
        .await;
        match ready {
            Ok(Some(kubeconfig)) => Ok(Cluster {
                _child: child,
                _stdin: stdin,
                kubeconfig,
            }),
            _ => Err(format!(
                "control plane not ready; see {}/controlplane.log",
                dir.display()
            )),
        }
    }
}

/// The operator under test, as a separate process so its memory and CPU are its own.
pub struct Operator {
    child: Child,
    /// Process id.
    pub pid: u32,
    /// Base URL of its metrics listener (`/healthz`, `/readyz`, `/metrics`).
    pub metrics_url: String,
}

/// How the operator is started.
pub struct OperatorArgs<'a> {
    /// The release binary.
    pub binary: &'a Path,
    /// Admin kubeconfig.
    pub kubeconfig: &'a Path,
    /// Namespace to watch.
    pub namespace: &'a str,
    /// Fake provider base URL.
    pub provider: &'a str,
    /// Client-side provider rate limit (requests per second).
    pub rate: f64,
    /// Where its logs go.
    pub log: &'a Path,
}

impl Operator {
    /// Starts the operator and waits until it reports ready.
    pub async fn start(args: OperatorArgs<'_>) -> Result<Operator, String> {
        let (port, public_port) = (free_port()?, free_port()?);
        let log = std::fs::File::create(args.log).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        // The fake bank as the one ClusterProvider, declared as the chart declares its own.
        let providers = args.log.with_extension("providers.json");
        let declared = serde_json::json!([{
            "name": "bench",
            "profile": "leatherback",
            "url": args.provider,
            "allowedNamespaces": {"names": [args.namespace]},
        }]);
        std::fs::write(&providers, declared.to_string()).map_err(|e| e.to_string())?;
        let child = Command::new(args.binary)
            .args(["run", "--default-provider", "bench", "--providers-file"])
            .arg(&providers)
            .args(["--namespace", args.namespace])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--public-addr", &format!("127.0.0.1:{public_port}")])
            .args(["--leader-elect", "false", "--log-format", "json"])
            .args(["--provider-rate-limit", &args.rate.to_string()])
            .args(["--provider-burst", "1", "--provider-timeout-seconds", "10"])
            .env("KUBECONFIG", args.kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", args.binary.display()))?;
        let pid = child.id().ok_or("operator exited at once")?;
        let http = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{http}/readyz")).send().await {
                if r.status().is_success() {
                    return Ok(Operator {
                        child,
                        pid,
                        metrics_url: http,
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "operator not ready after 30 s; see {}",
            args.log.display()
        ))
    }

    /// Resident memory now and at its peak, in MiB.
    pub fn memory(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }

    /// CPU seconds used so far (user + system).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // Linux reports clock ticks of 1/100 s (USER_HZ) to user space.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Stops the operator.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
