//! A DNS server on loopback UDP that answers TXT questions from a table (SPF records, DKIM keys):
//! enough for the gateway's sender authentication, with the real resolver asking it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

const TYPE_TXT: u16 = 16;

/// The running stub; its table can change while it runs.
pub struct DnsStub {
    pub addr: SocketAddr,
    txt: Arc<Mutex<HashMap<String, Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsStub {
    /// Binds `127.0.0.1:0` and answers until dropped.
    pub async fn start() -> DnsStub {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS stub");
        let addr = socket.local_addr().expect("DNS stub address");
        let txt: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let table = txt.clone();
        let task = tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                let reply = answer(&buffer[..len], &table.lock().unwrap());
                if let Some(answer) = reply {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        DnsStub { addr, txt, task }
    }

    /// Publishes a TXT record at `name`.
    pub fn txt(&self, name: &str, value: &str) {
        self.txt
            .lock()
            .unwrap()
            .entry(name.trim_end_matches('.').to_ascii_lowercase())
            .or_default()
            .push(value.to_string());
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reply to one query: TXT answers from the table, an empty answer for other types of a
/// known name, NXDOMAIN for unknown names.
fn answer(query: &[u8], table: &HashMap<String, Vec<String>>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    let question = query.get(12..question_end)?;
    let name = labels.join(".");
    let records = table.get(&name);
    let answers: &[String] = match records {
        Some(values) if qtype == TYPE_TXT => values,
        _ => &[],
    };
    let rcode: u8 = if records.is_none() { 3 } else { 0 };
    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&query[..2]);
    // QR, AA, and the client's RD; RA; the response code.
    reply.push(0x84 | (query[2] & 0x01));
    reply.push(0x80 | rcode);
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(question);
    for value in answers {
        let mut rdata = Vec::new();
        for chunk in value.as_bytes().chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend_from_slice(chunk);
        }
        reply.extend_from_slice(&[0xc0, 0x0c]);
        reply.extend_from_slice(&TYPE_TXT.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes());
        reply.extend_from_slice(&60u32.to_be_bytes());
        reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        reply.extend_from_slice(&rdata);
    }
    Some(reply)
}
