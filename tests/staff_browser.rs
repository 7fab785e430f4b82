//! The staff page in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver, with fantoccini). A staff member signs in, searches, adds a postal
//! block for two brands with its reason by clicking through the form, opens a hostile stored mail
//! (shown as text: no element of it runs or loads), and a viewer finds no edit controls.
//!
//! Skipped with a message when chromedriver is missing, except under CI (`.ci/run` installs it).
//! With `BOUNCEGATE_SCREENSHOTS=DIR` the main pages are saved there as PNG (the README's come
//! from `BOUNCEGATE_SCREENSHOTS=docs`).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bouncegate::model::{Channel, MailClass};
use bouncegate::service::CheckRequest;
use common::databases;
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> Option<Driver> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        if std::env::var_os("CI").is_some() {
            panic!("{CHROMEDRIVER} or {CHROMIUM} is missing: under CI the browser tests must run");
        }
        eprintln!("skipping the browser test: install Debian's chromium and chromium-driver");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Killed and reaped on drop, also when it does not come up.
    let driver = Driver {
        child: Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
        port,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(driver);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start on port {port}");
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1100", "--lang=en-US"],
            "prefs": {"intl.accept_languages": "en-US,en"}
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

async fn screenshot(client: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("BOUNCEGATE_SCREENSHOTS") {
        let png = client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

/// The page's source once `ready` holds for it (the browser may still show the page before).
async fn wait_for(client: &Client, ready: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        let page = client.source().await.unwrap();
        if ready(&page) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the page never became ready: {}",
        client.source().await.unwrap()
    );
}

/// axe-core (from npm, `tests/browser/package.json`; `.ci/run` installs it).
const AXE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/browser/node_modules/axe-core/axe.min.js"
);

/// Runs the axe-core accessibility audit (WCAG 2.1 A and AA rules) on the page the browser shows
/// and fails with what it found: missing labels, too little contrast, controls without names,
/// broken landmarks. Skipped outside CI when axe-core is not installed.
async fn audit(client: &Client, page: &str) {
    let Ok(axe) = std::fs::read_to_string(AXE) else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{AXE} is missing: under CI the accessibility audit must run (npm ci --prefix tests/browser)"
            );
        }
        eprintln!("skipping the accessibility audit of {page}: npm ci --prefix tests/browser");
        return;
    };
    // WebDriver's scripts run beside the page's CSP, which allows no script but /staff/app.js.
    client
        .execute(&format!("{axe}\nreturn typeof axe;"), vec![])
        .await
        .unwrap();
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))))
                .catch(e => done([{id: 'axe failed', help: String(e)}]));",
            vec![],
        )
        .await
        .unwrap();
    let violations = found.as_array().expect("a list of violations");
    assert!(
        violations.is_empty(),
        "accessibility violations on {page}: {}",
        serde_json::to_string_pretty(&found).unwrap()
    );
}

