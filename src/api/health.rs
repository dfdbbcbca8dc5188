use super::error::STORE_RETRY_AFTER_SECS;
use super::{ApiError, AppState};
use poem_openapi::payload::PlainText;
use poem_openapi::{Object, OpenApi, payload::Json};

pub struct HealthApi(pub Option<AppState>);

#[derive(Object)]
struct Health {
    status: String,
}

#[OpenApi(tag = "super::dto::Tag::Health")]
impl HealthApi {
    /// Liveness: the process is serving HTTP.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
        })
    }

    /// Prometheus metrics: runs by kind and state, transitions, step durations, step errors by
    /// class, AWS calls by operation and outcome, the oldest unfinished run's age, lease takeovers,
    /// List* sweeps, rate-limiter waits, the store's group commits, and which replica answers
    /// (its lease owner id, worker id and store backend).
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self) -> Result<PlainText<String>, ApiError> {
        let state = self
            .0
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("not serving"))?;
        let runs = state.store.count_by_kind_state().await?;
        let oldest = state.store.oldest_unfinished().await?;
        let mut text = crate::metrics::global().render(&runs, oldest, state.clock.now());
        text.push_str(&crate::metrics::render_degraded(
            &state.store.count_degraded().await?,
        ));
        text.push_str(&crate::metrics::render_group_commit(
            state.store.group_stats(),
        ));
        text.push_str(&crate::metrics::render_instance());
        Ok(PlainText(text))
    }

    /// Readiness: the store answers queries and accepts writes, and the engine loop is making
    /// progress. 503 with the reason (and `Retry-After`) otherwise.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self) -> Result<Json<Health>, ApiError> {
        let state = self
            .0
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("not serving"))?;
        state.store.ping().await.map_err(|e| {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::unavailable_for("the store is not reachable", STORE_RETRY_AFTER_SECS)
        })?;
        if let Some(failure) = state.store.write_failure(state.clock.now()).await {
            return Err(ApiError::unavailable_for(
                format!(
                    "the store cannot write since {} ({} failed writes): {}",
                    crate::clock::to_db(failure.since),
                    failure.count,
                    failure.message
                ),
                STORE_RETRY_AFTER_SECS,
            ));
        }
        let r = &state.readiness;
        if let Some(why) = r
            .engine
            .stalled(state.clock.now(), r.started, r.stall_after)
        {
            tracing::warn!(reason = %why, "not ready");
            return Err(ApiError::unavailable_for(why, STORE_RETRY_AFTER_SECS));
        }
        Ok(Json(Health {
            status: "ready".into(),
        }))
    }
}
