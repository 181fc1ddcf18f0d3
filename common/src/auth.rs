//! Bearer tokens, and the one guard every HTTP route of Tally stands behind.
//!
//! Every route is declared through [`Routes`] with the [`Access`] it needs, so a route cannot be
//! added without saying who may call it, and the list of routes a router serves is the list
//! its tests walk ([`Routes::table`]). [`Routes::guard`] puts one layer in front of all of them
//! that checks the bearer token **before** the handler runs: an unauthenticated client gets the
//! same 401 for a series that exists and one that does not, and no handler work. A route that
//! reaches the layer without a declaration (merged in as a plain axum router) is treated as a
//! write, the strictest class, so a forgotten declaration fails closed.
//!
//! The rules ([`Tokens::permits`]):
//! - no token configured: everything is open;
//! - `read_token` set: every read needs it (or the write token);
//! - `write_token` set: every write needs it; with only `read_token` set, writes need that one,
//!   so configuring any token never leaves writes open;
//! - the write token grants reads too (it is the operator's token, a superset of the read
//!   token, as Prometheus' web config lets one credential call every endpoint); the read token
//!   never grants a write;
//! - `/metrics` is a read unless `metrics_open` exempts it, for a scraper without a token;
//! - [`Access::Open`] routes hold no data (the web page's shell).
//!
//! Tokens are compared in constant time ([`subtle`]); this file holds the only comparison.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{on, MethodFilter};
use axum::Router;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use subtle::ConstantTimeEq;

/// Whether `headers` carry `Authorization: Bearer <token>`. The comparison takes the same time
/// wherever the given token first differs, so it cannot be guessed byte by byte (only a
/// token's length is not kept secret).
pub fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone: the route holds no data (the web page's shell).
    Open,
    /// The program's own counters (`/metrics`): a read, unless `metrics_open`.
    Metrics,
    /// Reads stored data or names: needs the read token (or the write token) when one is set.
    Read,
    /// Changes stored data or the program's state: needs the write token when one is set.
    Write,
}

impl Access {
    /// The name used in messages and tests.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Metrics => "metrics",
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// The configured tokens of one HTTP port. Its `Debug` says which are set, never their values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    /// When set, every read needs this token or the write token.
    pub read: Option<String>,
    /// When set, every write needs this token (which also grants every read).
    pub write: Option<String>,
    /// `/metrics` answers without a token even when a read token is set.
    pub metrics_open: bool,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |t: &Option<String>| if t.is_some() { "set" } else { "unset" };
        f.debug_struct("Tokens")
            .field("read", &set(&self.read))
            .field("write", &set(&self.write))
            .field("metrics_open", &self.metrics_open)
            .finish()
    }
}

impl Tokens {
    /// Tokens from configuration; an empty string is no token.
    pub fn new(read: Option<String>, write: Option<String>, metrics_open: bool) -> Tokens {
        Tokens {
            read: read.filter(|t| !t.is_empty()),
            write: write.filter(|t| !t.is_empty()),
            metrics_open,
        }
    }

    /// Whether a request with `headers` may call a route that needs `access`.
    pub fn permits(&self, headers: &HeaderMap, access: Access) -> bool {
        let given = |t: &Option<String>| t.as_deref().is_some_and(|t| bearer_ok(headers, t));
        match access {
            Access::Open => true,
            Access::Metrics if self.metrics_open => true,
            Access::Metrics | Access::Read => {
                self.read.is_none() || given(&self.read) || given(&self.write)
            }
            Access::Write => match (&self.write, &self.read) {
                (Some(_), _) => given(&self.write),
                (None, Some(_)) => given(&self.read),
                (None, None) => true,
            },
        }
    }
}

/// One declared route: a method on a path (axum's syntax, `/tags/:tag`) and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// An axum router whose every route was declared with its [`Access`].
pub struct Routes<S = ()> {
    router: Router<S>,
    table: Vec<Route>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `handler` for `method` on `path`, for callers that `access` admits. A GET route
    /// answers HEAD too, under the same access.
    ///
    /// # Panics
    /// On a method axum cannot route (a programming error: methods are constants here).
    pub fn add<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("route {method} {path}: axum cannot route this method"));
        self.router = self.router.route(path, on(filter, handler));
        self.table.push(Route {
            method,
            path,
            access,
        });
        self
    }

    /// GET (and HEAD) and POST of one handler, as graphite-web takes parameters either way.
    pub fn get_post<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, S> + Clone,
        T: 'static,
    {
        self.add(Method::GET, path, access, handler.clone()).add(
            Method::POST,
            path,
            access,
            handler,
        )
    }

    /// Both routers' routes.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// Gives the routes their state, as [`Router::with_state`].
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            table: self.table,
        }
    }

    /// Every declared route, in the order declared.
    pub fn table(&self) -> &[Route] {
        &self.table
    }

    /// Lets `f` add what [`Router`] offers beyond routes (a body limit, a fallback). Routes
    /// added by `f` are not declared: the guard treats them as writes.
    pub fn map_router(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }
}

