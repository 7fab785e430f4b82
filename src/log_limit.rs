//! Repeated identical log lines, limited: the first is logged at once, repeats at most once per
//! interval with how many were held back. A store failure answered 451 to every client must not
//! become thousands of identical lines a second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Distinct messages remembered; past it the oldest are forgotten (and logged again when seen).
const MAX_MESSAGES: usize = 64;

/// Tracks when each message was last logged.
pub struct LogLimit {
    every: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    logged_at: Instant,
    held_back: u64,
}

impl LogLimit {
    /// Logs each distinct message at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log `message` now: `Some(n)` with the `n` identical ones held back since it was
    /// last logged, `None` to hold this one back too.
    pub fn admit(&self, message: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = seen.get_mut(message) {
            if now.duration_since(entry.logged_at) < self.every {
                entry.held_back += 1;
                return None;
            }
            let held_back = std::mem::take(&mut entry.held_back);
            entry.logged_at = now;
            return Some(held_back);
        }
        if seen.len() >= MAX_MESSAGES
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, s)| s.logged_at)
                .map(|(m, _)| m.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(
            message.to_string(),
            Seen {
                logged_at: now,
                held_back: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_and_counted() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limit.admit("disk full", start), Some(0));
        for i in 1..=1_000 {
            assert_eq!(
                limit.admit("disk full", start + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(
            limit.admit("other", start),
            Some(0),
            "another message is its own"
        );
        assert_eq!(
            limit.admit("disk full", start + Duration::from_secs(11)),
            Some(1_000)
        );
        assert_eq!(
            limit.admit("disk full", start + Duration::from_secs(12)),
            None
        );
    }
}
