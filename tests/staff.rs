//! The staff web page over real HTTP to the running gateway: sign-in with `[[staff]]` accounts,
//! session cookie, CSRF on every form, limited sign-in attempts; a contact's page with its
//! blocks and stored mails, shown as text and downloaded byte for byte.

mod common;

use common::databases;
use common::gateway::Running;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

/// A form as a browser sends it (`application/x-www-form-urlencoded`).
fn encode(form: &[(&str, &str)]) -> String {
    let part = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", part(k), part(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A browser without JavaScript: keeps the cookies it is given, follows no redirect.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(running: &Running) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: running.base.clone(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        self.keep(&headers);
        (status, headers, response.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encode(form))
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        self.keep(&headers);
        (status, headers, response.text().await.unwrap())
    }

    /// The value of the hidden `csrf` field of the page.
    fn csrf(page: &str) -> String {
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        page[at..at + 64].to_string()
    }

    async fn sign_in(&mut self, user: &str, password: &str) -> (StatusCode, HeaderMap, String) {
        let (_, _, page) = self.get("/staff").await;
        let csrf = Self::csrf(&page);
        self.post(
            "/staff/login",
            &[("user", user), ("password", password), ("csrf", &csrf)],
        )
        .await
    }
}

fn staff_config() -> String {
    let viewer = bouncegate::relay::hash_password("viewer-secret").unwrap();
    let editor = bouncegate::relay::hash_password("editor-secret").unwrap();
    format!(
        "[[staff]]\nuser = \"vera\"\npassword_hash = \"{viewer}\"\nrole = \"viewer\"\n\
         [[staff]]\nuser = \"emil\"\npassword_hash = \"{editor}\"\nrole = \"editor\"\n"
    )
}

#[tokio::test]
async fn staff_sign_in_and_see_a_contact_with_its_proof_shown_inert() {
    for db in databases().await {
        let running = common::gateway::start(&db, &staff_config()).await;
        let address = "olga.staff@example.org";
        running.footprint(address).await;
        running
            .unsubscribe_mail(
                address,
                "X-Evil: <script>alert(1)</script><img src=\"https://tracker.example/p.png\">\r\n",
            )
            .await;
        let mut browser = Browser::new(&running);

        // No page without a session.
        let (status, headers, _) = browser
            .get(&format!("/staff/contact?address={address}"))
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{}", db.backend);
        assert_eq!(headers["location"], "/staff");
        let (status, headers, page) = browser.get("/staff").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("name=\"password\""), "the sign-in form");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
        assert_eq!(headers["cache-control"], "no-store");

        // A sign-in form without its CSRF token is refused, the right one with it accepted.
        let (status, _, _) = browser
            .post(
                "/staff/login",
                &[
                    ("user", "vera"),
                    ("password", "viewer-secret"),
                    ("csrf", "0"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, page) = browser.sign_in("vera", "wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(page.contains("Wrong user or password"));
        let (status, headers, _) = browser.sign_in("vera", "viewer-secret").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{}", db.backend);
        let cookie = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|v| v.starts_with("bg_staff="))
            .expect("a session cookie");
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
                && cookie.contains("Path=/staff"),
            "{cookie}"
        );

        // The contact: blocks (the postal one with its reason), how they lift, the stored mails.
        let (status, _, page) = browser
            .get(&format!("/staff/contact?address={address}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("vera") && page.contains("(viewer)"));
        assert!(
            page.contains("postal") && page.contains("wants no letters"),
            "{page}"
        );
        assert!(
            page.contains("by staff, with a note"),
            "how a staff block lifts"
        );
        let hostile = running
            .service
            .access_report(address)
            .await
            .unwrap()
            .evidence
            .into_iter()
            .find(|e| e.headers.as_deref().is_some_and(|h| h.contains("X-Evil")))
            .expect("the hostile mail is stored");
        let link = format!("/staff/evidence/{}", hostile.id);
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "stored mails are linked"
        );
        for tag in page.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap().to_lowercase();
            assert!(
                !tag.starts_with("script") && !tag.starts_with("img") && !tag.contains("src="),
                "<{tag}>"
            );
        }

        // The mail as text, inert; the download byte for byte.
        let (status, headers, page) = browser.get(&link).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script") && !page.contains("<img"));
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let response = browser
            .http
            .get(format!("{}{link}/eml", browser.base))
            .header("Cookie", browser.cookie_header())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "message/rfc822");
        let bytes = response.bytes().await.unwrap();
        let stored = running.service.evidence(hostile.id).await.unwrap().unwrap();
        assert_eq!(bytes.as_ref(), stored.raw.as_slice(), "byte-identical");

        // German on request, remembered.
        let (_, _, page) = browser.get("/staff?lang=de").await;
        assert!(page.contains("Kontakt suchen"), "{page}");
        let (_, _, page) = browser.get("/staff").await;
        assert!(
            page.contains("Kontakt suchen"),
            "the language is remembered"
        );

        // Signing out needs the session's CSRF token; afterwards the session is gone.
        let csrf = Browser::csrf(&page);
        let (status, _, _) = browser.post("/staff/logout", &[("csrf", "forged")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = browser.post("/staff/logout", &[("csrf", &csrf)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, _, _) = browser.get(&link).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "signed out");
        running.stop().await;
    }
}

#[tokio::test]
async fn sign_in_attempts_are_limited() {
    let db = databases().await.remove(0);
    let running = common::gateway::start(&db, &staff_config()).await;
    let mut browser = Browser::new(&running);
    for _ in 0..5 {
        let (status, _, _) = browser.sign_in("emil", "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, page) = browser.sign_in("emil", "editor-secret").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "locked out, even with the right password"
    );
    assert!(page.contains("Too many failed sign-ins"));
    running.stop().await;
}
