//! Setup for `benches/api.sh`: records N send records in the gateway's store and prints one
//! one-click unsubscribe path (`/u/TOKEN`) per line, minted as the relay mints them.
//!
//!   cargo bench --bench api_tokens -- sqlite://PATH N > tokens.txt

use bouncegate::address::EmailAddress;
use bouncegate::model::MailClass;
use bouncegate::store::{NewSend, Store};
use bouncegate::token::{TokenBinding, TokenKeys, TokenKind};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(url), Some(count)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: api_tokens DATABASE_URL COUNT");
        std::process::exit(2);
    };
    let store = Store::open(url, 4).await.expect("store");
    let keys = TokenKeys::new(store.secret());
    let now = chrono::Utc::now();
    for i in 0..count {
        let address = EmailAddress::parse(&format!("clicker{i}@example.net")).unwrap();
        let id = store
            .record_send(&NewSend {
                address,
                company: "acme".into(),
                brand: Some("news".into()),
                class: MailClass::Promotional,
                message_id: format!("<bench-{i}@acme.example>"),
                sent_at: now,
            })
            .await
            .expect("send");
        let send = store.send(id).await.unwrap().unwrap();
        let binding = TokenBinding {
            recipient: &send.address_hash,
            company: &send.company,
            brand: &send.brand,
            message_id: &send.message_id,
        };
        println!(
            "/u/{}",
            keys.mint(TokenKind::UnsubscribeBrand, id, now, binding)
        );
    }
    store.close().await;
}
