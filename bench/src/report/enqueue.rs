//! Section 2 of `BENCHMARKS.md`: enqueue throughput through the adapter against the raw
//! `SendMessage` ceiling of the same LocalStack, in alternating rounds.

use std::fmt::{self, Write as _};

use super::{Goal, Results, Row, median, num, ratio};

/// Seconds a run lasted: `seconds` when the tool printed it (`sqs-ceiling`), else requests / rps
/// (`wrk`).
fn run_seconds(row: &Row) -> Option<f64> {
    row.n("seconds")
        .or_else(|| ratio(row.n("requests"), row.n("rps")))
}

/// Cores `process` kept busy during the run (its `PROCESS_cpu_s` over the run's length).
fn cores(row: &Row, process: &str) -> Option<f64> {
    ratio(row.n(&format!("{process}_cpu_s")), run_seconds(row))
}

/// Milliseconds of `process` CPU per request served in the run.
fn cpu_ms_per_request(row: &Row, process: &str) -> Option<f64> {
    ratio(row.n(&format!("{process}_cpu_s")), row.n("requests")).map(|s| s * 1000.0)
}

/// The median of the values `f` gives for `rows` (rows without one are skipped).
fn median_of(rows: &[&Row], f: impl Fn(&Row) -> Option<f64>) -> Option<f64> {
    median(rows.iter().filter_map(|r| f(r)).collect())
}

