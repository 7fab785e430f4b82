//! Accuracy on the labelled corpus in `../shared/corpus` (Sisimai's expectations per recipient).
//!
//! Skips with a message when the corpus is absent. Prints the figures for the whole corpus and
//! for its two halves: families (reporting MTAs) split by a fixed seed into a *design* half, whose
//! mismatches are written to `target/corpus-mismatches.txt` for developing rules, and a *check*
//! half, only counted, which says whether those rules generalise. Soft→hard errors (a live
//! customer suppressed for good) are counted on their own. The asserted floors are the issue's
//! goals over the whole corpus (hard/soft 98%, reason 93%, status 95%), so a change that takes the
//! analyser below them fails; see BENCHMARKS.md for the figures.

use std::path::{Path, PathBuf};

use bouncegate::analysis::{Analyzer, BounceClass, RecipientReport};

/// Agreement the analyser must keep (fractions of all labelled recipients).
const MIN_HARD_SOFT: f64 = 0.98;
const MIN_REASON: f64 = 0.93;
const MIN_STATUS: f64 = 0.95;
/// Floors on each half of the real-MTA corpus (tests/corpus/realmta): hard/soft on both, the
/// reason on the design half (rules are written from it) and on the check half (providers whose
/// mails no rule was written from; their published code tables are rules since session 15, so
/// the figure also says whether those tables are wired right; the issue's goal is 95%).
const REALMTA_MIN_HARD_SOFT: f64 = 0.99;
const REALMTA_MIN_REASON_DESIGN: f64 = 0.90;
const REALMTA_MIN_REASON_CHECK: f64 = 0.80;

/// The corpus, or `None` after saying that `test` is skipped because it is absent.
fn corpus_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BOUNCEGATE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if dir.join("labels.jsonl").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping {test}: ../shared/corpus/labels.jsonl not found (set BOUNCEGATE_CORPUS)"
        );
        None
    }
}

/// How a mail's lines end when it is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LineEndings {
    /// As stored (LF, a few files CRLF).
    AsStored,
    /// CRLF, as SMTP delivers a mail.
    Crlf,
    /// CR alone (classic Mac OS; Sisimai's test set keeps such copies).
    Cr,
}

impl LineEndings {
    fn apply(self, raw: Vec<u8>) -> Vec<u8> {
        if self == LineEndings::AsStored {
            return raw;
        }
        // Every line ending (LF or CRLF; some stored mails have CRLF) becomes this one; the
        // bytes between are kept as they are, whatever their charset.
        let ending: &[u8] = if self == LineEndings::Crlf {
            b"\r\n"
        } else {
            b"\r"
        };
        let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
        for (i, &b) in raw.iter().enumerate() {
            match b {
                b'\r' if raw.get(i + 1) == Some(&b'\n') => {}
                b'\n' => out.extend_from_slice(ending),
                _ => out.push(b),
            }
        }
        out
    }
}

/// Which half of the corpus a family (the reporting MTA, `lhost`) falls in. Rules are written
/// and tuned from the design half's mismatches only; the check half says whether they generalise
/// (its mismatches are counted, never listed). The split is fixed: FNV-1a of a seed and the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    Design,
    Check,
}

fn half_of(family: &str) -> Half {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "bouncegate-split-1:".bytes().chain(family.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    if hash.is_multiple_of(2) {
        Half::Design
    } else {
        Half::Check
    }
}

/// Agreement counts over the corpus read with `endings`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Figures {
    mails: usize,
    total: usize,
    hard_ok: usize,
    reason_ok: usize,
    status_ok: usize,
    /// Recipients labelled soft (or no failure) that the analyser called hard: a live customer
    /// suppressed for good. The costly error, counted on its own.
    soft_to_hard: usize,
}

impl Figures {
    fn line(&self, name: &str) -> String {
        let pct = |n: usize| 100.0 * n as f64 / self.total.max(1) as f64;
        format!(
            "{name}: {} mails, {} labelled recipients: hard/soft {:.1}%, reason {:.1}%, status {:.1}%, soft→hard {} ({:.2}%)",
            self.mails,
            self.total,
            pct(self.hard_ok),
            pct(self.reason_ok),
            pct(self.status_ok),
            self.soft_to_hard,
            pct(self.soft_to_hard)
        )
    }
}

