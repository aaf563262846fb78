//! The Kubernetes controllers driving real nodes: a real control plane (no kubelet) plus a
//! stand-in kubelet in this test that runs each pod the StatefulSet and Deployment controllers
//! create as a real `pika-node`/`pika-proxy` process on its own loopback address (the pod IP),
//! with the pika.conf from the operator's ConfigMap, and reports it Running. Then:
//! bootstrap through the proxy; scale 2 -> 3 groups under a steady writer (SlotMigrations
//! created and run, no request fails, every acknowledged write readable); scale 3 -> 2 with
//! the operator killed as a cutover fences (it resumes, rolls the batch back, finishes, and the
//! drained group is retired); replicated acknowledgement switched on at runtime, then kill -9 of
//! a group master under a writer (failover losing nothing, then the old master returns
//! and is demoted); a planned switchover back to it (annotation) under a writer; two replicas
//! per group, then a new image: a rolling update under a writer and a reader, the operator
//! restarted midway (each pod restarted once, masters last, no full sync, no failed request);
//! config changes under load (a live option set on every node, an unknown one reported, one
//! that needs a restart rolled out); a larger storage size under load (claims bound to
//! volumes the test creates are resized, no pod restarts); a password rotation under load (both
//! accepted, then the old one retired; no pod restarts, replication and the operator go on).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::kube::*;

fn sibling(name: &str) -> PathBuf {
    pika_e2e::workspace_bin(name)
}

/// Runs pods as local processes: node pod `<cluster>-g<g>-<m>` on 127.0.<10+g>.<10+m>:9221,
/// proxies on 127.0.99.<n>:9221.
struct Kubelet {
    kubectl: Kubectl,
    dir: PathBuf,
    running: HashMap<String, Child>,
    /// Pods whose process the test stopped on purpose (not restarted by `sync`).
    stopped: HashMap<String, String>,
    ips: HashMap<String, String>,
    next_proxy: u32,
    /// The uid of the pod each running process is for: a pod deleted and made again (the
    /// rolling update) has a new one, and its process is restarted from the new spec.
    uids: HashMap<String, String>,
    /// Node processes started, in order: (pod, image of its spec).
    starts: Vec<(String, String)>,
    /// Full syncs served by node processes stopped since (their INFO went with them).
    full_syncs_of_stopped: u64,
    /// The ready proxies (the client Service's endpoints).
    endpoints: Service,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for child in self.running.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn listening(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200)).is_ok()
}

impl Kubelet {
    fn ip(&mut self, pod: &str, component: &str) -> String {
        if let Some(ip) = self.ips.get(pod) {
            return ip.clone();
        }
        let ip = if component == "proxy" {
            self.next_proxy += 1;
            format!("127.0.99.{}", self.next_proxy)
        } else {
            let (g, m) = pod.rsplit_once("-g").and_then(|(_, gm)| gm.split_once('-')).unwrap();
            format!("127.0.{}.{}", 10 + g.parse::<u32>().unwrap(), 10 + m.parse::<u32>().unwrap())
        };
        self.ips.insert(pod.into(), ip.clone());
        ip
    }

