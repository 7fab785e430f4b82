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

fuzz_target!(|data: &[u8]| {
    // `analyze_each` also splits mailbox files (`From ` separator lines) first.
    for report in ANALYZER.analyze_each(data) {
        if report.kind == ReportKind::Bounce {
            assert!(!report.recipients.is_empty());
        }
    }
});
