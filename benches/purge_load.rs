//! Load beside a purge (`benches/purge.sh`): received mail over SMTP and `GET /v1/check` over
//! HTTP, each at a fixed rate for a while, latencies measured from the moment each request was
//! due (so a stall counts for every request it delayed). Prints one JSON line per run.
//!
//!   SMTP=127.0.0.1:25250 HTTP=127.0.0.1:28025 TOKEN=… SMTP_RATE=50 CHECK_RATE=2000 DURATION=30 \
//!     target/release/deps/purge_load-… LABEL

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn percentiles(mut samples: Vec<Duration>, errors: usize) -> serde_json::Value {
    samples.sort_unstable();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    serde_json::json!({
        "n": samples.len(),
        "errors": errors,
        "p50_ms": (at(0.50) * 100.0).round() / 100.0,
        "p99_ms": (at(0.99) * 100.0).round() / 100.0,
        "max_ms": (at(1.0) * 100.0).round() / 100.0,
    })
}

/// One mail in its own session; the time from the end of DATA to the 250 (the commit).
async fn one_mail(address: &str, n: u64) -> Result<Duration, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    async fn reply(
        read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        line: &mut String,
    ) -> Result<String, String> {
        loop {
            line.clear();
            if read.read_line(line).await.map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line.clone());
            }
        }
    }
    reply(&mut read, &mut line).await?;
    let recipient = format!("load{n}-{}@example.net", std::process::id());
    let dsn = format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@bounces.example.org\r\nSubject: Undelivered Mail\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n<{recipient}>: host mx.example.net said: 550 5.1.1 User unknown\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown\r\n\r\n--B--\r\n.\r\n"
    );
    for command in [
        "EHLO load.example\r\n",
        "MAIL FROM:<>\r\n",
        "RCPT TO:<bounces@bounces.example.org>\r\n",
        "DATA\r\n",
    ] {
        write
            .write_all(command.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let answer = reply(&mut read, &mut line).await?;
        if !answer.starts_with('2') && !answer.starts_with('3') {
            return Err(format!("{command:?}: {answer}"));
        }
    }
    write
        .write_all(dsn.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let answer = reply(&mut read, &mut line).await?;
    let took = sent.elapsed();
    if !answer.starts_with("250") {
        return Err(answer);
    }
    let _ = write.write_all(b"QUIT\r\n").await;
    Ok(took)
}

#[tokio::main]
async fn main() {
    let label = std::env::args().nth(1).unwrap_or_else(|| "run".into());
    let smtp = env("SMTP", "127.0.0.1:25250");
    let http = env("HTTP", "127.0.0.1:28025");
    let token = env("TOKEN", "");
    let smtp_rate: f64 = env("SMTP_RATE", "50").parse().unwrap();
    let check_rate: f64 = env("CHECK_RATE", "2000").parse().unwrap();
    let seconds: f64 = env("DURATION", "30").parse().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    let run_for = Duration::from_secs_f64(seconds);
    let smtp_task = tokio::spawn(async move {
        let mut handles = Vec::new();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < run_for {
            let due = start + Duration::from_secs_f64(n as f64 / smtp_rate);
            tokio::time::sleep_until(due.into()).await;
            let smtp = smtp.clone();
            handles.push(tokio::spawn(async move {
                let result = one_mail(&smtp, n).await;
                result.map(|commit| (commit, due.elapsed()))
            }));
            n += 1;
        }
        let (mut commits, mut errors) = (Vec::new(), 0);
        for handle in handles {
            match handle.await.unwrap() {
                Ok((commit, _)) => commits.push(commit),
                Err(error) => {
                    errors += 1;
                    if errors < 3 {
                        eprintln!("smtp: {error}");
                    }
                }
            }
        }
        percentiles(commits, errors)
    });
    let check_task = tokio::spawn(async move {
        let mut handles = Vec::new();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < run_for {
            let due = start + Duration::from_secs_f64(n as f64 / check_rate);
            tokio::time::sleep_until(due.into()).await;
            let url = format!(
                "http://{http}/v1/check?address=user{}@example.net&company=acme",
                rand::random::<u32>() % 10_000_000
            );
            let request = client.get(url).bearer_auth(&token);
            handles.push(tokio::spawn(async move {
                let ok = matches!(request.send().await, Ok(r) if r.status().is_success());
                (ok, due.elapsed())
            }));
            n += 1;
        }
        let (mut latencies, mut errors) = (Vec::new(), 0);
        for handle in handles {
            let (ok, took) = handle.await.unwrap();
            if ok {
                latencies.push(took);
            } else {
                errors += 1;
            }
        }
        percentiles(latencies, errors)
    });
    let (smtp, check) = (smtp_task.await.unwrap(), check_task.await.unwrap());
    println!(
        "{}",
        serde_json::json!({ "label": label, "seconds": seconds, "smtp_250_after_data": smtp, "check": check })
    );
}
