//! The exact Kubernetes API calls of the controllers' create/update, pause, delete and status
//! paths, against kube's tower-test mock service: each expected request is checked (method,
//! path, query, body) and answered; an unexpected or missing call fails the test.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::Client;
use pika_operator::crd::{PikaCluster, SlotMigration};
use pika_operator::k8s::{cluster, migration, Context};
use pika_operator::metrics::Metrics;
use serde_json::{json, Value};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected call: method, path (without query), and the answer built from the request body.
struct Call {
    method: Method,
    path: String,
    query: Option<&'static str>,
    answer: Box<dyn FnOnce(Value) -> Value + Send>,
    status: u16,
}

fn call(method: Method, path: &str, answer: impl FnOnce(Value) -> Value + Send + 'static) -> Call {
    Call { method, path: path.into(), query: None, answer: Box::new(answer), status: 200 }
}

/// A call the API server refuses with `code` and `message` (a `Status` object).
fn refused(call: Call, code: u16, message: &'static str) -> Call {
    let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": "Invalid", "code": code });
    Call { answer: Box::new(move |_| status), status: code, ..call }
}

/// Server-side apply of `path`: fieldManager pika-operator, forced; answered with the object.
fn apply(path: &str) -> Call {
    Call { query: Some("fieldManager=pika-operator"), ..call(Method::PATCH, path, |body| body) }
}

fn list(path: &str, items: Vec<Value>) -> Call {
    call(Method::GET, path, move |_| json!({ "apiVersion": "v1", "kind": "List", "metadata": {}, "items": items }))
}

/// Serves `calls` in order; returns the request bodies. Fails on anything else.
async fn serve(mut handle: Handle, calls: Vec<Call>) -> Vec<Value> {
    let mut bodies = Vec::new();
    for expected in calls {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request; expected {} {}", expected.method, expected.path))
            .expect("the client is gone");
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        assert_eq!((&parts.method, path.as_str()), (&expected.method, expected.path.as_str()), "query: {query}");
        if let Some(q) = expected.query {
            assert!(query.contains(q) && query.contains("force=true"), "{path}?{query} lacks {q} / force");
        }
        let bytes = body.collect_bytes().await.unwrap();
        let value: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        bodies.push(value.clone());
        let answer = (expected.answer)(value);
        send.send_response(
            Response::builder().status(expected.status).body(Body::from(serde_json::to_vec(&answer).unwrap())).unwrap(),
        );
    }
    // Nothing more.
    if let Ok(Some((extra, _))) = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await {
        panic!("unexpected call {} {}", extra.method(), extra.uri());
    }
    bodies
}

fn context() -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "apps");
    let reporter = Reporter { controller: "pika-operator".into(), instance: Some("test".into()) };
    let authority = Arc::new(pika_operator::authority::Authority::unlimited());
    (Arc::new(Context::new(client, Arc::new(Metrics::default()), reporter, authority)), handle)
}

fn cluster(extra_spec: Value, meta: Value) -> PikaCluster {
    let mut metadata =
        json!({ "name": "demo", "namespace": "apps", "uid": "u-1", "generation": 3, "resourceVersion": "7" });
    metadata.as_object_mut().unwrap().extend(meta.as_object().unwrap().clone());
    let mut spec = json!({ "groups": 2, "replicasPerGroup": 1 });
    spec.as_object_mut().unwrap().extend(extra_spec.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "pika.sharding.io/v1alpha1", "kind": "PikaCluster", "metadata": metadata, "spec": spec,
    }))
    .unwrap()
}

const NS: &str = "/api/v1/namespaces/apps";
const APPS: &str = "/apis/apps/v1/namespaces/apps";
const PIKA: &str = "/apis/pika.sharding.io/v1alpha1/namespaces/apps";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap();
    (c["status"].as_str().unwrap().into(), c["reason"].as_str().unwrap().into())
}

