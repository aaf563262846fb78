//! Typed admin calls to nodes (`pkcluster ...`) and proxies (`PX...`), over `common::client`.

use common::pkinfo::SlotInfo;
use common::resp::Frame;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("{addr}: {text}")]
    Refused { addr: String, text: String },
    #[error("{addr}: {text}")]
    Unreachable { addr: String, text: String },
}

impl AdminError {
    pub fn text(&self) -> &str {
        match self {
            AdminError::Refused { text, .. } | AdminError::Unreachable { text, .. } => text,
        }
    }
}

/// Where admin requests go, with the cluster password.
#[derive(Debug, Clone)]
pub struct Admin {
    pub password: Option<String>,
}

impl Admin {
    pub async fn call(&self, addr: &str, args: &[&str]) -> Result<Frame, AdminError> {
        match common::client::request(addr, self.password.as_deref(), args).await {
            Ok(Frame::Error(text)) => Err(AdminError::Refused { addr: addr.into(), text }),
            Ok(frame) => Ok(frame),
            Err(text) => Err(AdminError::Unreachable { addr: addr.into(), text }),
        }
    }

    /// Whether a node or proxy answers PING (with the password) right now.
    pub async fn answers(&self, addr: &str) -> bool {
        self.call(addr, &["ping"]).await.is_ok()
    }

    async fn ok(&self, addr: &str, args: &[&str]) -> Result<(), AdminError> {
        self.call(addr, args).await.map(|_| ())
    }

    /// `addslots`, treating "already owned" as done (steps are retried after a restart).
    pub async fn add_slots(&self, node: &str, slots: &str) -> Result<(), AdminError> {
        match self.ok(node, &["pkcluster", "addslots", slots]).await {
            Err(e) if e.text().contains(" exist") && !e.text().contains("not exist") => Ok(()),
            other => other,
        }
    }

    /// `delslots`, treating "not owned" as done.
    pub async fn del_slots(&self, node: &str, slots: &str) -> Result<(), AdminError> {
        match self.ok(node, &["pkcluster", "delslots", slots]).await {
            Err(e) if e.text().contains("not exist") => Ok(()),
            other => other,
        }
    }

    pub async fn follow(&self, node: &str, master: &str, slots: &str) -> Result<(), AdminError> {
        let (host, port) = master.rsplit_once(':').unwrap_or((master, "9221"));
        self.ok(node, &["pkcluster", "slotsslaveof", host, port, slots]).await
    }

    /// Follows `master` with a full sync whatever this node holds (a demoted old master).
    pub async fn follow_force(&self, node: &str, master: &str, slots: &str) -> Result<(), AdminError> {
        let (host, port) = master.rsplit_once(':').unwrap_or((master, "9221"));
        self.ok(node, &["pkcluster", "slotsslaveof", host, port, slots, "force"]).await
    }

    pub async fn promote(&self, node: &str, slots: &str) -> Result<(), AdminError> {
        self.ok(node, &["pkcluster", "slotsslaveof", "no", "one", slots]).await
    }

    pub async fn fence(&self, node: &str, slots: &str) -> Result<(), AdminError> {
        self.ok(node, &["pkcluster", "fence", slots]).await
    }

    pub async fn unfence(&self, node: &str, slots: &str) -> Result<(), AdminError> {
        self.ok(node, &["pkcluster", "unfence", slots]).await
    }

    /// `pkcluster info slot <slots>`, parsed.
    pub async fn slot_info(&self, node: &str, slots: &str) -> Result<Vec<SlotInfo>, AdminError> {
        let frame = self.call(node, &["pkcluster", "info", "slot", slots]).await?;
        let text = frame.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        common::pkinfo::parse_slot_info(&text)
            .map_err(|e| AdminError::Refused { addr: node.into(), text: e.to_string() })
    }

    /// The slots a node accepts writes for in table 0 (`pkcluster writable`).
    pub async fn writable(&self, node: &str) -> Result<Vec<u32>, AdminError> {
        let frame = self.call(node, &["pkcluster", "writable"]).await?;
        let bad = || AdminError::Refused { addr: node.into(), text: format!("unexpected reply {frame:?}") };
        let Frame::Array(tables) = &frame else { return Err(bad()) };
        for t in tables {
            if let Frame::Array(fields) = t {
                if let [Frame::Integer(0), Frame::Integer(_), Frame::Bulk(slots)] = fields.as_slice() {
                    return common::slotset::parse_slots(&String::from_utf8_lossy(slots)).map_err(|_| bad());
                }
            }
        }
        Ok(Vec::new())
    }

    pub async fn hold(&self, proxy: &str, slots: &str) -> Result<(), AdminError> {
        self.ok(proxy, &["pxhold", "0", slots]).await
    }

    pub async fn release(&self, proxy: &str, slots: &str) -> Result<(), AdminError> {
        self.ok(proxy, &["pxrelease", "0", slots]).await
    }

    /// `PXROUTE SET <epoch> 0 <slot-count> (<group> <addr> <slots>)*`.
    pub async fn set_route(
        &self,
        proxy: &str,
        epoch: u64,
        slot_count: u32,
        groups: &[(String, String, String)],
    ) -> Result<(), AdminError> {
        let (epoch, count) = (epoch.to_string(), slot_count.to_string());
        let mut args = vec!["pxroute", "set", &epoch, "0", &count];
        for (name, addr, slots) in groups {
            args.extend([name.as_str(), addr.as_str(), slots.as_str()]);
        }
        self.ok(proxy, &args).await
    }

    /// The proxy's current route epoch.
    pub async fn route_epoch(&self, proxy: &str) -> Result<u64, AdminError> {
        let frame = self.call(proxy, &["pxroute", "get"]).await?;
        let text = frame.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        Ok(text.lines().next().and_then(|l| l.strip_prefix("epoch ")).and_then(|e| e.parse().ok()).unwrap_or(0))
    }
}