/// The table of every round, the summary per connection count, and the goal (the worst median).
pub(super) fn enqueue(md: &mut String, r: &Results, goals: &mut Vec<Goal>) -> fmt::Result {
    writeln!(md, "## 2. Enqueue throughput (LocalStack SQS)\n")?;
    writeln!(
        md,
        "*adapter*: `POST /tasks` through `adapter http -- enqueue` (`wrk`); *SDK ceiling*: raw \
         `SendMessage` from the AWS SDK for Rust at the same concurrency, no HTTP in front \
         (`sqs-ceiling send`). LocalStack's speed drifts by 20% and more within a minute, so the \
         two run in alternating pairs (adapter then SDK, then SDK then adapter, ...), one pair per \
         round, and the goal takes the median of the rounds' ratios. *LocalStack cores*: the CPU \
         its process used over the run, in cores; it runs Python, mostly one thread at a time. For \
         the SDK runs it spans `sqs-ceiling`'s whole life, a little longer than the sending. At 1 connection the ratio is one of latencies: the adapter path \
         adds two loopback HTTP exchanges and the function's event handling to each \
         `SendMessage`.\n"
    )?;
    writeln!(
        md,
        "| conns | round | adapter req/s | p50 ms | p99 ms | errors | SDK req/s | p50 ms | p99 ms | errors | adapter / SDK | LocalStack cores, adapter run | LocalStack cores, SDK run |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    let adapter_rows = r.all("enqueue", &[("target", "adapter")]);
    let mut conns: Vec<&str> = Vec::new();
    for a in &adapter_rows {
        if !conns.contains(&a.s("conns")) {
            conns.push(a.s("conns"));
        }
    }
    let mut summary = Vec::new();
    for c in conns {
        let mut ratios = Vec::new();
        let rounds: Vec<&Row> = adapter_rows
            .iter()
            .copied()
            .filter(|a| a.s("conns") == c)
            .collect();
        for a in &rounds {
            let round = a.s("round");
            let s = r.one(
                "enqueue",
                &[
                    ("target", "sdk-sendmessage"),
                    ("conns", c),
                    ("round", round),
                ],
            );
            let sn = |k: &str| s.and_then(|s| s.n(k));
            let q = ratio(a.n("rps"), sn("rps"));
            ratios.extend(q);
            writeln!(
                md,
                "| {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                if round.is_empty() { "–" } else { round },
                num(a.n("rps"), 0),
                num(a.n("p50_ms"), 2),
                num(a.n("p99_ms"), 2),
                a.s("errors"),
                num(sn("rps"), 0),
                num(sn("p50_ms"), 2),
                num(sn("p99_ms"), 2),
                s.map_or("–", |s| s.s("errors")),
                num(q, 2),
                num(cores(a, "localstack"), 2),
                num(s.and_then(|s| cores(s, "localstack")), 2),
            )?;
        }
        let sdk_rows = r.all("enqueue", &[("target", "sdk-sendmessage"), ("conns", c)]);
        summary.push((
            c,
            median(ratios),
            median_of(&rounds, |a| cpu_ms_per_request(a, "adapter")),
            median_of(&rounds, |a| cpu_ms_per_request(a, "function")),
            median_of(&sdk_rows, |s| cpu_ms_per_request(s, "client")),
        ));
    }
    writeln!(
        md,
        "\nPer connection count, the median over the rounds, and the CPU time per request (all \
         threads) of the adapter, of the `enqueue` process under it, and of the SDK client \
         `sqs-ceiling` that makes the same `SendMessage` call with nothing around it (its figure \
         includes its own start: runtime, configuration, client):\n"
    )?;
    writeln!(
        md,
        "| conns | adapter / SDK | adapter CPU ms / request | enqueue CPU ms / request | SDK client CPU ms / request |\n\
         | ---: | ---: | ---: | ---: | ---: |"
    )?;
    let mut worst: Option<f64> = None;
    for (c, q, adapter_cpu, function_cpu, sdk_cpu) in summary {
        if let Some(q) = q {
            worst = Some(worst.map_or(q, |w: f64| w.min(q)));
        }
        writeln!(
            md,
            "| {c} | {} | {} | {} | {} |",
            num(q, 2),
            num(adapter_cpu, 3),
            num(function_cpu, 3),
            num(sdk_cpu, 3)
        )?;
    }
    writeln!(md)?;
    goals.push((
        "enqueue req/s >= 80% of the raw SendMessage ceiling (worst concurrency, median of rounds)"
            .into(),
        num(worst.map(|w| w * 100.0), 0) + "%",
        worst.map(|w| w >= 0.8),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_rounds_and_takes_the_median_ratio() {
        let text = "\
bench enqueue target=adapter round=1 conns=16 rps=500 p50_ms=20 p99_ms=40 requests=1500 errors=0 localstack_cpu_s=2.70 adapter_cpu_s=0.30 function_cpu_s=0.60
bench enqueue target=sdk-sendmessage conns=16 rps=600 p50_ms=18 p99_ms=30 requests=1800 errors=0 seconds=3.0 localstack_cpu_s=3.00 client_cpu_s=0.36 round=1
bench enqueue target=sdk-sendmessage conns=16 rps=500 p50_ms=18 p99_ms=30 requests=1500 errors=0 seconds=3.0 localstack_cpu_s=3.00 round=2
bench enqueue target=adapter round=2 conns=16 rps=550 p50_ms=20 p99_ms=40 requests=1650 errors=0 localstack_cpu_s=2.70 adapter_cpu_s=0.33 function_cpu_s=0.66
bench enqueue target=adapter round=3 conns=16 rps=100 p50_ms=20 p99_ms=40 requests=300 errors=0 localstack_cpu_s=2.70 adapter_cpu_s=0.06 function_cpu_s=0.12
bench enqueue target=sdk-sendmessage conns=16 rps=600 p50_ms=18 p99_ms=30 requests=1800 errors=0 seconds=3.0 localstack_cpu_s=3.00 round=3
";
        let mut md = String::new();
        let mut goals = Vec::new();
        enqueue(&mut md, &Results::parse(text), &mut goals).expect("writes");
        // Round 2's SDK line came first; it is still paired with round 2's adapter line.
        assert!(
            md.contains("| 16 | 2 | 550 | 20.00 | 40.00 | 0 | 500 | 18.00 | 30.00 | 0 | 1.10 | 0.90 | 1.00 |"),
            "{md}"
        );
        // Ratios 0.83, 1.10 and 0.17: the median is 0.83, one bad round does not decide.
        assert!(md.contains("| 16 | 0.83 | 0.200 | 0.400 | 0.200 |"), "{md}");
        assert_eq!(goals[0].1, "83%");
        assert_eq!(goals[0].2, Some(true));
    }
}
