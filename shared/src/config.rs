//! Configuration from the environment, the only place it comes from (Lambda, ECS task definitions
//! and `cargo lambda watch` all speak environment variables).

use std::env;

/// The environment variable that names the queue.
pub const QUEUE_URL_VAR: &str = "QUEUE_URL";

/// What a function needs to reach its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue's URL, as SQS hands it out (`http(s)://host/.../<account>/<name>`).
    pub queue_url: String,
}

/// A missing or malformed setting, named so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set, or is empty.
    #[error("{var} is not set; {hint}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What it should hold.
        hint: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl QueueConfig {
    /// Reads `QUEUE_URL` from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| env::var(var).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let queue_url = lookup(QUEUE_URL_VAR)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing {
                var: QUEUE_URL_VAR,
                hint: "set it to the SQS queue URL, e.g. http://127.0.0.1:4566/queue/us-east-1/000000000000/tasks",
            })?;
        let invalid = |reason| ConfigError::Invalid {
            var: QUEUE_URL_VAR,
            value: queue_url.clone(),
            reason,
        };
        let rest = queue_url
            .strip_prefix("https://")
            .or_else(|| queue_url.strip_prefix("http://"))
            .ok_or_else(|| invalid("it must start with http:// or https://"))?;
        let mut parts = rest.split('/').filter(|p| !p.is_empty());
        if parts.next().is_none() || parts.next_back().is_none() {
            return Err(invalid(
                "it must end with the queue's name, like .../<account>/<name>",
            ));
        }
        Ok(Self { queue_url })
    }

    /// The queue's name: the last segment of its URL.
    pub fn queue_name(&self) -> &str {
        self.queue_url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(&self.queue_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: Option<&str>) -> Result<QueueConfig, ConfigError> {
        QueueConfig::from_lookup(|_| value.map(str::to_string))
    }

    #[test]
    fn reads_queue_url_and_name() {
        let c = config(Some(
            "http://127.0.0.1:4566/queue/us-east-1/000000000000/tasks",
        ))
        .unwrap();
        assert_eq!(c.queue_name(), "tasks");
        let c = config(Some(
            "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs/",
        ))
        .unwrap();
        assert_eq!(c.queue_name(), "jobs");
    }

    #[test]
    fn names_what_is_wrong() {
        let missing = config(None).unwrap_err().to_string();
        assert!(missing.contains("QUEUE_URL is not set"), "{missing}");
        assert!(config(Some("  ")).is_err());
        let scheme = config(Some("tasks")).unwrap_err().to_string();
        assert!(scheme.contains("http://"), "{scheme}");
        let no_name = config(Some("http://localhost:4566"))
            .unwrap_err()
            .to_string();
        assert!(no_name.contains("queue's name"), "{no_name}");
    }
}
