//! Pieces shared by the node, the proxy and the operator.
//!
//! - [`resp`]: the RESP2 codec (request parsing for servers, reply parsing for clients, encoding).
//! - [`slot`]: the key -> slot function of Pika 3.3.6 (CRC-32/IEEE of the hashtag or key, `% N`).
//! - [`slotset`]: Pika's slot-range syntax (`0-99,512`).
//! - [`pkinfo`]: parsers for the text replies of `pkcluster info slot` and `pkcluster info table`.
//! - [`http`]: the tiny `/health` + `/metrics` endpoint of node and proxy.
//! - [`protocol`]: replication state names and the admin error replies callers act on.
//! - [`auth`]: the admin and default users, what each may run, credentials.
//! - [`handshake`]: HELLO, AUTH and CLIENT as client libraries send them on connect.
//! - [`client`]: connect and one-shot admin requests to nodes and proxies.
//! - [`process`]: logging setup and termination signals, as every binary does them.
//! - [`options`]: pika-node's options (which can change live, their syntax, defaults).

pub mod auth;
pub mod client;
pub mod handshake;
pub mod http;
pub mod options;
pub mod pkinfo;
pub mod process;
pub mod protocol;
pub mod resp;
pub mod slot;
pub mod slotset;
pub mod tls;
