//! An HTTP request as the API Gateway HTTP API / function URL event (payload format 2.0).

use std::collections::HashMap;
use std::net::IpAddr;

use aws_lambda_events::apigw::{
    ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext,
    ApiGatewayV2httpRequestContextHttpDescription,
};
use aws_lambda_events::query_map::QueryMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use http::header::{CONTENT_TYPE, COOKIE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

/// What the event needs beyond the request itself.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// `requestContext.requestId`.
    pub request_id: String,
    /// `requestContext.http.sourceIp`.
    pub source_ip: IpAddr,
    /// `requestContext.time` / `timeEpoch`.
    pub received: DateTime<Utc>,
    /// `requestContext.accountId`.
    pub account_id: String,
    /// `requestContext.apiId`.
    pub api_id: String,
}

/// Builds the 2.0 event for a request whose body has been read.
pub fn to_event(
    parts: &http::request::Parts,
    body: &[u8],
    meta: &RequestMeta,
) -> ApiGatewayV2httpRequest {
    let raw_path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or_default().to_owned();
    let cookies = cookies_of(&parts.headers);
    let headers = joined_headers(&parts.headers);
    let domain_name = domain_name(parts).to_owned();
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (body, is_base64_encoded) = encode_body(&parts.headers, body);

    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = parts.method.clone();
    http.path = Some(decoded_path(&raw_path));
    http.protocol = Some(protocol_name(parts.version).to_owned());
    http.source_ip = Some(meta.source_ip.to_string());
    http.user_agent = user_agent;

    let mut context = ApiGatewayV2httpRequestContext::default();
    context.route_key = Some("$default".to_owned());
    context.account_id = Some(meta.account_id.clone());
    context.stage = Some("$default".to_owned());
    context.request_id = Some(meta.request_id.clone());
    context.apiid = Some(meta.api_id.clone());
    context.domain_prefix = Some(
        domain_name
            .split('.')
            .next()
            .unwrap_or(&domain_name)
            .to_owned(),
    );
    context.domain_name = Some(domain_name);
    context.time = Some(request_time(meta.received));
    context.time_epoch = meta.received.timestamp_millis();
    context.http = http;

    let mut event = ApiGatewayV2httpRequest::default();
    // The top-level method only exists for old authorizer payloads, but it is serialized anyway:
    // keep it truthful rather than the type's default GET.
    #[allow(deprecated)]
    {
        event.http_method = parts.method.clone();
    }
    event.version = Some("2.0".to_owned());
    event.route_key = Some("$default".to_owned());
    event.raw_path = Some(raw_path);
    event.query_string_parameters = query_map(&raw_query);
    event.raw_query_string = Some(raw_query);
    event.cookies = (!cookies.is_empty()).then_some(cookies);
    event.headers = headers;
    event.request_context = context;
    event.body = body;
    event.is_base64_encoded = is_base64_encoded;
    event
}

/// `requestContext.domainName`: the Host header without its port, else the request target's
/// host, else `localhost`.
pub fn domain_name(parts: &http::request::Parts) -> &str {
    parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.host())
        .map(|host| host.split(':').next().unwrap_or(host))
        .unwrap_or("localhost")
}

/// The client's address for `sourceIp`. Behind a load balancer the peer is the balancer, which
/// appends the address it saw to `X-Forwarded-For`: the last entry is that one (earlier entries
/// come from the client and prove nothing).
pub fn client_ip(headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(peer)
}

