//! The Grafana dashboard in `deploy/grafana/adapter.json` queries only metrics the adapter really
//! exports: a real `adapter sqs` (against LocalStack, so the SQS source's metrics exist) runs one
//! message through the `sqs_fixture` function, then every metric name in every PromQL query of the
//! dashboard (panels and template variables) must be on its `/metrics`, and every label a query
//! groups by must be on one of that query's metrics.
//!
//! The names come from the JSON, not from a list here: renaming a metric in the adapter fails this
//! test until the dashboard follows.

#[path = "common/sqs.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::{Adapter, Queues, WAIT};
use serde_json::{Value, json};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/grafana/adapter.json"
);

/// Labels Prometheus adds to every series it scrapes (the adapter does not export them).
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Identifiers that are PromQL syntax, not metric names, when not followed by `(`.
const KEYWORDS: [&str; 6] = ["and", "or", "unless", "bool", "offset", "atan2"];
/// Keywords followed by a parenthesised list of label names.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// One PromQL expression's metric names and the labels it groups by.
#[derive(Debug, Default, PartialEq)]
struct Query {
    metrics: BTreeSet<String>,
    grouping: BTreeSet<String>,
}

/// Reads a PromQL expression: identifiers outside strings, label matchers (`{...}`) and ranges
/// (`[...]`) that are not function calls or keywords are metric names; the lists after `by`,
/// `without`, `on`, `ignoring`, `group_left` and `group_right` are label names.
fn parse_promql(expr: &str) -> Query {
    let chars: Vec<char> = expr.chars().collect();
    let mut query = Query::default();
    let mut i = 0;
    let mut grouping_next = false;
    // Skips from an opening delimiter at `i` to just after its `close`, stepping over strings.
    let skip = |mut i: usize, close: char| -> usize {
        i += 1;
        while i < chars.len() && chars[i] != close {
            if matches!(chars[i], '"' | '\'' | '`') {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                let quote = c;
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' => i = skip(i, '}'),
            '[' => i = skip(i, ']'),
            '(' if grouping_next => {
                let end = skip(i, ')');
                let list: String = chars[i + 1..end.saturating_sub(1).max(i + 1)]
                    .iter()
                    .collect();
                query.grouping.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
                grouping_next = false;
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                let rest: String = chars[i..].iter().collect();
                let rest = rest.trim_start();
                // The word after it: an aggregation may put its grouping first (`sum by (le) (...)`).
                let next_word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if GROUPING.contains(&ident.as_str()) {
                    grouping_next = rest.starts_with('(');
                } else if rest.starts_with('(')
                    || next_word == "by"
                    || next_word == "without"
                    || KEYWORDS.contains(&ident.as_str())
                {
                    // A function call (`rate(`, `sum (`), an aggregation (`sum by`) or an operator.
                } else {
                    query.metrics.insert(ident);
                }
            }
            // Numbers and durations (`0.99`, `5m`, `1e3`): digits and the letters that follow.
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    query
}

/// Every PromQL expression of the dashboard: each target's `expr` (in rows too) and each query
/// variable's query (`label_values(metric, label)` counts as a query of `metric`).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((format!("panel {title:?}"), expr.to_owned()));
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        let query = variable["query"]
            .as_str()
            .or_else(|| variable["query"]["query"].as_str())
            .unwrap_or_default();
        let expr = match query.trim().strip_prefix("label_values(") {
            // label_values(metric, label): the metric; label_values(label) alone names none.
            Some(args) => match args.split_once(',') {
                Some((metric, _)) => metric.trim().to_owned(),
                None => continue,
            },
            None => query.to_owned(),
        };
        out.push((format!("variable ${name}"), expr));
    }
    out
}

/// The sample names on a `/metrics` page, each with the labels seen on it.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        if end == 0 {
            continue;
        }
        let labels = names.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{')
            && let Some((inside, _)) = rest.split_once('}')
        {
            labels.extend(
                inside
                    .split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(label, _)| label.trim().to_owned()),
            );
        }
    }
    names
}

