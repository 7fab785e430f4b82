//! Analyser throughput on one core, over the labelled corpus in `../shared/corpus` (or
//! `BOUNCEGATE_CORPUS`), falling back to the unit-test fixtures when the corpus is absent.
//!
//! `cargo bench --bench analysis`

use std::path::{Path, PathBuf};
use std::time::Duration;

use bouncegate::analysis::Analyzer;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn mails() -> (String, Vec<Vec<u8>>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = std::env::var_os("BOUNCEGATE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/corpus"))
        .join("emails");
    let dir = if corpus.is_dir() {
        corpus
    } else {
        root.join("tests/fixtures/analysis")
    };
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                files.push(std::fs::read(&path).unwrap());
            }
        }
    }
    (dir.display().to_string(), files)
}

fn analyse_corpus(c: &mut Criterion) {
    let (source, mails) = mails();
    let analyzer = Analyzer::default();
    let bytes: usize = mails.iter().map(Vec::len).sum();
    eprintln!("{} mails, {bytes} bytes, from {source}", mails.len());
    let mut group = c.benchmark_group("analysis");
    group.throughput(Throughput::Elements(mails.len() as u64));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("corpus", |b| {
        b.iter(|| {
            for mail in &mails {
                std::hint::black_box(analyzer.analyze(std::hint::black_box(mail)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, analyse_corpus);
criterion_main!(benches);
