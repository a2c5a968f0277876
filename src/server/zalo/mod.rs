//! The hub's Zalo side: OAuth connect, single-flight token refresh, webhook intake and its worker,
//! the outbound sender, the tag sender, history sync and customer profiles.

pub mod oauth;
mod sender;
pub mod sync;
mod tags;
pub mod webhook;

use super::hub::Hub;
use crate::config::ZaloConfig;
use crate::model::*;
use crate::store::sql::connections::TokenError;
use crate::zalo::client::ZaloClient;
use crate::zalo::{human_reason, is_auth_error, ZaloError};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

pub struct ZaloHub {
    pub client: ZaloClient,
    pub config: ZaloConfig,
    pub hub: Arc<Hub>,
    profiles_in_flight: Mutex<HashSet<ConversationId>>,
    writes: sender::SenderWrites,
}

impl ZaloHub {
    /// `None` when the Zalo app is not configured (no `app_id`).
    pub fn new(config: &ZaloConfig, hub: Arc<Hub>) -> Option<Arc<ZaloHub>> {
        if config.app_id.is_empty() {
            return None;
        }
        hub.set_echo_window(std::time::Duration::from_secs(config.echo_window_secs));
        let metrics = hub.metrics.clone();
        let observe: crate::zalo::client::CallObserver =
            Arc::new(move |call, ok, took| metrics.observe_zalo_call(call, ok, took));
        Some(Arc::new(ZaloHub {
            client: ZaloClient::new(config).observed(observe),
            config: config.clone(),
            hub,
            profiles_in_flight: Mutex::new(HashSet::new()),
            writes: sender::SenderWrites::default(),
        }))
    }

    /// Starts the webhook worker and the outbound sender.
    pub fn start_workers(self: &Arc<Self>) {
        tokio::spawn(webhook::run_worker(self.clone()));
        tokio::spawn(sender::run(self.clone()));
        tokio::spawn(tags::run(self.clone()));
    }

    async fn connection(&self, conn_id: &str) -> Result<Connection, ZaloError> {
        self.hub
            .read(|st| st.connection(conn_id).cloned())
            .await
            .ok_or_else(|| ZaloError {
                code: -205,
                message: format!("connection {conn_id} was removed"),
            })
    }

    /// A usable access token, refreshed first when it is about to expire.
    pub async fn access_token(&self, conn_id: &str) -> Result<String, ZaloError> {
        self.token(conn_id, None).await
    }

    /// A token other than `rejected` (which Zalo just refused), refreshed if need be. Zalo's
    /// refresh tokens are single-use, so across all hubs exactly one caller refreshes and stores
    /// the new pair before anyone uses it; the others wait for it (`Db::access_token`).
    async fn token(&self, conn_id: &str, rejected: Option<&str>) -> Result<String, ZaloError> {
        let conn = self.connection(conn_id).await?;
        if conn.status == ConnectionStatus::NeedsReauth {
            return Err(needs_reauth(conn.status_reason.unwrap_or_default()));
        }
        let refresh = |refresh_token: String| async move {
            self.hub.metrics.token_refreshes.inc();
            let t = self.client.refresh(&refresh_token).await?;
            Ok::<_, ZaloError>(TokenPair {
                access_token: t.access_token,
                refresh_token: t.refresh_token,
                access_expires_at: now_ms() + t.expires_in * 1000,
            })
        };
        match self.hub.db().access_token(conn_id, rejected, refresh).await {
            Ok(token) => Ok(token),
            Err(TokenError::Refresh(e)) if e.code == crate::zalo::NETWORK_ERROR => Err(e),
            Err(TokenError::Refresh(e)) => {
                // From here on the page needs reconnecting: this caller fails exactly as the
                // ones after it will (see the status check above).
                let reason = human_reason(e.code, &e.message);
                tracing::warn!(conn_id, code = e.code, "token refresh failed: {reason}");
                let _ = self
                    .hub
                    .set_connection_status(
                        conn_id,
                        ConnectionStatus::NeedsReauth,
                        Some(reason.clone()),
                    )
                    .await;
                Err(needs_reauth(reason))
            }
            Err(TokenError::Store(e)) => Err(ZaloError {
                code: crate::zalo::NETWORK_ERROR,
                message: format!("cannot read the page's token: {e}"),
            }),
        }
    }

    /// Runs a Zalo call with the page's token; on an auth error refreshes once and retries.
    pub async fn with_token<T, F, Fut>(&self, conn_id: &str, call: F) -> Result<T, ZaloError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ZaloError>>,
    {
        let token = self.access_token(conn_id).await?;
        match call(token.clone()).await {
            Err(e) if is_auth_error(e.code) => {
                let fresh = self.token(conn_id, Some(&token)).await?;
                call(fresh).await
            }
            other => other,
        }
    }

    /// Fetches customer profiles (user/detail) in the background, once at a time per conversation.
    pub fn fetch_profiles(self: &Arc<Self>, wanted: Vec<(ConversationId, ConnectionId, String)>) {
        for (conv_id, conn_id, user_id) in wanted {
            if !self.profiles_in_flight.lock().insert(conv_id.clone()) {
                continue;
            }
            let z = self.clone();
            tokio::spawn(async move {
                z.read_profile(&conv_id, &conn_id, &user_id).await;
                z.profiles_in_flight.lock().remove(&conv_id);
            });
        }
    }

    /// Reads a customer's profile (user/detail) and stores it on their conversation; a profile
    /// Zalo will not give is logged and left out.
    pub async fn read_profile(&self, conv_id: &str, conn_id: &str, user_id: &str) {
        let profile = self
            .with_token(conn_id, |t| {
                let client = self.client.clone();
                async move { client.user_detail(&t, user_id).await }
            })
            .await;
        match profile {
            Ok(p) => {
                if let Err(e) = self.hub.set_profile(conv_id, p).await {
                    tracing::warn!(conv_id, "cannot store profile: {e}");
                }
            }
            Err(e) => tracing::info!(
                conv_id,
                "profile not fetched: {}",
                human_reason(e.code, &e.message)
            ),
        }
    }
}

/// The error every Zalo call of a page that needs reconnecting fails with; `why` is the page's
/// status reason (what the refresh or `permission_revoked` said).
fn needs_reauth(why: String) -> ZaloError {
    ZaloError {
        code: -216,
        message: if why.is_empty() {
            "the page needs re-authorisation".into()
        } else {
            why
        },
    }
}
