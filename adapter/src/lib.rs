//! The adapter: hosts an unmodified AWS Lambda function binary (anything that speaks the Lambda
//! Runtime API) as a long-lived service, feeding it invocations from an event source.
//!
//! Map: [`host`] runs the function processes and exposes them as a [`tower::Service`]
//! ([`host::Invoker`]); [`runtime_api`] is what the processes talk to; [`http_source`] and
//! [`sqs`] are the event sources; [`invoke_api`] is Lambda's Invoke API
//! (and, alone, `adapter emulate`); [`platform_log`] writes Lambda's `START`/`END`/`REPORT` lines; [`admin`] answers health,
//! readiness and metrics; [`app`] wires a subcommand together; [`shutdown`] turns signals into a
//! cancellation.

pub mod admin;
pub mod app;
mod backoff;
pub mod cli;
pub mod event_filter;
mod gauge;
pub mod healthcheck;
pub mod host;
pub mod http_source;
pub mod invocation;
pub mod invoke_api;
mod lock;
mod memory;
mod open_files;
pub mod output;
pub mod platform_log;
pub mod response_stream;
pub mod runtime_api;
pub mod shutdown;
pub mod sqs;
mod trace_header;
