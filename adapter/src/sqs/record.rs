//! Builds the `SqsEvent` Lambda sends for a batch: message to [`Record`], records to payload.

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use serde_json::Value;

use super::client::Receipt;

/// The queue's ARN and region, as each record names them (`eventSourceARN`, `awsRegion`).
#[derive(Debug, Clone)]
pub struct QueueIdentity {
    pub arn: String,
    /// The ARN's region (`arn:aws:sqs:<region>:...`), else the configured one.
    pub region: String,
}

impl QueueIdentity {
    /// The identity of the queue `arn`; `fallback_region` when the ARN names none.
    pub fn new(arn: String, fallback_region: &str) -> Self {
        let region = arn.split(':').nth(3).filter(|r| !r.is_empty());
        let region = region.unwrap_or(fallback_region).to_owned();
        Self { arn, region }
    }
}

/// One message ready to be part of an invocation: its receipt and its record as JSON.
#[derive(Debug, Clone)]
pub struct Record {
    pub receipt: Receipt,
    /// The record, serialised as Lambda sends it.
    pub json: Value,
    /// Size of `json` once serialised, to keep invocations under Lambda's payload limit.
    pub size: usize,
}

/// The record Lambda would put in `Records` for `message`; `None` for a message without id or
/// receipt handle (SQS never sends one; it could be neither reported nor deleted).
pub fn record(message: &Message, queue: &QueueIdentity) -> Option<Record> {
    let (Some(message_id), Some(receipt_handle)) = (message.message_id(), message.receipt_handle())
    else {
        tracing::warn!(message_id = ?message.message_id(), "ignoring a message without id or receipt handle");
        return None;
    };
    let receipt = Receipt {
        message_id: message_id.to_owned(),
        receipt_handle: receipt_handle.to_owned(),
    };
    let mut record = SqsMessage::default();
    record.message_id = Some(receipt.message_id.clone());
    record.receipt_handle = Some(receipt.receipt_handle.clone());
    record.body = Some(message.body().unwrap_or_default().to_owned());
    record.md5_of_body = message.md5_of_body().map(str::to_owned);
    record.md5_of_message_attributes = message.md5_of_message_attributes().map(str::to_owned);
    let attrs = message.attributes().into_iter().flatten();
    let attrs = attrs.map(|(k, v)| (k.as_str().to_owned(), v.clone()));
    record.attributes = attrs.collect();
    let attrs = message.message_attributes().into_iter().flatten();
    let attrs = attrs.map(|(k, v)| (k.clone(), message_attribute(v)));
    record.message_attributes = attrs.collect();
    record.event_source = Some("aws:sqs".to_owned());
    record.event_source_arn = Some(queue.arn.clone());
    record.aws_region = Some(queue.region.clone());

    let mut json = serde_json::to_value(&record).ok()?;
    strip_nulls(&mut json);
    let size = serde_json::to_vec(&json).map(|v| v.len()).unwrap_or(0);
    Some(Record {
        receipt,
        json,
        size,
    })
}

fn message_attribute(value: &MessageAttributeValue) -> SqsMessageAttribute {
    let mut attribute = SqsMessageAttribute::default();
    attribute.string_value = value.string_value().map(str::to_owned);
    attribute.binary_value = value.binary_value().map(|b| base64_data(b.as_ref()));
    attribute.string_list_values = value.string_list_values().to_vec();
    let binary_list = value.binary_list_values().iter();
    attribute.binary_list_values = binary_list.map(|b| base64_data(b.as_ref())).collect();
    attribute.data_type = Some(value.data_type().to_owned());
    attribute
}

fn base64_data(bytes: &[u8]) -> Base64Data {
    // `Base64Data` is `#[non_exhaustive]`: built by default, then filled.
    let mut data = Base64Data::default();
    data.0 = bytes.to_vec();
    data
}

/// Lambda leaves absent fields out (`md5OfMessageAttributes` without message attributes,
/// `binaryValue` of a string attribute) where `aws_lambda_events` would write `null`.
fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

/// The invocation's trace header: the first valid `AWSTraceHeader` of the batch's messages, else a
/// new root, as Lambda traces every invocation (each record keeps its own in `attributes`).
pub fn trace_header(records: &[Record]) -> String {
    let valid = |r: &Record| {
        let header = r.json.pointer("/attributes/AWSTraceHeader")?.as_str()?;
        crate::trace_header::from_message(header)
    };
    let header = records.iter().find_map(valid);
    header.unwrap_or_else(crate::trace_header::new_root)
}

/// The invocation payload for `records`: `{"Records": [...]}`.
pub fn payload(records: &[Record]) -> Vec<u8> {
    let records: Vec<&Value> = records.iter().map(|r| &r.json).collect();
    // Serialising a Value never fails.
    serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap_or_default()
}