impl Routes<()> {
    /// The router with the token check in front of every route; `unauthorized` builds the 401
    /// for a path (in that route family's shape), to which `WWW-Authenticate: Bearer` is added.
    pub fn guard(self, tokens: Arc<Tokens>, unauthorized: fn(&str) -> Response) -> Router {
        let guard = Arc::new(Guard {
            tokens,
            table: self.table,
            unauthorized,
        });
        self.router
            .layer(axum::middleware::from_fn_with_state(guard, check))
    }
}

struct Guard {
    tokens: Arc<Tokens>,
    table: Vec<Route>,
    unauthorized: fn(&str) -> Response,
}

impl Guard {
    /// What the matched route needs: as declared, HEAD as GET, anything undeclared a write.
    fn access(&self, method: &Method, path: &str) -> Access {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.table
            .iter()
            .find(|r| r.method == method && r.path == path)
            .map_or(Access::Write, |r| r.access)
    }
}

async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    // No matched path: no route (the 404 fallback), which holds nothing.
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    let access = guard.access(req.method(), &path);
    if guard.tokens.permits(req.headers(), access) {
        return next.run(req).await;
    }
    let mut resp = (guard.unauthorized)(req.uri().path());
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// A walk over every declared route with every kind of caller, for the tests of each router.
pub mod testing {
    use std::future::Future;

    use http::StatusCode;

    use super::{Access, Route};

    /// The read token the router under test must be configured with.
    pub const READ: &str = "test-read-token";
    /// The write token the router under test must be configured with.
    pub const WRITE: &str = "test-write-token";

    /// The callers of a walk: the bearer token each presents, and its name in messages.
    pub const CALLERS: [(Option<&str>, &str); 4] = [
        (None, "no token"),
        (Some("wrong-token"), "a wrong token"),
        (Some(READ), "the read token"),
        (Some(WRITE), "the write token"),
    ];

    /// Whether a caller presenting `token` must get past the guard of a route needing `access`,
    /// written out as a table, apart from [`super::Tokens::permits`] which it checks.
    pub fn admitted(access: Access, token: Option<&str>, metrics_open: bool) -> bool {
        let (read, write) = (token == Some(READ), token == Some(WRITE));
        match access {
            Access::Open => true,
            Access::Metrics => metrics_open || read || write,
            Access::Read => read || write,
            Access::Write => write,
        }
    }

