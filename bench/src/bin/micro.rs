//! `micro`: runs the Criterion benchmark of the in-process handler call and prints its median as a
//! `bench invoke target=criterion-in-process ...` line.
//!
//! `micro [--out DIR] [--warm-up-seconds 1] [--measure-seconds 3]`

use std::path::PathBuf;
use std::time::Duration;

use bench::stats::Line;
use clap::Parser;
use criterion::Criterion;

/// Runs the in-process Criterion benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// Criterion's output folder.
    #[arg(long, default_value = "target/criterion")]
    out: PathBuf,
    /// Warm-up time.
    #[arg(long, default_value_t = 1.0)]
    warm_up_seconds: f64,
    /// Measurement time.
    #[arg(long, default_value_t = 3.0)]
    measure_seconds: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut criterion = Criterion::default()
        .output_directory(&args.out)
        .without_plots()
        .warm_up_time(Duration::from_secs_f64(args.warm_up_seconds))
        .measurement_time(Duration::from_secs_f64(args.measure_seconds));
    bench::micro::handler_call(&mut criterion);
    criterion.final_summary();

    let estimates = args
        .out
        .join(bench::micro::HANDLER_CALL)
        .join("new")
        .join("estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&estimates)?)?;
    let median_ns = json["median"]["point_estimate"]
        .as_f64()
        .ok_or("no median in Criterion's estimates")?;
    let mean_ns = json["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
    Line::new("invoke")
        .kv("target", "criterion-in-process")
        .kv("count", "criterion")
        .kv("p50_ms", format!("{:.6}", median_ns / 1e6))
        .kv("mean_ms", format!("{:.6}", mean_ns / 1e6))
        .kv("p99_ms", "-")
        .kv("errors", 0)
        .print();
    Ok(())
}
