//! `plain-echo`: the echo handler served by a plain hyper HTTP/1.1 server, no Lambda in between.
//!
//! The floor the adapter is measured against: the same handler ([`bench::echo::echo`]), the same
//! request and response types, but no event JSON, no Runtime API hop and no second process.
//!
//! `plain-echo --listen 127.0.0.1:PORT`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves the echo handler over plain HTTP.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("plain-echo listening on {}", listener.local_addr()?);
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let counter = counter.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, counter.clone()));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}

async fn handle(
    request: hyper::Request<Incoming>,
    counter: Arc<AtomicU64>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(plain(400, format!("could not read the body: {e}"))),
    };
    let id = counter.fetch_add(1, Ordering::Relaxed);
    let request = bench::echo::lambda_request(parts, body, format!("plain-{id}"));
    match bench::echo::echo(request).await {
        Ok(response) => {
            let (parts, bytes) = bench::echo::http_response(response);
            Ok(hyper::Response::from_parts(parts, Full::new(bytes)))
        }
        Err(e) => Ok(plain(500, e.to_string())),
    }
}

fn plain(status: u16, message: String) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response
}
