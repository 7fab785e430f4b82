//! Any bytes into the analyser: it must never panic, and a bounce always names its recipients.
#![no_main]

use std::sync::LazyLock;

use bouncegate::analysis::{Analyzer, ReportKind};
use libfuzzer_sys::fuzz_target;

static ANALYZER: LazyLock<Analyzer> = LazyLock::new(Analyzer::default);

fuzz_target!(|data: &[u8]| {
    let report = ANALYZER.analyze(data);
    if report.kind == ReportKind::Bounce {
        assert!(!report.recipients.is_empty());
    }
});