/// The ConfigMap and Services, then per group its StatefulSet, its volume claims (listed for
/// a resize; none here) and its PodDisruptionBudget, applied in that order.
fn children_of_groups(groups: u32) -> Vec<Call> {
    let mut calls = vec![
        apply(&format!("{NS}/configmaps/demo-config")),
        apply(&format!("{NS}/services/demo-nodes")),
        apply(&format!("{NS}/services/demo")),
    ];
    for g in 0..groups {
        calls.push(apply(&format!("{APPS}/statefulsets/demo-g{g}")));
        calls.push(list(&format!("{NS}/persistentvolumeclaims"), vec![]));
        calls.push(apply(&format!("/apis/policy/v1/namespaces/apps/poddisruptionbudgets/demo-g{g}")));
    }
    calls
}

const NETWORK_POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/apps/networkpolicies/demo-nodes";

/// The operator's admin Secret of a new cluster: looked for, then made.
fn admin_secret_created() -> Vec<Call> {
    vec![
        Call {
            answer: Box::new(
                |_| json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404 }),
            ),
            status: 404,
            ..call(Method::GET, &format!("{NS}/secrets/demo-admin"), |_| json!({}))
        },
        call(Method::POST, &format!("{NS}/secrets"), |body| body),
    ]
}

/// What the data-plane pass reads of a cluster with no pod running yet.
fn observing() -> Vec<Call> {
    vec![
        list(&format!("{APPS}/statefulsets"), vec![]),
        list(&format!("{NS}/pods"), vec![]),
        list(&format!("{PIKA}/slotmigrations"), vec![]),
    ]
}

