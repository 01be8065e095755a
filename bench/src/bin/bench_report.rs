//! `bench-report`: turns the `bench ...` lines of a run into `BENCHMARKS.md`.
//!
//! ```text
//! bench-report --results target/bench/results.txt --command "scripts/bench" --out BENCHMARKS.md
//! ```
//!
//! The machine (CPU model, cores, memory) is read from `/proc`; the date is the results file's last
//! change (UTC): when the figures were measured, even if the report is written again later.

use std::fmt::Write as _;
use std::path::PathBuf;

use bench::report::{self, Results};
use clap::Parser;

/// Writes the benchmark report.
#[derive(Parser, Debug)]
struct Args {
    /// File holding the run's `bench ...` lines (other lines are ignored).
    #[arg(long)]
    results: PathBuf,
    /// The command that produced them, for the report.
    #[arg(long, default_value = "scripts/bench")]
    command: String,
    /// The cargo profile the measured binaries were built with.
    #[arg(long, default_value = "release")]
    profile: String,
    /// A note printed at the top (e.g. that the machine was busy).
    #[arg(long, default_value = "")]
    note: String,
    /// A hand-kept Markdown file of optimisations with their before/after figures, copied in as it
    /// is (figures of code that no longer exists cannot be re-measured).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Where to write the Markdown.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.results)
        .map_err(|e| format!("could not read {}: {e}", args.results.display()))?;
    let measured: chrono::DateTime<chrono::Utc> = std::fs::metadata(&args.results)?
        .modified()
        .map_or_else(|_| chrono::Utc::now(), Into::into);
    let results = Results::parse(&text);
    let mut md = String::new();
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Produced by `{}` (see `bench/` and `scripts/bench`); every figure is measured next to its \
         baseline in the same run. Re-run it to reproduce: it builds, starts and stops all it needs.\n",
        args.command
    )?;
    if !args.note.is_empty() {
        writeln!(md, "> **{}**\n", args.note)?;
    }
    writeln!(md, "- Date: {}", measured.format("%Y-%m-%d %H:%M UTC"))?;
    writeln!(md, "- Command: `{}`", args.command)?;
    writeln!(md, "- Machine: {}", machine())?;
    writeln!(md, "- Build: cargo profile `{}`", args.profile)?;
    writeln!(md)?;
    let goals = report::write_all(&mut md, &results)?;
    if let Some(history) = &args.history {
        let text = std::fs::read_to_string(history)
            .map_err(|e| format!("could not read {}: {e}", history.display()))?;
        writeln!(md, "{}\n", text.trim_end())?;
    }
    writeln!(md, "## Goals\n")?;
    writeln!(md, "| goal | measured | met |\n| --- | --- | --- |")?;
    for (goal, measured, met) in goals {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        writeln!(md, "| {goal} | {measured} | {met} |")?;
    }
    writeln!(md, "\n## Raw lines\n\n```text")?;
    for line in text.lines().filter(|l| l.starts_with("bench ")) {
        writeln!(md, "{line}")?;
    }
    writeln!(md, "```")?;
    std::fs::write(&args.out, md)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// `N cores, CPU model, M GiB memory, kernel`.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {mem_gib:.1} GiB memory, Linux {}",
        kernel.trim()
    )
}
