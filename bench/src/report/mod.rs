//! The tables of `BENCHMARKS.md`, built from the `bench ...` lines of one run.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use crate::stats::parse_line;

mod container;
mod enqueue;
mod invoke;
mod profile;
mod stream;

/// One result line: its figure and its `key=value` pairs.
#[derive(Debug, Clone)]
pub struct Row {
    figure: String,
    values: HashMap<String, String>,
    keys: Vec<String>,
}

impl Row {
    /// The value of `key`, as text ("" when absent).
    pub fn s(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or("")
    }

    /// The keys, in the order of the line.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    /// The value of `key` as a number.
    pub fn n(&self, key: &str) -> Option<f64> {
        self.values.get(key).and_then(|v| v.parse().ok())
    }
}

/// Every result line of a run.
#[derive(Debug, Clone)]
pub struct Results(Vec<Row>);

impl Results {
    /// The `bench ...` lines of `text`; other lines are skipped.
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(parse_line)
                .map(|(figure, pairs)| Row {
                    figure,
                    keys: pairs.iter().map(|(k, _)| k.clone()).collect(),
                    values: pairs.into_iter().collect(),
                })
                .collect(),
        )
    }

    /// Rows of `figure` whose values include every `(key, value)` of `filter`.
    pub fn all(&self, figure: &str, filter: &[(&str, &str)]) -> Vec<&Row> {
        self.0
            .iter()
            .filter(|r| r.figure == figure && filter.iter().all(|(k, v)| r.s(k) == *v))
            .collect()
    }

    /// The last row of `figure` matching `filter`.
    pub fn one(&self, figure: &str, filter: &[(&str, &str)]) -> Option<&Row> {
        self.all(figure, filter).into_iter().last()
    }
}

/// A goal of the issue: what it asks, what was measured, whether it is met (`None`: no data).
pub type Goal = (String, String, Option<bool>);

/// The figures `bench/plots.py` drew for the run, as paths relative to the report (`None`: not
/// drawn, so not linked).
#[derive(Debug, Clone, Default)]
pub struct Plots {
    /// HTTP latency by percentile: plain server, adapter, `cargo lambda watch` (section 1).
    pub http_latency: Option<String>,
    /// Enqueue ratio per connection count (section 2).
    pub enqueue_ratio: Option<String>,
    /// Tasks finished over time against the ideal (section 3).
    pub drain: Option<String>,
}

/// A Markdown image line for `path`, when there is one.
fn image(md: &mut String, alt: &str, path: Option<&String>) -> fmt::Result {
    match path {
        Some(path) => writeln!(md, "![{alt}]({path})\n"),
        None => Ok(()),
    }
}

