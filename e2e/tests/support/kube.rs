//! A real Kubernetes control plane for the operator's tests (e2e/kube/control-plane.sh), the
//! tools around it, and the operator binary run against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo(path: &str) -> PathBuf {
    // The checkout running the test (cargo sets this at run time), not the one that compiled it:
    // a test binary is reused from a shared target directory while its sources are unchanged.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(crate_dir).join("..").join(path)
}

pub fn home_cache(path: &str) -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache").join(path)
}

/// The Prometheus Operator's CRDs at the pinned version (scripts/install-deps.sh copies them here).
pub fn monitoring_crds() -> PathBuf {
    home_cache("pika-tools/prometheus-operator-v0.79.2")
}

/// The tools, or why the test cannot run.
pub struct Tools {
    pub kube_bin: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
}

pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

pub fn tools() -> Result<Tools, String> {
    let version = std::fs::read_to_string(repo("e2e/kube/go.mod"))
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("require k8s.io/kubernetes ").map(str::to_string)))
        .ok_or("e2e/kube/go.mod names no Kubernetes version")?;
    let kube_bin =
        std::env::var_os("KUBE_BIN").map(PathBuf::from).unwrap_or_else(|| home_cache("pika-kube").join(&version));
    if !kube_bin.join("kube-apiserver").is_file() {
        return Err(format!("no kube-apiserver in {} (run scripts/build-kube.sh)", kube_bin.display()));
    }
    on_path("etcd").ok_or("no etcd (apt install etcd-server)")?;
    let layer = home_cache("pika-tools/kubectl-layer-2.1.0");
    let pick = |env: &str, sub: &str| {
        std::env::var_os(env).map(PathBuf::from).filter(|p| p.is_file()).or_else(|| {
            let p = layer.join(sub).join(sub);
            p.is_file().then_some(p)
        })
    };
    let kubectl = pick("KUBECTL", "kubectl").ok_or("no kubectl (scripts/install-deps.sh)")?;
    let helm = pick("HELM", "helm").ok_or("no helm (scripts/install-deps.sh)")?;
    Ok(Tools { kube_bin, kubectl, helm })
}

/// The control plane and the operators started by the test; stopped on drop, pass or fail.
pub struct Env {
    pub tools: Tools,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub operators: Vec<Child>,
    /// Names of the operators started (their logs are shown when a test fails).
    pub names: Vec<String>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Ok(state) = self.kubectl(&["get", "pikaclusters,slotmigrations", "-A", "-o", "yaml"]) {
                let status: Vec<&str> = state.lines().filter(|l| !l.contains("managedFields")).collect();
                eprintln!("---- resources\n{}", tail(&status.join("\n"), 120));
            }
            for name in &self.names {
                eprintln!("---- {name} log (tail)\n{}", tail(&self.log(name), 25));
            }
        }
        for op in &mut self.operators {
            let _ = op.kill();
            let _ = op.wait();
        }
        let _ = Command::new(repo("e2e/kube/control-plane.sh"))
            .args(["stop", &self.dir.path().display().to_string()])
            .env("KUBE_BIN", &self.tools.kube_bin)
            .status();
    }
}

impl Env {
    /// A started control plane, or None after saying why the test is skipped.
    pub fn start_or_skip() -> Option<Env> {
        match tools() {
            Ok(t) => Some(Env::start(t)),
            Err(why) => {
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    pub fn start(tools: Tools) -> Env {
        let dir = tempfile::tempdir().unwrap();
        // Three free ports below the ephemeral range (where outgoing connections would take them).
        let base = (0..300u16)
            .map(|i| 29000 + ((std::process::id() as u16).wrapping_add(i * 7) % 900) * 3)
            .find(|&b| (b..b + 3).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()))
            .expect("three free ports");
        let path =
            format!("{}:{}", tools.kubectl.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new(repo("e2e/kube/control-plane.sh"))
            .args(["start", &dir.path().display().to_string()])
            .env("KUBE_BIN", &tools.kube_bin)
            .env("PORT_BASE", base.to_string())
            .env("PATH", path)
            .output()
            .unwrap();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let env = Env { tools, dir, kubeconfig, operators: Vec::new(), names: Vec::new() };
        assert!(out.status.success(), "control plane did not start: {}", String::from_utf8_lossy(&out.stderr));
        env
    }

    pub fn run(&self, program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        run(program, &self.kubeconfig, args, stdin)
    }

    /// kubectl as admin, for use off the test's thread.
    pub fn kubectl_client(&self) -> Kubectl {
        Kubectl { program: self.tools.kubectl.clone(), kubeconfig: self.kubeconfig.clone() }
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.run(&self.tools.kubectl, args, None)
    }

    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.run(&self.tools.kubectl, &["apply", "-f", "-"], Some(yaml))
    }

    pub fn json(&self, args: &[&str]) -> Option<Value> {
        self.kubectl_client().json(args)
    }

    /// Starts `pika-operator run` with a kubeconfig holding `token` (the chart's ServiceAccount).
    pub fn operator(&mut self, name: &str, token: &str, http: u16) {
        self.operator_with(name, token, http, &[]);
    }

    /// The control plane's admin token (system:masters).
    pub fn admin_token(&self) -> String {
        let tokens = std::fs::read_to_string(self.dir.path().join("tokens.csv")).unwrap();
        tokens.split(',').next().unwrap().to_string()
    }

    /// Starts `pika-operator run` as `name` with `token`, extra environment `envs`.
    pub fn operator_with(&mut self, name: &str, token: &str, http: u16, envs: &[(&str, &str)]) {
        let server = std::fs::read_to_string(&self.kubeconfig)
            .unwrap()
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
            .unwrap();
        let config = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(
            &config,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: sa}}\ncurrent-context: e2e\n"
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
        let child = Command::new(pika_e2e::workspace_bin("pika-operator"))
            .args(["run", "--http-listen", &format!("127.0.0.1:{http}"), "--lease-namespace", "pika-system"])
            .args(["--lease-name", "pika-operator-leader", "--lease-seconds", "6", "--identity", name])
            .env("KUBECONFIG", &config)
            .env("PIKA_LOG", "info,kube=warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.operators.push(child);
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// Runs `program` (kubectl, helm) against the control plane of `kubeconfig`; Err carries the
/// output and the error text.
fn run(program: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// kubectl bound to one control plane.
#[derive(Clone)]
pub struct Kubectl {
    pub program: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        run(&self.program, &self.kubeconfig, args, None)
    }

    /// `kubectl <args> -o json`, parsed; None when it fails.
    pub fn json(&self, args: &[&str]) -> Option<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        self.run(&all).ok().and_then(|t| serde_json::from_str(&t).ok())
    }
}

pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

pub fn condition(cluster: &Value, type_: &str) -> Option<String> {
    cluster["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?["status"]
        .as_str()
        .map(str::to_string)
}

pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