/// Splits `records` into consecutive groups whose payloads stay under `limit` bytes (a record
/// larger than `limit` on its own goes alone: the function host will refuse it, and it fails).
pub fn split_by_size(records: Vec<Record>, limit: usize) -> Vec<Vec<Record>> {
    // `{"Records":[` + `]}` and a comma per record.
    const ENVELOPE: usize = 14;
    let mut groups: Vec<Vec<Record>> = Vec::new();
    let mut current: Vec<Record> = Vec::new();
    let mut size = ENVELOPE;
    for record in records {
        if !current.is_empty() && size + record.size + 1 > limit {
            groups.push(std::mem::take(&mut current));
            size = ENVELOPE;
        }
        size += record.size + 1;
        current.push(record);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;

    /// Lambda's own sample SQS event, copied from `aws_lambda_events` 1.2.1
    /// (`src/fixtures/example-sqs-event.json`).
    const FIXTURE: &str = include_str!("fixtures/example-sqs-event.json");

    fn source() -> QueueIdentity {
        QueueIdentity::new(
            "arn:aws:sqs:us-west-2:123456789012:SQSQueue".to_owned(),
            "us-east-1",
        )
    }

    /// The message SQS would return for the fixture's record.
    fn fixture_message() -> Message {
        let blob = |s: &str| Blob::new(s.as_bytes());
        Message::builder()
            .message_id("MessageID_1")
            .receipt_handle("MessageReceiptHandle")
            .body("Message Body")
            .md5_of_body("fce0ea8dd236ccb3ed9b37dae260836f")
            .md5_of_message_attributes("582c92c5c5b6ac403040a4f3ab3115c9")
            .attributes(Attr::ApproximateReceiveCount, "2")
            .attributes(Attr::SentTimestamp, "1520621625029")
            .attributes(Attr::SenderId, "AROAIWPX5BD2BHG722MW4:sender")
            .attributes(Attr::ApproximateFirstReceiveTimestamp, "1520621634884")
            .message_attributes(
                "Attribute3",
                MessageAttributeValue::builder()
                    .binary_value(blob("1100"))
                    .string_list_values("abc")
                    .string_list_values("123")
                    .binary_list_values(blob("0"))
                    .binary_list_values(blob("1"))
                    .binary_list_values(blob("0"))
                    .data_type("Binary")
                    .build()
                    .expect("valid attribute"),
            )
            .message_attributes(
                "Attribute2",
                MessageAttributeValue::builder()
                    .string_value("123")
                    .binary_list_values(blob("1"))
                    .binary_list_values(blob("0"))
                    .data_type("Number")
                    .build()
                    .expect("valid attribute"),
            )
            .message_attributes(
                "Attribute1",
                MessageAttributeValue::builder()
                    .string_value("AttributeValue1")
                    .data_type("String")
                    .build()
                    .expect("valid attribute"),
            )
            .build()
    }

    #[test]
    fn event_matches_lambdas_sample_exactly() {
        let record = record(&fixture_message(), &source()).expect("message has id and handle");
        let ours: Value = serde_json::from_slice(&payload(&[record])).expect("payload is JSON");
        let lambdas: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
        assert_eq!(ours, lambdas);
    }

    #[test]
    fn event_deserialises_as_sqs_event() {
        let record = record(&fixture_message(), &source()).expect("message has id and handle");
        let event: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_slice(&payload(&[record])).expect("an SqsEvent");
        assert_eq!(event.records.len(), 1);
        assert_eq!(event.records[0].message_id.as_deref(), Some("MessageID_1"));
        assert_eq!(event.records[0].attributes["ApproximateReceiveCount"], "2");
    }

    #[test]
    fn absent_fields_are_left_out_and_lists_are_empty_arrays() {
        let message = Message::builder()
            .message_id("m1")
            .receipt_handle("h1")
            .body("{}")
            .md5_of_body("99914b932bd37a50b983c5e7c90ae93b")
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .string_value("sleep")
                    .data_type("String")
                    .build()
                    .expect("valid attribute"),
            )
            .build();
        let record = record(&message, &source()).expect("message has id and handle");
        let json = &record.json;
        assert!(json.get("md5OfMessageAttributes").is_none(), "{json}");
        assert_eq!(json["attributes"], serde_json::json!({}));
        assert_eq!(
            json["messageAttributes"]["kind"],
            serde_json::json!({"stringValue": "sleep", "stringListValues": [], "binaryListValues": [], "dataType": "String"})
        );
        assert_eq!(json["eventSource"], "aws:sqs");
        assert_eq!(json["awsRegion"], "us-west-2");
    }

    #[test]
    fn message_without_receipt_handle_is_not_a_record() {
        let message = Message::builder().message_id("m1").body("x").build();
        assert!(record(&message, &source()).is_none());
    }

    #[test]
    fn region_comes_from_the_arn_else_the_fallback() {
        assert_eq!(
            QueueIdentity::new("arn:aws:sqs:eu-west-1:1:q".into(), "us-east-1").region,
            "eu-west-1"
        );
        assert_eq!(
            QueueIdentity::new("not-an-arn".into(), "us-east-1").region,
            "us-east-1"
        );
    }

    #[test]
    fn split_keeps_every_payload_under_the_limit_and_the_order() {
        let records: Vec<Record> = (0..10)
            .map(|i| {
                let message = Message::builder()
                    .message_id(format!("m{i}"))
                    .receipt_handle(format!("h{i}"))
                    .body("x".repeat(100))
                    .build();
                record(&message, &source()).expect("record")
            })
            .collect();
        let one = records[0].size;
        let limit = 3 * (one + 1) + 14;
        let groups = split_by_size(records.clone(), limit);
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        for group in &groups {
            assert!(payload(group).len() <= limit);
        }
        let order: Vec<_> = groups
            .concat()
            .into_iter()
            .map(|r| r.receipt.message_id)
            .collect();
        let expected: Vec<_> = records.into_iter().map(|r| r.receipt.message_id).collect();
        assert_eq!(order, expected);
        assert_eq!(split_by_size(Vec::new(), limit).len(), 0);
    }
}
