//! Accounts, connections and rules.

use super::*;
use crate::wire::{NewAccount, RuleInput};

/// An OAuth consent in progress: its PKCE verifier and who started it, under its `state`. Kept in
/// the store, so a hub restarted while someone is on Zalo's consent page still completes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingConsent {
    pub verifier: String,
    pub account_id: AccountId,
    pub expires_at: Ms,
}

impl Hub {
    /// Remembers a consent until it completes or expires; drops the expired ones.
    pub async fn begin_consent(&self, state: &str, consent: PendingConsent) -> HubResult<()> {
        self.write(async |_, tx| {
            let c = &consent;
            let r = tx
                .db
                .put_consent(state, &c.verifier, &c.account_id, c.expires_at);
            r.await.map_err(store_error)
        })
        .await
    }

    /// Takes a consent out (single use): None when unknown, already used or expired.
    pub async fn take_consent(&self, state: &str) -> HubResult<Option<PendingConsent>> {
        self.write(async |_, tx| {
            let taken = tx.db.take_consent(state).await.map_err(store_error)?;
            Ok(taken
                .map(|(verifier, account_id, expires_at)| PendingConsent {
                    verifier,
                    account_id,
                    expires_at,
                })
                .filter(|c| c.expires_at > now_ms()))
        })
        .await
    }

    /// Creates an account and returns it with its bearer token (only the hash is stored).
    pub async fn create_account(&self, input: NewAccount) -> HubResult<(Account, String)> {
        self.write(async |st, tx| create_account(st, tx, input))
            .await
    }

    /// Issues a new token; the old one stops working, and streams opened with it are closed.
    pub async fn rotate_token(&self, handle: &str) -> HubResult<(Account, String)> {
        let (account, token) = self
            .write(async |st, tx| rotate_token(st, tx, handle))
            .await?;
        let _ = self.credentials_changed.send(account.id.clone());
        Ok((account, token))
    }

    /// Changes an account's availability; becoming available drains its round-robin queues.
    pub async fn set_availability(
        &self,
        who: &str,
        availability: Availability,
    ) -> HubResult<Account> {
        let metrics = self.metrics.clone();
        self.write(async |st, tx| {
            let mut account = st
                .accounts
                .get(who)
                .cloned()
                .ok_or_else(|| HubError::NotFound(format!("account {who} not found")))?;
            account.availability = availability;
            st.put_account(tx, account.clone());
            if availability == Availability::Available {
                let now = now_ms();
                let rules: Vec<RuleId> = st
                    .rules
                    .values()
                    .filter(|r| r.members.contains(&account.id))
                    .map(|r| r.id.clone())
                    .collect();
                for r in rules {
                    st.drain_rule_queue(tx, &r, now, &metrics);
                }
            }
            Ok(account)
        })
        .await
    }

    /// Creates a connection for an OA, or refreshes the tokens of an existing one keeping its
    /// settings (reconnect). New pages start "only me" until the admin chooses the chat permission.
    pub async fn upsert_connection(
        &self,
        oa: OaInfo,
        connector: &str,
        tokens: TokenPair,
    ) -> HubResult<(Connection, bool)> {
        self.write(async |st, tx| upsert_connection(st, tx, oa, connector, tokens))
            .await
    }

    pub async fn set_chat_mode(&self, conn_id: &str, mode: ChatMode) -> HubResult<Connection> {
        let metrics = self.metrics.clone();
        self.write(async |st, tx| {
            let mut conn = st
                .connections
                .get(conn_id)
                .cloned()
                .ok_or_else(|| HubError::NotFound(format!("connection {conn_id} not found")))?;
            if mode == ChatMode::OnlyMe {
                if let Some(rule_id) = conn.rule_id.take() {
                    remove_source(st, tx, &rule_id, conn_id);
                }
            }
            conn.chat_mode = mode;
            st.put_connection(tx, conn.clone(), None);
            reconcile_page(st, tx, conn_id, &metrics);
            Ok(conn)
        })
        .await
    }

    /// Updates a connection's status (token trouble, revoked grant) and tells consoles.
    pub async fn set_connection_status(
        &self,
        conn_id: &str,
        status: ConnectionStatus,
        reason: Option<String>,
    ) -> HubResult<Connection> {
        self.write(async |st, tx| {
            let mut conn = st
                .connections
                .get(conn_id)
                .cloned()
                .ok_or_else(|| HubError::NotFound(format!("connection {conn_id} not found")))?;
            conn.status = status;
            if reason.is_some() {
                conn.last_error = reason.clone();
            }
            conn.status_reason = reason;
            st.put_connection(tx, conn.clone(), None);
            Ok(conn)
        })
        .await
    }

