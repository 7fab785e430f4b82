//! What the address owner does and what is done at their request: confirmed opt-ins (consents) and
//! data-protection erasure.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::events::{NewEvent, insert_event};
use super::suppressions::record_lift_event;
use super::{Backend, Store, StoreError, rows};
use crate::address::EmailAddress;
use crate::model::{Channel, Scope, Timestamp, format_time};

/// A confirmed opt-in to record, with its proof (the confirmation mail, a signed form …).
#[derive(Debug, Clone)]
pub struct NewConsent {
    pub address: EmailAddress,
    pub channel: Channel,
    /// A company, or a company and brand.
    pub scope: Scope,
    pub confirmed_at: Timestamp,
    pub source: String,
    pub proof: Vec<u8>,
    pub proof_name: Option<String>,
}

/// What recording a consent did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ConsentOutcome {
    pub consent_id: i64,
    /// Opt-outs (unsubscribe, complaint) within the consent's scope and older than it, now lifted.
    pub lifted: Vec<i64>,
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct EraseOutcome {
    /// The address had been erased before (its plain text was removed again, if it had come back).
    pub already_erased: bool,
    /// Rows whose plain address was removed.
    pub rows_cleared: u64,
    /// Raw mails naming the address that were removed (by the purge path).
    pub evidence_purged: u64,
}

