//! The submission listener's sink: who is sending (a client by AUTH or by network), what the mail
//! is (class, brand), whether each recipient may get it (`policy`, through the service), and the
//! durable queue. Never an open relay: no client, no MAIL.

use std::sync::Arc;

use crate::address::EmailAddress;
use crate::config::{Config, RelayClient};
use crate::model::{Channel, MailClass, normalize_message_id};
use crate::policy::Verdict;
use crate::queue::Enqueuer;
use crate::service::{CheckRequest, SuppressionService};
use crate::smtp::{MailFrom, MessageSink, RcptTo, ReceivedMessage, Reply, SessionInfo, SinkError};
use crate::store::{BlockStage, Minted, Minter, NewBlocked, NewQueueItem, NewQueuedMessage};
use crate::token::{TokenBinding, TokenKeys, TokenKind};
use crate::verp;

use super::clients::Clients;
use super::rewrite::{self, BRAND_HEADER, CLASS_HEADER};

/// Takes campaigns from the relay's clients into the queue.
pub struct RelaySink {
    config: Arc<Config>,
    clients: Arc<Clients>,
    service: SuppressionService,
    enqueuer: Enqueuer,
    /// Wakes the delivery workers when something was queued.
    queued: Arc<tokio::sync::Notify>,
}

/// What a mail is, once its headers are read.
struct Audience {
    class: MailClass,
    brand: Option<String>,
}

impl RelaySink {
    /// A sink deciding with `service`, queueing through a group-commit writer that mints with
    /// `keys`, waking `queued` after each commit.
    pub fn new(
        config: Arc<Config>,
        clients: Arc<Clients>,
        service: SuppressionService,
        keys: TokenKeys,
        queued: Arc<tokio::sync::Notify>,
    ) -> Self {
        let enqueuer = Enqueuer::start(service.store().clone(), minter(keys, config.clone()));
        Self {
            config,
            clients,
            service,
            enqueuer,
            queued,
        }
    }

    /// The client this session sends as: its AUTH identity, else its network.
    fn client(&self, session: &SessionInfo) -> Result<&RelayClient, SinkError> {
        let client = match &session.identity {
            Some(user) => self.clients.by_user(user),
            None => self.clients.by_network(session.peer),
        };
        client.ok_or(SinkError::Reply(Reply::AUTH_REQUIRED))
    }

    /// The class and brand when they are known before DATA: the client fixes the class and has
    /// one brand (or its company none).
    fn audience_before_data(&self, client: &RelayClient) -> Option<Audience> {
        let class = client.class?;
        let brand = match self.candidate_brands(client).as_slice() {
            [] => None,
            [only] => Some(only.clone()),
            _ => return None,
        };
        Some(Audience { class, brand })
    }

    /// The brands a client may send for: its own list, else its company's.
    fn candidate_brands(&self, client: &RelayClient) -> Vec<String> {
        if !client.brands.is_empty() {
            return client.brands.iter().map(|b| b.get_ref().clone()).collect();
        }
        self.config
            .company(client.company.get_ref())
            .map(|c| c.brands.iter().map(|b| b.get_ref().clone()).collect())
            .unwrap_or_default()
    }

