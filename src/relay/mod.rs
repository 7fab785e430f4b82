//! The submission side: senders relay campaigns through the gateway. This module owns who may
//! relay ([`clients`]); the sink that decides and queues comes with it.

pub mod clients;

pub use clients::{Clients, hash_password};
