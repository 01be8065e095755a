//! Lambda's event filtering (`FilterCriteria`), as the SQS source applies it: `--filter-criteria`
//! (`ADAPTER_FILTER_CRITERIA`).
//!
//! The criteria are the event source mapping's `FilterCriteria`, as JSON:
//! `{"Filters": [{"Pattern": "<pattern JSON>"}, ...]}`. A message is handed to the function when
//! any pattern matches its record (the event record the function would get: `messageId`, `body`,
//! `attributes`, `messageAttributes`, ...); one that matches none is deleted without an
//! invocation, as Lambda does. A body that is a JSON object or array is matched as JSON, any other
//! body as the string it is, so a JSON pattern for `body` never matches a plain-text body and the
//! other way round (Lambda's table in "Properly filtering Amazon SQS messages").
//!
//! The pattern language is EventBridge's: exact values, `prefix`, `suffix`, `anything-but`,
//! `numeric` ranges, `exists`, `equals-ignore-case`, `wildcard`, `cidr`, and `$or`. Matching is
//! done by [`quamina`], the automaton-based matcher by the author of EventBridge's own; `$or`,
//! which it does not know, is expanded here into the alternative patterns it stands for.
//!
//! Criteria are checked when the adapter starts: what is wrong is named, with the filter's index.

use quamina::Quamina;
use serde_json::{Map, Value};

/// Lambda's quota, raised: 5 filters per mapping by default, 10 on request.
const MAX_FILTERS: usize = 10;
/// Lambda's limit on one `Pattern` string.
const MAX_PATTERN_CHARS: usize = 4096;
/// The most patterns one filter's `$or`s may expand to; past it the filter is refused, rather
/// than built into an automaton that takes seconds to compile.
const MAX_ALTERNATIVES: usize = 256;

/// Parsed, checked filter criteria, ready to match records.
pub struct FilterCriteria {
    matcher: Quamina<usize>,
    filters: usize,
}

impl std::fmt::Debug for FilterCriteria {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterCriteria")
            .field("filters", &self.filters)
            .finish_non_exhaustive()
    }
}