impl Store {
    /// Records a consent and lifts the opt-outs it supersedes, in one transaction.
    ///
    /// # Errors
    /// The database failed; nothing was written.
    pub async fn record_consent(
        &self,
        consent: &NewConsent,
        now: Timestamp,
    ) -> Result<ConsentOutcome, StoreError> {
        let hash = self.hash(&consent.address);
        let (company, brand) = consent.scope.columns();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO consents (address, address_hash, channel, company, brand, confirmed_at, recorded_at, \
               source, proof, proof_sha256, proof_name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(consent.address.as_given())
        .bind(hash.as_str())
        .bind(consent.channel.as_str())
        .bind(company)
        .bind(brand)
        .bind(format_time(&consent.confirmed_at))
        .bind(format_time(&now))
        .bind(&consent.source)
        .bind(consent.proof.clone())
        .bind(hex::encode(Sha256::digest(&consent.proof)))
        .bind(consent.proof_name.as_deref())
        .fetch_one(&mut *tx)
        .await?;
        let consent_id = rows::int(&row, "id")?;

        // A company-wide consent lifts the company's opt-outs and those of its brands; a brand
        // consent lifts only that brand's. Broader opt-outs stay and are overridden per brand by
        // the policy, so other brands stay blocked.
        let lifted_rows = sqlx::query(
            "UPDATE suppressions SET lifted_at = $1, lifted_by = 'consent', lift_consent_id = $2, \
               lift_note = 'lifted by the owner''s confirmed opt-in' \
             WHERE address_hash = $3 AND channel = $4 AND company = $5 AND ($6 = '' OR brand = $6) \
               AND reason IN ('unsubscribe', 'complaint') AND created_at < $7 AND lifted_at IS NULL \
             RETURNING id, address, address_hash, company, brand, reason",
        )
        .bind(format_time(&now))
        .bind(consent_id)
        .bind(hash.as_str())
        .bind(consent.channel.as_str())
        .bind(company)
        .bind(brand)
        .bind(format_time(&consent.confirmed_at))
        .fetch_all(&mut *tx)
        .await?;
        let mut lifted = Vec::new();
        let note = format!("consent {consent_id}");
        for row in &lifted_rows {
            lifted.push(rows::int(row, "id")?);
            record_lift_event(&mut tx, row, now, "consent", Some(&note)).await?;
        }
        let event = NewEvent {
            kind: "consent".into(),
            address: Some(consent.address.as_given().to_string()),
            address_hash: Some(hash.clone()),
            company: company.to_string(),
            brand: brand.to_string(),
            source: Some(consent.source.clone()),
            note: Some(format!("consent {consent_id}")),
            ..Default::default()
        };
        insert_event(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(ConsentOutcome { consent_id, lifted })
    }

    /// Erases an address: its plain text leaves every table (evidence, which proves the opt-outs,
    /// aside); the keyed hash stays, so blocks stay and the status becomes `D`.
    ///
    /// # Errors
    /// The database failed; nothing was changed.
    pub async fn erase(
        &self,
        address: &EmailAddress,
        keep_opt_out_evidence: bool,
        actor: &str,
        now: Timestamp,
    ) -> Result<EraseOutcome, StoreError> {
        let hash = self.hash(address);
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO erasures (address_hash, erased_at) VALUES ($1, $2) ON CONFLICT (address_hash) DO NOTHING",
        )
        .bind(hash.as_str())
        .bind(format_time(&now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let given = address.as_given();
        let normalized = address.normalized();
        let mut rows_cleared = 0;
        for sql in [
            "UPDATE suppressions SET address = NULL, \
               note = REPLACE(REPLACE(note, $2, '[erased]'), $3, '[erased]') WHERE address_hash = $1",
            "UPDATE events SET address = NULL, \
               diagnostic = REPLACE(REPLACE(diagnostic, $2, '[erased]'), $3, '[erased]'), \
               note = REPLACE(REPLACE(note, $2, '[erased]'), $3, '[erased]'), \
               message_id = REPLACE(REPLACE(message_id, $2, '[erased]'), $3, '[erased]') \
             WHERE address_hash = $1",
            // Some senders put the address into Message-IDs.
            "UPDATE sends SET message_id = REPLACE(REPLACE(message_id, $2, '[erased]'), $3, '[erased]') \
             WHERE address_hash = $1",
            "UPDATE queue_messages SET message_id = REPLACE(REPLACE(message_id, $2, '[erased]'), $3, '[erased]') \
             WHERE id IN (SELECT message FROM queue WHERE recipient_hash = $1)",
        ] {
            rows_cleared += sqlx::query(sql)
                .bind(hash.as_str())
                .bind(given)
                .bind(normalized)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        for sql in [
            "UPDATE consents SET address = NULL, proof = NULL, proof_name = NULL WHERE address_hash = $1",
            "UPDATE sends SET address = NULL WHERE address_hash = $1",
        ] {
            rows_cleared += sqlx::query(sql)
                .bind(hash.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        // Relayed mail to the address: what waits is dropped, and no queue row names it.
        let messages: Vec<i64> =
            sqlx::query("SELECT DISTINCT message FROM queue WHERE recipient_hash = $1")
                .bind(hash.as_str())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| rows::int(row, "message"))
                .collect::<Result<_, _>>()?;
        rows_cleared += sqlx::query(
            "UPDATE queue SET recipient = '', \
               state = CASE WHEN state IN ('queued', 'held') THEN 'dropped' ELSE state END, \
               last_error = CASE WHEN state IN ('queued', 'held') THEN 'erased' ELSE last_error END \
             WHERE recipient_hash = $1",
        )
        .bind(hash.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for message in messages {
            super::queue::release_bytes(&mut tx, message).await?;
        }
        // Raw mails naming the address go, by the purge path (a tombstone keeps the chain whole),
        // except the proof of a standing suppression: this address's opt-outs when they are kept,
        // and anything that proves another address's block.
        let linked: Vec<i64> = sqlx::query(
            "SELECT evidence_id FROM events WHERE address_hash = $1 AND evidence_id IS NOT NULL \
             UNION SELECT evidence_id FROM suppressions WHERE address_hash = $1 AND evidence_id IS NOT NULL",
        )
        .bind(hash.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| rows::int(row, "evidence_id"))
        .collect::<Result<_, _>>()?;
        let mut evidence_purged = 0;
        for id in linked {
            let keep = sqlx::query(
                "SELECT id FROM suppressions WHERE evidence_id = $1 AND lifted_at IS NULL \
                 AND (address_hash <> $2 OR ($3 <> 0 AND reason IN ('unsubscribe', 'complaint'))) LIMIT 1",
            )
            .bind(id)
            .bind(hash.as_str())
            .bind(i64::from(keep_opt_out_evidence))
            .fetch_optional(&mut *tx)
            .await?;
            if keep.is_none()
                && super::evidence_chain::purge_one(
                    &mut tx,
                    id,
                    "erasure of an address it names",
                    now,
                )
                .await?
            {
                evidence_purged += 1;
            }
        }
        let event = NewEvent {
            kind: "erase".into(),
            address_hash: Some(hash.clone()),
            source: Some("erasure".into()),
            note: Some(format!("erased by {actor}")),
            ..Default::default()
        };
        insert_event(&mut tx, &event, now).await?;
        tx.commit().await?;
        self.scrub_files().await;
        Ok(EraseOutcome {
            already_erased: inserted == 0,
            rows_cleared,
            evidence_purged,
        })
    }

    /// Makes an erasure (or a purge) reach the files: on SQLite the WAL is checkpointed into the main file and
    /// truncated (deleted content is zeroed as it goes: `secure_delete`); on PostgreSQL the
    /// touched tables are vacuumed, so their dead tuples' space is reclaimed. Best effort: a
    /// failure is logged, the erasure itself is committed.
    pub(super) async fn scrub_files(&self) {
        let statement = match self.backend {
            Backend::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
            Backend::Postgres => {
                "VACUUM suppressions, events, consents, sends, evidence, queue, queue_messages"
            }
        };
        if let Err(error) = sqlx::raw_sql(statement).execute(self.writer()).await {
            tracing::warn!(%error, "after an erasure or purge: {statement} failed; run it by hand");
        }
    }

    /// Whether any table still holds this address in plain text (for erasure checks and tests).
    ///
    /// # Errors
    /// The database failed.
    pub async fn plain_text_rows(&self, address: &EmailAddress) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM suppressions WHERE address_hash = $1 AND address IS NOT NULL) \
                  + (SELECT COUNT(*) FROM events WHERE address_hash = $1 AND address IS NOT NULL) \
                  + (SELECT COUNT(*) FROM consents WHERE address_hash = $1 AND address IS NOT NULL) \
                  + (SELECT COUNT(*) FROM sends WHERE address_hash = $1 AND address IS NOT NULL) AS n",
        )
        .bind(self.hash(address).as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }
}