    /// A Secret's key, as the kubelet reads it for a container's env.
    fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let template = format!("go-template={{{{index .data \"{key}\" | base64decode}}}}");
        self.kubectl.run(&["-n", "apps", "get", "secret", name, "-o", &template]).ok()
    }

    /// The pod's container environment, values and Secret keys resolved as the kubelet does;
    /// the pod is read from the API server.
    fn container_env(&self, pod: &str) -> Vec<(String, String)> {
        let Some(pod) = self.kubectl.json(&["-n", "apps", "get", "pod", pod]) else { return Vec::new() };
        let container = &pod["spec"]["containers"][0];
        let mut env = Vec::new();
        for e in container["env"].as_array().cloned().unwrap_or_default() {
            let from = &e["valueFrom"]["secretKeyRef"];
            let value = match e["value"].as_str() {
                Some(v) => Some(v.to_string()),
                None => self.secret_value(from["name"].as_str().unwrap_or(""), from["key"].as_str().unwrap_or("")),
            };
            env.push((e["name"].as_str().unwrap_or("").to_string(), value.unwrap_or_default()));
        }
        let args: Vec<String> =
            container["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
        // Passwords reach the processes in the environment only: never in the args.
        for (_, value) in env.iter().filter(|(name, value)| name.contains("PASS") && !value.is_empty()) {
            assert!(!args.iter().any(|a| a.contains(value.as_str())), "a password in {args:?}");
        }
        env
    }

    fn start(&mut self, pod: &str, component: &str) -> Option<String> {
        let ip = self.ip(pod, component);
        // The pod's environment (its passwords); the args are the stand-in's own (addresses,
        // paths).
        let env = self.container_env(pod);
        let dir = self.dir.join(pod);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log")).unwrap();
        let mut cmd;
        if component == "proxy" {
            cmd = Command::new(sibling("pika-proxy"));
            cmd.args(["--listen", &format!("{ip}:9221"), "--seed-nodes", "127.0.10.10:9221"]);
        } else {
            let cm = self.kubectl.json(&["-n", "apps", "get", "configmap", "demo-config"])?;
            std::fs::write(dir.join("pika.conf"), cm["data"]["pika.conf"].as_str()?).unwrap();
            cmd = Command::new(sibling("pika-node"));
            cmd.arg("-c").arg(dir.join("pika.conf"));
            cmd.args(["--bind", &ip, "--http-port", "0", "--db-path"]).arg(dir.join("db"));
            cmd.arg("--set").arg(format!("log-path={}", dir.join("logs").display()));
        }
        let child = cmd.envs(env).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.running.insert(pod.into(), child);
        let addr = format!("{ip}:9221");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(&addr) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        Some(ip)
    }

    fn report_running(&self, pod: &str, ip: &str) {
        let patch = format!(
            r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
        );
        let _ = self.kubectl.run(&[
            "-n",
            "apps",
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }

    /// Starts what is new, stops what is gone, restarts what was made again.
    fn sync(&mut self) {
        let Some(pods) = self.kubectl.json(&["-n", "apps", "get", "pods"]) else { return };
        let mut present = Vec::new();
        for pod in pods["items"].as_array().cloned().unwrap_or_default() {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if pod["metadata"]["deletionTimestamp"].is_string() {
                continue;
            }
            present.push(name.clone());
            let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            let replaced = self.uids.get(&name).is_some_and(|u| u != &uid);
            if replaced && self.running.contains_key(&name) {
                self.stop(&name);
            }
            if self.running.contains_key(&name) || self.stopped.contains_key(&name) {
                continue;
            }
            let component =
                pod["metadata"]["labels"]["app.kubernetes.io/component"].as_str().unwrap_or("node").to_string();
            if let Some(ip) = self.start(&name, &component) {
                self.uids.insert(name.clone(), uid);
                if component == "node" {
                    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
                    self.starts.push((name.clone(), image.to_string()));
                } else {
                    self.endpoints.0.lock().unwrap().push(format!("{ip}:9221"));
                }
                self.report_running(&name, &ip);
            }
        }
        let gone: Vec<String> = self.running.keys().filter(|p| !present.contains(p)).cloned().collect();
        for pod in gone {
            self.stop(&pod);
        }
    }

    /// Stops a pod's process as the kubelet does: SIGTERM, SIGKILL after 10 s.
    fn stop(&mut self, pod: &str) {
        let Some(mut child) = self.running.remove(pod) else { return };
        let addr = format!("{}:9221", self.ips[pod]);
        if pod.contains("-proxy-") {
            self.endpoints.0.lock().unwrap().retain(|a| *a != addr);
        } else {
            self.full_syncs_of_stopped += sync_full(&addr).unwrap_or(0);
        }
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Full syncs the cluster's node processes served: the running ones' and the stopped ones'.
    fn full_syncs(&self) -> u64 {
        let running: u64 = (self.running.keys())
            .filter(|p| !p.contains("-proxy-"))
            .filter_map(|p| sync_full(&format!("{}:9221", self.ips[p])))
            .sum();
        running + self.full_syncs_of_stopped
    }

    /// kill -9 of a pod's process (the pod stays "Running": an unreachable node).
    fn kill(&mut self, pod: &str) {
        let mut child = self.running.remove(pod).expect("a running pod");
        let _ = child.kill();
        let _ = child.wait();
        self.stopped.insert(pod.into(), self.ips[pod].clone());
    }

    /// The pod's process comes back (same address, same data).
    fn restart(&mut self, pod: &str) {
        self.stopped.remove(pod);
        let component = if pod.contains("-proxy-") { "proxy" } else { "node" };
        self.start(pod, component).expect("restarted");
    }
}

/// A node's `sync_full` (full syncs it served as a master), if it answers.
fn sync_full(addr: &str) -> Option<u64> {
    pika_e2e::full_syncs_served_on(&mut try_conn(addr)?)
}

/// The passwords clients know, the one to try first first (the cluster's Secret; during a
/// rotation, the new one and the old one).
static PASSWORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A connection authenticated with the first password the server takes.
fn try_conn(addr: &str) -> Option<redis::Connection> {
    let passwords = PASSWORDS.lock().unwrap().clone();
    let urls: Vec<String> = match passwords.is_empty() {
        true => vec![format!("redis://{addr}/")],
        false => passwords.iter().map(|pw| format!("redis://:{pw}@{addr}/")).collect(),
    };
    urls.iter().find_map(|url| {
        redis::Client::open(url.as_str()).ok()?.get_connection_with_timeout(Duration::from_secs(5)).ok()
    })
}

/// The cluster's admin password (the operator's Secret `demo-admin`), once read.
static ADMIN: Mutex<Option<String>> = Mutex::new(None);

/// A connection as the admin user: what CONFIG and `pkcluster` take.
fn admin_conn(addr: &str) -> Option<redis::Connection> {
    let password = ADMIN.lock().unwrap().clone().expect("the admin password read");
    let url = format!("redis://admin:{password}@{addr}/");
    redis::Client::open(url).ok()?.get_connection_with_timeout(Duration::from_secs(5)).ok()
}

/// Whether `addr` takes AUTH with `password`.
fn accepts(addr: &str, password: &str) -> bool {
    let url = format!("redis://:{password}@{addr}/");
    redis::Client::open(url).ok().and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)).ok()).is_some()
}

fn conn(addr: &str) -> redis::Connection {
    try_conn(addr).unwrap_or_else(|| panic!("cannot connect to {addr}"))
}

