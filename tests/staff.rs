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
    let admin = bouncegate::relay::hash_password("admin-secret").unwrap();
    format!(
        "[[staff]]\nuser = \"vera\"\npassword_hash = \"{viewer}\"\nrole = \"viewer\"\n\
         [[staff]]\nuser = \"emil\"\npassword_hash = \"{editor}\"\nrole = \"editor\"\n\
         [[staff]]\nuser = \"ada\"\npassword_hash = \"{admin}\"\nrole = \"admin\"\n"
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
        let hostile = running.stored_mail_with(address, "X-Evil").await;
        let link = format!("/staff/evidence/{}", hostile.id);
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "stored mails are linked"
        );
        for tag in page.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap().to_lowercase();
            if tag == "script src=\"/staff/app.js\"" {
                continue; // the pages' own script (the brand picker), nothing of the mail
            }
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
        // Only the pages' own script; the CSP allows no other (none inline, none from elsewhere).
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script src=\"/staff/app.js\"></script>") && !page.contains("<img"));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self';"));
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

#[tokio::test]
async fn editors_block_letters_per_brand_with_a_reason_and_viewers_cannot() {
    use bouncegate::model::{Channel, MailClass, Reason, Source};
    use bouncegate::service::{CheckRequest, SuppressRequest};
    for db in databases().await {
        let running = common::gateway::start(&db, &staff_config()).await;
        let service = &running.service;
        let address = "paul.post@example.org";
        // The owner's own opt-out (only their confirmed opt-in lifts it).
        let opt_out = service
            .suppress(&SuppressRequest {
                address: address.into(),
                reason: Reason::Unsubscribe,
                company: Some("globex".into()),
                brand: None,
                channel: Channel::Email,
                note: Some("asked by mail".into()),
                source: Source::Cli,
                created_at: None,
                created_by: None,
                expires_at: None,
            })
            .await
            .unwrap()
            .id;
        let contact = format!("/staff/contact?address={address}");

        // A viewer sees no edit controls, and a forged POST from their session is refused.
        let mut viewer = Browser::new(&running);
        viewer.sign_in("vera", "viewer-secret").await;
        let (_, _, page) = viewer.get(&contact).await;
        assert!(
            !page.contains("/staff/block") && !page.contains("/staff/lift"),
            "{page}"
        );
        let csrf = Browser::csrf(&page);
        let (status, _, _) = viewer
            .post(
                "/staff/block",
                &[
                    ("csrf", &csrf),
                    ("address", address),
                    ("channel", "postal"),
                    ("scope", "acme/news"),
                    ("note", "forged"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}", db.backend);

        // An editor blocks letters for two brands, with the reason.
        let mut editor = Browser::new(&running);
        editor.sign_in("emil", "editor-secret").await;
        let (_, _, page) = editor.get(&contact).await;
        assert!(page.contains("action=\"/staff/block\""), "{page}");
        let csrf = Browser::csrf(&page);
        let block = |csrf: &str, note: &str| {
            vec![
                ("csrf".to_string(), csrf.to_string()),
                ("address".into(), address.into()),
                ("channel".into(), "postal".into()),
                ("scope".into(), "acme/news".into()),
                ("scope".into(), "acme/shop".into()),
                ("note".into(), note.to_string()),
            ]
        };
        let as_refs = |form: &[(String, String)]| -> Vec<(String, String)> { form.to_vec() };
        for (form, expected) in [
            (block("", "Grund Post Sperre"), StatusCode::FORBIDDEN),
            (block(&csrf, "  "), StatusCode::BAD_REQUEST),
            (
                block(&csrf, "Grund Post Sperre: Brief vom 2. Dezember"),
                StatusCode::SEE_OTHER,
            ),
        ] {
            let form = as_refs(&form);
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (status, _, _) = editor.post("/staff/block", &pairs).await;
            assert_eq!(status, expected, "{}", db.backend);
        }
        let ask = |brand, channel| CheckRequest {
            company: "acme",
            brand: Some(brand),
            class: MailClass::Promotional,
            channel,
        };
        assert!(
            !service
                .check(address, ask("news", Channel::Postal))
                .await
                .unwrap()
                .allowed
        );
        assert!(
            !service
                .check(address, ask("shop", Channel::Postal))
                .await
                .unwrap()
                .allowed
        );
        assert!(
            service
                .check(address, ask("news", Channel::Email))
                .await
                .unwrap()
                .allowed,
            "letters only"
        );
        let report = service.access_report(address).await.unwrap();
        let postal: Vec<_> = report
            .suppressions
            .iter()
            .filter(|s| s.channel == Channel::Postal)
            .collect();
        assert_eq!(postal.len(), 2);
        assert!(
            postal
                .iter()
                .all(|s| s.created_by.as_deref() == Some("staff:emil")
                    && s.source == Source::Staff
                    && s.note.as_deref() == Some("Grund Post Sperre: Brief vom 2. Dezember"))
        );

        // The staff block lifts with a reason; the owner's opt-out offers no button and refuses a forged lift.
        let (_, _, page) = editor.get(&contact).await;
        assert!(
            !page.contains(&format!("name=\"id\" value=\"{opt_out}\"")),
            "no lift for the owner's opt-out"
        );
        assert!(page.contains("Only the owner"), "{page}");
        let shop = postal
            .iter()
            .find(|s| s.brand == "shop")
            .unwrap()
            .id
            .to_string();
        let (status, _, _) = editor
            .post(
                "/staff/lift",
                &[
                    ("csrf", &csrf),
                    ("address", address),
                    ("id", &shop),
                    ("note", "wrote again: letters welcome"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            service
                .check(address, ask("shop", Channel::Postal))
                .await
                .unwrap()
                .allowed
        );
        assert!(
            !service
                .check(address, ask("news", Channel::Postal))
                .await
                .unwrap()
                .allowed
        );
        let (status, _, page) = editor
            .post(
                "/staff/lift",
                &[
                    ("csrf", &csrf),
                    ("address", address),
                    ("id", &opt_out.to_string()),
                    ("note", "forged"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{page}");
        running.stop().await;
    }
}

#[tokio::test]
async fn admins_import_export_and_erase_and_everyone_sees_the_overview() {
    for db in databases().await {
        let running = common::gateway::start(&db, &staff_config()).await;
        let address = "rita.admin@example.org";
        running.footprint(address).await;

        // The overview: counts per day (today's bounce and unsubscribe), the latest events.
        let mut viewer = Browser::new(&running);
        viewer.sign_in("vera", "viewer-secret").await;
        let (_, _, page) = viewer.get("/staff").await;
        assert!(
            page.contains("<svg") && page.contains("Per day, last 14 days"),
            "{page}"
        );
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let row = page
            .split("<tr>")
            .find(|r| r.contains(&format!("<td>{today}</td>")))
            .expect("today's row");
        assert!(
            row.contains("<td>1</td>"),
            "a bounce and an unsubscribe today: {row}"
        );
        assert!(page.contains(address), "the latest events name the address");
        assert!(
            !page.contains("/staff/import") && !page.contains("/staff/export"),
            "no admin tools for viewers"
        );
        let (status, _, _) = viewer.get("/staff/export").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Import: a CSV upload; the bad line is named, the good ones are kept.
        let mut admin = Browser::new(&running);
        admin.sign_in("ada", "admin-secret").await;
        let (_, _, page) = admin.get("/staff").await;
        let csrf = Browser::csrf(&page);
        let csv = "email,reason,company,brand,channel,note\n\
                   imported@example.org,manual,acme,news,postal,Grund Post Sperre: Liste\n\
                   not an address,manual,acme,,email,x\n";
        let boundary = "bgtestboundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blocks.csv\"\r\n\
             Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
        );
        let response = admin
            .http
            .post(format!("{}/staff/import", admin.base))
            .header("Cookie", admin.cookie_header())
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page = response.text().await.unwrap();
        assert!(
            page.contains("added 1") && page.contains("rejected 1"),
            "{page}"
        );
        assert!(page.contains("<td>3</td>"), "the bad line is named: {page}");

        // Export: the blocks in force as CSV, the imported postal block among them.
        let (status, headers, csv) = admin.get("/staff/export").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .contains("attachment")
        );
        assert!(
            csv.lines()
                .any(|l| l.contains("imported@example.org") && l.contains("postal")),
            "{csv}"
        );

        // Erase: a confirmation that names the consequences, then the address is gone.
        let (status, _, page) = admin.get(&format!("/staff/erase?address={address}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains("cannot be undone") && page.contains("stays blocked"),
            "{page}"
        );
        let (status, _, _) = admin
            .post("/staff/erase", &[("csrf", "forged"), ("address", address)])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let viewer_csrf = Browser::csrf(&viewer.get("/staff").await.2);
        let (status, _, _) = viewer
            .post(
                "/staff/erase",
                &[("csrf", &viewer_csrf), ("address", address)],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewers cannot erase");
        let (status, _, _) = admin
            .post("/staff/erase", &[("csrf", &csrf), ("address", address)])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let report = running.service.access_report(address).await.unwrap();
        let erased = report.erased.expect("erased");
        assert_eq!(erased.erased_by.as_deref(), Some("staff:ada"));
        running.stop().await;
    }
}
