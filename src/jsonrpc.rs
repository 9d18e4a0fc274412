//! JSON-RPC 2.0 as Fentaris speaks it on both sides: the error for a client ([`RpcError`],
//! with named codes and the kind of failure the audit trail records), what a message is
//! ([`Message::classify`]), and the envelopes Fentaris builds.

use serde_json::{Value, json};

/// The JSON-RPC error codes Fentaris answers with.
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a request Fentaris accepts (not 2.0, a batch, too large).
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A per-user limit (see [`super::RpcError::limit`]).
    pub const LIMIT: i64 = -32000;
    /// MCP: a resource that does not exist (or is hidden).
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// Denied by middleware, an argument schema or the authorizer.
    pub const DENIED: i64 = -32003;
    /// The `Mcp-Method` header does not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// The client's protocol revision is not supported.
    pub const UNSUPPORTED_PROTOCOL: i64 = -32022;
    /// The request was cancelled.
    pub const CANCELLED: i64 = -32800;
}

/// What kind of failure an error is: what the audit trail and `/metrics` record, decided
/// where the error is made (never read back from the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is wrong (unknown method or name, bad parameters).
    Invalid,
    /// Refused by middleware, an argument schema or the authorizer.
    DeniedByMiddleware,
    /// Refused by a per-user limit.
    Limit,
    /// Cancelled by the client or because it went away.
    Cancelled,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream could not be reached or its connection failed.
    Unavailable,
    /// The upstream answered with an error (passed on to the client).
    Upstream,
    /// Anything else (Fentaris' own failures).
    Internal,
}

/// A JSON-RPC error for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
    pub kind: Kind,
}

/// Marks an error as one of Fentaris' per-user limits (upstreams cannot set it).
pub(crate) const LIMIT_KEY: &str = "fentarisLimit";