    /// Calls every route of `table` as every caller (`call` sends the route's sample request
    /// with the token to a router configured with [`READ`] and [`WRITE`]); returns every answer
    /// that broke the rules: a 401 for an admitted caller, anything else for one refused.
    pub async fn walk<F, Fut>(table: &[Route], metrics_open: bool, mut call: F) -> Vec<String>
    where
        F: FnMut(Route, Option<&'static str>) -> Fut,
        Fut: Future<Output = StatusCode>,
    {
        let mut wrong = Vec::new();
        for route in table {
            for (token, who) in CALLERS {
                let status = call(route.clone(), token).await;
                let admitted = admitted(route.access, token, metrics_open);
                if admitted == (status == StatusCode::UNAUTHORIZED) {
                    wrong.push(format!(
                        "{} {} ({}, metrics_open = {metrics_open}) as {who}: {status}",
                        route.method,
                        route.path,
                        route.access.as_str()
                    ));
                }
            }
        }
        wrong
    }

    /// [`walk`] over a router, with `/metrics` both guarded and open: `router_for` builds the
    /// router under test for the tokens, `sample` the request each route is called with (the
    /// caller's bearer token is added to it).
    pub async fn walk_router(
        table: &[Route],
        router_for: impl Fn(super::Tokens) -> axum::Router,
        sample: impl Fn(&Route) -> http::Request<axum::body::Body>,
    ) -> Vec<String> {
        use tower::ServiceExt;
        let mut wrong = Vec::new();
        for metrics_open in [false, true] {
            let tokens = super::Tokens::new(Some(READ.into()), Some(WRITE.into()), metrics_open);
            let app = router_for(tokens);
            let found = walk(table, metrics_open, |route, token| {
                let mut req = sample(&route);
                if let Some(t) = token {
                    let value = format!("Bearer {t}").parse().expect("a header value");
                    req.headers_mut().insert(http::header::AUTHORIZATION, value);
                }
                let app = app.clone();
                async move { app.oneshot(req).await.expect("an answer").status() }
            })
            .await;
            wrong.extend(found);
        }
        wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().expect("header"));
        h
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(bearer_ok(&with("Bearer s3cret"), "s3cret"));
        assert!(!bearer_ok(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_ok(&with("Bearer s3cret2"), "s3cret"));
        assert!(!bearer_ok(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_ok(&with("bearer s3cret"), "s3cret"));
        assert!(!bearer_ok(&HeaderMap::new(), "s3cret"));
    }

    /// Every combination of configured tokens, presented token and access class.
    #[test]
    fn debug_never_shows_a_token() {
        let t = Tokens::new(Some("r3ad".into()), None, false);
        let shown = format!("{t:?}");
        assert_eq!(
            shown,
            "Tokens { read: \"set\", write: \"unset\", metrics_open: false }"
        );
    }

    #[test]
    fn the_rules_of_the_two_tokens() {
        let none = HeaderMap::new();
        let (r, w, x) = (with("Bearer r"), with("Bearer w"), with("Bearer x"));
        let t = |read: Option<&str>, write: Option<&str>, open: bool| {
            Tokens::new(read.map(Into::into), write.map(Into::into), open)
        };
        use Access::*;
        // (tokens, presented, access, allowed)
        let cases = [
            (t(None, None, false), &none, Write, true),
            (t(None, None, false), &none, Read, true),
            (t(Some("r"), None, false), &none, Read, false),
            (t(Some("r"), None, false), &x, Read, false),
            (t(Some("r"), None, false), &r, Read, true),
            (t(Some("r"), None, false), &none, Write, false),
            (t(Some("r"), None, false), &r, Write, true),
            (t(None, Some("w"), false), &none, Read, true),
            (t(None, Some("w"), false), &none, Write, false),
            (t(None, Some("w"), false), &w, Write, true),
            (t(Some("r"), Some("w"), false), &r, Read, true),
            (t(Some("r"), Some("w"), false), &w, Read, true),
            (t(Some("r"), Some("w"), false), &r, Write, false),
            (t(Some("r"), Some("w"), false), &w, Write, true),
            (t(Some("r"), Some("w"), false), &none, Metrics, false),
            (t(Some("r"), Some("w"), false), &r, Metrics, true),
            (t(Some("r"), Some("w"), true), &none, Metrics, true),
            (t(Some("r"), Some("w"), true), &none, Read, false),
            (t(Some("r"), Some("w"), false), &none, Open, true),
            (t(Some(""), Some(""), false), &none, Write, true),
        ];
        for (i, (tokens, headers, access, want)) in cases.iter().enumerate() {
            assert_eq!(
                tokens.permits(headers, *access),
                *want,
                "case {i}: {tokens:?} {headers:?} {access:?}"
            );
        }
    }

    fn unauthorized(path: &str) -> Response {
        axum::response::IntoResponse::into_response(format!("no: {path}"))
    }

    /// The guard runs before the handler, and a route merged in without a declaration needs
    /// the write token.
    #[tokio::test]
    async fn the_guard_answers_before_the_handler_and_fails_closed() {
        use tower::ServiceExt;
        let ran = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = ran.clone();
        let routes = Routes::new()
            .add(Method::GET, "/data/:id", Access::Read, move || {
                let ran = counted.clone();
                async move {
                    ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    "data"
                }
            })
            .map_router(|r| r.route("/undeclared", axum::routing::get(|| async { "x" })));
        assert_eq!(routes.table().len(), 1);
        let tokens = Arc::new(Tokens::new(Some("r".into()), Some("w".into()), false));
        let app = routes.guard(tokens, unauthorized);
        let call = |method: Method, uri: &str, token: Option<&str>| {
            let mut b = Request::builder().method(method).uri(uri);
            if let Some(t) = token {
                b = b.header(AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = b.body(axum::body::Body::empty()).expect("request");
            let app = app.clone();
            async move { app.oneshot(req).await.expect("answer") }
        };
        let denied = call(Method::GET, "/data/1", None).await;
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(denied.headers()[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(call(Method::HEAD, "/data/1", Some("x")).await.status(), 401);
        assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(call(Method::GET, "/data/1", Some("r")).await.status(), 200);
        assert_eq!(call(Method::HEAD, "/data/1", Some("w")).await.status(), 200);
        assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 2);
        // Undeclared: the strictest class.
        assert_eq!(
            call(Method::GET, "/undeclared", Some("r")).await.status(),
            401
        );
        assert_eq!(
            call(Method::GET, "/undeclared", Some("w")).await.status(),
            200
        );
        // A method the route does not serve is a write too, so it says nothing without one.
        assert_eq!(call(Method::POST, "/data/1", Some("r")).await.status(), 401);
        assert_eq!(call(Method::POST, "/data/1", Some("w")).await.status(), 405);
        // No route at all: 404, which holds nothing.
        assert_eq!(call(Method::GET, "/nothing", None).await.status(), 404);
    }
}
