//! `adapter http`: API Gateway HTTP API / function URL in front of the hosted function.
//!
//! [`event`] turns a request into a payload 2.0 event, [`response`] turns the reply back into a
//! response ([`streamed`] when the function streams it), [`server`] runs the listener,
//! [`connections`] keeps its connections to limits.

pub mod connections;
pub mod event;
pub mod response;
pub mod server;
pub mod streamed;

pub use server::{HttpSourceConfig, serve};
