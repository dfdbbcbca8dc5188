//! SQL for the SageMaker models and endpoint configs this service registered.

use super::{Error, Result, SqliteStore};
use crate::clock::{Timestamp, from_db, to_db};
use serde_json::Value;

/// What a registered resource is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnedKind {
    Model,
    EndpointConfig,
}

impl OwnedKind {
    fn as_str(self) -> &'static str {
        match self {
            OwnedKind::Model => "model",
            OwnedKind::EndpointConfig => "endpoint_config",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Owned {
    pub name: String,
    pub spec: Value,
    pub created_at: Timestamp,
}

/// Forgets a registered resource inside a write transaction.
pub(super) async fn forget_in(
    tx: &mut sqlx::SqliteConnection,
    kind: OwnedKind,
    name: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM owned_resources WHERE kind = ?1 AND name = ?2")
        .bind(kind.as_str())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl SqliteStore {
    /// Records (or refreshes) a resource before it is created.
    pub async fn record_owned(
        &self,
        kind: OwnedKind,
        name: &str,
        spec: &Value,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO owned_resources (kind, name, spec, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(spec.to_string())
        .bind(to_db(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn forget_owned(&self, kind: OwnedKind, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        forget_in(&mut tx, kind, name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a resource was registered here.
    pub async fn is_owned(&self, kind: OwnedKind, name: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM owned_resources WHERE kind = ?1 AND name = ?2",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_one(self.reader())
        .await?;
        Ok(n > 0)
    }

    /// Registered resources of a kind, newest first.
    pub async fn list_owned(&self, kind: OwnedKind) -> Result<Vec<Owned>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT name, spec, created_at FROM owned_resources WHERE kind = ?1
             ORDER BY created_at DESC, name LIMIT 1000",
        )
        .bind(kind.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|(name, spec, at)| {
                Ok(Owned {
                    spec: serde_json::from_str(&spec)
                        .map_err(|e| Error::Corrupt(format!("spec: {e}")))?,
                    created_at: from_db(&at)
                        .ok_or_else(|| Error::Corrupt(format!("created_at {at:?}")))?,
                    name,
                })
            })
            .collect()
    }

    /// The registered endpoint configs whose variants use `model`.
    pub async fn configs_using_model(&self, model: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT r.name FROM owned_resources r, json_each(r.spec, '$.ProductionVariants') v
             WHERE r.kind = 'endpoint_config' AND json_extract(v.value, '$.ModelName') = ?1
             ORDER BY r.name",
        )
        .bind(model)
        .fetch_all(self.reader())
        .await?)
    }
}
