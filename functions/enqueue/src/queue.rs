//! The task queue as the API sees it: send a task, read the depth.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{
    MessageSystemAttributeNameForSends, MessageSystemAttributeValue, QueueAttributeName,
};
use shared::{QueueConfig, TaskMessage};

use crate::error::ApiError;

/// The queue `enqueue` writes to. Cheap to clone: the SDK client is a handle.
#[derive(Debug, Clone)]
pub struct TaskQueue {
    client: aws_sdk_sqs::Client,
    config: QueueConfig,
}

impl TaskQueue {
    /// Wraps a client built once at init.
    pub fn new(client: aws_sdk_sqs::Client, config: QueueConfig) -> Self {
        Self { client, config }
    }

    /// The queue's name, for `/health`.
    pub fn name(&self) -> &str {
        self.config.queue_name()
    }

    /// Sends one task; returns the SQS message id.
    ///
    /// `trace_header` (the invocation's X-Ray trace header) goes with the message as its
    /// `AWSTraceHeader` system attribute, as an instrumented Lambda function sends it, so the
    /// worker's invocation carries the same trace. One that is not an X-Ray header is left out:
    /// SQS would refuse the message for it.
    pub async fn send(
        &self,
        message: &TaskMessage,
        delay_seconds: u32,
        trace_header: Option<&str>,
    ) -> Result<String, ApiError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.config.queue_url)
            .message_body(message.to_body())
            // i32 by the SDK's choice; the validator keeps it within 0..=900.
            .delay_seconds(i32::try_from(delay_seconds).unwrap_or(0));
        if let Some(trace) = trace_header.filter(|t| t.starts_with("Root=1-")) {
            let value = MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(trace)
                .build()
                .map_err(|e| ApiError::QueueUnavailable {
                    detail: format!("could not build the AWSTraceHeader attribute: {e}"),
                })?;
            request = request.message_system_attributes(
                MessageSystemAttributeNameForSends::AwsTraceHeader,
                value,
            );
        }
        let output = request
            .send()
            .await
            .map_err(|e| unavailable("SendMessage", e))?;
        output.message_id.ok_or_else(|| ApiError::QueueUnavailable {
            detail: "SendMessage answered without a message id".to_string(),
        })
    }

    /// The approximate number of visible messages.
    pub async fn depth(&self) -> Result<u64, ApiError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.config.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| unavailable("GetQueueAttributes", e))?;
        Ok(output
            .attributes
            .as_ref()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}

/// The full error chain goes to the log; the client gets the short reason (the service's error
/// code, or the SDK's one-line summary such as "dispatch failure").
fn unavailable<E>(operation: &str, error: E) -> ApiError
where
    E: std::error::Error + ProvideErrorMetadata,
{
    tracing::error!(operation, error = %DisplayErrorContext(&error), "queue unavailable");
    let reason = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => error.to_string(),
    };
    ApiError::QueueUnavailable {
        detail: format!("{operation} failed ({reason})"),
    }
}
