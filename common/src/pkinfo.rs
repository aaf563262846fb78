//! The text of `pkcluster info slot` and `pkcluster info table` (docs/compatibility.md,
//! "pkcluster info layout"): one renderer (used by the node) and one parser (used by the operator
//! and proxy), kept side by side so the layout lives in one place. Every line ends in CRLF and the two-space indents matter:
//! Codis parses them.

use std::fmt::Write as _;

use crate::protocol::{LinkState, SyncStatus};

/// One slot block of `pkcluster info slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub table: String,
    pub slot: u32,
    /// The slot's change-log write position, shown as Pika's `binlog_offset=<filenum> <offset>`.
    pub binlog_offset: (u64, u64),
    /// `write2file<N>` or `none`.
    pub safety_purge: String,
    pub master: Option<MasterRole>,
    pub slave: Option<SlaveRole>,
}

/// The master half of a slot's role: who replicates from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterRole {
    pub replicas: Vec<ReplicaInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// `ip:port` (the replica's client port).
    pub addr: String,
    pub status: SyncStatus,
    /// Bytes not yet acknowledged. Pika prints it only in `SlaveBinlogSync`; we always print it
    /// (docs/compatibility.md, "pkcluster info layout"), and the parser accepts both.
    pub lag: Option<u64>,
}

/// The replica half of a slot's role: whom it replicates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveRole {
    /// `host:port` of the master.
    pub master: String,
    pub state: LinkState,
}

impl SlotInfo {
    /// The change-log position, comparable across copies of the slot: the copy with the
    /// highest has the most of its history.
    pub fn position(&self) -> u64 {
        self.binlog_offset.0 * (100 << 20) + self.binlog_offset.1
    }

    /// Replicas that stream this master slot incrementally (not waiting for, or in, a full sync).
    pub fn streaming_replicas(&self) -> usize {
        self.master.as_ref().map_or(0, |m| m.replicas.iter().filter(|r| r.status == SyncStatus::BinlogSync).count())
    }

    /// Appends this slot's block, ending with the blank separator line.
    pub fn render(&self, out: &mut String) {
        let _ = write!(
            out,
            "({}:{}) binlog_offset={} {},safety_purge={}\r\n",
            self.table, self.slot, self.binlog_offset.0, self.binlog_offset.1, self.safety_purge
        );
        if let Some(master) = &self.master {
            let _ = write!(out, "  Role: Master\r\n  connected_slaves: {}\r\n", master.replicas.len());
            for (i, replica) in master.replicas.iter().enumerate() {
                let _ = write!(out, "  slave[{i}]: {}\r\n  replication_status: {}\r\n", replica.addr, replica.status);
                if let Some(lag) = replica.lag {
                    let _ = write!(out, "  lag: {lag}\r\n");
                }
            }
        }
        if self.master.is_some() && self.slave.is_some() {
            out.push_str("  -----------\r\n");
        }
        if let Some(slave) = &self.slave {
            let _ = write!(out, "  Role: Slave\r\n  master: {}\r\n  slave status: {}\r\n", slave.master, slave.state);
        }
        out.push_str("\r\n");
    }
}

/// Why an info reply did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparsable pkcluster info line: {0:?}")]
pub struct InfoParseError(pub String);

/// Parses a whole `pkcluster info slot` reply.
pub fn parse_slot_info(text: &str) -> Result<Vec<SlotInfo>, InfoParseError> {
    let mut out = Vec::new();
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let mut info = parse_header(line)?;
        while let Some(line) = lines.next_if(|l| !l.is_empty()) {
            let line = line.trim_start();
            if line == "Role: Master" {
                info.master = Some(MasterRole::default());
            } else if line == "Role: Slave" {
                info.slave = Some(SlaveRole { master: String::new(), state: LinkState::NoConnect });
            } else if let Some(addr) = line.strip_prefix("slave[").and_then(|l| l.split_once("]: ")) {
                let master = info.master.as_mut().ok_or_else(|| InfoParseError(line.into()))?;
                master.replicas.push(ReplicaInfo { addr: addr.1.to_string(), status: SyncStatus::NotSync, lag: None });
            } else if let Some(status) = line.strip_prefix("replication_status: ") {
                last_replica(&mut info, line)?.status = status.parse().map_err(|_| InfoParseError(line.into()))?;
            } else if let Some(lag) = line.strip_prefix("lag: ") {
                let lag = lag.parse().map_err(|_| InfoParseError(line.into()))?;
                last_replica(&mut info, line)?.lag = Some(lag);
            } else if let Some(addr) = line.strip_prefix("master: ") {
                slave_part(&mut info, line)?.master = addr.to_string();
            } else if let Some(state) = line.strip_prefix("slave status: ") {
                slave_part(&mut info, line)?.state = state.parse().map_err(|_| InfoParseError(line.into()))?;
            }
            // connected_slaves, the divider and consensus lines carry nothing we need.
        }
        out.push(info);
    }
    Ok(out)
}

fn last_replica<'a>(info: &'a mut SlotInfo, line: &str) -> Result<&'a mut ReplicaInfo, InfoParseError> {
    info.master.as_mut().and_then(|m| m.replicas.last_mut()).ok_or_else(|| InfoParseError(line.into()))
}

fn slave_part<'a>(info: &'a mut SlotInfo, line: &str) -> Result<&'a mut SlaveRole, InfoParseError> {
    info.slave.as_mut().ok_or_else(|| InfoParseError(line.into()))
}