    /// Removes a page, its conversations and their messages.
    pub async fn delete_connection(&self, conn_id: &str) -> HubResult<()> {
        let blobs = self
            .write(async |st, tx| {
                let conn =
                    st.connections.get(conn_id).cloned().ok_or_else(|| {
                        HubError::NotFound(format!("connection {conn_id} not found"))
                    })?;
                let attachments = tx.db.job_attachments_of_page(conn_id).await;
                let blobs: Vec<String> = attachments
                    .map_err(store_error)?
                    .iter()
                    .filter_map(|a| {
                        serde_json::from_str::<super::conversations::JobAttachment>(a).ok()
                    })
                    .map(|a| a.blob)
                    .collect();
                if let Some(rule_id) = &conn.rule_id {
                    remove_source(st, tx, rule_id, conn_id);
                }
                // Its conversations, messages and jobs go with it (the foreign keys cascade).
                tx.touched = true;
                st.remove_connection(conn_id);
                tx.deleted_connections.push(conn_id.to_string());
                let mut audience = vec![conn.connector.clone()];
                audience.push(EVERYONE.into());
                tx.emit(EventBody::ConnectionRemoved { id: conn.id }, audience);
                Ok(blobs)
            })
            .await?;
        for blob in blobs {
            self.blobs.remove(&blob);
        }
        Ok(())
    }

    pub async fn create_rule(&self, input: RuleInput) -> HubResult<Rule> {
        let metrics = self.metrics.clone();
        self.write(async |st, tx| save_rule(st, tx, None, input, &metrics))
            .await
    }

    pub async fn update_rule(&self, id: &str, input: RuleInput) -> HubResult<Rule> {
        let metrics = self.metrics.clone();
        self.write(async |st, tx| save_rule(st, tx, Some(id), input, &metrics))
            .await
    }

    /// Deletes a rule; its pages stay shared with no rule (their waiting conversations are for
    /// admins) and their conversations are reconciled.
    pub async fn delete_rule(&self, id: &str) -> HubResult<()> {
        let metrics = self.metrics.clone();
        self.write(async |st, tx| {
            let rule = st
                .rules
                .remove(id)
                .ok_or_else(|| HubError::NotFound(format!("rule {id} not found")))?;
            tx.touched = true;
            for source in &rule.sources {
                if let Some(mut conn) = st.connections.get(source).cloned() {
                    conn.rule_id = None;
                    st.put_connection(tx, conn, None);
                }
            }
            tx.deleted_rules.push(id.to_string());
            tx.emit(
                EventBody::RuleRemoved { id: id.to_string() },
                rule.members.clone(),
            );
            st.tell_former_members(tx, &rule.sources, &rule.members);
            for source in &rule.sources {
                reconcile_page(st, tx, source, &metrics);
            }
            Ok(())
        })
        .await
    }
}

/// What the hub knows of an OA from Zalo's `getoa`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OaInfo {
    pub oa_id: String,
    pub name: String,
    pub avatar: String,
    pub category: String,
}

fn create_account(st: &mut State, tx: &mut Tx, input: NewAccount) -> HubResult<(Account, String)> {
    let email = input.email.trim().to_string();
    let username = input.username.trim().to_string();
    let name = crate::model::text::nfc(input.name.trim());
    if !email.contains('@') || email.len() > 254 {
        return Err(HubError::Invalid(format!(
            "invalid email address {email:?}"
        )));
    }
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(HubError::Invalid(
            "username must be 1-64 letters, digits, '.', '_' or '-'".into(),
        ));
    }
    if name.is_empty() {
        return Err(HubError::Invalid("name must not be empty".into()));
    }
    for handle in [&email, &username] {
        if let Some(other) = st.find_account(handle) {
            return Err(HubError::Conflict {
                code: "account_exists",
                message: format!("{handle} is already used by account {}", other.username),
                winner: None,
                rule: None,
            });
        }
    }
    let account = Account {
        id: st.next_id('a'),
        email,
        username,
        name,
        role: input.role,
        availability: Availability::Available,
        created_at: now_ms(),
    };
    let token = st.put_credential(tx, &account.id);
    st.put_account(tx, account.clone());
    Ok((account, token))
}

fn rotate_token(st: &mut State, tx: &mut Tx, handle: &str) -> HubResult<(Account, String)> {
    let account = st
        .accounts
        .get(handle)
        .or_else(|| st.find_account(handle))
        .cloned()
        .ok_or_else(|| HubError::NotFound(format!("account {handle} not found")))?;
    let token = st.put_credential(tx, &account.id);
    Ok((account, token))
}