/// Slots a node accepts writes for.
fn writable(addr: &str) -> usize {
    let Some(mut c) = try_conn(addr) else { return 0 };
    let tables: Vec<(i64, i64, String)> = redis::cmd("pkcluster").arg("writable").query(&mut c).unwrap_or_default();
    tables.iter().find(|t| t.0 == 0).map_or(0, |t| common::slotset::parse_slots(&t.2).map_or(0, |s| s.len()))
}

/// The client Service: the proxies that are ready (the stand-in kubelet adds a proxy once it
/// listens and removes it before stopping it, as the endpoints controller does).
#[derive(Clone, Default)]
struct Service(Arc<Mutex<Vec<String>>>);

impl Service {
    fn addr(&self) -> Option<String> {
        self.0.lock().unwrap().first().cloned()
    }
}

/// A client behind the Service, as client libraries behave: a request whose connection was
/// closed (a proxy that stopped: it answers what it read, then closes) is sent again on a new
/// connection; a reply, error or not, is the request's outcome.
struct Client {
    service: Service,
    conn: Option<redis::Connection>,
    reconnects: u64,
}

impl Client {
    fn new(service: Service) -> Client {
        Client { service, conn: None, reconnects: 0 }
    }

    fn request<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.conn.is_none() {
                self.conn = self.service.addr().and_then(|a| try_conn(&a));
            }
            let result = match self.conn.as_mut() {
                Some(c) => cmd.query(c),
                None => Err(redis::RedisError::from(std::io::Error::other("no proxy to connect to"))),
            };
            match result {
                Err(e) if (e.is_io_error() || e.is_connection_dropped()) && Instant::now() < deadline => {
                    self.conn = None;
                    self.reconnects += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }
}

/// A client thread through the proxies until stopped: `step(client, n)` makes one request
/// (`n` counts the successes so far, from `first`); a failure is recorded and retried.
struct Load {
    stop: Arc<AtomicBool>,
    /// `first` plus the successful requests.
    progress: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    handle: Option<thread::JoinHandle<u64>>,
}

impl Load {
    fn start(
        service: Service,
        first: u64,
        mut step: impl FnMut(&mut Client, u64) -> Result<(), String> + Send + 'static,
    ) -> Load {
        let (stop, progress, errors) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(first)), Arc::new(Mutex::new(Vec::new())));
        let (s, p, e) = (stop.clone(), progress.clone(), errors.clone());
        let handle = thread::spawn(move || {
            let mut c = Client::new(service);
            let mut n = first;
            while !s.load(Ordering::SeqCst) {
                match step(&mut c, n) {
                    Ok(()) => {
                        n += 1;
                        p.store(n, Ordering::SeqCst);
                    }
                    Err(err) => {
                        e.lock().unwrap().push(err);
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            c.reconnects
        });
        Load { stop, progress, errors, handle: Some(handle) }
    }

    /// Stops; returns the progress (for a writer: keys `key<first>..key<n>` acknowledged) and
    /// the failures.
    fn stop(self) -> (u64, Vec<String>) {
        let (progress, errors, _) = self.stop_counting();
        (progress, errors)
    }

    /// [`Load::stop`], and how often the client had to reconnect.
    fn stop_counting(mut self) -> (u64, Vec<String>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let reconnects = self.handle.take().unwrap().join().unwrap();
        (self.progress.load(Ordering::SeqCst), self.errors.lock().unwrap().clone(), reconnects)
    }
}

/// Writes `key<i>` = i, from `key<first>` on.
fn start_writer(service: &Service, first: u64) -> Load {
    Load::start(service.clone(), first, |c, i| {
        c.request::<()>(redis::cmd("SET").arg(format!("key{i}")).arg(i)).map_err(|e| format!("key{i}: {e}"))
    })
}

/// Reads back keys the writer has had acknowledged (cycling over `key0..key<acked>`): a failed
/// request or a wrong value is a failure.
fn start_reader(service: &Service, writer: &Load) -> Load {
    let acked = writer.progress.clone();
    Load::start(service.clone(), 0, move |c, n| {
        let i = n % acked.load(Ordering::SeqCst).max(1);
        match c.request::<Option<u64>>(redis::cmd("GET").arg(format!("key{i}"))) {
            Ok(Some(v)) if v == i => Ok(()),
            Ok(v) => Err(format!("key{i}: read {v:?}")),
            Err(e) => Err(format!("key{i}: {e}")),
        }
    })
}

fn check_all(proxy: &str, upto: u64) {
    let mut c = conn(proxy);
    for chunk in (0..upto).collect::<Vec<_>>().chunks(200) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("key{i}")).collect();
        let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        for (i, v) in chunk.iter().zip(values) {
            assert_eq!(v, Some(*i), "acknowledged write key{i} lost");
        }
    }
}

fn cluster(env: &Env) -> Value {
    env.json(&["-n", "apps", "get", "pikacluster", "demo"]).unwrap_or(Value::Null)
}

fn group_status(c: &Value, g: u64) -> Value {
    c["status"]["groups"].as_array().and_then(|gs| gs.iter().find(|s| s["index"] == g).cloned()).unwrap_or(Value::Null)
}

fn migrations(env: &Env) -> Vec<Value> {
    env.json(&["-n", "apps", "get", "slotmigrations"]).and_then(|l| l["items"].as_array().cloned()).unwrap_or_default()
}

