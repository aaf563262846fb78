//! The cluster's passwords (common/src/auth.rs):
//! - the admin password, in the operator's own Secret `<name>-admin` (owned by the cluster),
//!   generated when the cluster is first reconciled: the nodes' `requirepass` and `masterauth`,
//!   the proxies' `admin-password`, what the operator connects with. Applications never get it.
//! - the data password, which the user's Secret (`passwordSecretRef`) says.
//!
//! The data password rotates without downtime. The operator's Secret `<name>-auth` holds what
//! the pods start with: `password`, and during a rotation `previous`, accepted next to it. When
//! the user's value changes:
//!
//! 1. `<name>-auth` becomes {new, previous: old} (pods restarted from now on accept both);
//! 2. every node gets `userpass-previous` old and `userpass` new (both accepted); every proxy
//!    gets `PXPASSWORD new old`; once every node and proxy has them, the status records the
//!    Secret's version and the time;
//! 3. after `rotationGraceSeconds` (clients move to the new password meanwhile),
//!    `<name>-auth` becomes {new, previous: ""} and step 2 runs again: the old one is retired.
//!
//! Connections authenticated before stay so throughout. Each step is derived from the two
//! Secrets and the status, so an operator restarted midway goes on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use super::{conditions, Context, Error};
use crate::admin::Admin;
use crate::crd::{PasswordStatus, PikaCluster, PikaClusterStatus};
use crate::resources::{admin_secret_name, auth_secret_name, ADMIN_SECRET_KEY};

/// The passwords of `<name>-auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwords {
    pub current: String,
    pub previous: Option<String>,
    /// The Secret's resourceVersion (None: read from the user's Secret, no copy yet).
    pub version: Option<String>,
}

fn value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    Some(String::from_utf8_lossy(&bytes.0).into_owned())
}

/// The user's password (None: the cluster has none).
async fn wanted(ctx: &Context, cluster: &PikaCluster) -> Result<Option<String>, Error> {
    let Some(r) = &cluster.spec.password_secret_ref else { return Ok(None) };
    let ns = cluster.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns).get(&r.name).await?;
    match value(&secret, &r.key) {
        Some(pw) if !pw.is_empty() => Ok(Some(pw)),
        _ => Err(Error::Invalid(format!("secret {} has no (non-empty) key {}", r.name, r.key))),
    }
}

impl Passwords {
    /// What `<name>-auth` holds (`current` when it has no password: the user's).
    fn of(secret: &Secret, current: String) -> Passwords {
        Passwords {
            current: value(secret, "password").unwrap_or(current),
            previous: value(secret, "previous").filter(|p| !p.is_empty()),
            version: secret.metadata.resource_version.clone(),
        }
    }
}

/// The passwords the cluster runs with (`<name>-auth`; before it exists, the user's).
pub async fn passwords(ctx: &Context, cluster: &PikaCluster) -> Result<Option<Passwords>, Error> {
    let Some(wanted) = wanted(ctx, cluster).await? else { return Ok(None) };
    let ns = cluster.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    Ok(Some(match api.get_opt(&auth_secret_name(&cluster.name_any())).await? {
        Some(s) => Passwords::of(&s, wanted),
        None => Passwords { current: wanted, previous: None, version: None },
    }))
}