/// Clicks the element `locator` finds.
async fn click(client: &Client, locator: Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

async fn sign_in(client: &Client, base: &str, user: &str, password: &str) {
    client.goto(&format!("{base}/staff")).await.unwrap();
    client
        .find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click(
        client,
        Locator::Css("form[action='/staff/login'] button[type=submit]"),
    )
    .await;
    client
        .wait()
        .for_element(Locator::Css("form[action='/staff/logout']"))
        .await
        .expect("signed in");
}

#[tokio::test]
async fn staff_block_letters_for_two_brands_and_see_a_hostile_mail_inert_in_a_browser() {
    let Some(driver) = driver().await else { return };
    let db = databases().await.remove(0);
    let viewer = bouncegate::relay::hash_password("viewer-secret").unwrap();
    let editor = bouncegate::relay::hash_password("editor-secret").unwrap();
    let staff = format!(
        "[[staff]]\nuser = \"vera\"\npassword_hash = \"{viewer}\"\nrole = \"viewer\"\n\
         [[staff]]\nuser = \"emil\"\npassword_hash = \"{editor}\"\nrole = \"editor\"\n"
    );
    let running = common::gateway::start(&db, &staff).await;
    let address = "marta.browser@example.org";
    running.footprint(address).await;
    running
        .unsubscribe_mail(
            address,
            "X-Evil: <script>document.title='pwned'</script><img src=\"http://127.0.0.1:9/p.png\">\r\n",
        )
        .await;
    let base = running.base.clone();
    let client = browser(&driver).await;

    client.goto(&format!("{base}/staff")).await.unwrap();
    screenshot(&client, "staff-sign-in.png").await;
    audit(&client, "the sign-in page").await;
    sign_in(&client, &base, "emil", "editor-secret").await;
    screenshot(&client, "staff-overview.png").await;
    audit(&client, "the overview").await;

    // Search.
    client
        .find(Locator::Id("address"))
        .await
        .unwrap()
        .send_keys(address)
        .await
        .unwrap();
    click(
        &client,
        Locator::Css("form[action='/staff/contact'] button"),
    )
    .await;
    client
        .wait()
        .for_element(Locator::Id("add-block"))
        .await
        .unwrap();

    // A postal block for two brands, with the reason.
    click(&client, Locator::Css("#add-block summary")).await;
    click(&client, Locator::Css("input[name=channel][value=postal]")).await;
    // The brand picker narrows as one types; Enter ticks the one brand left, and ticked brands
    // stay in view.
    let filter = client.find(Locator::Id("brand-filter")).await.unwrap();
    let enter: char = fantoccini::key::Key::Enter.into();
    let shown = |value: &'static str| {
        let client = client.clone();
        async move {
            client
                .find(Locator::Css(&format!("input[name=scope][value='{value}']")))
                .await
                .unwrap()
                .is_displayed()
                .await
                .unwrap()
        }
    };
    filter.send_keys("SH").await.unwrap();
    assert!(shown("acme/shop").await);
    assert!(!shown("acme/news").await && !shown("globex/weekly").await);
    let count = client
        .find(Locator::Id("brand-filter-count"))
        .await
        .unwrap();
    assert_eq!(count.text().await.unwrap(), "1 of 3 brands shown");
    screenshot(&client, "staff-brand-picker.png").await;
    audit(&client, "a contact, the block form open and narrowed").await;
    filter.send_keys(&enter.to_string()).await.unwrap();
    filter.send_keys("news").await.unwrap();
    assert!(shown("acme/news").await && shown("acme/shop").await);
    assert!(!shown("globex/weekly").await);
    filter.send_keys(&enter.to_string()).await.unwrap();
    for brand in ["acme/news", "acme/shop"] {
        let tick = client
            .find(Locator::Css(&format!("input[name=scope][value='{brand}']")))
            .await
            .unwrap();
        assert_eq!(tick.prop("checked").await.unwrap().as_deref(), Some("true"));
    }
    assert!(
        shown("globex/weekly").await,
        "an empty search shows every brand"
    );
    client
        .find(Locator::Id("block-note"))
        .await
        .unwrap()
        .send_keys("Grund Post Sperre: Brief vom 2. Dezember")
        .await
        .unwrap();
    click(
        &client,
        Locator::Css("form[action='/staff/block'] button[type=submit]"),
    )
    .await;
    // The same address comes back (a redirect to the contact): wait for the new page's content.
    let note = "Grund Post Sperre: Brief vom 2. Dezember";
    let page = wait_for(&client, |page| page.matches(note).count() >= 4).await;
    assert_eq!(
        page.matches(note).count(),
        4,
        "two blocks, in the list and the lift forms"
    );
    screenshot(&client, "staff-contact.png").await;
    audit(&client, "a contact with blocks").await;
    let service = &running.service;
    let ask = |brand, channel| CheckRequest {
        company: "acme",
        brand: Some(brand),
        class: MailClass::Promotional,
        channel,
    };
    for brand in ["news", "shop"] {
        assert!(
            !service
                .check(address, ask(brand, Channel::Postal))
                .await
                .unwrap()
                .allowed
        );
    }
    let report = service.access_report(address).await.unwrap();
    let new_blocks = report
        .suppressions
        .iter()
        .filter(|s| s.channel == Channel::Postal && s.created_by.as_deref() == Some("staff:emil"))
        .count();
    assert_eq!(new_blocks, 2, "letters only, recorded as emil's");

    // The hostile mail opens as text: nothing of it became an element.
    let hostile = running.stored_mail_with(address, "X-Evil").await;
    click(
        &client,
        Locator::Css(&format!("a[href='/staff/evidence/{}']", hostile.id)),
    )
    .await;
    // The contact page has <pre> elements too: wait for the mail's own page.
    wait_for(&client, |page| page.contains("Download as .eml")).await;
    let pre = client.find(Locator::Css("pre")).await.unwrap();
    let shown = pre.text().await.unwrap();
    assert!(
        shown.contains("<script>document.title='pwned'</script>"),
        "{shown}"
    );
    assert!(
        client
            .find_all(Locator::Css("main script, main img"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_ne!(
        client.title().await.unwrap(),
        "pwned",
        "the script did not run"
    );
    screenshot(&client, "staff-evidence.png").await;
    audit(&client, "a stored mail").await;

    // A viewer finds no edit controls.
    client.delete_all_cookies().await.unwrap();
    sign_in(&client, &base, "vera", "viewer-secret").await;
    client
        .goto(&format!("{base}/staff/contact?address={address}"))
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("h1.address"))
        .await
        .unwrap();
    assert!(
        client
            .find_all(Locator::Css(
                "form[action='/staff/block'], form[action='/staff/lift']"
            ))
            .await
            .unwrap()
            .is_empty()
    );

    client.close().await.unwrap();
    running.stop().await;
}
