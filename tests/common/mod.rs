//! Test databases: every store test runs its body on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `BOUNCEGATE_TEST_POSTGRES_URL` (set by `.ci/run`); each test gets its own
//! schema, dropped afterwards, so runs never collide. Without the variable the PostgreSQL variants
//! are skipped with a printed line, except under CI, where that is a failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod dns;
pub mod gateway;
pub mod smtp;

use sqlx::Connection;

pub const POSTGRES_ENV: &str = "BOUNCEGATE_TEST_POSTGRES_URL";

/// One database for one test.
pub struct TestDb {
    pub backend: &'static str,
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_schema: Option<(String, String)>,
}

impl TestDb {
    /// The PostgreSQL server's own URL and this test's schema (`None` on SQLite).
    pub fn postgres_schema(&self) -> Option<(&str, &str)> {
        self.pg_schema
            .as_ref()
            .map(|(base, schema)| (base.as_str(), schema.as_str()))
    }

    /// A place for files of this test.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg_schema.take() {
            // Drop runs outside any runtime we may block on: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut conn)
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

/// SQLite in a temporary folder, and PostgreSQL in a fresh schema when available.
pub async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = TestDb {
        backend: "sqlite",
        url: format!("sqlite://{}", dir.path().join("bouncegate.db").display()),
        dir,
        pg_schema: None,
    };
    let mut dbs = vec![sqlite];
    match std::env::var(POSTGRES_ENV).ok().filter(|v| !v.is_empty()) {
        Some(base) => dbs.push(postgres(&base).await),
        None if std::env::var_os("CI").is_some() => {
            panic!("{POSTGRES_ENV} is not set: under CI the PostgreSQL variants must run")
        }
        None => eprintln!("skipping the PostgreSQL variant: {POSTGRES_ENV} is not set"),
    }
    dbs
}

async fn postgres(base: &str) -> TestDb {
    let schema = format!("bg_test_{}", hex::encode(rand::random::<[u8; 8]>()));
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_ENV}={base}: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    TestDb {
        backend: "postgres",
        url: format!("{base}{separator}options=-c%20search_path%3D{schema}"),
        dir: tempfile::tempdir().expect("temp dir"),
        pg_schema: Some((base.to_string(), schema)),
    }
}

/// The example organisation used by the tests.
pub const ORGANISATION: &str = r#"
[[companies]]
id = "acme"
domains = ["acme.example"]
brands = ["news", "shop"]

[[companies]]
id = "globex"
domains = ["globex.example"]
brands = ["weekly"]
"#;

/// Writes a config for `db` with the example organisation and `extra` TOML; returns its path.
pub fn write_config(db: &TestDb, extra: &str) -> PathBuf {
    let path = db.path("bouncegate.toml");
    let text = format!(
        "[database]\nurl = {:?}\nmax_connections = 4\n{extra}\n{ORGANISATION}",
        db.url
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs the real binary with this config.
pub fn bouncegate(config: &Path, args: &[&str]) -> Output {
    bouncegate_with_input(config, args, None)
}

/// Runs the real binary with this config, feeding `stdin`.
pub fn bouncegate_with_input(config: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_bouncegate"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BOUNCEGATE_DATABASE_URL")
        .env_remove("BOUNCEGATE_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run bouncegate");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for bouncegate")
}

/// The exit code, with the output in the panic message when it is not the expected one.
pub fn expect_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard output parsed as one JSON value.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A confirmed opt-in for `address` from `company`, with `proof`.
#[allow(dead_code)]
pub fn consent(address: &str, company: &str, proof: &[u8]) -> bouncegate::service::ConsentRequest {
    bouncegate::service::ConsentRequest {
        address: address.into(),
        company: company.into(),
        brand: None,
        channel: bouncegate::model::Channel::Email,
        confirmed_at: None,
        proof: String::new(),
        proof_name: None,
        source: "test".into(),
        proof_bytes: Some(proof.to_vec()),
    }
}

/// An erasure request for `address`.
#[allow(dead_code)]
pub fn erasure(address: &str) -> bouncegate::service::ErasureRequest {
    bouncegate::service::ErasureRequest {
        address: address.into(),
    }
}

/// An upstream SMTP server that keeps every message it is given.
#[derive(Default)]
#[allow(dead_code)]
pub struct Recorder(pub std::sync::Mutex<Vec<bouncegate::smtp::ReceivedMessage>>);

impl bouncegate::smtp::MessageSink for Recorder {
    async fn rcpt(
        &self,
        _: &bouncegate::smtp::SessionInfo,
        _: &bouncegate::smtp::MailFrom,
        _: &bouncegate::smtp::RcptTo,
    ) -> Result<(), bouncegate::smtp::SinkError> {
        Ok(())
    }
    async fn data(
        &self,
        message: bouncegate::smtp::ReceivedMessage,
    ) -> Result<(), bouncegate::smtp::SinkError> {
        self.0.lock().unwrap().push(message);
        Ok(())
    }
}