/// The whole corpus, its design half and its check half.
#[derive(Debug, Default, PartialEq, Eq)]
struct Measured {
    all: Figures,
    design: Figures,
    check: Figures,
}

/// Counts one labelled recipient against what the analyser said of it (`None`: not found) into
/// both `figures`; a mismatch in words, if it is one.
fn score(
    figures: [&mut Figures; 2],
    expect: &serde_json::Value,
    got: Option<&RecipientReport>,
) -> Option<String> {
    let hard = got.is_some_and(|r| r.class == BounceClass::Hard);
    let want_hard = expect["hard"].as_bool().unwrap_or(false);
    let reason = got.map(|r| r.reason.as_str()).unwrap_or("(none)");
    let status = got.map(|r| r.status.as_str()).unwrap_or("(none)");
    let want_status = expect["status"].as_str();
    let ok = (
        hard == want_hard,
        reason == expect["reason"].as_str().unwrap_or(""),
        want_status.is_none_or(|s| s == status),
    );
    for figures in figures {
        figures.total += 1;
        figures.hard_ok += usize::from(ok.0);
        figures.reason_ok += usize::from(ok.1);
        figures.status_ok += usize::from(ok.2);
        figures.soft_to_hard += usize::from(hard && !want_hard);
    }
    let class = |hard| if hard { "hard" } else { "soft" };
    (ok != (true, true, true)).then(|| {
        format!(
            "want {} {} {} | got {reason} {status} {} {} {} | {}",
            expect["reason"].as_str().unwrap_or(""),
            want_status.unwrap_or("-"),
            class(want_hard),
            class(hard),
            got.map(|r| r.rule.as_str()).unwrap_or(""),
            got.map(|r| r.address.as_str()).unwrap_or(""),
            got.map(|r| r.diagnostic.chars().take(160).collect::<String>())
                .unwrap_or_default(),
        )
    })
}

/// Agreement on a labelled corpus read with `endings`. Halves by `family` where the labels have
/// it (the real-MTA corpus: the provider), else by `lhost` (the reporting MTA). Recipients are
/// matched by `address` where the labels name it, else by order (Sisimai's labels have none).
fn measure(dir: &Path, endings: LineEndings) -> (Measured, String) {
    let analyzer = Analyzer::default();
    let labels = std::fs::read_to_string(dir.join("labels.jsonl")).unwrap();
    let mut measured = Measured::default();
    let mut mismatches = String::new();
    for line in labels.lines().filter(|l| !l.trim().is_empty()) {
        let label: serde_json::Value = serde_json::from_str(line).unwrap();
        let family = label["family"].as_str().or(label["lhost"].as_str());
        let half = half_of(family.unwrap_or(""));
        let (all, part) = match half {
            Half::Design => (&mut measured.all, &mut measured.design),
            Half::Check => (&mut measured.all, &mut measured.check),
        };
        let raw = endings.apply(std::fs::read(dir.join(label["file"].as_str().unwrap())).unwrap());
        // Two corpus files are mailboxes of two reports each; their labels cover both.
        let recipients: Vec<_> = analyzer
            .analyze_each(&raw)
            .into_iter()
            .flat_map(|report| report.recipients)
            .collect();
        for figures in [&mut *all, &mut *part] {
            figures.mails += 1;
        }
        let id = label["id"].as_str().unwrap_or("");
        let expected = label["expect"].as_array().unwrap();
        if expected.is_empty() && !recipients.is_empty() && half == Half::Design {
            mismatches.push_str(&format!(
                "{id}: expected no recipient, got {}\n",
                recipients.len()
            ));
        }
        for (i, expect) in expected.iter().enumerate() {
            let (who, got) = match expect["address"].as_str() {
                Some(address) => (
                    address.to_string(),
                    recipients
                        .iter()
                        .find(|r| r.address.eq_ignore_ascii_case(address)),
                ),
                None => (format!("#{i}"), recipients.get(i)),
            };
            let miss = score([&mut *all, &mut *part], expect, got);
            if let Some(miss) = miss
                && half == Half::Design
            {
                mismatches.push_str(&format!("{id} {who}: {miss}\n"));
            }
        }
    }
    (measured, mismatches)
}

