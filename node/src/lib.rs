//! pika-node: a Pika-compatible storage node in sharding mode, on RocksDB.
//!
//! Layers, from the socket in: [`listener`] and [`client`] (connections, RESP framing),
//! [`dispatch`] (checks and slot routing), [`commands`] (one module per command family),
//! [`storage`] (RocksDB, key encoding, per-slot transactions and change logs), with [`slots`]
//! holding the ownership truth and [`replication`] moving slots' logs between nodes.

pub mod blocking;
pub mod client;
pub mod commands;
pub mod config;
pub mod dispatch;
pub mod durability;
pub mod error;
pub mod expire;
pub mod glob;
pub mod http;
pub mod info;
pub mod lease;
pub mod listener;
pub mod metrics;
pub mod replication;
pub mod reply;
pub mod server;
pub mod slots;
pub mod storage;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
