//! The `bouncegate` binary: parses the command line and maps the outcome to an exit code.

/// mimalloc instead of the system allocator: the analyser and the SMTP sessions make many small,
/// short-lived allocations (parsed headers, diagnostic strings), where glibc's malloc spent about
/// an eighth of `classify`'s instructions (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bouncegate::cli::main()
}