fn settled(env: &Env, groups: u64) -> Option<Value> {
    let c = cluster(env);
    let ready = condition(&c, "Ready").as_deref() == Some("True")
        && c["status"]["observedGeneration"] == c["metadata"]["generation"];
    let all_done = migrations(env).iter().all(|m| m["status"]["phase"] == "Succeeded");
    let sizes: Vec<usize> = c["status"]["groups"]
        .as_array()?
        .iter()
        .map(|g| g["slots"].as_str().and_then(|s| common::slotset::parse_slots(s).ok()).map_or(0, |s| s.len()))
        .collect();
    let balanced = sizes.len() as u64 == groups
        && sizes.iter().sum::<usize>() == 64
        && sizes.iter().max()? - sizes.iter().min()? <= 1;
    (ready && all_done && balanced).then_some(c)
}

const MANIFEST: &str = "apiVersion: pika.sharding.io/v1alpha1
kind: PikaCluster
metadata:
  name: demo
  namespace: apps
spec:
  groups: 2
  replicasPerGroup: 1
  slots: 64
  failoverAfterSeconds: 3
  proxy:
    replicas: 1
  storage:
    size: 1Gi
    storageClassName: expandable
  passwordSecretRef:
    name: demo-password
    rotationGraceSeconds: 5
";

/// The cluster's password Secret.
fn password_secret(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: demo-password\n  namespace: apps\nstringData:\n  password: {password}\n"
    )
}

/// A StorageClass that allows expansion, and volumes for every claim the test's StatefulSets
/// make (bound by the control plane's volume binder: only a bound claim can be resized).
fn volumes() -> String {
    let mut yaml = String::from(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: expandable\n\
         provisioner: kubernetes.io/no-provisioner\nallowVolumeExpansion: true\nvolumeBindingMode: Immediate\n",
    );
    for i in 0..10 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv{i}\nspec:\n  capacity: {{storage: 1Gi}}\n\
             \n  accessModes: [ReadWriteOnce]\n  storageClassName: expandable\n  hostPath: {{path: /tmp/pv{i}}}\n"
        ));
    }
    yaml
}

