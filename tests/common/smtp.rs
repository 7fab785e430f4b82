//! A plain SMTP client for the tests: one transaction over real TCP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Sends one mail (EHLO, AUTH PLAIN when `login` is given, MAIL, RCPT, DATA) and returns the
/// reply to its end of data, or the first refusal.
pub async fn transaction(
    address: SocketAddr,
    login: Option<(&str, &str)>,
    from: &str,
    to: &str,
    data: &str,
) -> String {
    let stream = TcpStream::connect(address).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let next = async |read: &mut BufReader<_>| {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(20), read.read_line(&mut line))
                .await
                .expect("a reply in time")
                .unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    };
    next(&mut read).await;
    let mut commands = vec!["EHLO mx.sender.example".to_string()];
    if let Some((user, password)) = login {
        let token = data_encoding::BASE64.encode(format!("\0{user}\0{password}").as_bytes());
        commands.push(format!("AUTH PLAIN {token}"));
    }
    commands.extend([
        format!("MAIL FROM:<{from}>"),
        format!("RCPT TO:<{to}>"),
        "DATA".to_string(),
    ]);
    for command in commands {
        write
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let reply = next(&mut read).await;
        if !reply.starts_with('2') && !reply.starts_with('3') {
            return reply;
        }
    }
    write.write_all(data.as_bytes()).await.unwrap();
    write.write_all(b".\r\n").await.unwrap();
    let reply = next(&mut read).await;
    let _ = write.write_all(b"QUIT\r\n").await;
    reply
}
