//! The pages, their script and style: compiled into the binary (compute nodes have no
//! internet, so nothing comes from a CDN). Charts are plain SVG and canvas drawn by
//! `app.js`; no third-party code.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

const STATUS: &str = include_str!("../assets/status.html");
const WORKERS: &str = include_str!("../assets/workers.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

pub(crate) async fn index() -> Redirect {
    Redirect::to("/status")
}

pub(crate) async fn status() -> Html<&'static str> {
    Html(STATUS)
}

pub(crate) async fn workers() -> Html<&'static str> {
    Html(WORKERS)
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}
