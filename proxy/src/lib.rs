//! pika-proxy: a slot-aware router in front of pika-node groups, so clients keep one address
//! while slots move. Layers: [`client`] (connections, local and admin commands), [`proxy`]
//! (routing, splitting by group, holds, retries), [`backend`] (pooled pipelined node
//! connections), with the pure parts in [`route`], [`commands`] and [`hold`].

pub mod backend;
pub mod client;
pub mod commands;
pub mod config;
pub mod hold;
pub mod metrics;
pub mod proxy;
pub mod route;
pub mod server;
