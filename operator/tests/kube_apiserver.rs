//! The operator against a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager; no kubelet, so pods are created but never run): the Helm chart
//! installs, the operator runs with the chart's RBAC (its ServiceAccount's token), a PikaCluster
//! applied with kubectl becomes StatefulSets/Services/PDBs/proxy Deployment owned by it,
//! with conditions and observedGeneration; invalid manifests are refused by the schema; pause
//! stops changes; scaling the group count creates the new group's StatefulSet; the leader Lease
//! passes to a standby when the leader stops; deleting the cluster runs the finalizer and the
//! garbage collector removes its objects.
//!
//! Needs kube-apiserver & co. (scripts/build-kube.sh), etcd, kubectl and helm
//! (scripts/install-deps.sh installs them); skipped, saying so, when they are missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const OPERATOR: &str = env!("CARGO_BIN_EXE_pika-operator");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn home_cache(path: &str) -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache").join(path)
}

/// The tools, or why the test cannot run.
struct Tools {
    kube_bin: PathBuf,
    kubectl: PathBuf,
    helm: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

fn tools() -> Result<Tools, String> {
    let version = std::fs::read_to_string(repo("e2e/kube/go.mod"))
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("require k8s.io/kubernetes ").map(str::to_string)))
        .ok_or("e2e/kube/go.mod names no Kubernetes version")?;
    let kube_bin = std::env::var_os("KUBE_BIN").map(PathBuf::from).unwrap_or_else(|| home_cache("pika-kube").join(&version));
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
struct Env {
    tools: Tools,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    operators: Vec<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if thread::panicking() {
            for name in ["op-a", "op-b"] {
                eprintln!("---- {name} log (tail)\n{}", tail(&self.log(name), 40));
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
    fn start(tools: Tools) -> Env {
        let dir = tempfile::tempdir().unwrap();
        // A port range nobody else in the test run uses (the local tests pick 20000-40000).
        let base = 41000 + (std::process::id() % 500) as u16 * 3;
        let path = format!("{}:{}", tools.kubectl.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new(repo("e2e/kube/control-plane.sh"))
            .args(["start", &dir.path().display().to_string()])
            .env("KUBE_BIN", &tools.kube_bin)
            .env("PORT_BASE", base.to_string())
            .env("PATH", path)
            .output()
            .unwrap();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let env = Env { tools, dir, kubeconfig, operators: Vec::new() };
        assert!(out.status.success(), "control plane did not start: {}", String::from_utf8_lossy(&out.stderr));
        env
    }

    fn run(&self, program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new(program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
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

    fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.run(&self.tools.kubectl, args, None)
    }

    fn apply(&self, yaml: &str) -> Result<String, String> {
        self.run(&self.tools.kubectl, &["apply", "-f", "-"], Some(yaml))
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        self.kubectl(&all).ok().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// Starts `pika-operator run` with a kubeconfig holding `token` (the chart's ServiceAccount).
    fn operator(&mut self, name: &str, token: &str, http: u16) {
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
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(OPERATOR)
            .args(["run", "--http-listen", &format!("127.0.0.1:{http}"), "--lease-namespace", "pika-system"])
            .args(["--lease-name", "pika-operator-leader", "--lease-seconds", "6", "--identity", name])
            .env("KUBECONFIG", &config)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.operators.push(child);
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

fn condition(cluster: &Value, type_: &str) -> Option<String> {
    cluster["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?["status"].as_str().map(str::to_string)
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

const CLUSTER: &str = "apiVersion: pika.sharding.io/v1alpha1
kind: PikaCluster
metadata:
  name: demo
  namespace: apps
spec:
  groups: 2
  replicasPerGroup: 1
  image: registry.example.com/pika-node:0.1.0
";

#[test]
fn operator_on_a_real_apiserver() {
    let tools = match tools() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let mut env = Env::start(tools);

    // The chart installs the CRDs, RBAC, and the operator Deployment (its pods never run here:
    // no kubelet; the test runs the operator binary with the chart's ServiceAccount instead).
    let chart = repo("charts/pika-operator").display().to_string();
    let helm = env.tools.helm.clone();
    env.run(&helm, &["install", "pika-operator", &chart, "-n", "pika-system", "--create-namespace"], None)
        .expect("helm install");
    env.kubectl(&["get", "crd", "pikaclusters.pika.sharding.io", "slotmigrations.pika.sharding.io"]).expect("CRDs installed");
    let deploy = env.json(&["-n", "pika-system", "get", "deployment", "pika-operator"]).expect("operator Deployment");
    assert_eq!(deploy["spec"]["template"]["spec"]["serviceAccountName"], "pika-operator");
    let token = env.kubectl(&["-n", "pika-system", "create", "token", "pika-operator"]).expect("a token").trim().to_string();
    // The ServiceAccount may not do what the chart did not grant.
    let denied = env.kubectl(&["auth", "can-i", "delete", "nodes", "--as", "system:serviceaccount:pika-system:pika-operator"]);
    assert!(denied.is_err() || denied.unwrap().trim() == "no");

    let http_a = free_port();
    env.operator("op-a", &token, http_a);
    let lease = wait_for(Duration::from_secs(30), "op-a to hold the Lease", || {
        let l = env.json(&["-n", "pika-system", "get", "lease", "pika-operator-leader"])?;
        (l["spec"]["holderIdentity"] == "op-a").then_some(l)
    });
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 6);

    // Invalid manifests are refused by the API server, with the schema's words.
    env.kubectl(&["create", "namespace", "apps"]).unwrap();
    let err = env.apply(&CLUSTER.replace("groups: 2", "groups: 0")).unwrap_err();
    assert!(err.contains("spec.groups"), "{err}");
    let err = env
        .apply("apiVersion: pika.sharding.io/v1alpha1\nkind: SlotMigration\nmetadata: {name: m, namespace: apps}\nspec: {cluster: demo, slots: '0-x', targetGroup: 1}\n")
        .unwrap_err();
    assert!(err.contains("spec.slots"), "{err}");

    // A cluster becomes its objects, all owned by it.
    env.apply(CLUSTER).expect("apply the cluster");
    for (kind, name) in [
        ("statefulset", "demo-g0"),
        ("statefulset", "demo-g1"),
        ("service", "demo"),
        ("service", "demo-nodes"),
        ("configmap", "demo-config"),
        ("poddisruptionbudget", "demo-g0"),
        ("poddisruptionbudget", "demo-g1"),
        ("deployment", "demo-proxy"),
    ] {
        let obj = wait_for(Duration::from_secs(30), &format!("{kind} {name}"), || {
            env.json(&["-n", "apps", "get", kind, name, "--show-managed-fields"])
        });
        let owner = &obj["metadata"]["ownerReferences"][0];
        assert_eq!((owner["kind"].as_str(), owner["name"].as_str()), (Some("PikaCluster"), Some("demo")), "{kind} {name}");
        assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "pika-operator", "server-side applied");
    }
    let sts = env.json(&["-n", "apps", "get", "statefulset", "demo-g1"]).unwrap();
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example.com/pika-node:0.1.0");
    // The real StatefulSet controller accepts it and creates the pods (they stay Pending).
    wait_for(Duration::from_secs(30), "the StatefulSet controller's pods", || {
        env.json(&["-n", "apps", "get", "pod", "demo-g1-1"])
    });
    let proxy = env.json(&["-n", "apps", "get", "deployment", "demo-proxy"]).unwrap();
    assert_eq!(proxy["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example.com/pika-proxy:0.1.0");
    let cluster = wait_for(Duration::from_secs(30), "status with conditions", || {
        let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
        condition(&c, "Ready").is_some().then_some(c)
    });
    assert_eq!(cluster["metadata"]["finalizers"][0], "pika.sharding.io/cleanup");
    assert_eq!(cluster["status"]["observedGeneration"], 1);
    assert_eq!(condition(&cluster, "Ready").as_deref(), Some("False"), "no pod runs here");
    assert_eq!(condition(&cluster, "Progressing").as_deref(), Some("True"));
    assert_eq!(condition(&cluster, "ReconciliationPaused").as_deref(), Some("False"));
    assert_eq!(cluster["status"]["phase"], "Creating");
    let printed = env.kubectl(&["-n", "apps", "get", "pikacluster", "demo"]).unwrap();
    assert!(printed.contains("GROUPS") && printed.contains("Creating"), "{printed}");
    let err = env.apply(&CLUSTER.replace("groups: 2", "groups: 2\n  slots: 512")).unwrap_err();
    assert!(err.contains("slots is immutable"), "{err}");

    // Pause: nothing changes until unpaused, and the condition says so.
    env.kubectl(&["-n", "apps", "patch", "pikacluster", "demo", "--type", "merge", "-p", r#"{"spec":{"paused":true}}"#]).unwrap();
    wait_for(Duration::from_secs(30), "ReconciliationPaused", || {
        let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
        (condition(&c, "ReconciliationPaused").as_deref() == Some("True")).then_some(())
    });
    env.kubectl(&["-n", "apps", "patch", "pikacluster", "demo", "--type", "merge", "-p", r#"{"spec":{"replicasPerGroup":2}}"#]).unwrap();
    thread::sleep(Duration::from_secs(4));
    let sts = env.json(&["-n", "apps", "get", "statefulset", "demo-g0"]).unwrap();
    assert_eq!(sts["spec"]["replicas"], 2, "paused: the replica change waits");
    env.kubectl(&["-n", "apps", "patch", "pikacluster", "demo", "--type", "merge", "-p", r#"{"spec":{"paused":false}}"#]).unwrap();
    wait_for(Duration::from_secs(30), "the replica change after unpausing", || {
        let s = env.json(&["-n", "apps", "get", "statefulset", "demo-g0"])?;
        (s["spec"]["replicas"] == 3).then_some(())
    });
    let events = env.kubectl(&["-n", "apps", "get", "events", "--field-selector", "involvedObject.name=demo"]).unwrap();
    assert!(events.contains("Paused") && events.contains("Resumed"), "{events}");

    // Scaling out creates the new group (its slots move once its pods run).
    env.kubectl(&["-n", "apps", "patch", "pikacluster", "demo", "--type", "merge", "-p", r#"{"spec":{"groups":3}}"#]).unwrap();
    wait_for(Duration::from_secs(30), "demo-g2", || env.json(&["-n", "apps", "get", "statefulset", "demo-g2"]));
    let cluster = wait_for(Duration::from_secs(30), "observedGeneration to catch up", || {
        let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
        (c["status"]["observedGeneration"] == c["metadata"]["generation"]).then_some(c)
    });
    assert_eq!(cluster["metadata"]["generation"], 5, "create, pause, replicas, unpause, groups");
    assert_eq!(cluster["status"]["phase"], "Creating");

    // Metrics of the leader.
    let metrics = http_get(http_a, "/metrics");
    assert!(metrics.contains("pika_operator_leader 1"), "{metrics}");
    assert!(metrics.contains("pika_operator_reconciles_total{controller=\"cluster\"}"), "{metrics}");

    // A standby waits; when the leader stops (SIGTERM: it releases the Lease), it takes over.
    let http_b = free_port();
    env.operator("op-b", &token, http_b);
    thread::sleep(Duration::from_secs(3));
    let l = env.json(&["-n", "pika-system", "get", "lease", "pika-operator-leader"]).unwrap();
    assert_eq!(l["spec"]["holderIdentity"], "op-a", "the standby must not take a held Lease");
    assert!(http_get(http_b, "/metrics").contains("pika_operator_leader 0"));
    let a = env.operators.remove(0);
    let _ = Command::new("kill").args(["-TERM", &a.id().to_string()]).status();
    let mut a = a;
    let status = a.wait().unwrap();
    assert!(status.success(), "op-a exits cleanly on SIGTERM: {status:?}\n{}", env.log("op-a"));
    let started = Instant::now();
    wait_for(Duration::from_secs(15), "op-b to take over", || {
        let l = env.json(&["-n", "pika-system", "get", "lease", "pika-operator-leader"])?;
        (l["spec"]["holderIdentity"] == "op-b").then_some(())
    });
    assert!(started.elapsed() < Duration::from_secs(6), "a released Lease is taken at once, not after it expires");

    // The new leader reconciles: deleting the cluster runs the finalizer, and the garbage
    // collector removes what it owned.
    env.kubectl(&["-n", "apps", "delete", "pikacluster", "demo", "--wait=false"]).unwrap();
    wait_for(Duration::from_secs(30), "the cluster to go", || {
        env.kubectl(&["-n", "apps", "get", "pikacluster", "demo"]).is_err().then_some(())
    });
    wait_for(Duration::from_secs(60), "owned objects to be collected", || {
        let left = env.json(&["-n", "apps", "get", "statefulsets,deployments,services,poddisruptionbudgets"])?;
        left["items"].as_array()?.is_empty().then_some(())
    });
    assert!(env.log("op-b").contains("leader: reconciling"), "{}", env.log("op-b"));
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
