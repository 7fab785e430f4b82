//! Limits per listener (configured under `[inbound.limits]`).

pub use crate::config::SmtpLimits;