fn upsert_connection(
    st: &mut State,
    tx: &mut Tx,
    oa: OaInfo,
    connector: &str,
    tokens: TokenPair,
) -> HubResult<(Connection, bool)> {
    if !st.accounts.contains_key(connector) {
        return Err(HubError::NotFound(format!("account {connector} not found")));
    }
    let now = now_ms();
    let (conn, created) = match st.connection_by_oa(&oa.oa_id).cloned() {
        Some(mut conn) => {
            conn.name = oa.name;
            conn.avatar = oa.avatar;
            conn.category = oa.category;
            conn.tokens = tokens;
            conn.last_connected_at = now;
            conn.status = ConnectionStatus::Connected;
            conn.status_reason = None;
            (conn, false)
        }
        None => (
            Connection {
                id: st.next_id('p'),
                oa_id: oa.oa_id,
                name: oa.name,
                avatar: oa.avatar,
                category: oa.category,
                connector: connector.to_string(),
                connected_at: now,
                last_connected_at: now,
                chat_mode: ChatMode::OnlyMe,
                rule_id: None,
                status: ConnectionStatus::Connected,
                status_reason: None,
                tokens,
                last_event_at: None,
                last_error: None,
            },
            true,
        ),
    };
    // The secrets go to the database only; memory knows when the access token expires.
    let mut conn = conn;
    let tokens = std::mem::take(&mut conn.tokens);
    conn.tokens.access_expires_at = tokens.access_expires_at;
    tx.connection_tokens.insert(conn.id.clone(), tokens);
    st.put_connection(tx, conn.clone(), Some(connector.to_string()));
    Ok((conn, created))
}

fn remove_source(st: &mut State, tx: &mut Tx, rule_id: &str, conn_id: &str) {
    if let Some(mut rule) = st.rules.get(rule_id).cloned() {
        rule.sources.retain(|s| s != conn_id);
        rule.updated_at = now_ms();
        let before = rule.members.clone();
        st.put_rule(tx, rule, before);
    }
}

/// After a page's routing changed: conversations whose assignee is no longer eligible are routed
/// again, longest waiting first, and so are waiting ones on a page that is now "only me". The
/// rest of a rule's queue is left to `drain_rule_queue`, which takes it oldest first.
fn reconcile_page(st: &mut State, tx: &mut Tx, conn_id: &str, metrics: &Metrics) {
    let Some(conn) = st.connections.get(conn_id) else {
        return;
    };
    let page = st.page_of(conn);
    let mut stale: Vec<&Conversation> = st
        .conversations
        .values()
        .filter(|c| {
            c.connection_id == conn_id
                && c.status == ConvStatus::Open
                && match c.state {
                    ConvState::Assigned => !routing::keeps_assignee(page, c, &|a| st.is_admin(a)),
                    ConvState::Unclaimed => page.chat_mode == ChatMode::OnlyMe,
                    ConvState::Unattended => false,
                }
        })
        .collect();
    stale.sort_by(|a, b| queue_order(a).cmp(&queue_order(b)));
    let stale: Vec<ConversationId> = stale.iter().map(|c| c.id.clone()).collect();
    let now = now_ms();
    for id in stale {
        let mut conv = st.conversations[&id].clone();
        let before = st.conversation_audience(&conv);
        st.route(tx, &mut conv, now, metrics);
        st.put_conversation(tx, conv, before);
    }
}

