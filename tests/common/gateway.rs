//! A running gateway relaying to a recording upstream, and an address's footprint made through
//! it the way a real one builds up: a relayed newsletter, its bounce to the VERP return path, an
//! unsubscribe mail, a staff postal block and a confirmed opt-in.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bouncegate::config::Config;
use bouncegate::model::{Channel, Reason, Source};
use bouncegate::serve::Gateway;
use bouncegate::service::{SuppressRequest, SuppressionService};
use bouncegate::smtp::{ListenerConfig, ServerHandle, SmtpServer};

use super::{Recorder, TestDb};

pub const DOMAIN: &str = "bounces.example.org";
/// A read token the running gateway accepts.
pub const READ_TOKEN: &str = "read-token-for-tests-0123456789";
/// An admin token the running gateway accepts.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

pub struct Running {
    pub gateway: Gateway,
    pub upstream: ServerHandle,
    pub recorder: Arc<Recorder>,
    pub service: SuppressionService,
    pub config_path: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

/// Starts the gateway on `db` with the example organisation and `extra` TOML (not `[inbound]`,
/// `[http]` or `[relay]`, which this sets).
pub async fn start(db: &TestDb, extra: &str) -> Running {
    let recorder = Arc::new(Recorder::default());
    let upstream = SmtpServer::bind(
        ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "upstream.test"),
        recorder.clone(),
    )
    .await
    .unwrap()
    .spawn();
    let text = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\ndns_resolver = \"127.0.0.1:9\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\ntokens = [{{ name = \"crm\", token = \"{READ_TOKEN}\", role = \"read\" }}, {{ name = \"ops\", token = \"{ADMIN_TOKEN}\", role = \"admin\" }}]\n\
         [relay]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:{}\"\n\
         [[relay.clients]]\nuser = \"news\"\npassword = \"s3cret\"\ncompany = \"acme\"\nbrands = [\"news\"]\n\
         {extra}",
        upstream.local_addr().port()
    );
    let config_path = super::write_config(db, &text);
    let config = Arc::new(Config::load(Some(&config_path)).unwrap());
    let gateway = Gateway::start(config.clone()).await.unwrap();
    let service = SuppressionService::new(gateway.store.clone(), config);
    let base = format!("http://{}", gateway.http.local_addr());
    Running {
        gateway,
        upstream,
        recorder,
        service,
        config_path,
        base,
    }
}

impl Running {
    pub async fn stop(self) {
        self.gateway.stop().await;
        self.upstream.shutdown().await;
    }

    /// Relays a newsletter to `address` and returns the signed return path it went out with.
    pub async fn relay_newsletter(&self, address: &str, n: usize) -> String {
        let mail = format!(
            "From: news@acme.example\r\nTo: {address}\r\nSubject: News {n}\r\nMessage-ID: <n{n}-{address}>\r\n\
             X-Bouncegate-Brand: news\r\n\r\nHello {address}.\r\n"
        );
        let reply = super::smtp::transaction(
            self.gateway.relay.local_addr(),
            Some(("news", "s3cret")),
            "news@acme.example",
            address,
            &mail,
        )
        .await;
        assert!(reply.starts_with("250"), "{reply}");
        let subject = format!("Subject: News {n}\r\n");
        loop {
            let found = self
                .recorder
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|m| {
                    m.rcpt_to[0].address == address
                        && String::from_utf8_lossy(&m.data).contains(&subject)
                })
                .map(|m| m.mail_from.address.clone());
            if let Some(path) = found {
                return path;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A "mailbox full" soft bounce to `return_path` for `address`.
    pub async fn bounce(&self, address: &str, return_path: &str) {
        let dsn = format!(
            "From: MAILER-DAEMON@mx.example.net\r\nSubject: Delivery failure\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
             --B\r\nContent-Type: text/plain\r\n\r\n<{address}>: mailbox full\r\n\r\n\
             --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
             Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 4.2.2\r\n\
             Diagnostic-Code: smtp; 452 4.2.2 <{address}> mailbox full\r\n\r\n--B--\r\n"
        );
        let reply = super::smtp::transaction(
            self.gateway.inbound.local_addr(),
            None,
            "",
            return_path,
            &dsn,
        )
        .await;
        assert!(reply.starts_with("250"), "{reply}");
    }

    /// A plain unsubscribe mail from `address` to acme, with `headers` added.
    pub async fn unsubscribe_mail(&self, address: &str, headers: &str) {
        let mail = format!(
            "From: {address}\r\nTo: unsubscribe-acme@{DOMAIN}\r\n{headers}Subject: stop\r\n\r\nPlease remove {address}.\r\n"
        );
        let reply = super::smtp::transaction(
            self.gateway.inbound.local_addr(),
            None,
            address,
            &format!("unsubscribe-acme@{DOMAIN}"),
            &mail,
        )
        .await;
        assert!(reply.starts_with("250"), "{reply}");
    }

    /// The stored mail of `address` whose header section contains `needle`.
    pub async fn stored_mail_with(
        &self,
        address: &str,
        needle: &str,
    ) -> bouncegate::store::HeldEvidence {
        self.service
            .access_report(address)
            .await
            .unwrap()
            .evidence
            .into_iter()
            .find(|e| e.headers.as_deref().is_some_and(|h| h.contains(needle)))
            .unwrap_or_else(|| panic!("a stored mail of {address} with {needle:?}"))
    }

    /// Gives `address` a footprint everywhere: a newsletter and its bounce, an unsubscribe mail,
    /// a staff postal block for globex with a note naming it, and a consent for globex.
    pub async fn footprint(&self, address: &str) {
        let return_path = self.relay_newsletter(address, 0).await;
        self.bounce(address, &return_path).await;
        self.unsubscribe_mail(address, "").await;
        let note = format!("phoned: {address} wants no letters");
        self.service
            .suppress(&SuppressRequest {
                address: address.into(),
                reason: Reason::Manual,
                company: Some("globex".into()),
                brand: None,
                channel: Channel::Postal,
                note: Some(note),
                source: Source::Cli,
                created_at: None,
                created_by: None,
                expires_at: None,
            })
            .await
            .unwrap();
        self.service
            .consent(&super::consent(
                address,
                "globex",
                format!("double opt-in confirmed by {address}").as_bytes(),
            ))
            .await
            .unwrap();
    }
}
