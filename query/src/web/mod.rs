//! The web page and what it shows: the page is one self-contained file compiled into the
//! binary (no CDN, works offline), and it opens on the dashboards shipped in
//! `grafana/dashboards/`, compiled in too, so the page and Grafana draw the same panels from the
//! same JSON.
//!
//! | route | what |
//! |---|---|
//! | `GET /`, `/index.html` | the page (open: it holds no data) |
//! | `GET /api/v1/dashboards` | `{"dashboards": [{"uid", "title", "description", "tags"}]}`, the overview first |
//! | `GET /api/v1/dashboards/{uid}` | that dashboard's Grafana JSON, as shipped |

use axum::extract::Path;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tally_common::auth::{Access, Routes};

use crate::api_error::ApiError;

/// The page.
const WEB_PAGE: &str = include_str!("index.html");

/// The shipped dashboards (file name, JSON), in the order the page's picker lists them: the
/// incident overview first. A test keeps this list and `grafana/dashboards/` in step.
pub(crate) const DASHBOARDS: &[(&str, &str)] = &[
    (
        "overview.json",
        include_str!("../../../grafana/dashboards/overview.json"),
    ),
    (
        "beacons.json",
        include_str!("../../../grafana/dashboards/beacons.json"),
    ),
    (
        "status.json",
        include_str!("../../../grafana/dashboards/status.json"),
    ),
    (
        "latency.json",
        include_str!("../../../grafana/dashboards/latency.json"),
    ),
    (
        "health.json",
        include_str!("../../../grafana/dashboards/health.json"),
    ),
];

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/", Access::Open, web_page)
        .add(Method::GET, "/index.html", Access::Open, web_page)
        .add(Method::GET, "/api/v1/dashboards", Access::Read, list)
        .add(Method::GET, "/api/v1/dashboards/:uid", Access::Read, one)
}

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

/// The dashboards, parsed (a test proves each one is JSON).
fn parsed() -> impl Iterator<Item = Value> {
    DASHBOARDS
        .iter()
        .filter_map(|(_, text)| serde_json::from_str::<Value>(text).ok())
}

async fn list() -> Response {
    let list: Vec<Value> = parsed()
        .map(|d| {
            json!({
                "uid": d["uid"],
                "title": d["title"],
                "description": d["description"],
                "tags": d["tags"],
            })
        })
        .collect();
    Json(json!({ "dashboards": list })).into_response()
}

async fn one(Path(uid): Path<String>) -> Response {
    match parsed().find(|d| d["uid"] == uid.as_str()) {
        Some(d) => Json(d).into_response(),
        None => ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no dashboard with uid {uid}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `grafana/dashboards/` is compiled in and every compiled-in one is a file
    /// there, byte for byte; each is JSON with a unique uid.
    #[test]
    fn the_compiled_in_dashboards_are_the_shipped_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../grafana/dashboards");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("grafana/dashboards")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        files.sort();
        let mut listed: Vec<String> = DASHBOARDS.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(
            files, listed,
            "add the new dashboard to DASHBOARDS (or remove it)"
        );
        let mut uids = std::collections::BTreeSet::new();
        for (name, text) in DASHBOARDS {
            let on_disk = std::fs::read_to_string(format!("{dir}/{name}")).expect("read");
            assert_eq!(&on_disk, text, "{name}");
            let d: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let uid = d["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no uid"));
            assert!(uids.insert(uid.to_owned()), "{name}: uid {uid} twice");
        }
        assert_eq!(parsed().count(), DASHBOARDS.len());
    }

    #[tokio::test]
    async fn the_list_starts_with_the_overview_and_each_answers_by_uid() {
        let (status, _, body) = crate::api_error::read_response(list().await).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["dashboards"][0]["uid"], "tally-overview");
        assert_eq!(
            v["dashboards"].as_array().map(Vec::len),
            Some(DASHBOARDS.len())
        );
        let (status, _, body) =
            crate::api_error::read_response(one(Path("tally-latency".into())).await).await;
        assert_eq!(status, 200);
        let d: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(d["title"], "Latency percentiles");
        let (status, _, body) =
            crate::api_error::read_response(one(Path("nope".into())).await).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("no dashboard with uid nope"), "{body}");
    }
}
