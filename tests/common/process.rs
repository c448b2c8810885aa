//! The operator as a separate process, the way the image runs it: its binary (the image's when
//! `TPP_OPERATOR_BIN` is set), its two listeners on free loopback ports, its log in a file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub struct OperatorProcess {
    pub child: Child,
    pub log: PathBuf,
    /// The public listener: /jwks, /callback.
    pub public: String,
    /// The operations listener: /healthz, /readyz, /metrics.
    pub ops: String,
}

impl Drop for OperatorProcess {
    // A failed assertion must not leave the operator running after the test.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl OperatorProcess {
    pub fn start(
        dir: &Path,
        kubeconfig: &Path,
        namespace: &str,
        lease_namespace: &str,
        lease_name: &str,
        provider: &str,
    ) -> OperatorProcess {
        let log = dir.join("operator.log");
        let (public_port, ops_port) = (free_port(), free_port());
        // The platform team's provider for this namespace, declared as the chart declares its
        // `providers`: the operator applies it at start.
        let providers = dir.join("providers.json");
        let provider_name = format!("{namespace}-provider");
        let declared = serde_json::json!([{
            "name": provider_name,
            "profile": "leatherback",
            "url": provider,
            "allowedNamespaces": {"names": [namespace]},
        }]);
        std::fs::write(&providers, declared.to_string()).expect("providers file");
        // CI points this at the release build, the binary the container image ships.
        let binary = std::env::var_os("TPP_OPERATOR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tpp-operator")));
        let child = Command::new(binary)
            .args([
                "run",
                "--providers-file",
                providers.to_str().expect("path"),
                "--default-provider",
                &provider_name,
                "--namespace",
                namespace,
            ])
            .args([
                "--public-addr",
                &format!("127.0.0.1:{public_port}"),
                "--metrics-addr",
                &format!("127.0.0.1:{ops_port}"),
                "--provider-timeout-seconds",
                "3",
            ])
            .args([
                "--lease-namespace",
                lease_namespace,
                "--lease-name",
                lease_name,
                "--lease-duration-seconds",
                "5",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,tpp_operator=debug")
            .env("TPP_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start tpp-operator");
        OperatorProcess {
            child,
            log,
            public: format!("http://127.0.0.1:{public_port}"),
            ops: format!("http://127.0.0.1:{ops_port}"),
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (graceful shutdown must finish within 15 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "tpp-operator did not stop within 15 s of SIGTERM; logs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resident memory of the process, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}
