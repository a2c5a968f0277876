//! Pages (OA connections) and their OAuth tokens.

use super::{Db, StoreError};
use crate::model::{now_ms, Ms, TokenPair};

/// A token within this much of its expiry is refreshed before use.
pub const TOKEN_MARGIN_MS: Ms = 5 * 60_000;
/// How long a refresh may take before another hub may try (the refresher died).
const REFRESH_LEASE_MS: Ms = 30_000;

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The refresh itself failed (Zalo refused it: the page needs reconnecting).
    #[error("the token refresh failed")]
    Refresh(E),
}

impl<E> From<sqlx::Error> for TokenError<E> {
    fn from(e: sqlx::Error) -> Self {
        TokenError::Store(e.into())
    }
}

impl Db {
    /// A usable access token for the page. While the stored one is valid (and is not the one Zalo
    /// just refused, `rejected`), it is returned as is; otherwise exactly one caller across all
    /// hubs refreshes it — the one whose conditional UPDATE takes the lease on the pair it saw —
    /// and stores the new pair before anyone uses it; the others wait for that pair.
    pub async fn access_token<E, Fut>(
        &self,
        connection_id: &str,
        rejected: Option<&str>,
        refresh: impl Fn(String) -> Fut,
    ) -> Result<String, TokenError<E>>
    where
        Fut: std::future::Future<Output = Result<TokenPair, E>>,
    {
        loop {
            let now = now_ms();
            let stored: Option<(String, i64, i64)> = crate::on_engine!(readers self, pool => {
                sqlx::query_as(
                    "SELECT access_token, access_expires_at, refresh_lease_until \
                     FROM connection_tokens WHERE connection_id = $1",
                )
                .bind(connection_id)
                .fetch_optional(pool)
                .await?
            });
            let (access, expires_at, lease_until) =
                stored.ok_or_else(|| StoreError::NotFound(format!("page {connection_id}")))?;
            if expires_at > now + TOKEN_MARGIN_MS && Some(access.as_str()) != rejected {
                return Ok(access);
            }
            let leased: Option<String> = if lease_until < now {
                crate::on_engine!(self, pool => {
                    sqlx::query_scalar(
                        "UPDATE connection_tokens SET refresh_lease_until = $2 \
                         WHERE connection_id = $1 AND access_token = $3 \
                         AND refresh_lease_until < $4 RETURNING refresh_token",
                    )
                    .bind(connection_id)
                    .bind(now + REFRESH_LEASE_MS)
                    .bind(&access)
                    .bind(now)
                    .fetch_optional(pool)
                    .await?
                })
            } else {
                None
            };
            let Some(refresh_token) = leased else {
                // Another hub refreshes (or just did): read again shortly.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            };
            let fresh = refresh(refresh_token).await;
            let pair = fresh.as_ref().ok();
            crate::on_engine!(self, pool => {
                match pair {
                    Some(pair) => sqlx::query(
                        "UPDATE connection_tokens SET access_token = $2, refresh_token = $3, \
                         access_expires_at = $4, updated_at = $5, refresh_lease_until = 0 \
                         WHERE connection_id = $1",
                    )
                    .bind(connection_id)
                    .bind(&pair.access_token)
                    .bind(&pair.refresh_token)
                    .bind(pair.access_expires_at)
                    .bind(now_ms())
                    .execute(pool)
                    .await
                    .map(drop)?,
                    None => sqlx::query(
                        "UPDATE connection_tokens SET refresh_lease_until = 0 WHERE connection_id = $1",
                    )
                    .bind(connection_id)
                    .execute(pool)
                    .await
                    .map(drop)?,
                }
            });
            return fresh
                .map(|pair| pair.access_token)
                .map_err(TokenError::Refresh);
        }
    }
}