/// Each `Cookie` header split into its `name=value` pairs, as the `cookies` array has them.
fn cookies_of(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .flat_map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One value per header name, duplicates joined with commas; `Cookie` goes to `cookies` instead.
/// Values are made UTF-8 (lossily), since the event is JSON.
fn joined_headers(headers: &HeaderMap) -> HeaderMap {
    let mut joined = HeaderMap::new();
    for name in headers.keys() {
        if name == COOKIE {
            continue;
        }
        let value = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(",");
        if let Ok(value) = HeaderValue::from_str(&value) {
            joined.insert(HeaderName::clone(name), value);
        }
    }
    joined
}

fn query_map(raw_query: &str) -> QueryMap {
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        params
            .entry(key.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    QueryMap::from(params)
}

fn decoded_path(raw_path: &str) -> String {
    percent_encoding::percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned()
}

/// `requestContext.time` as API Gateway writes it (`14/Nov/2023:22:13:20 +0000`), written
/// directly: chrono's `format` parses its pattern again on every request.
fn request_time(time: DateTime<Utc>) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.get(time.month0() as usize).copied().unwrap_or("Jan");
    format!(
        "{:02}/{month}/{}:{:02}:{:02}:{:02} +0000",
        time.day(),
        time.year(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The body as the event carries it: text as is, anything else base64-encoded.
fn encode_body(headers: &HeaderMap, body: &[u8]) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let text = content_type.is_none_or(is_text_content_type);
    match std::str::from_utf8(body) {
        Ok(text_body) if text => (Some(text_body.to_owned()), false),
        _ => (Some(STANDARD.encode(body)), true),
    }
}

/// Content types whose bodies API Gateway passes as text.
pub(crate) fn is_text_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || [
            "application/json",
            "application/javascript",
            "application/xml",
            "application/yaml",
            "application/x-www-form-urlencoded",
            "application/graphql",
        ]
        .contains(&essence.as_str())
        || ["+json", "+xml", "+yaml"]
            .iter()
            .any(|suffix| essence.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn meta() -> RequestMeta {
        RequestMeta {
            request_id: "req-1".into(),
            source_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            received: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap_or_default(),
            account_id: "000000000000".into(),
            api_id: "adapter".into(),
        }
    }

    fn event_json(request: http::Request<()>, body: &[u8]) -> serde_json::Value {
        let (parts, ()) = request.into_parts();
        serde_json::to_value(to_event(&parts, body, &meta())).unwrap_or_default()
    }

    #[test]
    fn request_becomes_a_v2_event() {
        let request = http::Request::post("/tasks/a%20b?x=1&x=2&y=hello%20world")
            .header("host", "api.example.com:8080")
            .header("content-type", "application/json")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .header("user-agent", "test/1")
            .header("cookie", "a=1; b=2")
            .header("cookie", "c=3")
            .body(())
            .unwrap_or_default();
        let event = event_json(request, br#"{"k":1}"#);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "$default");
        assert_eq!(event["rawPath"], "/tasks/a%20b");
        assert_eq!(event["rawQueryString"], "x=1&x=2&y=hello%20world");
        assert_eq!(event["queryStringParameters"]["x"], "1,2");
        assert_eq!(event["queryStringParameters"]["y"], "hello world");
        assert_eq!(event["headers"]["x-multi"], "a,b");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["cookies"], serde_json::json!(["a=1", "b=2", "c=3"]));
        assert_eq!(event["body"], r#"{"k":1}"#);
        assert_eq!(event["isBase64Encoded"], false);
        let context = &event["requestContext"];
        assert_eq!(context["accountId"], "000000000000");
        assert_eq!(context["apiId"], "adapter");
        assert_eq!(context["domainName"], "api.example.com");
        assert_eq!(context["domainPrefix"], "api");
        assert_eq!(context["requestId"], "req-1");
        assert_eq!(context["timeEpoch"], 1_700_000_000_123_i64);
        assert_eq!(context["time"], "14/Nov/2023:22:13:20 +0000");
        assert_eq!(context["http"]["method"], "POST");
        assert_eq!(context["http"]["path"], "/tasks/a b");
        assert_eq!(context["http"]["protocol"], "HTTP/1.1");
        assert_eq!(context["http"]["sourceIp"], "10.0.0.7");
        assert_eq!(context["http"]["userAgent"], "test/1");
    }

    #[test]
    fn binary_bodies_are_base64() {
        let request = http::Request::put("/blob")
            .header("content-type", "application/octet-stream")
            .body(())
            .unwrap_or_default();
        let event = event_json(request, &[0, 159, 146, 150]);
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], STANDARD.encode([0, 159, 146, 150]));
    }

    #[test]
    fn invalid_utf8_text_is_base64_too() {
        let request = http::Request::post("/")
            .header("content-type", "text/plain")
            .body(())
            .unwrap_or_default();
        let event = event_json(request, &[0xff, 0xfe]);
        assert_eq!(event["isBase64Encoded"], true);
    }

    #[test]
    fn empty_body_and_query_are_absent() {
        let request = http::Request::get("/").body(()).unwrap_or_default();
        let event = event_json(request, b"");
        assert!(event.get("body").is_none());
        assert!(event.get("cookies").is_none());
        assert_eq!(event["rawQueryString"], "");
    }

    #[test]
    fn client_ip_is_the_last_forwarded_address_else_the_peer() {
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mut headers = HeaderMap::new();
        assert_eq!(client_ip(&headers, peer), peer);
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 5.6.7.8"),
        );
        assert_eq!(
            client_ip(&headers, peer),
            IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8))
        );
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_ip(&headers, peer), peer);
    }

    #[test]
    fn text_content_types() {
        assert!(is_text_content_type("text/html; charset=utf-8"));
        assert!(is_text_content_type("application/JSON"));
        assert!(is_text_content_type("application/problem+json"));
        assert!(!is_text_content_type("image/png"));
        assert!(!is_text_content_type("application/octet-stream"));
    }

    #[test]
    fn request_time_matches_the_api_gateway_pattern() {
        use chrono::TimeZone as _;
        for (y, mo, d, h, mi, se) in [
            (2024, 1, 5, 3, 4, 5),
            (2023, 11, 14, 22, 13, 20),
            (1999, 12, 31, 23, 59, 59),
        ] {
            let time = Utc
                .with_ymd_and_hms(y, mo, d, h, mi, se)
                .single()
                .expect("valid time");
            let expected = time.format("%d/%b/%Y:%H:%M:%S %z").to_string();
            assert_eq!(request_time(time), expected);
        }
    }
}
