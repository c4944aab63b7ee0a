//! shoal's web dashboard and Prometheus endpoint, served by the scheduler on its own port.
//!
//! The scheduler publishes a [`Snapshot`] a few times a second (aggregated: its cost does
//! not grow with the number of tasks); this crate only reads those, so no HTTP request
//! ever reaches the scheduler's loop.
//!
//! - [`auth`]: the token derived from the cluster secret, the HTTP-only cookie, bearer
//!   tokens for scrapers.
//! - [`feed`]: turns snapshots into the pages' live updates (once per snapshot, whatever
//!   the number of open pages) and keeps the history charts draw from.
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`pages`]: the HTML, script and style compiled into the binary.

pub mod auth;
pub mod feed;
pub mod metrics;
pub mod pages;

use axum::routing::get;
use axum::Router;
use shoal_runtime::scheduler::snapshot::Snapshot;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Who may read the dashboard.
#[derive(Clone)]
pub struct Access {
    /// The token the pages and `/metrics` accept (derived from the cluster secret).
    pub token: String,
    /// A further token `/metrics` accepts (`--metrics-token`), for scrapers.
    pub metrics_token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access(..)")
    }
}

/// A bound dashboard, ready to serve.
pub struct Dashboard {
    listener: TcpListener,
    access: Access,
}

/// What the handlers share.
pub(crate) struct AppState {
    pub access: Access,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub feed: feed::Feed,
}

impl Dashboard {
    /// Bind the dashboard's port (before the scheduler writes its file, which names it).
    ///
    /// # Errors
    /// The address is in use or not on this machine.
    pub async fn bind(address: SocketAddr, access: Access) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Dashboard { listener, access })
    }

    /// The port bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// Serve until the task is aborted (the scheduler stopped).
    ///
    /// # Errors
    /// Accepting connections failed.
    pub async fn serve(self, snapshots: watch::Receiver<Arc<Snapshot>>) -> std::io::Result<()> {
        let port = self.port();
        let feed = feed::Feed::start(snapshots.clone());
        let state = Arc::new(AppState {
            access: self.access,
            snapshots,
            feed,
        });
        let app = router(state);
        tracing::info!(port, "dashboard listening");
        axum::serve(self.listener, app).await
    }
}

fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/", get(pages::index))
        .route("/status", get(pages::status))
        .route("/workers", get(pages::workers))
        .route("/static/{file}", get(pages::asset))
        .route("/api/snapshot", get(feed::snapshot_json))
        .route("/events", get(feed::events))
        .route("/metrics", get(metrics::endpoint))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    protected.with_state(state)
}
