//! `bench-report`: turns the `bench ...` lines of a run into `BENCHMARKS.md`.
//!
//! ```text
//! bench-report --results target/bench/results.txt --command "scripts/bench" --out BENCHMARKS.md
//! ```
//!
//! The machine (CPU model, cores, memory) is read from `/proc`; the date is the results file's last
//! change (UTC): when the figures were measured, even if the report is written again later.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use bench::report::{self, Plots, Results};
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
    /// The folder where `bench/plots.py` drew the figures; those there are linked, relative to
    /// the report.
    #[arg(long)]
    plots: Option<PathBuf>,
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
    let plots = args
        .plots
        .as_deref()
        .map(|dir| plots(dir, &args.out))
        .unwrap_or_default();
    let goals = report::write_all_with_plots(&mut md, &results, &plots)?;
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

/// The figures in `dir` (the names `bench/plots.py` writes), as links relative to the report `out`.
fn plots(dir: &Path, out: &Path) -> Plots {
    let base = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let link = |name: &str| {
        let file = dir.join(name);
        file.is_file().then(|| relative(&file, base))
    };
    Plots {
        http_latency: link("http-latency.svg"),
        enqueue_ratio: link("enqueue-ratio.svg"),
        drain: link("drain.svg"),
    }
}

/// `file` relative to the folder `from` (both made absolute first), with `/` separators.
fn relative(file: &Path, from: &Path) -> String {
    let parts = |p: &Path| -> Vec<String> {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .components()
            .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    let (file, from) = (parts(file), parts(from));
    let common = file.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut out = vec!["..".to_owned(); from.len() - common];
    out.extend(file[common..].iter().cloned());
    out.join("/")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_links_are_relative_to_the_report() {
        assert_eq!(
            relative(Path::new("/repo/bench/plots/drain.svg"), Path::new("/repo")),
            "bench/plots/drain.svg"
        );
        assert_eq!(
            relative(
                Path::new("/repo/target/bench/plots/drain.svg"),
                Path::new("/repo/target/bench")
            ),
            "plots/drain.svg"
        );
        assert_eq!(
            relative(
                Path::new("/repo/bench/plots/a.svg"),
                Path::new("/repo/docs")
            ),
            "../bench/plots/a.svg"
        );
    }

    #[test]
    fn only_figures_that_exist_are_linked() {
        let dir = std::env::temp_dir().join(format!("bench-report-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("drain.svg"), "<svg/>").expect("file");
        let plots = plots(&dir, &dir.join("BENCHMARKS.md"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(plots.drain.as_deref(), Some("drain.svg"));
        assert_eq!(plots.http_latency, None);
        assert_eq!(plots.enqueue_ratio, None);
    }
}
