//! Tally's query-side HTTP API as one router: the web page and its dashboards ([`crate::web`]), graphite-web's routes
//! ([`crate::graphite`]), and the alerting API when alerts are on, every route declared with
//! what it needs and behind the bearer tokens ([`tally_common::auth`]).
//! A second language adds its routes here, beside graphite's.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use tally_common::auth::{Routes, Tokens};

use crate::api_error::{ApiError, ErrorBody};
use crate::limits::{Budget, Limits};
use crate::source::Source;

/// How the API is served.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// The port's tokens ([`tally_common::auth`]): by default none, everything open.
    pub tokens: Arc<Tokens>,
    pub limits: Limits,
    /// What every request in flight may hold together; the process's ([`Budget::process`])
    /// when `None`.
    pub budget: Option<Arc<Budget>>,
    /// The alert engine whose API (`/api/v1/alerts/...`) is served too.
    pub alerts: Option<Arc<crate::alert::Engine>>,
}

/// The routes, over any [`Source`], with no tokens and default limits.
pub fn router(source: Arc<dyn Source>) -> Router {
    router_with(source, ApiOptions::default())
}

/// The routes, over any [`Source`], behind the tokens of `opts`.
pub fn router_with(source: Arc<dyn Source>, opts: ApiOptions) -> Router {
    router_with_extra(source, opts, Routes::new())
}

/// The same with `extra` routes of the caller's (a query node's `/metrics`) behind the same
/// tokens.
pub fn router_with_extra(source: Arc<dyn Source>, opts: ApiOptions, extra: Routes) -> Router {
    let tokens = opts.tokens.clone();
    routes(source, opts)
        .merge(extra)
        .guard(tokens, |path| unauthorized(path).into_response())
}

/// Every route served, each declared with what it needs: the web page's shell is open (it is a
/// file compiled into the binary and holds no data; everything it shows comes from the routes
/// below, with the token the page asks for); every other route reads or writes.
pub fn routes(source: Arc<dyn Source>, opts: ApiOptions) -> Routes {
    let alerts = match opts.alerts {
        Some(engine) => crate::alert::routes::routes(engine),
        None => Routes::new(),
    };
    let budget = opts.budget.unwrap_or_else(Budget::process);
    crate::web::routes()
        .merge(crate::graphite::routes::routes(
            source.clone(),
            opts.limits,
            budget.clone(),
        ))
        .merge(crate::atlas::routes::routes(source, opts.limits, budget))
        .merge(alerts)
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
    use axum::http::{header, Method, Request};
    use axum::response::Response;
    use tally_common::auth::Access;
    use tower::ServiceExt;

    use super::*;
    use crate::source::MemSource;

    async fn answer(r: Response) -> (u16, String, String) {
        crate::api_error::read_response(r).await
    }

    /// A request for each route the API declares, by method and declared path, and the access
    /// the route must declare. A route without one here fails the walk, so a new route cannot
    /// skip the token check's test.
    fn sample(route: &tally_common::auth::Route) -> (Request<Body>, Access) {
        use Access::{Open, Read, Write};
        let get = route.method == Method::GET;
        let (uri, body, access) = match route.path {
            "/" | "/index.html" => (route.path.to_owned(), "", Open),
            "/events" | "/events/" if get => (format!("{}?tags=a", route.path), "", Read),
            "/events" | "/events/" => (route.path.to_owned(), r#"{"what": "deploy"}"#, Write),
            "/events/get_data" => ("/events/get_data?tags=a".into(), "", Read),
            "/render" | "/render/" => (format!("{}?target=a.b&from=-1h", route.path), "", Read),
            "/metrics/find" | "/metrics/find/" | "/metrics/expand" => {
                (format!("{}?query=*", route.path), "", Read)
            }
            "/metrics/index.json" | "/tags" | "/tags/" => (route.path.to_owned(), "", Read),
            "/tags/findSeries" => ("/tags/findSeries?expr=name%3Da.b".into(), "", Read),
            "/tags/tagSeries" | "/tags/tagMultiSeries" | "/tags/delSeries" => {
                (format!("{}?path=a.b", route.path), "", Write)
            }
            "/tags/autoComplete/tags" | "/tags/autoComplete/values" => {
                (format!("{}?tag=name", route.path), "", Read)
            }
            "/tags/:tag" => ("/tags/name".into(), "", Read),
            "/functions" | "/functions/" | "/version" | "/version/" => {
                (route.path.to_owned(), "", Read)
            }
            "/functions/:name" => ("/functions/sumSeries".into(), "", Read),
            "/api/v1/alerts" | "/api/v1/alerts/rules" | "/api/v1/alerts/notifiers" => {
                (route.path.to_owned(), "", Read)
            }
            "/api/v1/alerts/silences" if get => (route.path.to_owned(), "", Read),
            "/api/v1/alerts/silences" => (
                route.path.to_owned(),
                r#"{"rule": "B", "duration": "1h"}"#,
                Write,
            ),
            "/api/v1/alerts/silences/:id" => ("/api/v1/alerts/silences/1".into(), "", Write),
            "/api/v1/alerts/reload" => (route.path.to_owned(), "", Write),
            "/api/v1/graph" => ("/api/v1/graph?q=name,a.b,:eq&format=json".into(), "", Read),
            "/api/v1/tags" | "/api/v1/tags/" => (route.path.to_owned(), "", Read),
            "/api/v1/tags/:key" => ("/api/v1/tags/name".into(), "", Read),
            "/api/v1/dashboards" => (route.path.to_owned(), "", Read),
            "/api/v1/dashboards/:uid" => ("/api/v1/dashboards/tally-overview".into(), "", Read),
            other => panic!("no sample request for {} {other}: add one", route.method),
        };
        let req = Request::builder()
            .method(route.method.clone())
            .uri(uri)
            .body(Body::from(body))
            .expect("request");
        (req, access)
    }

    /// Issue 17: every route of the query API (graphite-web's, the alerts', the page), as
    /// declared by the router itself, called with no token, a wrong one, the read token and
    /// the write token; and each declares the access it must.
    #[tokio::test]
    async fn issue_17_every_route_is_guarded_by_its_token() {
        use tally_common::auth::testing::walk_router;
        let mut m = MemSource::default();
        m.add("a.b", tally_common::unix_now() - 60, 10, vec![Some(1.0); 3]);
        let source: Arc<dyn Source> = Arc::new(m);
        let rules = crate::alert::Alerting::parse(
            "[[rule]]\nname = \"B\"\ntarget = \"a.b\"\nwindow = \"1m\"\nwarn = 1\n",
        )
        .expect("rules");
        let engine =
            Arc::new(crate::alert::Engine::new(source.clone(), rules, None).expect("engine"));
        let opts = |tokens: Tokens| ApiOptions {
            tokens: Arc::new(tokens),
            alerts: Some(engine.clone()),
            ..ApiOptions::default()
        };
        let table = routes(source.clone(), opts(Tokens::default()))
            .table()
            .to_vec();
        assert!(table.len() > 40, "{table:?}");
        for route in &table {
            let (_, access) = sample(route);
            assert_eq!(route.access, access, "{} {}", route.method, route.path);
        }
        let wrong = walk_router(
            &table,
            |tokens| router_with(source.clone(), opts(tokens)),
            |route| sample(route).0,
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[tokio::test]
    async fn a_missing_token_answers_in_the_routes_shape_issue_11() {
        let opts = ApiOptions {
            tokens: Arc::new(Tokens::new(None, Some("w".into()), false)),
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