#[test]
fn controllers_drive_real_nodes() {
    let Some(mut env) = Env::start_or_skip() else { return };
    env.run(&env.tools.kubectl.clone(), &["apply", "-f", &repo("crds/crds.yaml").display().to_string()], None).unwrap();
    env.kubectl(&["create", "namespace", "apps"]).unwrap();
    env.kubectl(&["create", "namespace", "pika-system"]).unwrap();
    let token = env.admin_token();
    env.operator("op", &token, free_port());
    env.apply(&volumes()).unwrap();
    *PASSWORDS.lock().unwrap() = vec!["first-password".into()];
    env.apply(&password_secret("first-password")).unwrap();
    env.apply(MANIFEST).unwrap();
    let admin_password = wait_for(Duration::from_secs(30), "the operator's admin Secret", || {
        let template = "go-template={{index .data \"password\" | base64decode}}";
        env.kubectl(&["-n", "apps", "get", "secret", "demo-admin", "-o", template]).ok().filter(|p| p.len() >= 32)
    });
    *ADMIN.lock().unwrap() = Some(admin_password);
    // Only the cluster's proxies, its nodes and the operator may reach the nodes (the API server
    // keeps the policy; enforcing it is the network plugin's, which this control plane has not).
    let policy = wait_for(Duration::from_secs(30), "the nodes' NetworkPolicy", || {
        env.kubectl(&["-n", "apps", "get", "networkpolicy", "demo-nodes", "-o", "json"]).ok()
    });
    let policy: Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "node", "{policy}");
    let from = policy["spec"]["ingress"][0]["from"].as_array().unwrap();
    assert_eq!(from.len(), 3, "{policy}");

    let kubelet = Arc::new(Mutex::new(Kubelet {
        kubectl: env.kubectl_client(),
        dir: env.dir.path().join("pods"),
        running: HashMap::new(),
        stopped: HashMap::new(),
        ips: HashMap::new(),
        next_proxy: 0,
        uids: HashMap::new(),
        starts: Vec::new(),
        full_syncs_of_stopped: 0,
        endpoints: Service::default(),
    }));
    let service = kubelet.lock().unwrap().endpoints.clone();
    let stop_kubelet = Arc::new(AtomicBool::new(false));
    let kubelet_thread = {
        let (k, stop) = (kubelet.clone(), stop_kubelet.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                k.lock().unwrap().sync();
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut kubelet_thread = Some(kubelet_thread);
    let _guard = Guard(move || {
        stop_kubelet.store(true, Ordering::SeqCst);
        if let Some(t) = kubelet_thread.take() {
            let _ = t.join();
        }
    });

    // Bootstrap: 64 slots split over two groups, served through the proxy.
    let c = wait_for(Duration::from_secs(90), "the cluster to be Ready", || settled(&env, 2));
    assert_eq!(group_status(&c, 0)["slots"], "0-31");
    assert_eq!(group_status(&c, 1)["slots"], "32-63");
    assert_eq!(group_status(&c, 0)["master"], "demo-g0-0");
    let proxy = "127.0.99.1:9221".to_string();
    wait_for(Duration::from_secs(30), "the proxy to route", || {
        redis::cmd("SET").arg("probe").arg(1).query::<()>(&mut try_conn(&proxy)?).ok()
    });
    check_no_partition_errors(&proxy);

    // Scale out under a steady writer.
    let writer = start_writer(&service, 0);
    thread::sleep(Duration::from_millis(500));
    patch_demo(&env, r#"{"spec":{"groups":3}}"#);
    let c = wait_for(Duration::from_secs(120), "3 settled groups", || settled(&env, 3));
    let (acked, errors) = writer.stop();
    assert!(errors.is_empty(), "requests failed during the scale-out: {errors:?}");
    assert!(acked > 100, "the writer made progress ({acked})");
    check_all(&proxy, acked);
    let sizes: Vec<usize> = (0..3)
        .map(|g| common::slotset::parse_slots(group_status(&c, g)["slots"].as_str().unwrap()).unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 64);
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
    let m = &migrations(&env)[0];
    assert_eq!(m["spec"]["targetGroup"], 2);
    let pauses = m["status"]["batchPausesMs"].as_array().unwrap();
    assert!(!pauses.is_empty(), "{m}");
    eprintln!("scale-out cutover pauses (ms): {pauses:?}");

    // Scale in, the operator killed as the first cutover fences: the restarted one rolls the
    // batch back, moves it, and retires group 2.
    if let Some(mut op) = env.operators.pop() {
        let _ = op.kill();
        let _ = op.wait();
    }
    env.operator_with("op", &token, free_port(), &[("PIKA_OPERATOR_CRASH_AT", "fence")]);
    let writer = start_writer(&service, acked);
    patch_demo(&env, r#"{"spec":{"groups":2}}"#);
    wait_for(Duration::from_secs(60), "the operator to stop at the fence step", || {
        env.operators.last_mut().unwrap().try_wait().unwrap().map(|_| ())
    });
    let recorded = migrations(&env).into_iter().find(|m| m["spec"]["targetGroup"] != 2).expect("a scale-in migration");
    assert_eq!(recorded["status"]["step"], "fence", "{recorded}");
    env.operators.pop();
    env.operator("op", &token, free_port());
    wait_for(Duration::from_secs(120), "2 settled groups", || settled(&env, 2));
    wait_for(Duration::from_secs(30), "group 2 retired", || {
        env.kubectl(&["-n", "apps", "get", "statefulset", "demo-g2"]).is_err().then_some(())
    });
    let (acked, errors) = writer.stop();
    assert!(errors.is_empty(), "requests failed during the scale-in: {errors:?}");
    check_all(&proxy, acked);
    assert!(
        env.log("op").contains("rolling back a cutover an earlier run left unfinished"),
        "{}",
        tail(&env.log("op"), 30)
    );

    // Replicated acknowledgement, switched on at runtime: every node takes it without a restart.
    patch_demo(&env, r#"{"spec":{"durability":{"mode":"replicated","minReplicaAcks":1}}}"#);
    let on = |addr: &str| {
        let setting: Vec<String> =
            redis::cmd("CONFIG").arg("GET").arg("min-replica-acks").query(&mut admin_conn(addr)?).ok()?;
        Some(setting.get(1).map(String::as_str) == Some("1"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !["127.0.10.10:9221", "127.0.10.11:9221"].iter().all(|a| on(a) == Some(true)) {
        if Instant::now() >= deadline {
            let exited = env.operators.last_mut().map(|o| o.try_wait().ok());
            panic!(
                "replicated mode not on every node after 30 s: {}\n{}\noperator exited: {exited:?}",
                cluster(&env)["status"],
                tail(&env.log("op"), 30)
            );
        }
        thread::sleep(Duration::from_millis(200));
    }

    // Failover in replicated mode, with writes in flight: the master of group 0 is killed
    // mid-traffic, without waiting for its replica. Nothing acknowledged is lost; a request the
    // master died with is in doubt (and the writer sends it again), none is refused.
    let writer = start_writer(&service, acked);
    thread::sleep(Duration::from_millis(1500));
    let killed = Instant::now();
    kubelet.lock().unwrap().kill("demo-g0-0");
    let c = wait_for(Duration::from_secs(30), "a failover in group 0", || {
        let c = cluster(&env);
        (group_status(&c, 0)["master"] == "demo-g0-1").then_some(c)
    });
    let failover = killed.elapsed();
    eprintln!("failover took {failover:?} (failoverAfterSeconds 3, replicated mode)");
    assert_eq!(group_status(&c, 0)["demoted"][0], "demo-g0-0");
    // With one replica per group the new master has none until the old one is back and
    // re-synced: writes to its slots wait (the proxy holds them) meanwhile. The old master
    // returns: demoted, re-synced, never writable.
    kubelet.lock().unwrap().restart("demo-g0-0");
    wait_for(Duration::from_secs(60), "the old master demoted", || {
        group_status(&cluster(&env), 0)["demoted"].is_null().then_some(())
    });
    thread::sleep(Duration::from_millis(1000));
    let (acked, errors) = writer.stop();
    assert!(
        errors.iter().all(|e| e.contains("may have been executed") || e.contains("UNACKED")),
        "requests refused during the failover: {errors:?}"
    );
    assert!(errors.len() <= 2, "more requests in doubt than were in flight: {errors:?}");
    check_all(&proxy, acked);
    let events = env.kubectl(&["-n", "apps", "get", "events", "--field-selector", "involvedObject.name=demo"]).unwrap();
    assert!(events.contains("Failover"), "{events}");
    assert_eq!(writable("127.0.10.10:9221"), 0, "the old master must not take writes");
    assert!(writable("127.0.10.11:9221") > 0);
    let slots = group_status(&cluster(&env), 0)["slots"].as_str().unwrap().to_string();
    wait_following("127.0.10.10:9221", "127.0.10.11:9221", &slots);
    check_all(&proxy, acked);

    // A planned switchover back to demo-g0-0 under a writer: no request fails, no full sync.
    let full_syncs = || sync_full("127.0.10.10:9221").expect("demo-g0-0 answers");
    let before = full_syncs();
    let writer = start_writer(&service, acked);
    thread::sleep(Duration::from_millis(300));
    env.kubectl(&["-n", "apps", "annotate", "pikacluster", "demo", "pika.sharding.io/switchover=g0=demo-g0-0"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let c = loop {
        let c = cluster(&env);
        if c["status"]["switchover"]["phase"] == "Succeeded" {
            break c;
        }
        assert!(Instant::now() < deadline, "no switchover after 60 s: {}\n{}", c["status"], tail(&env.log("op"), 40));
        thread::sleep(Duration::from_millis(200));
    };
    let (acked, errors) = writer.stop();
    assert!(errors.is_empty(), "requests failed during the switchover: {errors:?}");
    check_all(&proxy, acked);
    assert_eq!(group_status(&c, 0)["master"], "demo-g0-0", "{c}");
    assert!(writable("127.0.10.10:9221") > 0 && writable("127.0.10.11:9221") == 0);
    let events = env.kubectl(&["-n", "apps", "get", "events", "--field-selector", "involvedObject.name=demo"]).unwrap();
    assert!(events.contains("Switchover"), "{events}");
    wait_following("127.0.10.11:9221", "127.0.10.10:9221", &slots);
    assert_eq!(full_syncs(), before, "the old master re-synced in full");

    // Two replicas per group, then a new image: the rolling update, under a writer and a
    // reader, with the operator restarted midway.
    patch_demo(&env, r#"{"spec":{"replicasPerGroup":2}}"#);
    let members = |g: u64| (0..3).map(|m| format!("demo-g{g}-{m}")).collect::<Vec<_>>();
    let ip_of = |pod: &str| kubelet.lock().unwrap().ips.get(pod).cloned();
    let mut masters = BTreeMap::new();
    for g in 0..2u64 {
        let c = wait_for(Duration::from_secs(60), "three members per group", || {
            let c = settled(&env, 2)?;
            (group_status(&c, g)["pods"].as_array()?.len() == 3).then_some(c)
        });
        let master = group_status(&c, g)["master"].as_str().unwrap().to_string();
        let slots = group_status(&c, g)["slots"].as_str().unwrap().to_string();
        for replica in members(g).iter().filter(|m| **m != master) {
            let addr = |pod: &str| format!("{}:9221", ip_of(pod).expect("a pod address"));
            wait_following(&addr(replica), &addr(&master), &slots);
        }
        masters.insert(g, master);
    }
    let full_syncs_before = kubelet.lock().unwrap().full_syncs();
    let started_before = kubelet.lock().unwrap().starts.len();
    let writer = start_writer(&service, acked);
    let reader = start_reader(&service, &writer);
    thread::sleep(Duration::from_millis(300));
    let rolled_at = Instant::now();
    patch_demo(&env, r#"{"spec":{"image":"pika-node:rolled"}}"#);
    // The operator stops (as in an upgrade of its own: SIGTERM) once the first pod restarted.
    wait_for(Duration::from_secs(60), "the first restart", || {
        (kubelet.lock().unwrap().starts.len() > started_before).then_some(())
    });
    let mut op = env.operators.pop().unwrap();
    let _ = Command::new("kill").args(["-TERM", &op.id().to_string()]).status();
    let _ = op.wait();
    env.operator("op", &token, free_port());
    let c = wait_for(Duration::from_secs(240), "every pod updated", || {
        let c = settled(&env, 2)?;
        let rollout = &c["status"]["rollout"];
        (rollout["updatedPods"] == 6 && rollout["pods"] == 6).then_some(c)
    });
    let took = rolled_at.elapsed();
    let (acked, write_errors, write_reconnects) = writer.stop_counting();
    let (reads, read_errors, read_reconnects) = reader.stop_counting();
    eprintln!(
        "rolling update of 6 node pods (and the proxy) took {took:?}; {reads} reads, writes up to key{acked}; \
         reconnects to another proxy: writer {write_reconnects}, reader {read_reconnects}"
    );
    assert!(write_errors.is_empty(), "writes failed during the rolling update: {write_errors:?}");
    assert!(read_errors.is_empty(), "reads failed during the rolling update: {read_errors:?}");
    check_all(&service.addr().expect("a proxy"), acked);
    let k = kubelet.lock().unwrap();
    let restarts = &k.starts[started_before..];
    for g in 0..2u64 {
        for pod in members(g) {
            let images: Vec<&str> = restarts.iter().filter(|(p, _)| *p == pod).map(|(_, i)| i.as_str()).collect();
            assert_eq!(images, ["pika-node:rolled"], "{pod} restarted once, on the new image: {restarts:?}");
        }
        let order: Vec<&String> = restarts.iter().map(|(p, _)| p).filter(|p| members(g).contains(p)).collect();
        assert_eq!(order.last(), Some(&&masters[&g]), "group {g}'s master restarts after its replicas: {order:?}");
    }
    assert_eq!(k.full_syncs(), full_syncs_before, "a member re-synced in full during the rolling update");
    drop(k);
    for g in 0..2u64 {
        assert_ne!(group_status(&c, g)["master"], masters[&g].as_str(), "the master was handed over: {c}");
    }
    let events = env.kubectl(&["-n", "apps", "get", "events", "--field-selector", "involvedObject.name=demo"]).unwrap();
    assert!(events.contains("RollingUpdate"), "{events}");

    // Config, under a writer and a reader: a live option (and an unknown one) is set on every
    // node without a restart; an option that needs a restart rolls the pods.
    let nodes: Vec<String> = (0..2u64).flat_map(members).map(|p| format!("{}:9221", ip_of(&p).unwrap())).collect();
    let config_get = |node: &str, name: &str| -> Option<String> {
        let kv: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(&mut admin_conn(node)?).ok()?;
        kv.get(1).cloned()
    };
    let started_before = kubelet.lock().unwrap().starts.len();
    let writer = start_writer(&service, acked);
    let reader = start_reader(&service, &writer);
    let live = r#"{"spec":{"config":{"slowlog-max-len":"333","no-such-option":"x"}}}"#;
    patch_demo(&env, live);
    let c = wait_for(Duration::from_secs(60), "the live option on every node", || {
        nodes.iter().all(|n| config_get(n, "slowlog-max-len").as_deref() == Some("333")).then(|| cluster(&env))
    });
    let invalid = c["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ConfigValid").cloned();
    let invalid = invalid.expect("a ConfigValid condition");
    assert_eq!(invalid["status"], "False", "{invalid}");
    assert!(invalid["message"].as_str().unwrap().contains("no-such-option: \"x\": unknown option"), "{invalid}");
    assert_eq!(kubelet.lock().unwrap().starts.len(), started_before, "a live option restarted a pod");
    let restart = r#"{"spec":{"config":{"slowlog-max-len":"333","no-such-option":null,"block-cache":"64mb"}}}"#;
    patch_demo(&env, restart);
    let c = wait_for(Duration::from_secs(240), "every pod restarted with the new block-cache", || {
        let c = settled(&env, 2)?;
        let rolled =
            c["status"]["rollout"]["updatedPods"] == 6 && condition(&c, "ConfigValid").as_deref() == Some("True");
        (rolled && nodes.iter().all(|n| config_get(n, "block-cache").as_deref() == Some("67108864"))).then_some(c)
    });
    let (acked, write_errors) = writer.stop();
    let (_, read_errors) = reader.stop();
    assert!(write_errors.is_empty(), "writes failed during the config changes: {write_errors:?}");
    assert!(read_errors.is_empty(), "reads failed during the config changes: {read_errors:?}");
    check_all(&service.addr().expect("a proxy"), acked);
    let restarts = kubelet.lock().unwrap().starts[started_before..].to_vec();
    assert_eq!(restarts.len(), 6, "each node pod restarted once for block-cache: {restarts:?}");
    assert!(nodes.iter().all(|n| config_get(n, "slowlog-max-len").as_deref() == Some("333")), "{c}");

    // A larger storage size, under a writer and a reader: every claim asks for it, the
    // StatefulSets are recreated with their pods left running (none restarts), Applied holds.
    let started_before = kubelet.lock().unwrap().starts.len();
    let writer = start_writer(&service, acked);
    let reader = start_reader(&service, &writer);
    patch_demo(&env, r#"{"spec":{"storage":{"size":"2Gi"}}}"#);
    let claims = wait_for(Duration::from_secs(60), "every claim of the cluster resized to 2Gi", || {
        let list = env.json(&["-n", "apps", "get", "pvc", "-l", "app.kubernetes.io/instance=demo"])?;
        // Group 2's claims stay as they were: the group was retired (its claims are kept).
        let claims: Vec<Value> = (list["items"].as_array()?.iter())
            .filter(|c| !c["metadata"]["name"].as_str().unwrap_or("").contains("-g2-"))
            .cloned()
            .collect();
        let resized = claims.iter().all(|c| c["spec"]["resources"]["requests"]["storage"] == "2Gi");
        let c = cluster(&env);
        let applied = condition(&c, "Applied").as_deref() == Some("True");
        (resized && applied && c["status"]["observedGeneration"] == c["metadata"]["generation"]).then_some(claims)
    });
    thread::sleep(Duration::from_secs(2));
    let (acked, write_errors) = writer.stop();
    let (_, read_errors) = reader.stop();
    assert!(write_errors.is_empty(), "writes failed during the storage change: {write_errors:?}");
    assert!(read_errors.is_empty(), "reads failed during the storage change: {read_errors:?}");
    check_all(&service.addr().expect("a proxy"), acked);
    assert_eq!(claims.len(), 6, "{claims:?}");
    assert_eq!(kubelet.lock().unwrap().starts.len(), started_before, "a node pod restarted for the storage change");
    let events = env.kubectl(&["-n", "apps", "get", "events", "--field-selector", "involvedObject.name=demo"]).unwrap();
    assert!(events.contains("StatefulSetRecreated"), "{events}");

    // A password rotation under a writer and a reader (clients that reconnect try the new
    // password, then the old one): both are accepted while the rotation runs, then the old one
    // is retired after rotationGraceSeconds; no pod restarts, no request fails.
    let started_before = kubelet.lock().unwrap().starts.len();
    let writer = start_writer(&service, acked);
    let reader = start_reader(&service, &writer);
    *PASSWORDS.lock().unwrap() = vec!["second-password".into(), "first-password".into()];
    env.apply(&password_secret("second-password")).unwrap();
    let auth_version =
        || env.json(&["-n", "apps", "get", "secret", "demo-auth"]).map(|s| s["metadata"]["resourceVersion"].clone());
    let proxy_addr = service.addr().expect("a proxy");
    wait_for(Duration::from_secs(60), "both passwords accepted everywhere", || {
        let c = cluster(&env);
        let applied = c["status"]["password"]["appliedVersion"] == auth_version()?
            && c["status"]["password"]["previousSince"].is_string();
        applied.then_some(())
    });
    for addr in nodes.iter().chain([&proxy_addr]) {
        assert!(accepts(addr, "first-password") && accepts(addr, "second-password"), "{addr} takes both");
    }
    wait_for(Duration::from_secs(60), "the old password retired", || {
        let c = cluster(&env);
        let retired = c["status"]["password"]["appliedVersion"] == auth_version()?
            && c["status"]["password"]["previousSince"].is_null();
        retired.then_some(())
    });
    let (acked, write_errors) = writer.stop();
    let (_, read_errors) = reader.stop();
    assert!(write_errors.is_empty(), "writes failed during the password rotation: {write_errors:?}");
    assert!(read_errors.is_empty(), "reads failed during the password rotation: {read_errors:?}");
    for addr in nodes.iter().chain([&proxy_addr]) {
        assert!(!accepts(addr, "first-password") && accepts(addr, "second-password"), "{addr}: the new one only");
    }
    // The data password is not admin's, on the nodes and through the proxies; passwords are
    // not shown back.
    let admin_commands: [&[&str]; 2] = [&["CONFIG", "GET", "port"], &["FLUSHALL"]];
    let targets =
        nodes.iter().map(|n| (n, admin_commands)).chain([(&proxy_addr, [&["PXROUTE", "GET"][..], &["FLUSHALL"]])]);
    for (addr, commands) in targets {
        let mut data =
            redis::Client::open(format!("redis://:second-password@{addr}/")).unwrap().get_connection().unwrap();
        for command in commands {
            let refused = redis::cmd(command[0]).arg(&command[1..]).query::<redis::Value>(&mut data);
            let text = refused.map_err(|e| e.to_string()).expect_err("an admin command taken from the data user");
            assert!(text.to_ascii_uppercase().contains("NOPERM"), "{addr} {command:?}: {text}");
        }
    }
    assert!(nodes.iter().all(|n| config_get(n, "userpass").as_deref() == Some(common::options::REDACTED)));
    assert_eq!(kubelet.lock().unwrap().starts.len(), started_before, "a pod restarted for the password");
    // A replica restarted now authenticates to its master with the new password, and the
    // operator (its own connection on the new password) still runs the cluster.
    kubelet.lock().unwrap().kill("demo-g1-1");
    kubelet.lock().unwrap().restart("demo-g1-1");
    let c = wait_for(Duration::from_secs(60), "the cluster settled", || settled(&env, 2));
    let g1 = group_status(&c, 1);
    let master = format!("{}:9221", ip_of(g1["master"].as_str().unwrap()).unwrap());
    if g1["master"] != "demo-g1-1" {
        wait_following(&format!("{}:9221", ip_of("demo-g1-1").unwrap()), &master, g1["slots"].as_str().unwrap());
    }
    *PASSWORDS.lock().unwrap() = vec!["second-password".into()];
    check_all(&proxy_addr, acked);
    let events = env.kubectl(&["-n", "apps", "get", "events", "--field-selector", "involvedObject.name=demo"]).unwrap();
    assert!(events.contains("PasswordRotation") && events.contains("PasswordRetired"), "{events}");
}

/// A merge patch of the PikaCluster (as a user's `kubectl patch`).
fn patch_demo(env: &Env, patch: &str) {
    env.kubectl(&["-n", "apps", "patch", "pikacluster", "demo", "--type=merge", "-p", patch]).unwrap();
}

/// Waits until `node` replicates every slot of `slots` from `master`, connected.
fn wait_following(node: &str, master: &str, slots: &str) {
    let mut c = admin_conn(node).unwrap_or_else(|| panic!("cannot connect to {node} as admin"));
    wait_for(Duration::from_secs(30), &format!("{node} to replicate {slots} from {master}"), || {
        let info: String = redis::cmd("pkcluster").arg("info").arg("slot").arg(slots).query(&mut c).ok()?;
        let info = common::pkinfo::parse_slot_info(&info).ok()?;
        info.iter()
            .all(|s| {
                s.slave
                    .as_ref()
                    .is_some_and(|r| r.master == master && r.state == common::protocol::LinkState::Connected)
            })
            .then_some(())
    });
}

/// A request for every slot reaches its owner (no Partition not found through the proxy).
fn check_no_partition_errors(proxy: &str) {
    let mut c = conn(proxy);
    let mut seen = BTreeMap::new();
    for i in 0..300 {
        let key = format!("bootstrap{i}");
        redis::cmd("SET").arg(&key).arg(i).query::<()>(&mut c).unwrap();
        seen.insert(key, i);
    }
    for (k, v) in seen {
        let got: i64 = redis::cmd("GET").arg(&k).query(&mut c).unwrap();
        assert_eq!(got, v);
    }
}

struct Guard<F: FnMut()>(F);
impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
