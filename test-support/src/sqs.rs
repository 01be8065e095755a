//! Queues on LocalStack: the client, the environment for child processes, and a queue per test.

use std::collections::HashMap;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

/// The LocalStack endpoint the tests use.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_string())
}

/// The environment a function process needs to reach LocalStack, for tests that start binaries.
pub fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
    ]
}

/// An AWS configuration for LocalStack's [`endpoint`], its region and test credentials, whatever
/// the shell's AWS settings are.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "test-support",
        ))
        .load()
        .await
}

/// An SQS client for LocalStack (see [`sdk_config`]).
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config().await)
}

/// A queue made for one test, with a DLQ behind it.
#[derive(Debug, Clone)]
pub struct TestQueue {
    /// The client that made it.
    pub client: aws_sdk_sqs::Client,
    /// The queue's URL.
    pub url: String,
    /// The DLQ's URL.
    pub dlq_url: String,
}

impl TestQueue {
    /// Makes `<prefix>-<id>` and `<prefix>-<id>-dlq`, with the given visibility timeout and
    /// `maxReceiveCount`. Panics (failing the test) with a hint when LocalStack is not answering.
    pub async fn create(prefix: &str, visibility_timeout: u32, max_receive_count: u32) -> Self {
        Self::create_kind(prefix, visibility_timeout, max_receive_count, false).await
    }

    /// As [`TestQueue::create`], FIFO queues (names ending `.fifo`) with content-based
    /// deduplication: send with a message group id.
    pub async fn create_fifo(
        prefix: &str,
        visibility_timeout: u32,
        max_receive_count: u32,
    ) -> Self {
        Self::create_kind(prefix, visibility_timeout, max_receive_count, true).await
    }

    async fn create_kind(
        prefix: &str,
        visibility_timeout: u32,
        max_receive_count: u32,
        fifo: bool,
    ) -> Self {
        let client = sqs_client().await;
        // 12 hex digits keep long prefixes within SQS's 80 characters.
        let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let name = format!("{prefix}-{id}");
        let suffix = if fifo { ".fifo" } else { "" };
        let kind = if fifo {
            HashMap::from([
                (QueueAttributeName::FifoQueue, "true".to_string()),
                (
                    QueueAttributeName::ContentBasedDeduplication,
                    "true".to_string(),
                ),
            ])
        } else {
            HashMap::new()
        };
        let dlq_url = create(&client, &format!("{name}-dlq{suffix}"), kind.clone()).await;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes on the DLQ")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("the DLQ has an ARN");
        let mut attributes = kind;
        attributes.insert(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.to_string(),
        );
        attributes.insert(
            QueueAttributeName::RedrivePolicy,
            format!(
                r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}"#
            ),
        );
        let url = create(&client, &format!("{name}{suffix}"), attributes).await;
        Self {
            client,
            url,
            dlq_url,
        }
    }

    /// Sends one message body; returns its message id.
    pub async fn send(&self, body: &str) -> String {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage")
            .message_id
            .expect("a message id")
    }

    /// Receives up to `max` messages (1..=10) from `url`, waiting up to `wait_seconds` for the
    /// first, with every system attribute. The messages stay in flight until deleted.
    pub async fn receive(&self, url: &str, max: i32, wait_seconds: i32) -> Vec<Message> {
        self.client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage")
            .messages
            .unwrap_or_default()
    }

    /// Visible + in flight + delayed messages on `url`, as SQS counts them.
    pub async fn count(&self, url: &str) -> u64 {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .unwrap_or_default();
        attributes
            .values()
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    }

    /// Deletes both queues. Tests call it at the end; a test that fails leaves them for a look.
    pub async fn delete(self) {
        for url in [&self.url, &self.dlq_url] {
            let _ = self.client.delete_queue().queue_url(url).send().await;
        }
    }
}

async fn create(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> String {
    client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create queue {name} on LocalStack at {} ({}); start it with `scripts/localstack up`",
                endpoint(),
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })
        .queue_url
        .expect("CreateQueue returns a URL")
}