/// What a dashboard query needs that `/metrics` does not have, one line each.
fn missing(
    queries: &[(String, String)],
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (place, expr) in queries {
        let query = parse_promql(expr);
        for metric in &query.metrics {
            if !exported.contains_key(metric) {
                problems.push(format!("{place}: metric {metric} is not exported ({expr})"));
            }
        }
        let labels: BTreeSet<&str> = query
            .metrics
            .iter()
            .filter_map(|m| exported.get(m))
            .flatten()
            .map(String::as_str)
            .collect();
        for label in &query.grouping {
            if !labels.contains(label.as_str()) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!(
                    "{place}: label {label} is on none of {:?} ({expr})",
                    query.metrics
                ));
            }
        }
    }
    problems
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD)
        .unwrap_or_else(|e| panic!("cannot read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_queries_is_exported_by_a_running_adapter() {
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    let names: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, expr)| parse_promql(expr).metrics)
        .collect();
    assert!(
        queries.len() >= 10 && names.len() >= 10,
        "the dashboard's queries were not found: {queries:?}"
    );

    let queues = Queues::new("grafana", 30, 3).await;
    let mut adapter = Adapter::start(&queues.url, &[]).await;
    // One message through the function: label families (invocations by outcome) exist only
    // once something was counted in them.
    queues.send(&[json!({"n": 1})]).await;

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = adapter.get("/metrics").await.map(|(_, body)| body);
        let problems = page.as_deref().map_or_else(
            || vec!["/metrics did not answer".to_owned()],
            |text| missing(&queries, &exported(text)),
        );
        if problems.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Grafana dashboard ({DASHBOARD}) queries what the adapter does not export:\n  {}\n\n\
             /metrics:\n{}\nadapter output:\n{}",
            problems.join("\n  "),
            page.unwrap_or_default(),
            adapter.output_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    adapter.sigterm();
    let status = adapter.wait_exit(WAIT).await;
    assert!(status.success(), "{}", adapter.output_text());
}

#[test]
fn promql_metric_names_and_grouping_labels() {
    let q = parse_promql(
        r#"histogram_quantile(0.99, sum by (le) (rate(adapter_invocation_duration_seconds_bucket{instance=~"$instance", x="a}b"}[$__rate_interval])))"#,
    );
    assert_eq!(
        q.metrics,
        BTreeSet::from(["adapter_invocation_duration_seconds_bucket".to_owned()])
    );
    assert_eq!(q.grouping, BTreeSet::from(["le".to_owned()]));

    let q = parse_promql(
        "sum without(pod, job) (rate(a_total[5m] offset 1h)) / on (instance) group_left b + 1e3 * c:recorded",
    );
    assert_eq!(
        q.metrics,
        BTreeSet::from([
            "a_total".to_owned(),
            "b".to_owned(),
            "c:recorded".to_owned()
        ])
    );
    assert_eq!(
        q.grouping,
        BTreeSet::from(["pod".to_owned(), "job".to_owned(), "instance".to_owned()])
    );
    let q = parse_promql("sum by (zone) (d) + max without (pod) (e)");
    assert_eq!(q.metrics, BTreeSet::from(["d".to_owned(), "e".to_owned()]));
    assert_eq!(
        q.grouping,
        BTreeSet::from(["zone".to_owned(), "pod".to_owned()])
    );
    assert_eq!(
        parse_promql("sum (rate(x[1m])) and bool y").metrics,
        BTreeSet::from(["x".to_owned(), "y".to_owned()])
    );
}

#[test]
fn dashboard_queries_include_rows_and_label_values_variables() {
    let dashboard = json!({
        "panels": [
            {"title": "a", "targets": [{"expr": "sum(x_total)"}]},
            {"type": "row", "title": "r", "panels": [{"title": "b", "targets": [{"expr": "y"}]}]}
        ],
        "templating": {"list": [
            {"type": "datasource", "name": "ds", "query": "prometheus"},
            {"type": "query", "name": "i", "query": {"query": "label_values(z_total, instance)"}},
            {"type": "query", "name": "j", "query": "label_values(job)"}
        ]}
    });
    let exprs: Vec<String> = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(exprs, ["sum(x_total)", "y", "z_total"]);
}

#[test]
fn exported_reads_sample_names_and_their_labels() {
    let page = "# HELP a_total A.\n# TYPE a_total counter\na_total{outcome=\"ok\",kind=\"x\"} 1\n\
                b 0\nc_bucket{le=\"0.5\"} 3\n# EOF\n";
    let names = exported(page);
    assert_eq!(
        names.keys().collect::<Vec<_>>(),
        ["a_total", "b", "c_bucket"]
    );
    assert_eq!(
        names["a_total"],
        BTreeSet::from(["outcome".to_owned(), "kind".to_owned()])
    );
    let problems = missing(
        &[(
            "p".to_owned(),
            "sum by (outcome, instance) (a_total) + sum by (zone) (d)".to_owned(),
        )],
        &names,
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("metric d is not exported"));
    assert!(problems[1].contains("label zone"));
}
