//! X-Ray trace headers: what a source reads from a request or a message, and what it makes when
//! there is none.
//!
//! Lambda's front (API Gateway, a function URL, the Invoke API) gives every invocation a trace id:
//! the caller's `X-Amzn-Trace-Id` when it carries a valid root, a new root otherwise. The function
//! sees it as `Lambda-Runtime-Trace-Id` (and `_X_AMZN_TRACE_ID`), and an instrumented function
//! passes it on, to SQS as the message's `AWSTraceHeader` system attribute. The adapter's sources
//! do the same, so one root follows a task from `POST /tasks` to the worker's log line.
//!
//! Only the fields X-Ray defines for propagation are kept (`Root`, `Parent`, `Sampled`), each
//! checked: a header from outside is passed to a function and to SQS, which rejects a malformed
//! `AWSTraceHeader`, so a bad one is replaced rather than passed on.

/// The trace header for an invocation from a request whose `X-Amzn-Trace-Id` is `incoming`: the
/// incoming header's `Root`, `Parent` and `Sampled` when its root is valid, else a new root made
/// from `random` (random bits the caller already has, such as its request id's: a second
/// `getrandom` per request was measurable on the HTTP path).
pub(crate) fn for_request(incoming: Option<&str>, random: u128) -> String {
    incoming
        .and_then(normalize)
        .unwrap_or_else(|| root_from(random))
}

/// The header carried by a message's `AWSTraceHeader`, when it is a valid trace header.
pub(crate) fn from_message(attribute: &str) -> Option<String> {
    normalize(attribute)
}

/// `Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>;Sampled=0`: a root as X-Ray makes it.
/// Not sampled: nothing here sends segments to X-Ray, and a function must not think it should.
pub(crate) fn new_root() -> String {
    root_from(uuid::Uuid::new_v4().as_u128())
}

/// A root whose id is the low 96 bits of `random`. From a v4 UUID, 90 of them are random (its
/// version and variant bits are fixed): plenty for an id that only has to be unique among traces
/// of the same second.
fn root_from(random: u128) -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let id = random & ((1u128 << 96) - 1);
    format!("Root=1-{:08x}-{id:024x};Sampled=0", seconds as u32)
}

/// The header rebuilt from its valid propagation fields, `None` without a valid `Root`.
fn normalize(header: &str) -> Option<String> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = None;
    for field in header.split(';') {
        let Some((key, value)) = field.trim().split_once('=') else {
            continue;
        };
        match key {
            "Root" if is_root(value) => root = Some(value),
            "Parent" if value.len() == 16 && is_lower_hex(value) => parent = Some(value),
            "Sampled" if matches!(value, "0" | "1" | "?") => sampled = Some(value),
            _ => {}
        }
    }
    let mut normalized = format!("Root={}", root?);
    if let Some(parent) = parent {
        normalized.push_str(";Parent=");
        normalized.push_str(parent);
    }
    if let Some(sampled) = sampled {
        normalized.push_str(";Sampled=");
        normalized.push_str(sampled);
    }
    Some(normalized)
}

/// `1-<8 hex>-<24 hex>`, X-Ray's trace id.
fn is_root(value: &str) -> bool {
    let mut parts = value.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("1"), Some(time), Some(id), None)
            if time.len() == 8 && id.len() == 24 && is_lower_hex(time) && is_lower_hex(id)
    )
}

fn is_lower_hex(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

    #[test]
    fn a_valid_incoming_header_keeps_its_propagation_fields() {
        let header = format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1");
        assert_eq!(for_request(Some(&header), 7), header);
        let extra = format!("Self=1-abc;Root={ROOT};Lineage=a:1;Sampled=0");
        assert_eq!(
            for_request(Some(&extra), 7),
            format!("Root={ROOT};Sampled=0")
        );
    }

    #[test]
    fn a_missing_or_invalid_root_gets_a_new_valid_one() {
        for incoming in [
            None,
            Some(""),
            Some("Root=2-5759e988-bd862e3fe1be46a994272793"),
            Some("Root=1-5759e988-BD862E3FE1BE46A994272793"),
            Some("Root=1-5759e988-bd862e3f"),
            Some("Root=1-5759e988-bd862e3fe1be46a994272793-x"),
            Some("Parent=53995c3f42cd8ad8"),
        ] {
            let header = for_request(incoming, uuid::Uuid::new_v4().as_u128());
            let root = header
                .strip_prefix("Root=")
                .and_then(|rest| rest.strip_suffix(";Sampled=0"))
                .unwrap_or_else(|| panic!("{incoming:?} gave {header}"));
            assert!(is_root(root), "{incoming:?} gave {header}");
        }
        assert_ne!(new_root(), new_root(), "roots are random");
        assert!(
            for_request(None, 0xabc).ends_with("-000000000000000000000abc;Sampled=0"),
            "a new root takes the caller's random bits"
        );
    }

    #[test]
    fn invalid_optional_fields_are_dropped() {
        assert_eq!(
            from_message(&format!("Root={ROOT};Parent=xyz;Sampled=yes")),
            Some(format!("Root={ROOT}"))
        );
        assert_eq!(from_message("garbage"), None);
    }
}