/// `(db0:12) binlog_offset=0 345,safety_purge=none`
fn parse_header(line: &str) -> Result<SlotInfo, InfoParseError> {
    let bad = || InfoParseError(line.to_string());
    let rest = line.strip_prefix('(').ok_or_else(bad)?;
    let (name, rest) = rest.split_once(") binlog_offset=").ok_or_else(bad)?;
    let (table, slot) = name.rsplit_once(':').ok_or_else(bad)?;
    let (offset, purge) = rest.split_once(",safety_purge=").ok_or_else(bad)?;
    let (filenum, offset) = offset.split_once(' ').ok_or_else(bad)?;
    Ok(SlotInfo {
        table: table.to_string(),
        slot: slot.parse().map_err(|_| bad())?,
        binlog_offset: (filenum.parse().map_err(|_| bad())?, offset.parse().map_err(|_| bad())?),
        safety_purge: purge.to_string(),
        master: None,
        slave: None,
    })
}

/// One table block of `pkcluster info table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub id: u32,
    pub partition_num: u32,
    /// Absent in the single-table form.
    pub total_commands: Option<u64>,
    pub total_write_commands: Option<u64>,
    pub qps: u64,
    pub write_qps: u64,
    pub read_qps: u64,
}

impl TableInfo {
    /// Appends the table's block: 7 lines, or 5 without the totals (single-table form).
    pub fn render(&self, out: &mut String) {
        let _ = write!(out, "table_id: {}\r\n  partition_num: {}\r\n", self.id, self.partition_num);
        if let (Some(total), Some(writes)) = (self.total_commands, self.total_write_commands) {
            let _ = write!(out, "  total_commands_processed:{total}\r\n  total_write_commands_processed:{writes}\r\n");
        }
        let _ =
            write!(out, "  qps: {}\r\n  write_qps: {}\r\n  read_qps: {}\r\n", self.qps, self.write_qps, self.read_qps);
    }
}

/// Parses a `pkcluster info table` reply (either form).
pub fn parse_table_info(text: &str) -> Result<Vec<TableInfo>, InfoParseError> {
    let mut out: Vec<TableInfo> = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let bad = || InfoParseError(line.to_string());
        let (key, value) = line.trim_start().split_once(':').ok_or_else(bad)?;
        let value: u64 = value.trim().parse().map_err(|_| bad())?;
        if key == "table_id" {
            out.push(TableInfo {
                id: value as u32,
                partition_num: 0,
                total_commands: None,
                total_write_commands: None,
                qps: 0,
                write_qps: 0,
                read_qps: 0,
            });
            continue;
        }
        let table = out.last_mut().ok_or_else(bad)?;
        match key {
            "partition_num" => table.partition_num = value as u32,
            "total_commands_processed" => table.total_commands = Some(value),
            "total_write_commands_processed" => table.total_write_commands = Some(value),
            "qps" => table.qps = value,
            "write_qps" => table.write_qps = value,
            "read_qps" => table.read_qps = value,
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_block_layout_is_byte_exact() {
        let info = SlotInfo {
            table: "db0".into(),
            slot: 3,
            binlog_offset: (0, 120),
            safety_purge: "none".into(),
            master: Some(MasterRole {
                replicas: vec![ReplicaInfo {
                    addr: "127.0.0.1:9222".into(),
                    status: SyncStatus::BinlogSync,
                    lag: Some(0),
                }],
            }),
            slave: Some(SlaveRole { master: "127.0.0.1:9220".into(), state: LinkState::Connected }),
        };
        let mut text = String::new();
        info.render(&mut text);
        assert_eq!(
            text,
            "(db0:3) binlog_offset=0 120,safety_purge=none\r\n  Role: Master\r\n  connected_slaves: 1\r\n  \
             slave[0]: 127.0.0.1:9222\r\n  replication_status: SlaveBinlogSync\r\n  lag: 0\r\n  -----------\r\n  \
             Role: Slave\r\n  master: 127.0.0.1:9220\r\n  slave status: kConnected\r\n\r\n"
        );
        assert_eq!(parse_slot_info(&text).unwrap(), vec![info]);
    }

    #[test]
    fn parses_pika_form_without_lag() {
        let text = "(db0:0) binlog_offset=2 99,safety_purge=none\r\n  Role: Master\r\n  connected_slaves: 1\r\n  \
                    slave[0]: 10.0.0.2:9221\r\n  replication_status: SlaveDbSync\r\n\r\n\
                    (db0:1) binlog_offset=0 0,safety_purge=none\r\n  Role: Master\r\n  connected_slaves: 0\r\n\r\n";
        let infos = parse_slot_info(text).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].binlog_offset, (2, 99));
        assert_eq!(infos[0].master.as_ref().unwrap().replicas[0].lag, None);
        assert_eq!(infos[1].master.as_ref().unwrap().replicas.len(), 0);
    }

    #[test]
    fn table_blocks_round_trip() {
        let full = TableInfo {
            id: 0,
            partition_num: 1024,
            total_commands: Some(5),
            total_write_commands: Some(2),
            qps: 1,
            write_qps: 0,
            read_qps: 1,
        };
        let mut text = String::new();
        full.render(&mut text);
        assert_eq!(text.lines().count(), 7);
        assert!(text.contains("  total_commands_processed:5\r\n"));
        let short = TableInfo { total_commands: None, total_write_commands: None, ..full.clone() };
        short.render(&mut text);
        assert_eq!(parse_table_info(&text).unwrap(), vec![full, short]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_slot_info("hello\r\n").is_err());
        assert!(parse_table_info("  qps: 1\r\n").is_err());
    }
}
