//! Any bytes into the analyser: it must never panic, and a bounce always names its recipients.
#![no_main]

use std::sync::LazyLock;

use bouncegate::analysis::{Analyzer, ReportKind};
use libfuzzer_sys::fuzz_target;

// libfuzzer-sys aborts on every panic, even one the analyser catches (it guards mail-parser's
// known panics with catch_unwind); with the default hook back, only a panic that escapes
// `analyze` — which libfuzzer-sys still aborts on — is a crash.
static ANALYZER: LazyLock<Analyzer> = LazyLock::new(|| {
    let _ = std::panic::take_hook();
    Analyzer::default()
});

/// The same rules, explaining each verdict in words (`classify --explain`).
static EXPLAINING: LazyLock<Analyzer> = LazyLock::new(|| Analyzer::default().explaining());

fuzz_target!(|data: &[u8]| {
    // `analyze_each` also splits mailbox files (`From ` separator lines) first.
    for report in ANALYZER.analyze_each(data) {
        if report.kind == ReportKind::Bounce {
            assert!(!report.recipients.is_empty());
        }
    }
    // Explaining (on a quarter of the inputs: it compiles the matched rule's pattern alone)
    // gives the same verdicts, each with its rule named; the reports a mail forwards are each
    // read on their own.
    if data.first().is_some_and(|b| b % 4 == 0) {
        let plain = ANALYZER.analyze_all(data);
        let explained = EXPLAINING.analyze_all(data);
        assert_eq!(plain.len(), explained.len());
        for (plain, explained) in plain.iter().zip(&explained) {
            assert_eq!(plain.kind, explained.kind);
            for (p, e) in plain.recipients.iter().zip(&explained.recipients) {
                assert_eq!((p.reason, &p.rule), (e.reason, &e.rule));
                assert!(!e.rule.is_empty());
            }
        }
    }
});
