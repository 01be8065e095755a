//! Loopback ports for child processes and a plain HTTP/1.1 client.

/// A loopback port nothing listens on right now, for a child process to bind.
///
/// Why not the kernel's pick (port 0): it comes from the ephemeral range, the same range every
/// outgoing connection and every `:0` listener (the adapter's own Runtime API) draws from. Between
/// this probe and the child's bind, another test's connection may take the port, and the child
/// fails with "Address already in use" (CI saw it). Below the ephemeral range only tests choose
/// ports, and within one test process they take turns, so each port is handed out once.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (first, end) = port_range_for_tests();
    let span = end - first;
    // Test processes that run side by side start at different places in the range.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = first + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        // LocalStack's own ports: free while it is down, taken when it comes up.
        if (4_510..=4_566).contains(&port) {
            continue;
        }
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {first}..{end}");
}

/// The ports [`free_port`] hands out, `first..end`: below the kernel's ephemeral range, or above
/// it when there is no room below.
fn port_range_for_tests() -> (u32, u32) {
    // How many ports tests use.
    const SPAN: u32 = 8_000;
    const LOWEST: u32 = 1_024;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut ends = range.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((ends.next()??, ends.next()??))
        });
    // Linux's default when it can't be read.
    let (low, high) = range.unwrap_or((32_768, 60_999));
    if low >= LOWEST + SPAN / 4 {
        (low.saturating_sub(SPAN).max(LOWEST), low)
    } else if high + SPAN / 4 <= 65_536 {
        (high + 1, (high + 1 + SPAN).min(65_536))
    } else {
        panic!(
            "the ephemeral port range ({low}-{high}, /proc/sys/net/ipv4/ip_local_port_range) \
             leaves no ports for the tests to choose without racing the kernel"
        )
    }
}

/// A plain HTTP/1.1 exchange: `(status, body)`. Connection errors are `Err` so tests can wait for
/// a server to come up.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Result<(u16, String), String> {
    http_response(method, url, headers, body)
        .await
        .map(|response| (response.status, response.body))
}

/// An HTTP response: status, headers (names lower-case) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Every header, in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, as text (lossy).
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

/// As [`http`], with the response's headers too.
pub async fn http_response(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Result<HttpResponse, String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let (first, end) = port_range_for_tests();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ports.len(),
            "a port was handed out twice: {ports:?}"
        );
        for port in ports {
            assert!(
                (first..end).contains(&u32::from(port)),
                "{port} not in {first}..{end}"
            );
            assert!(
                !(4_510..=4_566).contains(&port),
                "{port} is one of LocalStack's"
            );
            assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        }
    }
}