    /// Class and brand from the headers and the client.
    fn audience(
        &self,
        client: &RelayClient,
        fields: &[rewrite::Field<'_>],
    ) -> Result<Audience, SinkError> {
        let class = client.class.unwrap_or_else(|| {
            rewrite::find(fields, CLASS_HEADER)
                .map(|f| f.value().trim().to_ascii_lowercase())
                .map_or(client.default_class, |value| {
                    // Unknown or misspelt is promotional: the safe side.
                    value.parse().unwrap_or(MailClass::Promotional)
                })
        });
        let allowed = self.candidate_brands(client);
        let brand = match rewrite::find(fields, BRAND_HEADER) {
            Some(field) => {
                let brand = field.value().trim().to_string();
                if !allowed.contains(&brand) {
                    return Err(refused(format!(
                        "brand {brand:?} is not one this sender may send for ({})",
                        client.company.get_ref()
                    )));
                }
                Some(brand)
            }
            None if allowed.len() == 1 => allowed.first().cloned(),
            None => None,
        };
        let company_has_brands = self
            .config
            .company(client.company.get_ref())
            .is_some_and(|c| !c.brands.is_empty());
        if brand.is_none() && company_has_brands && class == MailClass::Promotional {
            return Err(refused(format!(
                "promotional mail needs its brand: set {BRAND_HEADER} to one of {}",
                allowed.join(", ")
            )));
        }
        Ok(Audience { class, brand })
    }

    /// The From domain must be one of the client's company's, when it lists domains.
    fn check_from(
        &self,
        client: &RelayClient,
        fields: &[rewrite::Field<'_>],
    ) -> Result<(), SinkError> {
        let Some(company) = self.config.company(client.company.get_ref()) else {
            return Err(refused("the sender's company is not configured".into()));
        };
        if company.domains.is_empty() {
            return Ok(());
        }
        let address = crate::message::from_address(fields).unwrap_or_default();
        let domain_ok = EmailAddress::parse(&address).ok().is_some_and(|a| {
            self.config
                .company_for_domain(a.domain())
                .is_some_and(|c| c.id() == company.id())
        });
        if domain_ok {
            Ok(())
        } else {
            Err(refused(format!(
                "the From address {address:?} is not in a domain of {}",
                company.id()
            )))
        }
    }

    async fn decide(
        &self,
        recipient: &str,
        company: &str,
        audience: &Audience,
    ) -> Result<Verdict, SinkError> {
        let request = CheckRequest {
            company,
            brand: audience.brand.as_deref(),
            class: audience.class,
            channel: Channel::Email,
        };
        self.service
            .check(recipient, request)
            .await
            .map_err(|e| SinkError::Temporary(e.to_string()))
    }
}

impl MessageSink for RelaySink {
    async fn mail(&self, session: &SessionInfo, _: &MailFrom) -> Result<(), SinkError> {
        self.client(session).map(|_| ())
    }

    async fn rcpt(
        &self,
        session: &SessionInfo,
        _: &MailFrom,
        to: &RcptTo,
    ) -> Result<(), SinkError> {
        let client = self.client(session)?;
        let recipient = EmailAddress::parse(&to.address).map_err(|e| {
            SinkError::Reply(Reply::BAD_RECIPIENT.with_text(format!("Bad recipient address: {e}")))
        })?;
        let Some(audience) = self.audience_before_data(client) else {
            return Ok(());
        };
        let company = client.company.get_ref();
        let verdict = self.decide(&to.address, company, &audience).await?;
        if verdict.allowed {
            return Ok(());
        }
        let reason = verdict.describe();
        let block = NewBlocked {
            recipient,
            company: company.clone(),
            brand: audience.brand.clone(),
            class: audience.class,
            reason: reason.clone(),
            message_id: None,
            client: client.name(),
            stage: BlockStage::Rcpt,
        };
        self.service
            .store()
            .record_blocked(std::slice::from_ref(&block), chrono::Utc::now())
            .await
            .map_err(|e| SinkError::Temporary(e.to_string()))?;
        crate::metrics::send_blocked(&block.reason);
        Err(refused(format!("recipient {reason}; not sent")))
    }

    async fn data(&self, message: ReceivedMessage) -> Result<(), SinkError> {
        let client = self.client(&message.session)?;
        let company = client.company.get_ref().as_str();
        let normalized = rewrite::normalize_line_endings(&message.data);
        let (header, body) = rewrite::split(&normalized);
        let fields = rewrite::fields(header).map_err(|e| {
            SinkError::Reply(Reply::BAD_HEADER.with_text(format!("The header cannot be read: {e}")))
        })?;
        self.check_from(client, &fields)?;
        let audience = self.audience(client, &fields)?;
        let existing_id = rewrite::find(&fields, "Message-ID")
            .map(|f| normalize_message_id(&f.value()).to_string())
            .filter(|id| !id.is_empty());
        let new_id = existing_id.is_none().then(|| {
            format!(
                "{}@{}",
                hex::encode(rand::random::<[u8; 12]>()),
                self.config.inbound.domain
            )
        });
        let message_id = existing_id.clone().or(new_id.clone()).unwrap_or_default();
        let date = rewrite::find(&fields, "Date")
            .is_none()
            .then(|| chrono::Utc::now().to_rfc2822());
        let mut rewritten = received_header(&message.session, &self.config.relay_hostname());
        rewritten.extend(rewrite::rewrite(
            &fields,
            body,
            new_id.as_deref(),
            date.as_deref(),
        ));

        let client_name = client.name();
        let mut items = Vec::new();
        let mut blocked = Vec::new();
        let recipients: Vec<EmailAddress> = message
            .recipients()
            .filter_map(|r| EmailAddress::parse(r).ok())
            .collect();
        for recipient in recipients {
            let verdict = self
                .decide(recipient.as_given(), company, &audience)
                .await?;
            if verdict.allowed {
                items.push(NewQueueItem {
                    recipient,
                    company: company.to_string(),
                    brand: audience.brand.clone(),
                    class: audience.class,
                });
            } else {
                blocked.push(NewBlocked {
                    recipient,
                    company: company.to_string(),
                    brand: audience.brand.clone(),
                    class: audience.class,
                    reason: verdict.describe(),
                    message_id: Some(message_id.clone()),
                    client: client_name.clone(),
                    stage: BlockStage::Data,
                });
            }
        }
        let now = chrono::Utc::now();
        if items.is_empty() {
            self.service
                .store()
                .record_blocked(&blocked, now)
                .await
                .map_err(|e| SinkError::Temporary(e.to_string()))?;
            for block in &blocked {
                crate::metrics::send_blocked(&block.reason);
            }
            let reason = blocked
                .first()
                .map_or_else(|| "has no valid recipient".into(), |b| b.reason.clone());
            return Err(refused(format!("recipient {reason}; not sent")));
        }
        let queued = NewQueuedMessage {
            raw: rewritten,
            client: client_name,
            message_id,
            received_at: now,
            items,
            blocked,
        };
        self.enqueuer
            .enqueue(queued)
            .await
            .map_err(SinkError::Temporary)?;
        self.queued.notify_waiters();
        Ok(())
    }
}

/// The trace line a relay adds (RFC 5321 §4.4): who handed the mail over, and how.
fn received_header(session: &SessionInfo, hostname: &str) -> Vec<u8> {
    let protocol = match (session.tls, session.identity.is_some()) {
        (true, true) => "ESMTPSA",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (false, false) => "ESMTP",
    };
    let helo: String = session
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    format!(
        "Received: from {helo} ([{}])\r\n\tby {hostname} (bouncegate) with {protocol};\r\n\t{}\r\n",
        session.peer,
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

/// Mints what each queued recipient carries: the signed return path, and for promotional mail
/// the unsubscribe token of its brand (or company).
pub fn minter(keys: TokenKeys, config: Arc<Config>) -> Arc<Minter> {
    Arc::new(
        move |send_id: i64, item: &NewQueueItem, hash: &str, message_id: &str, now| {
            let brand = item.brand.as_deref().unwrap_or("");
            let binding = TokenBinding {
                recipient: hash,
                company: &item.company,
                brand,
                message_id,
            };
            let bounce = keys.mint(TokenKind::Bounce, send_id, now, binding);
            let unsubscribe = (item.class == MailClass::Promotional).then(|| {
                let kind = if brand.is_empty() {
                    TokenKind::UnsubscribeCompany
                } else {
                    TokenKind::UnsubscribeBrand
                };
                keys.mint(kind, send_id, now, binding)
            });
            Minted {
                return_path: verp::return_path(&bounce, &config.inbound),
                unsubscribe_token: unsubscribe,
            }
        },
    )
}

fn refused(text: String) -> SinkError {
    SinkError::Refused(text)
}
