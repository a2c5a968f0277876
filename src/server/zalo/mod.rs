//! The hub's Zalo side: OAuth connect, single-flight token refresh, webhook intake and its worker,
//! the outbound sender, history sync and customer profiles.

pub mod oauth;
mod sender;
pub mod sync;
pub mod webhook;

use super::hub::{Hub, HubError};
use crate::config::ZaloConfig;
use crate::model::*;
use crate::zalo::client::ZaloClient;
use crate::zalo::{human_reason, is_auth_error, ZaloError};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Notify;

/// Refresh this long before the access token expires.
const REFRESH_MARGIN_MS: Ms = 5 * 60_000;

pub struct ZaloHub {
    pub client: ZaloClient,
    pub config: ZaloConfig,
    pub hub: Arc<Hub>,
    refresh_locks: Mutex<HashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>>,
    pub webhook_ready: Notify,
    profiles_in_flight: Mutex<HashSet<ConversationId>>,
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
            refresh_locks: Mutex::new(HashMap::new()),
            webhook_ready: Notify::new(),
            profiles_in_flight: Mutex::new(HashSet::new()),
        }))
    }

    /// Starts the webhook worker and the outbound sender.
    pub fn start_workers(self: &Arc<Self>) {
        tokio::spawn(webhook::run_worker(self.clone()));
        tokio::spawn(sender::run(self.clone()));
    }

    fn connection(&self, conn_id: &str) -> Result<Connection, ZaloError> {
        self.hub
            .read(|st| st.connection(conn_id).cloned())
            .ok_or_else(|| ZaloError {
                code: -205,
                message: format!("connection {conn_id} was removed"),
            })
    }

    /// A usable access token, refreshed first when it is about to expire.
    pub async fn access_token(&self, conn_id: &str) -> Result<String, ZaloError> {
        let conn = self.connection(conn_id)?;
        if conn.status == ConnectionStatus::NeedsReauth {
            return Err(needs_reauth(conn.status_reason.unwrap_or_default()));
        }
        if conn.tokens.access_expires_at - now_ms() < REFRESH_MARGIN_MS {
            return self.refresh(conn_id, &conn.tokens.access_token).await;
        }
        Ok(conn.tokens.access_token)
    }

    /// Refreshes under the page's single-flight lock. Whoever waited on the lock finds the pair
    /// already replaced and uses it: Zalo's refresh tokens are single-use, so two refreshes would
    /// burn the grant. The new pair is durable before anyone uses it.
    pub async fn refresh(
        &self,
        conn_id: &str,
        stale_access_token: &str,
    ) -> Result<String, ZaloError> {
        let lock = self
            .refresh_locks
            .lock()
            .entry(conn_id.to_string())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let conn = self.connection(conn_id)?;
        if conn.tokens.access_token != stale_access_token
            && conn.tokens.access_expires_at - now_ms() >= REFRESH_MARGIN_MS
        {
            return Ok(conn.tokens.access_token);
        }
        if conn.status == ConnectionStatus::NeedsReauth {
            return Err(needs_reauth(conn.status_reason.unwrap_or_default()));
        }
        self.hub.metrics.token_refreshes.inc();
        match self.client.refresh(&conn.tokens.refresh_token).await {
            Ok(t) => {
                let tokens = TokenPair {
                    access_token: t.access_token.clone(),
                    refresh_token: t.refresh_token,
                    access_expires_at: now_ms() + t.expires_in * 1000,
                };
                self.hub
                    .store_tokens(conn_id, tokens)
                    .await
                    .map_err(internal)?;
                Ok(t.access_token)
            }
            Err(e) if e.code == crate::zalo::NETWORK_ERROR => Err(e),
            Err(e) => {
                // From here on the page needs reconnecting: this caller fails exactly as the
                // ones after it will (see `access_token`).
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
                let fresh = self.refresh(conn_id, &token).await?;
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
                let profile = z
                    .with_token(&conn_id, |t| {
                        let client = z.client.clone();
                        let user_id = user_id.clone();
                        async move { client.user_detail(&t, &user_id).await }
                    })
                    .await;
                match profile {
                    Ok(p) => {
                        let customer = Customer {
                            user_id: p.user_id,
                            display_name: crate::model::text::nfc(&p.display_name),
                            avatar: p.avatar,
                            fetched_at: now_ms(),
                        };
                        if let Err(e) = z.hub.set_customer(&conv_id, customer).await {
                            tracing::warn!(conv_id, "cannot store profile: {e}");
                        }
                    }
                    Err(e) => tracing::info!(
                        conv_id,
                        "profile not fetched: {}",
                        human_reason(e.code, &e.message)
                    ),
                }
                z.profiles_in_flight.lock().remove(&conv_id);
            });
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

fn internal(e: HubError) -> ZaloError {
    ZaloError {
        code: crate::zalo::NETWORK_ERROR,
        message: e.to_string(),
    }
}