impl RpcError {
    /// An error of kind [`Kind::Internal`] unless [`RpcError::kind`] says otherwise; the named
    /// constructors below set the kind that fits.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
            kind: Kind::Internal,
        }
    }
    /// The same error, of another kind.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }
    pub fn parse_error(message: impl Into<String>) -> Self {
        RpcError::new(code::PARSE_ERROR, message).kind(Kind::Invalid)
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        RpcError::new(code::INVALID_REQUEST, message).kind(Kind::Invalid)
    }
    pub fn method_not_found(method: &str) -> Self {
        RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )
        .kind(Kind::Invalid)
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        RpcError::new(code::INVALID_PARAMS, message).kind(Kind::Invalid)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        RpcError::new(code::INTERNAL_ERROR, message)
    }
    pub fn cancelled() -> Self {
        RpcError::new(code::CANCELLED, "request cancelled").kind(Kind::Cancelled)
    }
    /// The error for a tool that is denied, hidden or unknown: the same in every case.
    pub fn unknown_tool(name: &str) -> Self {
        RpcError::invalid_params(format!("Unknown tool: {name}"))
    }
    /// The error for a prompt that is denied, hidden or unknown.
    pub fn unknown_prompt(name: &str) -> Self {
        RpcError::invalid_params(format!("Unknown prompt: {name}"))
    }
    /// The error for a resource that is denied, hidden or unknown.
    pub fn unknown_resource(uri: &str) -> Self {
        RpcError::new(
            code::RESOURCE_NOT_FOUND,
            format!("Resource not found: {uri}"),
        )
        .kind(Kind::Invalid)
    }
    /// A denial by middleware (`who`: `middleware`, `argumentSchema`, `authorizer`).
    pub fn denied(who: &'static str, message: &str) -> Self {
        let mut e = RpcError::new(code::DENIED, format!("denied: {message}"))
            .kind(Kind::DeniedByMiddleware);
        e.data = Some(json!({ "deniedBy": who, "reason": message }));
        e
    }
    /// A request refused by a per-user limit (`limits.NAME`): HTTP 429 with `Retry-After`.
    pub fn limit(name: &str, retry_after: u32, message: impl Into<String>) -> Self {
        let mut e = RpcError::new(code::LIMIT, message).kind(Kind::Limit);
        e.data =
            Some(json!({ LIMIT_KEY: format!("limits.{name}"), "retryAfterSeconds": retry_after }));
        e
    }
    /// An upstream's JSON-RPC error object, passed on. Only Fentaris' own limits answer 429,
    /// so the limit marker is removed from its data.
    pub fn from_upstream(error: Value) -> Self {
        let mut obj = match error {
            Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        let code = obj
            .get("code")
            .and_then(Value::as_i64)
            .unwrap_or(code::INTERNAL_ERROR);
        let message = match obj.remove("message") {
            Some(Value::String(s)) => s,
            _ => "upstream error".to_string(),
        };
        let data = obj.remove("data").map(|mut d| {
            if let Some(o) = d.as_object_mut() {
                o.remove(LIMIT_KEY);
            }
            d
        });
        // The one kind an upstream's code tells: it cancelled the request.
        let kind = if code == code::CANCELLED {
            Kind::Cancelled
        } else {
            Kind::Upstream
        };
        RpcError {
            code,
            message,
            data,
            kind,
        }
    }
    /// The `error` member of a response.
    pub fn to_json(&self) -> Value {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

/// `Retry-After` seconds when a response is an error from [`RpcError::limit`].
pub fn limit_retry_after(response: &Value) -> Option<u32> {
    let data = response.get("error")?.get("data")?;
    data.get(LIMIT_KEY)?.as_str()?;
    Some(
        data.get("retryAfterSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .min(3600) as u32,
    )
}

/// What a JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A request: it has an id and a method.
    Request { id: &'a Value, method: &'a str },
    /// A notification: a method and no id.
    Notification { method: &'a str },
    /// A response: an id, and no method.
    Response { id: &'a Value },
    /// Neither (not an object, or a method that is not a string).
    Invalid,
}

impl<'a> Message<'a> {
    /// Classify a message by its `id` and `method` members.
    pub fn classify(msg: &'a Value) -> Message<'a> {
        let Some(o) = msg.as_object() else {
            return Message::Invalid;
        };
        match (o.get("id"), o.get("method")) {
            (Some(id), Some(Value::String(method))) => Message::Request { id, method },
            (None, Some(Value::String(method))) => Message::Notification { method },
            (Some(id), None) => Message::Response { id },
            _ => Message::Invalid,
        }
    }
}

/// A request envelope (`params` left out when null).
pub fn request(id: impl Into<Value>, method: &str, params: Value) -> Value {
    let mut msg = json!({ "jsonrpc": "2.0", "id": id.into(), "method": method });
    if !params.is_null() {
        msg["params"] = params;
    }
    msg
}

/// A notification envelope (`params` left out when `None`).
pub fn notification(method: &str, params: Option<Value>) -> Value {
    let mut msg = json!({ "jsonrpc": "2.0", "method": method });
    if let Some(p) = params {
        msg["params"] = p;
    }
    msg
}

/// A success response.
pub fn response(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// An error response (`id` null when the request's id is unknown).
pub fn error_response(id: Option<&Value>, e: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": e.to_json() })
}

/// A response for a result or an error.
pub fn reply(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(r) => response(id, r),
        Err(e) => error_response(Some(&id), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified_by_id_and_method() {
        let req = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
        assert_eq!(
            Message::classify(&req),
            Message::Request {
                id: &json!(1),
                method: "tools/list"
            }
        );
        let note = json!({"jsonrpc":"2.0","method":"notifications/cancelled"});
        assert_eq!(
            Message::classify(&note),
            Message::Notification {
                method: "notifications/cancelled"
            }
        );
        let resp = json!({"jsonrpc":"2.0","id":"a","result":{}});
        assert_eq!(
            Message::classify(&resp),
            Message::Response { id: &json!("a") }
        );
        assert_eq!(Message::classify(&json!([1])), Message::Invalid);
        assert_eq!(
            Message::classify(&json!({"id":1,"method":7})),
            Message::Invalid
        );
        assert_eq!(Message::classify(&json!({})), Message::Invalid);
    }

    #[test]
    fn upstream_errors_lose_the_limit_marker_and_keep_the_rest() {
        let e = RpcError::from_upstream(json!({
            "code": -32000, "message": "slow down",
            "data": { "fentarisLimit": "limits.x", "retryAfterSeconds": 5, "why": "busy" }
        }));
        assert_eq!(e.code, -32000);
        assert_eq!(e.kind, Kind::Upstream);
        assert_eq!(e.message, "slow down");
        assert_eq!(
            e.data,
            Some(json!({ "retryAfterSeconds": 5, "why": "busy" }))
        );
        let body = error_response(Some(&json!(3)), &e);
        assert_eq!(limit_retry_after(&body), None);
        // Garbage from an upstream still makes an error.
        let e = RpcError::from_upstream(json!("oops"));
        assert_eq!((e.code, e.message.as_str()), (-32603, "upstream error"));
    }

    #[test]
    fn our_limits_carry_retry_after() {
        let body = error_response(None, &RpcError::limit("maxSessionsPerUser", 7, "too many"));
        assert_eq!(body["id"], Value::Null);
        assert_eq!(limit_retry_after(&body), Some(7));
        assert_eq!(RpcError::limit("x", 1, "m").kind, Kind::Limit);
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            request(4, "ping", Value::Null),
            json!({"jsonrpc":"2.0","id":4,"method":"ping"})
        );
        assert_eq!(
            notification("notifications/initialized", None),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"})
        );
        assert_eq!(
            reply(json!(1), Err(RpcError::cancelled())),
            json!({"jsonrpc":"2.0","id":1,"error":{"code":-32800,"message":"request cancelled"}})
        );
        assert_eq!(
            reply(json!(1), Ok(json!({}))),
            json!({"jsonrpc":"2.0","id":1,"result":{}})
        );
    }
}
