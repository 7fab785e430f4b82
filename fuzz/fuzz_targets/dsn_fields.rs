//! Delivery-status fields behind a fixed DSN frame: exercises the field parser and classifier.
#![no_main]

use std::sync::LazyLock;

use bouncegate::analysis::Analyzer;
use libfuzzer_sys::fuzz_target;

static ANALYZER: LazyLock<Analyzer> = LazyLock::new(Analyzer::default);

fuzz_target!(|data: &[u8]| {
    let mut mail = b"From: MAILER-DAEMON@example.org\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n".to_vec();
    mail.extend_from_slice(data);
    mail.extend_from_slice(b"\r\n--B--\r\n");
    let _ = ANALYZER.analyze(&mail);
});