#[tokio::test]
async fn a_new_cluster_gets_its_finalizer_first() {
    let (ctx, handle) = context();
    let c = cluster(json!({}), json!({}));
    let echo = serde_json::to_value(&c).unwrap();
    let server =
        tokio::spawn(serve(handle, vec![call(Method::PATCH, &format!("{PIKA}/pikaclusters/demo"), move |_| echo)]));
    cluster::reconcile(Arc::new(c), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    // A JSON patch that adds the finalizer (and tests the list was empty: no lost update).
    let ops = bodies[0].as_array().unwrap();
    assert!(
        ops.iter().any(|op| op["op"] == "add" && op["value"] == json!(["pika.sharding.io/cleanup"])
            || op["value"] == "pika.sharding.io/cleanup"),
        "{ops:?}"
    );
}

#[tokio::test]
async fn create_and_update_apply_every_child_then_write_status() {
    let (ctx, handle) = context();
    let c = cluster(json!({}), json!({ "finalizers": ["pika.sharding.io/cleanup"] }));
    let echo = serde_json::to_value(&c).unwrap();
    let fresh = echo.clone();
    let mut calls = vec![call(Method::GET, &format!("{PIKA}/pikaclusters/demo"), move |_| fresh)];
    calls.extend(admin_secret_created());
    calls.extend(children_of_groups(2));
    calls.push(apply(&format!("{APPS}/deployments/demo-proxy")));
    calls.push(apply(NETWORK_POLICY));
    calls.extend(observing());
    calls.push(call(Method::PATCH, &format!("{PIKA}/pikaclusters/demo/status"), move |_| echo));
    let server = tokio::spawn(serve(handle, calls));
    let action = cluster::reconcile(Arc::new(c), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::requeue(Duration::from_secs(30)), "no pod yet: slow poll");
    // The admin password: made by the operator, owned by the cluster, before any pod reads it.
    let secret = &bodies[2];
    assert_eq!(
        (secret["metadata"]["name"].as_str(), secret["metadata"]["ownerReferences"][0]["uid"].as_str()),
        (Some("demo-admin"), Some("u-1"))
    );
    assert!(secret["data"]["password"].as_str().is_some_and(|b64| b64.len() >= 40), "{secret}");
    assert_eq!(bodies[6]["spec"]["replicas"], 2);
    assert_eq!(bodies[6]["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert_eq!(bodies[13]["kind"], "NetworkPolicy");
    let status = &bodies[17]["status"];
    // Written at the resourceVersion read: another instance's write since makes it a conflict.
    assert_eq!(bodies[17]["metadata"]["resourceVersion"], "7");
    assert_eq!(condition(status, "Applied"), ("True".into(), "Applied".into()));
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["phase"], "Creating");
    assert_eq!(condition(status, "Ready"), ("False".into(), "NotReady".into()));
    assert_eq!(condition(status, "Progressing"), ("True".into(), "Creating".into()));
    assert_eq!(condition(status, "ReconciliationPaused").0, "False");
}

/// A child the API server refuses does not stop the reconcile (failover and migrations must
/// not wait on it): the others are applied, the data plane is observed, and the status says
/// what failed, with a warning Event.
#[tokio::test]
async fn a_refused_child_is_reported_and_the_reconcile_goes_on() {
    let (ctx, handle) = context();
    let c = cluster(json!({ "groups": 1 }), json!({ "finalizers": ["pika.sharding.io/cleanup"] }));
    let echo = serde_json::to_value(&c).unwrap();
    let fresh = echo.clone();
    let mut calls = vec![call(Method::GET, &format!("{PIKA}/pikaclusters/demo"), move |_| fresh)];
    calls.extend(admin_secret_created());
    calls.extend(children_of_groups(1));
    calls.push(refused(apply(&format!("{APPS}/deployments/demo-proxy")), 422, "spec.template: Invalid value"));
    calls.push(apply(NETWORK_POLICY));
    calls.push(call(Method::POST, EVENTS, |body| body));
    calls.extend(observing());
    calls.push(call(Method::PATCH, &format!("{PIKA}/pikaclusters/demo/status"), move |_| echo));
    let server = tokio::spawn(serve(handle, calls));
    cluster::reconcile(Arc::new(c), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    assert_eq!(bodies[11]["reason"], "ApplyFailed");
    let status = &bodies[15]["status"];
    assert_eq!(condition(status, "Applied"), ("False".into(), "ApplyFailed".into()));
    let message = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Applied").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("proxy Deployment") && message.contains("Invalid value"), "{message}");
}

#[tokio::test]
async fn a_paused_cluster_only_gets_its_condition_and_an_event() {
    let (ctx, handle) = context();
    let c = cluster(json!({ "paused": true }), json!({ "finalizers": ["pika.sharding.io/cleanup"] }));
    let echo = serde_json::to_value(&c).unwrap();
    let fresh = echo.clone();
    let calls = vec![
        call(Method::GET, &format!("{PIKA}/pikaclusters/demo"), move |_| fresh),
        call(Method::PATCH, &format!("{PIKA}/pikaclusters/demo/status"), move |_| echo),
        call(Method::POST, EVENTS, |body| body),
    ];
    let server = tokio::spawn(serve(handle, calls));
    let action = cluster::reconcile(Arc::new(c), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert_eq!(condition(&bodies[1]["status"], "ReconciliationPaused"), ("True".into(), "Paused".into()));
    assert_eq!(bodies[1]["status"]["phase"], "Paused");
    assert_eq!(bodies[2]["reason"], "Paused");
    assert_eq!(bodies[2]["regarding"]["name"], "demo");
}

#[tokio::test]
async fn deleting_removes_the_clusters_migrations_then_the_finalizer() {
    let (ctx, handle) = context();
    let c = cluster(
        json!({}),
        json!({ "finalizers": ["pika.sharding.io/cleanup"], "deletionTimestamp": "2026-11-25T10:00:00Z" }),
    );
    let echo = serde_json::to_value(&c).unwrap();
    let mig = |name: &str, cluster: &str| {
        json!({ "apiVersion": "pika.sharding.io/v1alpha1", "kind": "SlotMigration",
                "metadata": { "name": name, "namespace": "apps" },
                "spec": { "cluster": cluster, "slots": "0-9", "targetGroup": 1 } })
    };
    let calls = vec![
        list(&format!("{PIKA}/slotmigrations"), vec![mig("mine", "demo"), mig("theirs", "other")]),
        call(
            Method::DELETE,
            &format!("{PIKA}/slotmigrations/mine"),
            |_| json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" }),
        ),
        call(Method::POST, EVENTS, |body| body),
        call(Method::PATCH, &format!("{PIKA}/pikaclusters/demo"), move |_| echo),
    ];
    let server = tokio::spawn(serve(handle, calls));
    cluster::reconcile(Arc::new(c), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    assert_eq!(bodies[2]["reason"], "Deleting");
    let ops = serde_json::to_string(&bodies[3]).unwrap();
    assert!(ops.contains("remove") && ops.contains("/metadata/finalizers"), "{ops}");
}

#[tokio::test]
async fn a_migration_to_a_missing_group_fails_with_a_reason() {
    let (ctx, handle) = context();
    let m: SlotMigration = serde_json::from_value(json!({
        "apiVersion": "pika.sharding.io/v1alpha1", "kind": "SlotMigration",
        "metadata": { "name": "m1", "namespace": "apps", "uid": "m-1" },
        "spec": { "cluster": "demo", "slots": "0-9", "targetGroup": 5 },
    }))
    .unwrap();
    let c = serde_json::to_value(cluster(json!({}), json!({}))).unwrap();
    let echo = serde_json::to_value(&m).unwrap();
    let fresh = echo.clone();
    let calls = vec![
        call(Method::GET, &format!("{PIKA}/slotmigrations/m1"), move |_| fresh),
        call(Method::GET, &format!("{PIKA}/pikaclusters/demo"), move |_| c),
        call(Method::PATCH, &format!("{PIKA}/slotmigrations/m1/status"), move |_| echo),
        call(Method::POST, EVENTS, |body| body),
    ];
    let server = tokio::spawn(serve(handle, calls));
    migration::reconcile(Arc::new(m), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    assert_eq!(bodies[2]["status"]["phase"], "Failed");
    assert!(bodies[2]["status"]["message"].as_str().unwrap().contains("targetGroup 5 does not exist"));
    assert_eq!(bodies[3]["type"], "Warning");
}

#[tokio::test]
async fn a_migration_waits_for_the_one_before_it() {
    let (ctx, handle) = context();
    let mig = |name: &str, created: &str| {
        json!({ "apiVersion": "pika.sharding.io/v1alpha1", "kind": "SlotMigration",
                "metadata": { "name": name, "namespace": "apps", "creationTimestamp": created },
                "spec": { "cluster": "demo", "slots": "0-9", "targetGroup": 1 } })
    };
    let m: SlotMigration = serde_json::from_value(mig("second", "2026-11-25T10:00:05Z")).unwrap();
    let c = serde_json::to_value(cluster(json!({}), json!({}))).unwrap();
    let echo = serde_json::to_value(&m).unwrap();
    let queue = vec![mig("second", "2026-11-25T10:00:05Z"), mig("first", "2026-11-25T10:00:00Z")];
    let fresh = echo.clone();
    let calls = vec![
        call(Method::GET, &format!("{PIKA}/slotmigrations/second"), move |_| fresh),
        call(Method::GET, &format!("{PIKA}/pikaclusters/demo"), move |_| c),
        list(&format!("{PIKA}/slotmigrations"), queue),
        call(Method::PATCH, &format!("{PIKA}/slotmigrations/second/status"), move |_| echo),
    ];
    let server = tokio::spawn(serve(handle, calls));
    let action = migration::reconcile(Arc::new(m), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    assert_eq!(bodies[3]["status"]["message"], "waiting for first to finish");
    assert_eq!(action, kube::runtime::controller::Action::requeue(Duration::from_secs(3)));
}