fn num(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Writes every table into `md` and returns the goals with their verdicts.
pub fn write_all(md: &mut String, r: &Results) -> Result<Vec<Goal>, fmt::Error> {
    write_all_with_plots(md, r, &Plots::default())
}

/// [`write_all`], with the figures linked in their sections.
pub fn write_all_with_plots(
    md: &mut String,
    r: &Results,
    plots: &Plots,
) -> Result<Vec<Goal>, fmt::Error> {
    let mut goals = Vec::new();
    http(md, r, &mut goals)?;
    image(
        md,
        "HTTP latency by percentile: plain server, adapter, cargo lambda watch",
        plots.http_latency.as_ref(),
    )?;
    enqueue::enqueue(md, r, &mut goals)?;
    image(
        md,
        "Enqueue req/s through the adapter over the raw SendMessage ceiling, per connection count",
        plots.enqueue_ratio.as_ref(),
    )?;
    drain(md, r, &mut goals)?;
    image(
        md,
        "Tasks finished over time against the ideal, per drain plan",
        plots.drain.as_ref(),
    )?;
    startup(md, r, &mut goals)?;
    memory(md, r, &mut goals)?;
    invoke::invoke(md, r)?;
    stream::stream(md, r)?;
    profile::profile(md, r)?;
    container::container(md, r)?;
    Ok(goals)
}

fn http(md: &mut String, r: &Results, goals: &mut Vec<Goal>) -> fmt::Result {
    writeln!(
        md,
        "## 1. HTTP overhead of the adapter (echo function, `wrk`)\n"
    )?;
    writeln!(
        md,
        "`GET /echo` for a fixed time per row. *plain*: the echo handler in a plain hyper server \
         (`bench/src/bin/plain_echo.rs`, the floor); *adapter*: `adapter http -- echo`; \
         *cargo-lambda-watch*: `cargo lambda watch` serving the same function from the same build profile (path \
         `/lambda-url/echo/echo`). Ratios are against *plain* at the same connection count. `wrk` \
         (2 threads) runs on the same machine and competes for its cores.\n"
    )?;
    writeln!(
        md,
        "| target | conns | req/s | p50 ms | p99 ms | errors | req/s vs plain | p50 vs plain |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    let mut conns: Vec<&str> = r.all("http", &[]).iter().map(|x| x.s("conns")).collect();
    conns.dedup();
    let mut seen = Vec::new();
    for c in conns {
        if seen.contains(&c) {
            continue;
        }
        seen.push(c);
        let plain = r.one("http", &[("target", "plain"), ("conns", c)]);
        for row in r.all("http", &[("conns", c)]) {
            let rps = ratio(row.n("rps"), plain.and_then(|p| p.n("rps")));
            let p50 = ratio(row.n("p50_ms"), plain.and_then(|p| p.n("p50_ms")));
            writeln!(
                md,
                "| {} | {c} | {} | {} | {} | {} | {} | {} |",
                row.s("target"),
                num(row.n("rps"), 0),
                num(row.n("p50_ms"), 3),
                num(row.n("p99_ms"), 3),
                row.s("errors"),
                num(rps, 2),
                num(p50, 2),
            )?;
        }
    }
    writeln!(md)?;
    let p50 = |t: &str| {
        r.one("http", &[("target", t), ("conns", "1")])
            .and_then(|x| x.n("p50_ms"))
    };
    let added = match (p50("adapter"), p50("plain")) {
        (Some(a), Some(p)) => Some(a - p),
        _ => None,
    };
    goals.push((
        "adapter adds < 0.3 ms at p50 over the plain server (1 connection)".into(),
        format!("{} ms", num(added, 3)),
        added.map(|a| a < 0.3),
    ));
    let rps = |t: &str| {
        r.one("http", &[("target", t), ("conns", "64")])
            .and_then(|x| x.n("rps"))
    };
    let share = ratio(rps("adapter"), rps("plain"));
    goals.push((
        "adapter serves >= 80% of the plain server's req/s at 64 connections".into(),
        num(share.map(|s| s * 100.0), 0) + "%",
        share.map(|s| s >= 0.8),
    ));
    Ok(())
}

fn drain(md: &mut String, r: &Results, goals: &mut Vec<Goal>) -> fmt::Result {
    writeln!(
        md,
        "## 3. Worker drain (`adapter sqs -- sleep`, tasks of 1 s)\n"
    )?;
    let ceiling = r.one("drain_ceiling", &[]);
    let rate = ceiling.and_then(|c| c.n("msgs_per_s"));
    writeln!(
        md,
        "Tasks are queued first, then the worker starts. With `--batch-size 1` the concurrency \
         (`--max-concurrency`) is tasks in flight, as the issue's ideal assumes; a row with batch 10 \
         runs concurrency x 10 tasks at once (the sleep function runs a batch's records \
         concurrently). Wall time runs from its start until `adapter_sqs_messages_deleted_total` on its \
         `/metrics` reaches the count. *ideal* = tasks x 1 s / tasks in flight; *queue ceiling* = tasks \
         / the raw `ReceiveMessage` + `DeleteMessageBatch` rate of the same LocalStack \
         (`sqs-ceiling drain`, {} pollers: {} msg/s); *bound* = max(ideal, queue ceiling), the \
         issue's goal. When every task is in flight at once, the last one cannot start before all \
         are received, so ideal + queue ceiling is the tighter floor; the last column compares \
         against it.\n",
        ceiling.map_or("–", |c| c.s("pollers")),
        num(rate, 0),
    )?;
    writeln!(
        md,
        "| concurrency | batch | per process | tasks | wall s | ideal s | queue ceiling s | wall / bound | complete | wall / (ideal + ceiling) |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    )?;
    let mut worst: Option<f64> = None;
    for d in r.all("drain", &[]) {
        let tasks = d.n("tasks");
        let in_flight = d.n("concurrency").map(|c| c * d.n("batch").unwrap_or(1.0));
        let ideal = match (tasks, in_flight) {
            (Some(t), Some(c)) if c > 0.0 => Some(t / c),
            _ => None,
        };
        let ceiling_s = match (tasks, rate) {
            (Some(t), Some(rate)) if rate > 0.0 => Some(t / rate),
            _ => None,
        };
        let bound = match (ideal, ceiling_s) {
            (Some(i), Some(c)) => Some(i.max(c)),
            (i, c) => i.or(c),
        };
        let q = ratio(d.n("wall_s"), bound).filter(|_| d.s("complete") == "true");
        worst = match (worst, q) {
            (Some(w), Some(q)) => Some(w.max(q)),
            (w, q) => w.or(q),
        };
        if d.s("complete") != "true" {
            worst = Some(f64::INFINITY);
        }
        let sum = ideal.zip(ceiling_s).map(|(i, c)| i + c);
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.s("concurrency"),
            d.n("batch").unwrap_or(1.0),
            d.s("per_process"),
            d.s("tasks"),
            num(d.n("wall_s"), 2),
            num(ideal, 2),
            num(ceiling_s, 2),
            num(q, 2),
            d.s("complete"),
            num(ratio(d.n("wall_s"), sum), 2),
        )?;
    }
    writeln!(md)?;
    goals.push((
        "drain within 20% of max(ideal, queue ceiling) at every concurrency".into(),
        format!("worst wall / bound = {}", num(worst, 2)),
        worst.map(|w| w <= 1.2),
    ));
    Ok(())
}

/// The median; with an even count, the mean of the two middle values.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[mid]),
        _ => Some((v[mid - 1] + v[mid]) / 2.0),
    }
}

