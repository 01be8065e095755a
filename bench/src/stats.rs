//! Latency percentiles and the one-line result format every tool prints.
//!
//! A result line is `bench FIGURE key=value key=value ...` on stdout: `scripts/bench` collects
//! them and `bench-report` turns them into `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::time::Duration;

/// Percentiles of a latency sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Samples taken.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place); all zero when empty.
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Builds a `bench FIGURE k=v ...` line.
#[derive(Debug, Clone)]
pub struct Line(String);

impl Line {
    /// A line for `figure` (e.g. `http`, `enqueue`, `drain`).
    pub fn new(figure: &str) -> Self {
        Self(format!("bench {figure}"))
    }

    /// Adds `key=value`; spaces in the value become `_` so the line stays parseable.
    pub fn kv(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        let value = value.to_string().replace(char::is_whitespace, "_");
        let _ = write!(self.0, " {key}={value}");
        self
    }

    /// Adds `key=value` with three decimals.
    pub fn f(self, key: &str, value: f64) -> Self {
        self.kv(key, format!("{value:.3}"))
    }

    /// The finished line.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Prints the line on stdout.
    pub fn print(&self) {
        println!("{}", self.0);
    }
}

/// Parses a `bench FIGURE k=v ...` line into its figure and pairs; `None` for other lines.
pub fn parse_line(line: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut words = line.split_whitespace();
    if words.next()? != "bench" {
        return None;
    }
    let figure = words.next()?.to_owned();
    let pairs = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some((figure, pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!(p.count, 100);
        assert!((p.p50_ms - 50.0).abs() < 1e-9);
        assert!((p.p99_ms - 99.0).abs() < 1e-9);
        assert!((p.max_ms - 100.0).abs() < 1e-9);
        assert_eq!(Percentiles::of(&mut []).count, 0);
    }

    #[test]
    fn lines_round_trip() {
        let line = Line::new("http").kv("target", "plain echo").f("rps", 12.5);
        assert_eq!(line.as_str(), "bench http target=plain_echo rps=12.500");
        let (figure, pairs) = parse_line(line.as_str()).expect("parses");
        assert_eq!(figure, "http");
        assert_eq!(pairs[1], ("rps".to_owned(), "12.500".to_owned()));
        assert!(parse_line("Running 10s test").is_none());
    }
}