/// Brings `<name>-auth` one step towards the user's Secret (see the module's steps) and
/// returns the passwords the cluster runs with. `status.password` says what the nodes have.
pub async fn follow_user_secret(
    ctx: &Context,
    cluster: &PikaCluster,
    status: &mut PikaClusterStatus,
) -> Result<Option<Passwords>, Error> {
    let (Some(r), Some(wanted)) = (&cluster.spec.password_secret_ref, wanted(ctx, cluster).await?) else {
        status.password = None;
        return Ok(None);
    };
    let ns = cluster.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let name = auth_secret_name(&cluster.name_any());
    let Some(mut secret) = api.get_opt(&name).await? else {
        // The first time (a new cluster, or one made by an operator without this Secret): the
        // nodes run with the user's password.
        let mut secret = Secret { data: Some(data(&wanted, "")), ..Secret::default() };
        secret.metadata.name = Some(name.clone());
        secret.metadata.namespace = Some(ns.clone());
        secret.metadata.labels = Some(crate::resources::pod_selector(&cluster.name_any()));
        secret.metadata.owner_references = cluster.controller_owner_ref(&()).map(|o| vec![o]);
        let created = api.create(&PostParams::default(), &secret).await?;
        return Ok(Some(Passwords { current: wanted, previous: None, version: created.metadata.resource_version }));
    };
    let current = value(&secret, "password").unwrap_or_default();
    let previous = value(&secret, "previous").unwrap_or_default();
    let applied =
        status.password.as_ref().and_then(|p| p.applied_version.as_ref()) == secret.resource_version().as_ref();
    let grace_over = status.password.as_ref().and_then(|p| p.previous_since.as_ref()).is_some_and(|since| {
        conditions::now().0.as_second() - since.0.as_second() >= i64::from(r.rotation_grace_seconds)
    });
    let next = if current != wanted {
        // A new password: both accepted from now on (a rotation before the last one was
        // retired drops the oldest).
        ctx.event(
            cluster,
            false,
            "PasswordRotation",
            "the password Secret changed: nodes and proxies accept the previous and the new password".into(),
        )
        .await;
        Some(data(&wanted, &current))
    } else if !previous.is_empty() && applied && grace_over {
        ctx.event(cluster, false, "PasswordRetired", "the previous password is no longer accepted".into()).await;
        Some(data(&wanted, ""))
    } else {
        None
    };
    if let Some(next) = next {
        secret.data = Some(next);
        secret = api.replace(&name, &PostParams::default(), &secret).await?;
    }
    Ok(Some(Passwords::of(&secret, wanted)))
}

/// The cluster's admin password, from `<name>-admin`; created with a new random password when
/// missing (before any pod: they read it).
pub async fn admin_password(ctx: &Context, cluster: &PikaCluster) -> Result<String, Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let name = admin_secret_name(&cluster.name_any());
    if let Some(secret) = api.get_opt(&name).await? {
        return match value(&secret, ADMIN_SECRET_KEY) {
            Some(pw) if !pw.is_empty() => Ok(pw),
            _ => Err(Error::Invalid(format!("secret {name} has no (non-empty) key {ADMIN_SECRET_KEY}"))),
        };
    }
    let password = crate::admin::generate_password();
    let mut secret = Secret {
        data: Some(BTreeMap::from([(ADMIN_SECRET_KEY.to_string(), ByteString(password.as_bytes().to_vec()))])),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.clone());
    secret.metadata.namespace = Some(ns);
    secret.metadata.labels = Some(crate::resources::pod_selector(&cluster.name_any()));
    secret.metadata.owner_references = cluster.controller_owner_ref(&()).map(|o| vec![o]);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(password),
        // Another reconcile (the migration controller's) made it first: theirs counts.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let secret = api.get(&name).await?;
            value(&secret, ADMIN_SECRET_KEY).ok_or_else(|| Error::Invalid(format!("secret {name} has no key")))
        }
        Err(e) => Err(e.into()),
    }
}

fn data(password: &str, previous: &str) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        ("password".to_string(), ByteString(password.as_bytes().to_vec())),
        ("previous".to_string(), ByteString(previous.as_bytes().to_vec())),
    ])
}

/// Gives every node and proxy the passwords (step 2), once per version of `<name>-auth`, and
/// records it in `status.password`. Every member must run (a pod restarted later starts with
/// the Secret's values anyway); until then it is tried again on the next pass.
pub async fn apply(
    admin: &Admin,
    nodes: Option<Vec<String>>,
    proxies: &[String],
    p: &Passwords,
    status: &mut PikaClusterStatus,
) -> Result<bool, String> {
    let recorded = status.password.as_ref().and_then(|s| s.applied_version.clone());
    if p.version.is_none() || recorded == p.version {
        return Ok(false);
    }
    let Some(nodes) = nodes else { return Err("waiting for every node to run".into()) };
    let previous = p.previous.clone().unwrap_or_default();
    let set = |node: &str, key: &'static str, value: String| {
        let node = node.to_string();
        async move { admin.call(&node, &["config", "set", key, &value]).await.map_err(|e| e.to_string()) }
    };
    for node in &nodes {
        set(node, "userpass-previous", previous.clone()).await?;
        set(node, "userpass", p.current.clone()).await?;
    }
    for proxy in proxies {
        let mut args = vec!["pxpassword", p.current.as_str()];
        if !previous.is_empty() {
            args.push(&previous);
        }
        admin.call(proxy, &args).await.map_err(|e| e.to_string())?;
    }
    let since = status.password.as_ref().and_then(|s| s.previous_since.clone());
    status.password = Some(PasswordStatus {
        applied_version: p.version.clone(),
        previous_since: p.previous.as_ref().map(|_| since.unwrap_or_else(conditions::now)),
    });
    Ok(true)
}