/// What is wrong with `--filter-criteria`.
#[derive(Debug, thiserror::Error)]
pub enum FilterCriteriaError {
    /// The criteria are not JSON of the expected shape.
    #[error(
        "filter criteria must be JSON like {{\"Filters\": [{{\"Pattern\": \"{{...}}\"}}]}}: {0}"
    )]
    Shape(#[source] serde_json::Error),
    /// More filters than Lambda allows.
    #[error("{count} filters given; at most {MAX_FILTERS} are allowed")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// One filter's pattern is unusable.
    #[error("filter {index}: {reason}")]
    Pattern {
        /// The filter's position in `Filters`, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Criteria {
    #[serde(rename = "Filters", default)]
    filters: Vec<Filter>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    #[serde(rename = "Pattern")]
    pattern: String,
}

impl FilterCriteria {
    /// Parses and checks criteria; `{}` and `{"Filters": []}` filter nothing out.
    pub fn parse(json: &str) -> Result<Self, FilterCriteriaError> {
        let criteria: Criteria = serde_json::from_str(json).map_err(FilterCriteriaError::Shape)?;
        if criteria.filters.len() > MAX_FILTERS {
            return Err(FilterCriteriaError::TooMany {
                count: criteria.filters.len(),
            });
        }
        let mut matcher = Quamina::new();
        for (index, filter) in criteria.filters.iter().enumerate() {
            let fail = |reason: String| FilterCriteriaError::Pattern { index, reason };
            let chars = filter.pattern.chars().count();
            if chars > MAX_PATTERN_CHARS {
                return Err(fail(format!(
                    "the pattern has {chars} characters; at most {MAX_PATTERN_CHARS} are allowed"
                )));
            }
            let pattern: Value = serde_json::from_str(&filter.pattern)
                .map_err(|e| fail(format!("the pattern is not JSON: {e}")))?;
            let Value::Object(pattern) = pattern else {
                return Err(fail("the pattern must be a JSON object".into()));
            };
            if pattern.is_empty() {
                return Err(fail("the pattern is empty: it would match nothing".into()));
            }
            for alternative in alternatives(&pattern).map_err(fail)? {
                matcher
                    .add_pattern(index, &Value::Object(alternative).to_string())
                    .map_err(|e| fail(e.to_string()))?;
            }
        }
        Ok(Self {
            matcher,
            filters: criteria.filters.len(),
        })
    }

    /// Whether the criteria filter anything out at all.
    pub fn is_empty(&self) -> bool {
        self.filters == 0
    }

    /// Whether `record` (a record's JSON, as the function gets it) matches a filter (always,
    /// without filters). A record the matcher cannot read is handed to the function: filtering
    /// must never lose a message by mistake.
    pub fn matches(&self, record: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        match self
            .matcher
            .has_matches(match_event(record).to_string().as_bytes())
        {
            Ok(matched) => matched,
            Err(error) => {
                tracing::warn!(%error, message_id = ?record.get("messageId"), "filter criteria could not read a record; it is delivered");
                true
            }
        }
    }
}

/// The record as the patterns see it: a body that is a JSON object or array, parsed.
fn match_event(record: &Value) -> Value {
    let mut event = record.clone();
    if let Some(body) = record.get("body").and_then(Value::as_str)
        && let Ok(parsed @ (Value::Object(_) | Value::Array(_))) =
            serde_json::from_str::<Value>(body)
    {
        event["body"] = parsed;
    }
    event
}

/// The patterns without `$or` that `pattern` stands for: one per combination of alternatives.
fn alternatives(pattern: &Map<String, Value>) -> Result<Vec<Map<String, Value>>, String> {
    let mut combined = vec![Map::new()];
    for (key, value) in pattern {
        let options: Vec<Map<String, Value>> = if key == "$or" {
            let branches = value
                .as_array()
                .filter(|branches| branches.len() >= 2)
                .ok_or("`$or` takes an array of at least two patterns")?;
            let mut options = Vec::new();
            for branch in branches {
                let branch = branch
                    .as_object()
                    .filter(|b| !b.is_empty())
                    .ok_or("each `$or` branch must be a non-empty object")?;
                options.extend(alternatives(branch)?);
            }
            options
        } else {
            match value {
                Value::Object(inner) => alternatives(inner)?
                    .into_iter()
                    .map(|alt| Map::from_iter([(key.clone(), Value::Object(alt))]))
                    .collect(),
                Value::Array(_) => vec![Map::from_iter([(key.clone(), value.clone())])],
                _ => {
                    return Err(format!(
                        "`{key}` must be an array of rules or an object of fields, not {value}"
                    ));
                }
            }
        };
        let mut next = Vec::with_capacity(combined.len() * options.len());
        for base in &combined {
            for option in &options {
                next.push(merge(base.clone(), option)?);
                if next.len() > MAX_ALTERNATIVES {
                    return Err(format!(
                        "its `$or`s stand for more than {MAX_ALTERNATIVES} patterns"
                    ));
                }
            }
        }
        combined = next;
    }
    Ok(combined)
}

/// `base` with the fields of `extra` added; nested objects merge, a field given rules twice is
/// refused (one pattern cannot say "this rule and that rule" of one field).
fn merge(
    mut base: Map<String, Value>,
    extra: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    for (key, value) in extra {
        match (base.remove(key), value) {
            (None, _) => {
                base.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(existing)), Value::Object(more)) => {
                base.insert(key.clone(), Value::Object(merge(existing, more)?));
            }
            (Some(_), _) => {
                return Err(format!(
                    "`{key}` is given rules both inside and outside an `$or`"
                ));
            }
        }
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn criteria(patterns: &[Value]) -> FilterCriteria {
        let filters: Vec<Value> = patterns
            .iter()
            .map(|p| json!({"Pattern": p.to_string()}))
            .collect();
        FilterCriteria::parse(&json!({ "Filters": filters }).to_string())
            .unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
    }

    fn record(body: &str) -> Value {
        let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
        record.message_id = Some("059f36b4-87a3-44ab-83d2-661975830a7d".into());
        record.body = Some(body.into());
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        record.event_source = Some("aws:sqs".into());
        serde_json::to_value(record).unwrap()
    }

    /// The record of AWS's "Amazon SQS event filtering basics" example.
    fn aws_example(code: &str) -> Value {
        record(&format!(
            "{{\n \"RecordNumber\": 1234,\n \"TimeStamp\": \"yyyy-mm-ddThh:mm:ss\",\n \"RequestCode\": \"{code}\"\n}}"
        ))
    }

    #[test]
    fn awss_sqs_example_keeps_only_the_requested_code() {
        let only_bbbb = criteria(&[json!({"body": {"RequestCode": ["BBBB"]}})]);
        assert!(only_bbbb.matches(&aws_example("BBBB")));
        assert!(!only_bbbb.matches(&aws_example("AAAA")));
    }

    #[test]
    fn every_rule_of_lambdas_operator_table() {
        let cases = [
            (
                json!({"body": {"UserID": [null]}}),
                json!({"UserID": null}),
                true,
            ),
            (
                json!({"body": {"LastName": [""]}}),
                json!({"LastName": ""}),
                true,
            ),
            (
                json!({"body": {"Name": ["Alice"]}}),
                json!({"Name": "Bob"}),
                false,
            ),
            (
                json!({"body": {"Location": ["New York"], "Day": ["Monday"]}}),
                json!({"Location": "New York", "Day": "Tuesday"}),
                false,
            ),
            (
                json!({"body": {"PaymentType": ["Credit", "Debit"]}}),
                json!({"PaymentType": "Debit"}),
                true,
            ),
            (
                json!({"body": {"Weather": [{"anything-but": ["Raining"]}]}}),
                json!({"Weather": "Sunny"}),
                true,
            ),
            (
                json!({"body": {"Weather": [{"anything-but": ["Raining"]}]}}),
                json!({"Weather": "Raining"}),
                false,
            ),
            (
                json!({"body": {"Price": [{"numeric": ["=", 100]}]}}),
                json!({"Price": 100}),
                true,
            ),
            (
                json!({"body": {"Price": [{"numeric": [">", 10, "<=", 20]}]}}),
                json!({"Price": 20}),
                true,
            ),
            (
                json!({"body": {"Price": [{"numeric": [">", 10, "<=", 20]}]}}),
                json!({"Price": 10}),
                false,
            ),
            (
                json!({"body": {"ProductName": [{"exists": true}]}}),
                json!({"ProductName": "x"}),
                true,
            ),
            (
                json!({"body": {"ProductName": [{"exists": false}]}}),
                json!({"ProductName": "x"}),
                false,
            ),
            (
                json!({"body": {"Region": [{"prefix": "us-"}]}}),
                json!({"Region": "us-east-1"}),
                true,
            ),
            (
                json!({"body": {"File": [{"suffix": ".png"}]}}),
                json!({"File": "a.jpg"}),
                false,
            ),
            (
                json!({"body": {"State": [{"equals-ignore-case": "running"}]}}),
                json!({"State": "RUNNING"}),
                true,
            ),
        ];
        for (pattern, body, expected) in cases {
            let matched =
                criteria(std::slice::from_ref(&pattern)).matches(&record(&body.to_string()));
            assert_eq!(matched, expected, "{pattern} on {body}");
        }
    }

    #[test]
    fn or_across_fields_and_across_filters() {
        let either = criteria(&[json!({"body": {"$or": [
            {"Priority": ["high"]},
            {"Size": [{"numeric": [">", 100]}]},
        ]}})]);
        assert!(either.matches(&record(r#"{"Priority": "high", "Size": 1}"#)));
        assert!(either.matches(&record(r#"{"Priority": "low", "Size": 101}"#)));
        assert!(!either.matches(&record(r#"{"Priority": "low", "Size": 1}"#)));

        let two_filters = criteria(&[json!({"body": {"a": [1]}}), json!({"body": {"b": [2]}})]);
        assert!(two_filters.matches(&record(r#"{"b": 2}"#)));
        assert!(!two_filters.matches(&record(r#"{"a": 2, "b": 1}"#)));
    }

    #[test]
    fn plain_and_json_bodies_only_meet_patterns_of_their_kind() {
        let plain = criteria(&[json!({"body": [{"prefix": "hello"}]})]);
        assert!(plain.matches(&record("hello world")));
        assert!(!plain.matches(&record(r#"{"hello": 1}"#)));
        let json_pattern = criteria(&[json!({"body": {"hello": [1]}})]);
        assert!(!json_pattern.matches(&record("hello world")));
        // Metadata only: the body's format does not matter.
        let metadata = criteria(&[json!({"attributes": {"ApproximateReceiveCount": ["1"]}})]);
        assert!(metadata.matches(&record("plain")));
        assert!(metadata.matches(&record("{}")));
    }

    #[test]
    fn no_filters_deliver_everything() {
        for empty in ["{}", r#"{"Filters": []}"#] {
            let none = FilterCriteria::parse(empty).expect("empty criteria are valid");
            assert!(none.is_empty());
            assert!(none.matches(&record("anything")));
        }
    }

    #[test]
    fn bad_criteria_are_named() {
        let error = |json: &str| FilterCriteria::parse(json).unwrap_err().to_string();
        assert!(error("not json").contains("must be JSON like"));
        assert!(error(r#"{"Filter": []}"#).contains("must be JSON like"));
        assert!(
            error(r#"{"Filters": [{"Pattern": "{"}]}"#)
                .contains("filter 0: the pattern is not JSON")
        );
        assert!(error(r#"{"Filters": [{"Pattern": "[1]"}]}"#).contains("must be a JSON object"));
        assert!(
            error(r#"{"Filters": [{"Pattern": "{\"a\": 1}"}]}"#).contains("`a` must be an array")
        );
        assert!(
            error(r#"{"Filters": [{"Pattern": "{\"$or\": [{\"a\": [1]}]}"}]}"#)
                .contains("at least two")
        );
        let eleven = format!(
            r#"{{"Filters": [{}]}}"#,
            [r#"{"Pattern": "{\"a\": [1]}"}"#; 11].join(",")
        );
        assert!(error(&eleven).contains("at most 10"));
        let long =
            json!({"Filters": [{"Pattern": format!("{{\"a\": [\"{}\"]}}", "x".repeat(5000))}]});
        assert!(error(&long.to_string()).contains("at most 4096"));
        let unknown = json!({"Filters": [{"Pattern": r#"{"a": [{"no-such-rule": 1}]}"#}]});
        assert!(error(&unknown.to_string()).starts_with("filter 0: "));
    }

    #[test]
    fn or_expansion_is_bounded() {
        let branches: Vec<Value> = (0..20).map(|i| json!({ format!("k{i}"): [i] })).collect();
        let wide = json!({"a": {"$or": branches.clone()}, "b": {"$or": branches}});
        let error =
            FilterCriteria::parse(&json!({"Filters": [{"Pattern": wide.to_string()}]}).to_string())
                .unwrap_err();
        assert!(error.to_string().contains("more than 256"), "{error}");
    }
}