fn startup(md: &mut String, r: &Results, goals: &mut Vec<Goal>) -> fmt::Result {
    writeln!(md, "## 4. Memory and start-up\n")?;
    writeln!(
        md,
        "Start-up: from spawning the adapter to the first 200 from its `/readyz` (it includes \
         starting the function process and the function's init, so it bounds the time after init \
         from above). Rows *echo*, *enqueue*, *sleep* are repeated starts with nothing else to do; \
         the others are the single start of each workload's adapter.\n"
    )?;
    writeln!(
        md,
        "| role | starts | median ms | max ms |\n| --- | ---: | ---: | ---: |"
    )?;
    let mut roles: Vec<&str> = Vec::new();
    for s in r.all("startup", &[]) {
        if !roles.contains(&s.s("role")) {
            roles.push(s.s("role"));
        }
    }
    let mut worst: Option<f64> = None;
    for role in roles {
        let ms: Vec<f64> = r
            .all("startup", &[("role", role)])
            .iter()
            .filter_map(|s| s.n("ready_ms"))
            .collect();
        let max = ms.iter().copied().reduce(f64::max);
        let (n, med) = (ms.len(), median(ms));
        if n > 1 {
            worst = [worst, med].into_iter().flatten().reduce(f64::max);
        }
        writeln!(md, "| {role} | {n} | {} | {} |", num(med, 1), num(max, 1))?;
    }
    writeln!(md)?;
    goals.push((
        "ready in under 100 ms after the function initialises (spawn to ready, median of repeated starts, worst function)".into(),
        format!("{} ms", num(worst, 1)),
        worst.map(|ms| ms < 100.0),
    ));
    Ok(())
}

