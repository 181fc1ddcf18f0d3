//! The query crate's HTTP error answer, after axum's error-handling example: a client's mistake
//! goes back as 4xx with its message; an internal failure is logged with its detail and answered
//! with a generic message (never one that names a write when the request was a read).
//!
//! The body takes the shape the route's clients expect. Tally's own `/api/v1/*` routes answer
//! JSON, `{"error": "..."}`. graphite-web's routes answer as graphite-web 1.1.8 does: its JSON
//! views (`/tags/*`, `/functions`, posting `/events`) with the same JSON object, and `/render`
//! and `/metrics/*` with the message as text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::error;

use crate::error::QueryError;

/// What an internal failure answers; the detail is in the log.
const INTERNAL: &str = "internal error; see the server log";

/// How an error answer's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorBody {
    /// `{"error": "<message>"}` as `application/json`.
    Json,
    /// The message and a newline as `text/plain`.
    Text,
}

/// An HTTP error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    /// What the caller reads.
    message: String,
    /// An internal failure's detail: logged, never sent.
    detail: Option<String>,
    body: ErrorBody,
    /// Seconds for the `Retry-After` header (a busy server, refused writes).
    retry_after: Option<u64>,
}

impl ApiError {
    /// The caller's mistake, answered with `status` and `message` as JSON.
    pub(crate) fn client(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            detail: None,
            body: ErrorBody::Json,
            retry_after: None,
        }
    }

    /// A failure of the server: 500 with a generic message; `detail` goes to the log.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: INTERNAL.to_owned(),
            detail: Some(detail.to_string()),
            body: ErrorBody::Json,
            retry_after: None,
        }
    }

    /// The same answer with its body written as `body`.
    pub(crate) fn with_body(mut self, body: ErrorBody) -> ApiError {
        self.body = body;
        self
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        let retry = |status, message: String, secs| ApiError {
            retry_after: Some(secs),
            ..ApiError::client(status, message)
        };
        match e {
            // As the store's own ingest answers a refused write: 507, why, and when to retry.
            QueryError::Store(tally_store::Error::WritesRefused(r)) => retry(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("writes refused: {r}"),
                r.retry_after_secs(),
            ),
            QueryError::Store(tally_store::Error::Unavailable(why)) => retry(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable: {why}"),
                1,
            ),
            QueryError::Busy(why) => retry(StatusCode::SERVICE_UNAVAILABLE, why, 1),
            QueryError::Unavailable(why) => retry(StatusCode::SERVICE_UNAVAILABLE, why, 5),
            e if e.is_client_error() => ApiError::client(StatusCode::BAD_REQUEST, e.to_string()),
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(detail) = &self.detail {
            error!(status = self.status.as_u16(), error = %detail, "query request failed");
        }
        let mut resp = match self.body {
            ErrorBody::Json => (
                self.status,
                Json(serde_json::json!({ "error": self.message })),
            )
                .into_response(),
            ErrorBody::Text => (self.status, format!("{}\n", self.message)).into_response(),
        };
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// A response's status, content type and body, for the crate's route tests.
#[cfg(test)]
pub(crate) async fn read_response(r: axum::response::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ApiError) -> (StatusCode, String, String) {
        let (status, ctype, body) = read_response(e.into_response()).await;
        (StatusCode::from_u16(status).expect("status"), ctype, body)
    }

    #[tokio::test]
    async fn client_mistakes_say_what_is_wrong_in_the_routes_shape() {
        let e = ApiError::from(QueryError::UnknownFunction("nosuch".into()));
        let (status, ctype, body) = answer(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(ctype, "application/json");
        assert_eq!(body, r#"{"error":"unknown function \"nosuch\""}"#);
        let e = ApiError::from(QueryError::UnknownFunction("nosuch".into()));
        let (status, ctype, body) = answer(e.with_body(ErrorBody::Text)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        assert_eq!(body, "unknown function \"nosuch\"\n");
    }

    #[tokio::test]
    async fn internal_failures_answer_generically_issue_11() {
        for body in [ErrorBody::Json, ErrorBody::Text] {
            let store = tally_store::Error::Corrupt("chunk 7 of series 12".into());
            let e = ApiError::from(QueryError::from(store)).with_body(body);
            let (status, _, text) = answer(e).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(text.contains(INTERNAL), "{text}");
            assert!(
                !text.contains("chunk 7"),
                "the detail stays in the log: {text}"
            );
            assert!(!text.contains("write"), "a read is not a write: {text}");
        }
    }
}