/// Writes the design half's mismatches to `target/FILE` and prints the figures.
fn report(measured: &Measured, mismatches: &str, file: &str, name: &str) {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&target);
    // The design half's mismatches only: the check half is for measuring, not for tuning.
    let _ = std::fs::write(target.join(file), mismatches);
    println!("{}", measured.all.line(name));
    println!("{}", measured.design.line(&format!("{name}, design half")));
    println!("{}", measured.check.line(&format!("{name}, check half")));
}

#[test]
fn accuracy_on_the_labelled_corpus() {
    let Some(dir) = corpus_dir("the corpus accuracy test") else {
        return;
    };
    let (measured, mismatches) = measure(&dir, LineEndings::AsStored);
    report(&measured, &mismatches, "corpus-mismatches.txt", "corpus");
    let Figures {
        total,
        hard_ok,
        reason_ok,
        status_ok,
        ..
    } = measured.all;
    assert!(
        measured.design.total > 100 && measured.check.total > 100,
        "both halves are sizeable: {measured:?}"
    );
    let pct = |n: usize| n as f64 / total as f64;
    assert!(total > 300, "the corpus was read: {total} recipients");
    assert!(
        pct(hard_ok) >= MIN_HARD_SOFT,
        "hard/soft agreement {:.3} < {MIN_HARD_SOFT}",
        pct(hard_ok)
    );
    assert!(
        pct(reason_ok) >= MIN_REASON,
        "reason agreement {:.3} < {MIN_REASON}",
        pct(reason_ok)
    );
    assert!(
        pct(status_ok) >= MIN_STATUS,
        "status agreement {:.3} < {MIN_STATUS}",
        pct(status_ok)
    );
}

/// The corpus of real bounces made by real MTAs (tools/realmta), committed in the repository.
fn realmta_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/realmta")
}

#[test]
fn accuracy_on_the_real_mta_corpus() {
    let (measured, mismatches) = measure(&realmta_dir(), LineEndings::AsStored);
    report(
        &measured,
        &mismatches,
        "realmta-mismatches.txt",
        "real-MTA corpus",
    );
    assert!(
        measured.design.total > 50 && measured.check.total > 50,
        "both halves are sizeable: {measured:?}"
    );
    let pct = |n: usize, f: &Figures| n as f64 / f.total as f64;
    for (figures, name, min_reason) in [
        (&measured.design, "design", REALMTA_MIN_REASON_DESIGN),
        (&measured.check, "check", REALMTA_MIN_REASON_CHECK),
    ] {
        assert_eq!(
            figures.soft_to_hard, 0,
            "{name} half: a soft failure read as hard\n{mismatches}"
        );
        assert!(
            pct(figures.hard_ok, figures) >= REALMTA_MIN_HARD_SOFT,
            "{name} half: hard/soft {:.3} < {REALMTA_MIN_HARD_SOFT}",
            pct(figures.hard_ok, figures)
        );
        assert!(
            pct(figures.reason_ok, figures) >= min_reason,
            "{name} half: reason {:.3} < {min_reason}",
            pct(figures.reason_ok, figures)
        );
    }
}

/// The same mails with the line endings SMTP delivers (CRLF) and with bare CRs read the same.
#[test]
fn line_endings_do_not_change_the_verdicts() {
    let Some(dir) = corpus_dir("the line-endings corpus test") else {
        return;
    };
    let (stored, _) = measure(&dir, LineEndings::AsStored);
    for endings in [LineEndings::Crlf, LineEndings::Cr] {
        let (figures, mismatches) = measure(&dir, endings);
        assert_eq!(figures, stored, "{endings:?}:\n{mismatches}");
    }
}
