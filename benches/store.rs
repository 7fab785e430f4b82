//! Store benchmark on SQLite: import rate, `check` latency (p50/p99) and `filter` rate, with peak
//! memory of each phase.
//!
//! `cargo bench --bench store -- [ROWS ...]` (default 1000000). Each size gets a fresh database in
//! `$BENCH_DIR` (default: the system temp folder). Results are printed as Markdown rows.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bouncegate::config::Config;
use bouncegate::model::{Channel, MailClass};
use bouncegate::service::bulk::{self, Format};
use bouncegate::service::{CheckRequest, SuppressionService};
use bouncegate::store::Store;

const ORGANISATION: &str = r#"
[[companies]]
id = "acme"
brands = ["news", "shop"]
[[companies]]
id = "globex"
brands = ["weekly"]
"#;
const CHECKS: usize = 100_000;
const FILTER_LIST: usize = 1_000_000;

fn main() {
    // `cargo bench` passes `--bench`; sizes are the numeric arguments.
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| suppressed rows | import | import rows/s | import peak RSS | check p50 | check p99 | check p99.9 | check peak RSS | filter 1M | DB size |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for rows in sizes {
        runtime.block_on(run(rows));
    }
}

/// Row `i` of the generated suppression list: a mix of scopes and reasons.
fn row(i: usize) -> String {
    let (reason, company, brand) = match i % 10 {
        0..=3 => ("unsubscribe", "acme", "news"),
        4..=5 => ("unsubscribe", "acme", ""),
        6 => ("complaint", "globex", ""),
        7 => ("soft_bounce", "", ""),
        _ => ("hard_bounce", "", ""),
    };
    format!(
        "user{i}@example{}.org,{reason},{company},{brand}\n",
        i % 997
    )
}

async fn run(rows: usize) {
    let base = std::env::var("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(base).unwrap();
    let csv_path = dir.path().join("suppressions.csv");
    {
        let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path).unwrap());
        csv.write_all(b"email,reason,company,brand\n").unwrap();
        for i in 0..rows {
            csv.write_all(row(i).as_bytes()).unwrap();
        }
    }
    let db_path = dir.path().join("bench.db");
    let config = Config::parse(ORGANISATION, std::path::Path::new("bench.toml")).unwrap();
    let store = Store::open(&format!("sqlite://{}", db_path.display()), 8)
        .await
        .unwrap();
    let service = SuppressionService::new(store, Arc::new(config));

    reset_peak_memory();
    let started = Instant::now();
    let input = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&csv_path).unwrap());
    let report = bulk::import(&service, input, Format::Csv, &())
        .await
        .unwrap();
    let import_time = started.elapsed();
    let import_peak = peak_memory_kib();
    assert_eq!(report.added as usize, rows, "{report:?}");

    reset_peak_memory();
    let request = CheckRequest {
        company: "acme",
        brand: Some("news"),
        class: MailClass::Promotional,
        channel: Channel::Email,
    };
    let mut latencies = Vec::with_capacity(CHECKS);
    let mut blocked = 0;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for n in 0..CHECKS {
        // Half the checks hit suppressed addresses, half miss.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let i = (state % rows as u64) as usize;
        let address = if n % 2 == 0 {
            format!("user{i}@example{}.org", i % 997)
        } else {
            format!("someone{i}@example{}.net", i % 997)
        };
        let started = Instant::now();
        let verdict = service.check(&address, request).await.unwrap();
        latencies.push(started.elapsed());
        blocked += usize::from(!verdict.allowed);
    }
    let check_peak = peak_memory_kib();
    assert!(
        blocked > CHECKS / 4,
        "the suppressed half was found: {blocked}"
    );
    latencies.sort();

    let list: Vec<u8> = (0..FILTER_LIST)
        .flat_map(|i| format!("user{}@example{}.org\n", i * 7, (i * 7) % 997).into_bytes())
        .collect();
    let started = Instant::now();
    let filtered = bulk::filter(
        &service,
        list.as_slice(),
        request,
        std::io::sink(),
        None::<std::io::Sink>,
        &(),
    )
    .await
    .unwrap();
    let filter_time = started.elapsed();
    assert_eq!(filtered.read as usize, FILTER_LIST);

    let db_size: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("bench.db"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "| {rows} | {} | {:.0} | {} MiB | {} | {} | {} | {} MiB | {} | {} MiB |",
        seconds(import_time),
        rows as f64 / import_time.as_secs_f64(),
        import_peak / 1024,
        micros(percentile(&latencies, 0.50)),
        micros(percentile(&latencies, 0.99)),
        micros(percentile(&latencies, 0.999)),
        check_peak / 1024,
        seconds(filter_time),
        db_size / (1 << 20),
    );
    service.store().close().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Resets the kernel's peak-RSS mark (VmHWM) so each phase is measured on its own.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_memory_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
