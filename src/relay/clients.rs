//! Who may relay: the `[[relay.clients]]` of the config, checked by password (argon2id PHC
//! hashes, or plain passwords compared in constant time) or by the client's network, with a
//! lock-out for IPs that keep guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secret::{constant_time_eq, verify_password_hash};

use crate::config::RelayClient;
use crate::smtp::{AuthOutcome, Authenticator};

/// How long failures count, and how long a locked-out IP waits.
const LOCK_WINDOW: Duration = Duration::from_secs(600);

/// The relay's clients and the failures of those that guess.
pub struct Clients {
    clients: Vec<RelayClient>,
    networks: Vec<(ipnet::IpNet, usize)>,
    max_failures: u32,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Compared against when the user is unknown, so that a wrong user costs what a wrong
    /// password costs.
    decoy: String,
}

struct Failures {
    times: Vec<Instant>,
    locked_until: Option<Instant>,
}

impl Clients {
    /// The clients of the config; `max_failures` failed AUTHs from one IP within 10 minutes lock
    /// it out for 10 minutes.
    pub fn new(clients: Vec<RelayClient>, max_failures: u32) -> Self {
        let networks = clients
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.parsed_networks().into_iter().map(move |n| (n, i)))
            .collect();
        Self {
            clients,
            networks,
            max_failures: max_failures.max(1),
            failures: Mutex::new(HashMap::new()),
            decoy: hash_password("decoy password").unwrap_or_default(),
        }
    }

    /// The client that relays from `peer` without AUTH, if its networks hold it.
    pub fn by_network(&self, peer: IpAddr) -> Option<&RelayClient> {
        self.networks
            .iter()
            .find(|(network, _)| network.contains(&peer))
            .map(|(_, i)| &self.clients[*i])
    }

    /// The client an authenticated session is (its identity is the client's user).
    pub fn by_user(&self, user: &str) -> Option<&RelayClient> {
        self.clients
            .iter()
            .find(|c| c.user.as_deref() == Some(user))
    }

    /// Whether `password` is `user`'s; as slow for an unknown user as for a wrong password.
    fn verify(&self, user: &str, password: &str) -> bool {
        let client = self.by_user(user);
        match client.map(|c| (&c.password_hash, &c.password)) {
            Some((Some(hash), _)) => verify_password_hash(hash, password),
            Some((None, Some(plain))) => {
                let equal = constant_time_eq(plain.as_bytes(), password.as_bytes());
                // The same work as a hashed one, so timing tells nothing about the kind either.
                let _ = verify_password_hash(&self.decoy, password);
                equal
            }
            _ => {
                let _ = verify_password_hash(&self.decoy, password);
                false
            }
        }
    }

    fn locked(&self, peer: IpAddr, now: Instant) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(&peer)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| until > now)
    }

    /// Counts a failure; `true` when the IP is now locked out.
    fn fail(&self, peer: IpAddr, now: Instant) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now)
                    || f.times
                        .last()
                        .is_some_and(|t| now.duration_since(*t) < LOCK_WINDOW)
            });
        }
        let entry = failures.entry(peer).or_insert(Failures {
            times: Vec::new(),
            locked_until: None,
        });
        entry.times.retain(|t| now.duration_since(*t) < LOCK_WINDOW);
        entry.times.push(now);
        if entry.times.len() >= self.max_failures as usize {
            entry.locked_until = Some(now + LOCK_WINDOW);
            entry.times.clear();
            return true;
        }
        false
    }
}

impl Authenticator for std::sync::Arc<Clients> {
    async fn authenticate(&self, peer: IpAddr, user: &str, password: &str) -> AuthOutcome {
        if self.locked(peer, Instant::now()) {
            return AuthOutcome::LockedOut;
        }
        let clients = self.clone();
        let (user, password) = (user.to_string(), password.to_string());
        // argon2 takes tens of milliseconds of CPU: off the session threads.
        let verified =
            tokio::task::spawn_blocking(move || clients.verify(&user, &password).then_some(user))
                .await;
        match verified {
            Ok(Some(user)) => AuthOutcome::Accepted(user),
            Ok(None) if self.fail(peer, Instant::now()) => {
                tracing::warn!(%peer, "relay AUTH: too many failures, locked out for 10 minutes");
                AuthOutcome::LockedOut
            }
            Ok(None) => AuthOutcome::Rejected,
            Err(_) => AuthOutcome::Temporary,
        }
    }
}

/// An argon2id PHC string for `password`, with a fresh salt.
///
/// # Errors
/// The hasher failed (it does not, for passwords of sane length).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(toml: &str) -> RelayClient {
        let config = crate::config::Config::parse(
            &format!("[[companies]]\nid = 'acme'\n[[relay.clients]]\ncompany = 'acme'\n{toml}"),
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        config.relay.clients[0].clone()
    }

    #[tokio::test]
    async fn passwords_hashes_networks_and_the_lock_out() {
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let clients = std::sync::Arc::new(Clients::new(
            vec![
                client(&format!("user = 'news'\npassword_hash = '{hash}'")),
                client("user = 'shop'\npassword = 'plain'"),
                client("networks = ['10.1.2.0/24']"),
            ],
            3,
        ));
        let peer: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(
            clients.authenticate(peer, "news", "s3cret").await,
            AuthOutcome::Accepted("news".into())
        );
        assert_eq!(
            clients.authenticate(peer, "shop", "plain").await,
            AuthOutcome::Accepted("shop".into())
        );
        assert_eq!(
            clients.authenticate(peer, "shop", "plain!").await,
            AuthOutcome::Rejected
        );
        assert_eq!(
            clients.authenticate(peer, "nobody", "x").await,
            AuthOutcome::Rejected
        );
        assert_eq!(
            clients.authenticate(peer, "news", "guess").await,
            AuthOutcome::LockedOut
        );
        assert_eq!(
            clients.authenticate(peer, "news", "s3cret").await,
            AuthOutcome::LockedOut,
            "locked out, even with the right password"
        );
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        assert!(matches!(
            clients.authenticate(other, "news", "s3cret").await,
            AuthOutcome::Accepted(_)
        ));
        assert!(clients.by_network("10.1.2.77".parse().unwrap()).is_some());
        assert!(clients.by_network("10.1.3.1".parse().unwrap()).is_none());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
