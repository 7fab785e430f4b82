//! bouncegate: an SMTP gateway that keeps a sender's mailing honest and deliverable.
//!
//! Data flows one way: `smtp` (sessions) → `inbound` (route a received mail) → `analysis` (parse and
//! classify) → `store`; and `relay` (accept) → `policy` (may this go out?) → `queue` → upstream.
//! `service` is the one layer the edges (`cli`, `api`) call; `serve` wires everything together.

pub mod address;
pub mod analysis;
pub mod api;
pub mod cli;
pub mod config;
pub mod inbound;
pub mod log_limit;
pub mod message;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod queue;
pub mod relay;
pub mod render;
pub mod secret;
pub mod serve;
pub mod service;
pub mod smtp;
pub mod staff;
pub mod store;
pub mod token;
pub mod upstream;
pub mod verp;
pub mod webhooks;
