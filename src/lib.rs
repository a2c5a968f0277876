//! sop-console: a keyboard-first omnichannel chat hub for Zalo Official Accounts.
//!
//! Layers, bottom up: `model` (domain types), `routing` (pure distribution engine), `store`
//! (durable key-value storage), `wire` (what crosses the network), `zalo` (the Zalo protocol);
//! on top, independent of each other: `server` (the hub), `sim` (the Zalo simulator) and
//! `console` (the TUI).

pub mod bench;
pub mod config;
pub mod console;
pub mod demo;
pub mod model;
pub mod routing;
pub mod server;
pub mod sim;
pub mod store;
pub mod wire;
pub mod zalo;
