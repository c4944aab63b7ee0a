//! Who may read the dashboard: the holder of the token derived from the cluster secret.
//!
//! - `?token=T` on any page: checked, then answered with a redirect to the same page
//!   without the token and an HTTP-only cookie carrying it (so the token leaves the
//!   address bar and the browser's history);
//! - the cookie on later requests;
//! - `Authorization: Bearer T` (scrapers, scripts); `/metrics` also takes
//!   `--metrics-token`.
//!
//! Anything else gets 401 with a line saying where the link comes from.

use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use shoal_comm::auth::tokens_match;
use std::sync::Arc;

/// The cookie holding the token.
pub const COOKIE: &str = "shoal_dashboard_token";

/// Let the request through if it carries a valid token; see the module documentation.
pub(crate) async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let access = &state.access;
    if let Some(given) = query_token(request.uri()) {
        if !tokens_match(&given, &access.token) {
            return unauthorized("the token in this link is not this cluster's");
        }
        return with_cookie_redirect(request.uri(), &access.token);
    }
    let headers = request.headers();
    let metrics = request.uri().path() == "/metrics";
    let accepted = |t: &str| {
        tokens_match(t, &access.token)
            || (metrics
                && access
                    .metrics_token
                    .as_deref()
                    .is_some_and(|m| tokens_match(t, m)))
    };
    let by_cookie = cookie_token(headers).is_some_and(|t| tokens_match(&t, &access.token));
    let by_bearer = bearer_token(headers).is_some_and(accepted);
    if by_cookie || by_bearer {
        next.run(request).await
    } else {
        unauthorized("no valid token")
    }
}

fn unauthorized(why: &str) -> Response {
    let body = format!(
        "401 Unauthorized: {why}.\nOpen the link `shoal status --scheduler-file F` prints (or Python's `client.dashboard_link`): it carries the cluster's token (?token=...). Scrapers send it as `Authorization: Bearer TOKEN`.\n"
    );
    let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The `token` parameter of the query string, if any.
fn query_token(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// 303 to the same path and the rest of its query, setting the cookie.
fn with_cookie_redirect(uri: &Uri, token: &str) -> Response {
    let rest: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k != "token")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut location = uri.path().to_string();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(rest)
                .finish(),
        );
    }
    let cookie = Cookie::build((COOKIE, token.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        headers.insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_query_cookie_and_bearer() {
        let uri: Uri = "/workers?sort=name&token=ab%2Bc".parse().unwrap();
        assert_eq!(query_token(&uri).as_deref(), Some("ab+c"));
        let redirect = with_cookie_redirect(&uri, "t0k");
        assert_eq!(redirect.status(), StatusCode::SEE_OTHER);
        assert_eq!(redirect.headers()[header::LOCATION], "/workers?sort=name");
        let cookie = redirect.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.starts_with("shoal_dashboard_token=t0k"), "{cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");

        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; shoal_dashboard_token=xyz"),
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  secret "),
        );
        assert_eq!(cookie_token(&headers).as_deref(), Some("xyz"));
        assert_eq!(bearer_token(&headers), Some("secret"));
        assert_eq!(query_token(&"/status".parse().unwrap()), None);
    }
}