fn memory(md: &mut String, r: &Results, goals: &mut Vec<Goal>) -> fmt::Result {
    writeln!(
        md,
        "Memory, from `/proc/<pid>/status`: RSS (`VmRSS`) 1 s after ready with no work (idle; not sampled \
         for the drain runs, whose queue is full from the start), and peak (`VmHWM`) at the end of \
         the workload the process served (HTTP load, or the drain).\n"
    )?;
    writeln!(
        md,
        "| role | adapter idle RSS KiB | adapter peak KiB | functions | function idle RSS KiB (each) | function peak KiB (max) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |"
    )?;
    let mut roles: Vec<&str> = Vec::new();
    for s in r.all("memory", &[]) {
        if !roles.contains(&s.s("role")) {
            roles.push(s.s("role"));
        }
    }
    let mut idle_max: Option<f64> = None;
    for role in roles {
        let get = |phase: &str, process: &str, key: &str| -> Vec<f64> {
            r.all(
                "memory",
                &[("role", role), ("phase", phase), ("process", process)],
            )
            .iter()
            .filter_map(|m| m.n(key))
            .collect()
        };
        let max = |v: Vec<f64>| v.into_iter().reduce(f64::max);
        let adapter_idle = max(get("idle", "adapter", "rss_kb"));
        let fn_idle = get("idle", "function", "rss_kb");
        let fn_peak = get("peak", "function", "hwm_kb");
        idle_max = max([idle_max, adapter_idle].into_iter().flatten().collect());
        writeln!(
            md,
            "| {role} | {} | {} | {} | {} | {} |",
            num(adapter_idle, 0),
            num(max(get("peak", "adapter", "hwm_kb")), 0),
            fn_peak.len(),
            num(max(fn_idle), 0),
            num(max(fn_peak), 0),
        )?;
    }
    writeln!(
        md,
        "\nBinary sizes of the measured build (stripped; see *Build* above for the profile):\n"
    )?;
    writeln!(md, "| binary | bytes | MiB |\n| --- | ---: | ---: |")?;
    for b in r.all("binsize", &[]) {
        writeln!(
            md,
            "| {} | {} | {} |",
            b.s("name"),
            b.s("bytes"),
            num(b.n("bytes").map(|x| x / 1048576.0), 2)
        )?;
    }
    writeln!(md)?;
    goals.push((
        "adapter RSS under 15 MiB idle (worst role)".into(),
        format!("{} KiB", num(idle_max, 0)),
        idle_max.map(|k| k < 15.0 * 1024.0),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn localstack_lambda_rows_get_their_comparison() {
        let text = "bench invoke target=emulate count=10 p50_ms=0.200 p99_ms=0.3 errors=0\n\
                    bench invoke target=localstack-lambda count=10 p50_ms=2.200 p99_ms=3 errors=0\n\
                    bench lambda_cold target=localstack-lambda count=5 p50_ms=60.0 max_ms=70.0\n";
        let mut md = String::new();
        write_all(&mut md, &Results::parse(text)).expect("writes");
        assert!(
            md.contains("adds 2.000 ms at p50 over `adapter emulate` alone (11.0x)"),
            "{md}"
        );
        assert!(
            md.contains("| localstack-lambda | 5 | 60.0 | 70.0 |"),
            "{md}"
        );
    }

    #[test]
    fn report_has_ratios_and_goals() {
        let text = "bench http target=plain conns=1 rps=10000 p50_ms=0.100 p99_ms=0.2 errors=0\n\
                    bench http target=adapter conns=1 rps=5000 p50_ms=0.200 p99_ms=0.4 errors=0\n\
                    noise\n\
                    bench drain concurrency=10 per_process=10 tasks=100 wall_s=11 complete=true\n\
                    bench drain_ceiling tasks=100 pollers=10 msgs_per_s=1000\n";
        let results = Results::parse(text);
        let mut md = String::new();
        let goals = write_all(&mut md, &results).expect("writes");
        assert!(
            md.contains("| adapter | 1 | 5000 | 0.200 | 0.400 | 0 | 0.50 | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| 10 | 1 | 10 | 100 | 11.00 | 10.00 | 0.10 | 1.10 | true | 1.09 |"),
            "{md}"
        );
        assert_eq!(goals[0].2, Some(true));
        assert_eq!(goals[1].2, None);
        let drain = goals
            .iter()
            .find(|g| g.0.starts_with("drain"))
            .expect("drain goal");
        assert_eq!(drain.2, Some(true));
        assert!(!md.contains("!["), "no figure linked without plots: {md}");
    }

    #[test]
    fn figures_are_linked_at_the_end_of_their_sections() {
        let text = "bench http target=plain conns=1 rps=10000 p50_ms=0.100 p99_ms=0.2 errors=0\n\
                    bench drain concurrency=10 per_process=10 tasks=100 wall_s=11 complete=true\n";
        let plots = Plots {
            http_latency: Some("bench/plots/http-latency.svg".into()),
            enqueue_ratio: None,
            drain: Some("bench/plots/drain.svg".into()),
        };
        let mut md = String::new();
        write_all_with_plots(&mut md, &Results::parse(text), &plots).expect("writes");
        let at = |needle: &str| {
            md.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {md}"))
        };
        let latency = at("](bench/plots/http-latency.svg)");
        assert!(at("## 1.") < latency && latency < at("## 2."), "{md}");
        let drain = at("](bench/plots/drain.svg)");
        assert!(at("## 3.") < drain && drain < at("## 4."), "{md}");
        assert!(!md.contains("enqueue-ratio"), "{md}");
    }
}