fn save_rule(
    st: &mut State,
    tx: &mut Tx,
    id: Option<&str>,
    input: RuleInput,
    metrics: &Metrics,
) -> HubResult<Rule> {
    let now = now_ms();
    let existing = match id {
        Some(id) => Some(
            st.rules
                .get(id)
                .cloned()
                .ok_or_else(|| HubError::NotFound(format!("rule {id} not found")))?,
        ),
        None => None,
    };
    let name = crate::model::text::nfc(input.name.trim());
    if name.is_empty() || name.chars().count() > 200 {
        return Err(HubError::Invalid(
            "rule name must be 1-200 characters".into(),
        ));
    }
    let mut sources: Vec<ConnectionId> = Vec::new();
    for s in &input.sources {
        if !sources.contains(s) {
            sources.push(s.clone());
        }
    }
    if sources.is_empty() {
        return Err(HubError::Invalid(
            "a rule needs at least one source page".into(),
        ));
    }
    for s in &sources {
        let conn = st
            .connections
            .get(s)
            .ok_or_else(|| HubError::Invalid(format!("unknown source page {s}")))?;
        if let Some(other) = &conn.rule_id {
            if Some(other.as_str()) != id {
                let rule = st.rule_ref(other);
                return Err(HubError::Conflict {
                    code: "rule_conflict",
                    message: format!(
                        "page {} already belongs to rule \"{}\" — a page can be in at most one rule",
                        conn.name,
                        rule.as_ref().map(|r| r.name.as_str()).unwrap_or(other)
                    ),
                    winner: None,
                    rule,
                });
            }
        }
    }
    let members = st.resolve_members(&input.members)?;
    if members.is_empty() {
        return Err(HubError::Invalid("a rule needs at least one member".into()));
    }

    let rule_id = match &existing {
        Some(r) => r.id.clone(),
        None => st.next_id('r'),
    };
    let old_sources = existing
        .as_ref()
        .map(|r| r.sources.clone())
        .unwrap_or_default();
    let old_members = existing
        .as_ref()
        .map(|r| r.members.clone())
        .unwrap_or_default();
    let rule = Rule {
        id: rule_id.clone(),
        name,
        sources: sources.clone(),
        members: members.clone(),
        method: input.method,
        old_conversations: input.old_conversations,
        cursor: existing.as_ref().and_then(|r| r.cursor.clone()),
        created_at: existing.as_ref().map(|r| r.created_at).unwrap_or(now),
        updated_at: now,
    };
    st.put_rule(tx, rule.clone(), old_members.clone());

    // Pages leaving the rule: their conversations are routed as the page now says.
    let leaving: Vec<ConnectionId> = old_sources
        .iter()
        .filter(|s| !sources.contains(s))
        .cloned()
        .collect();
    for s in &leaving {
        if let Some(mut conn) = st.connections.get(s).cloned() {
            conn.rule_id = None;
            st.put_connection(tx, conn, None);
        }
    }
    // Pages joining it become shared.
    for s in &sources {
        let mut conn = st.connections[s].clone();
        if conn.rule_id.as_deref() != Some(&rule_id) || conn.chat_mode != ChatMode::Shared {
            conn.rule_id = Some(rule_id.clone());
            conn.chat_mode = ChatMode::Shared;
            st.put_connection(tx, conn, None);
        }
    }

    // Members leaving the rule leave their open conversations unattended.
    let removed: HashSet<&AccountId> = old_members
        .iter()
        .filter(|m| !members.contains(m))
        .collect();
    let orphaned: Vec<ConversationId> = st
        .conversations
        .values()
        .filter(|c| {
            old_sources.contains(&c.connection_id)
                && sources.contains(&c.connection_id)
                && c.status == ConvStatus::Open
                && c.state == ConvState::Assigned
                && c.assignee.as_ref().is_some_and(|a| removed.contains(a))
        })
        .map(|c| c.id.clone())
        .collect();
    for id in orphaned {
        let mut conv = st.conversations[&id].clone();
        let before = st.conversation_audience(&conv);
        conv.assign(
            None,
            ConvState::Unattended,
            None,
            AssignReason::MemberRemoved,
            now,
        );
        st.put_conversation(tx, conv, before);
    }

    // Removed members stop seeing the queue of the rule's pages (before and after the save).
    let removed: Vec<AccountId> = removed.into_iter().cloned().collect();
    let pages: Vec<ConnectionId> = sources.iter().chain(&leaving).cloned().collect();
    st.tell_former_members(tx, &pages, &removed);
    // Conversations held by someone no longer eligible (e.g. the connector of a page that was
    // "only me", or a member on a page that left the rule) are routed again.
    for s in &pages {
        reconcile_page(st, tx, s, metrics);
    }

    apply_old_conversations(st, tx, &rule_id, now, metrics);
    st.drain_rule_queue(tx, &rule_id, now, metrics);
    Ok(st.rules[&rule_id].clone())
}

/// "Xử lý hội thoại cũ": distributes the selected unattended conversations of the rule's pages.
pub(super) fn apply_old_conversations(
    st: &mut State,
    tx: &mut Tx,
    rule_id: &str,
    now: Ms,
    metrics: &Metrics,
) {
    let rule = st.rules[rule_id].clone();
    let mut selected: Vec<&Conversation> = st
        .conversations
        .values()
        .filter(|c| {
            rule.sources.contains(&c.connection_id)
                && routing::old_conversation_selected(rule.old_conversations, c, now)
        })
        .collect();
    selected.sort_by_key(|c| (c.last_interaction_at.unwrap_or(0), c.id.clone()));
    let ids: Vec<ConversationId> = selected.iter().map(|c| c.id.clone()).collect();
    for id in ids {
        let mut conv = st.conversations[&id].clone();
        let before = st.conversation_audience(&conv);
        let cursor = st.rules[rule_id].cursor.clone();
        let next = match rule.method {
            Method::RoundRobin => {
                routing::next_round_robin(&rule.members, cursor.as_deref(), &|m| st.is_available(m))
            }
            Method::SelfClaim => None,
        };
        let turn_of = next.is_some().then_some(rule_id);
        let reason = AssignReason::OldConversations;
        st.land(tx, &mut conv, next, None, reason, turn_of, now, metrics);
        st.put_conversation(tx, conv, before);
    }
}
