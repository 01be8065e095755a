//! `echo`: a `lambda_http` function that describes the request it got, for the adapter's round-trip
//! tests.
//!
//! By default it answers 200 with JSON: method, path, raw query, parsed query, headers, cookies and
//! the body (as text when it is UTF-8, with its length either way). Request headers steer the reply:
//! - `x-echo-status: 418` sets the status;
//! - `x-echo-header: name=value` adds a response header;
//! - `x-echo-set-cookie: a=b` adds a `Set-Cookie`;
//!
//! (API Gateway joins repeated request headers with commas, so both split their value on commas.)
//! - `x-echo-raw: 1` answers the request body byte for byte, with the request's content type
//!   (binary bodies travel base64-encoded both ways).

use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run_concurrent(service_fn(test_functions::echo::echo)).await
}
