//! Tally's query-side HTTP API as one router: the web page, graphite-web's routes
//! ([`crate::graphite`]), and the alerting API when alerts are on, all behind the bearer tokens.
//! A second language adds its routes here, beside graphite's.

use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api_error::{ApiError, ErrorBody};
use crate::limits::Limits;
use crate::source::Source;

/// How the API is served.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// When set, writes (`POST /events`) need `Authorization: Bearer <token>`.
    pub write_token: Option<String>,
    /// When set, every other request needs `Authorization: Bearer <token>` too.
    pub read_token: Option<String>,
    pub limits: Limits,
    /// The alert engine whose API (`/api/v1/alerts/...`) is served too.
    pub alerts: Option<Arc<crate::alert::Engine>>,
}

/// The routes, over any [`Source`], with no tokens and default limits.
pub fn router(source: Arc<dyn Source>) -> Router {
    router_with(source, ApiOptions::default())
}

/// The routes, over any [`Source`].
pub fn router_with(source: Arc<dyn Source>, opts: ApiOptions) -> Router {
    let tokens = Arc::new(Tokens {
        write: opts.write_token.filter(|t| !t.is_empty()),
        read: opts.read_token.filter(|t| !t.is_empty()),
    });
    let alerts = match opts.alerts {
        Some(engine) => crate::alert::routes::routes(engine),
        None => Router::new(),
    };
    Router::new()
        .route("/", get(web_page))
        .route("/index.html", get(web_page))
        .merge(crate::graphite::routes::routes(source, opts.limits))
        .merge(alerts)
        .layer(axum::middleware::from_fn_with_state(tokens, auth))
}

/// The web page: one self-contained file compiled into the binary (no CDN, works offline).
const WEB_PAGE: &str = include_str!("web/index.html");

async fn web_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        WEB_PAGE,
    )
        .into_response()
}

/// Write and read tokens, checked before any handler runs.
#[derive(Debug)]
struct Tokens {
    write: Option<String>,
    read: Option<String>,
}

async fn auth(
    axum::extract::State(tokens): axum::extract::State<Arc<Tokens>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let write = crate::graphite::routes::is_write(req.method(), path)
        || (path.starts_with("/api/v1/alerts") && req.method() != Method::GET);
    let needed = if write {
        tokens.write.as_ref().or(tokens.read.as_ref())
    } else {
        tokens.read.as_ref()
    };
    if let Some(token) = needed {
        if !tally_common::auth::bearer_ok(req.headers(), token) {
            return unauthorized(path).into_response();
        }
    }
    next.run(req).await
}

/// The answer without the right token: JSON on Tally's own `/api/` routes, text on graphite-web's
/// (graphite-web has no tokens; its clients show a text body as it is).
fn unauthorized(path: &str) -> ApiError {
    let body = if path.starts_with("/api/") {
        ErrorBody::Json
    } else {
        ErrorBody::Text
    };
    ApiError::client(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").with_body(body)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::source::MemSource;

    async fn answer(r: Response) -> (u16, String, String) {
        crate::api_error::read_response(r).await
    }

    #[tokio::test]
    async fn a_missing_token_answers_in_the_routes_shape_issue_11() {
        let opts = ApiOptions {
            write_token: Some("w".into()),
            ..ApiOptions::default()
        };
        let app = router_with(Arc::new(MemSource::default()), opts);
        let req = |auth: Option<&str>| {
            let mut b = Request::builder().method("POST").uri("/events/");
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(Body::from(r#"{"what": "deploy"}"#))
                .expect("request")
        };
        let r = app.clone().oneshot(req(None)).await.expect("answer");
        let (status, ctype, body) = answer(r).await;
        assert_eq!(status, 401);
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        assert_eq!(body, "missing or wrong bearer token\n");
        let r = app.oneshot(req(Some("Bearer w"))).await.expect("answer");
        assert_eq!(r.status(), StatusCode::OK);
        let (status, ctype, body) =
            answer(unauthorized("/api/v1/alerts/silences").into_response()).await;
        assert_eq!((status, ctype.as_str()), (401, "application/json"));
        assert_eq!(body, r#"{"error":"missing or wrong bearer token"}"#);
    }
}
