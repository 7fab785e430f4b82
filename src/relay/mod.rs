//! The submission side: senders relay campaigns through the gateway. [`clients`] owns who may
//! relay, [`rewrite`] what the relay changes in a message, [`sink`] the decision per recipient
//! and the hand-over to the durable queue (`queue`), which delivers.

pub mod clients;
pub mod rewrite;
pub mod sink;

pub use clients::{Clients, hash_password};
pub use sink::RelaySink;
