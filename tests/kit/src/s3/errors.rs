//! S3's error responses: status, code, message and the extra elements S3
//! puts in each, serialised exactly as S3 does
//! (`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>…</Code><Message>…</Message>…<RequestId>…</RequestId><HostId>…</HostId></Error>`).

use crate::net::http::Response;

/// One S3 error, before it gets its request id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct S3Error {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// Elements between `Message` and `RequestId`, in order.
    pub extra: Vec<(&'static str, String)>,
}

impl S3Error {
    pub fn new(status: u16, code: &str, message: &str) -> S3Error {
        S3Error {
            status,
            code: code.to_string(),
            message: message.to_string(),
            extra: Vec::new(),
        }
    }

    /// Adds an element after `Message`.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.extra.push((name, value.into()));
        self
    }

    /// The XML response, with the ids also in `x-amz-request-id` / `x-amz-id-2`.
    pub fn response(&self, request_id: &str, host_id: &str) -> Response {
        let mut body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>",
            escape(&self.code),
            escape(&self.message)
        );
        for (name, value) in &self.extra {
            body.push_str(&format!("<{name}>{}</{name}>", escape(value)));
        }
        body.push_str(&format!(
            "<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>"
        ));
        Response::new(self.status, body.into_bytes()).with_header("Content-Type", "application/xml")
    }
}

/// Escapes text for an XML element.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn no_such_key(key: &str) -> S3Error {
    S3Error::new(404, "NoSuchKey", "The specified key does not exist.").with("Key", key)
}

pub(crate) fn no_such_bucket(bucket: &str) -> S3Error {
    S3Error::new(404, "NoSuchBucket", "The specified bucket does not exist")
        .with("BucketName", bucket)
}

pub(crate) fn access_denied() -> S3Error {
    S3Error::new(403, "AccessDenied", "Access Denied")
}

pub(crate) fn internal_error() -> S3Error {
    S3Error::new(
        500,
        "InternalError",
        "We encountered an internal error. Please try again.",
    )
}

pub(crate) fn slow_down() -> S3Error {
    S3Error::new(503, "SlowDown", "Please reduce your request rate.")
}

pub(crate) fn invalid_access_key_id(access_key: &str) -> S3Error {
    S3Error::new(
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    )
    .with("AWSAccessKeyId", access_key)
}

/// `SignatureDoesNotMatch` with what S3 computed, as S3 reports it.
pub(crate) fn signature_does_not_match(
    access_key: &str,
    string_to_sign: &str,
    provided: &str,
    canonical_request: &str,
) -> S3Error {
    let bytes = |s: &str| {
        s.bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    S3Error::new(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )
    .with("AWSAccessKeyId", access_key)
    .with("StringToSign", string_to_sign)
    .with("SignatureProvided", provided)
    .with("StringToSignBytes", bytes(string_to_sign))
    .with("CanonicalRequest", canonical_request)
    .with("CanonicalRequestBytes", bytes(canonical_request))
}

/// A presigned URL used after `X-Amz-Date` + `X-Amz-Expires`.
pub(crate) fn request_expired(expires_param: u64, expired_at: &str, server_time: &str) -> S3Error {
    S3Error::new(403, "AccessDenied", "Request has expired")
        .with("X-Amz-Expires", expires_param.to_string())
        .with("Expires", expired_at)
        .with("ServerTime", server_time)
}

/// A header-signed request whose `x-amz-date` is over 15 minutes off.
pub(crate) fn request_time_too_skewed(request_time: &str, server_time: &str) -> S3Error {
    S3Error::new(
        403,
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    )
    .with("RequestTime", request_time)
    .with("ServerTime", server_time)
    .with("MaxAllowedSkewMilliseconds", "900000")
}

pub(crate) fn authorization_header_malformed(detail: &str) -> S3Error {
    S3Error::new(
        400,
        "AuthorizationHeaderMalformed",
        &format!("The authorization header is malformed; {detail}"),
    )
}

pub(crate) fn authorization_query_parameters_error(message: &str) -> S3Error {
    S3Error::new(400, "AuthorizationQueryParametersError", message)
}

pub(crate) fn invalid_request(message: &str) -> S3Error {
    S3Error::new(400, "InvalidRequest", message)
}

pub(crate) fn bad_request() -> S3Error {
    S3Error::new(
        400,
        "BadRequest",
        "An error occurred when parsing the HTTP request.",
    )
}

pub(crate) fn invalid_uri() -> S3Error {
    S3Error::new(400, "InvalidURI", "Couldn't parse the specified URI.")
}

pub(crate) fn method_not_allowed(method: &str) -> S3Error {
    S3Error::new(
        405,
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
    )
    .with("Method", method)
    .with("ResourceType", "OBJECT")
}

/// What S3 answers to a header it does not implement (here: a chunked
/// `Transfer-Encoding` on a request).
pub(crate) fn not_implemented(header: &str) -> S3Error {
    S3Error::new(
        501,
        "NotImplemented",
        "A header you provided implies functionality that is not implemented",
    )
    .with("Header", header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_s3_shape_and_escapes() {
        let r = no_such_key("a&b/<c>").response("REQ", "HOST");
        assert_eq!(r.status, 404);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message><Key>a&amp;b/&lt;c&gt;</Key>\
             <RequestId>REQ</RequestId><HostId>HOST</HostId></Error>"
        );
    }
}
