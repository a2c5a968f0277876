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

const CONSENT_PREFIX: &str = "oauth/";

impl Hub {
    /// Remembers a consent until it completes or expires; drops the expired ones.
    pub async fn begin_consent(&self, state: &str, consent: PendingConsent) -> HubResult<()> {
        let store = self.store.clone();
        self.write(|_, tx| {
            let now = now_ms();
            let prefix = CONSENT_PREFIX.as_bytes();
            for (key, value) in store.range(prefix, &prefix_end(prefix), false, usize::MAX)? {
                let expired = serde_json::from_slice::<PendingConsent>(&value)
                    .map_or(true, |c| c.expires_at <= now);
                if expired {
                    tx.batch.delete(key);
                }
            }
            tx.batch
                .put_json(format!("{CONSENT_PREFIX}{state}"), &consent);
            Ok(())
        })
        .await
    }

    /// Takes a consent out (single use): None when unknown, already used or expired.
    pub async fn take_consent(&self, state: &str) -> HubResult<Option<PendingConsent>> {
        let store = self.store.clone();
        self.write(|_, tx| {
            let key = format!("{CONSENT_PREFIX}{state}");
            let consent = tx.lookup::<PendingConsent>(&*store, &key)?;
            if consent.is_some() {
                tx.batch.delete(key);
            }
            Ok(consent.filter(|c| c.expires_at > now_ms()))
        })
        .await
    }

    /// Creates an account and returns it with its bearer token (only the hash is stored).
    pub fn create_account_blocking(&self, input: NewAccount) -> HubResult<(Account, String)> {
        self.write_blocking(|st, tx| create_account(st, tx, input))
    }
    pub async fn create_account(&self, input: NewAccount) -> HubResult<(Account, String)> {
        self.write(|st, tx| create_account(st, tx, input)).await
    }

    pub fn rotate_token_blocking(&self, handle: &str) -> HubResult<(Account, String)> {
        self.write_blocking(|st, tx| rotate_token(st, tx, handle))
    }
    /// Issues a new token; the old one stops working, and streams opened with it are closed.
    pub async fn rotate_token(&self, handle: &str) -> HubResult<(Account, String)> {
        let (account, token) = self.write(|st, tx| rotate_token(st, tx, handle)).await?;
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
        self.write(|st, tx| {
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
        self.write(|st, tx| upsert_connection(st, tx, oa, connector, tokens))
            .await
    }
    pub fn upsert_connection_blocking(
        &self,
        oa: OaInfo,
        connector: &str,
        tokens: TokenPair,
    ) -> HubResult<(Connection, bool)> {
        self.write_blocking(|st, tx| upsert_connection(st, tx, oa, connector, tokens))
    }

    pub async fn set_chat_mode(&self, conn_id: &str, mode: ChatMode) -> HubResult<Connection> {
        let metrics = self.metrics.clone();
        self.write(|st, tx| {
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
        self.write(|st, tx| {
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

    /// Persists a refreshed token pair before anyone uses it.
    pub async fn store_tokens(&self, conn_id: &str, tokens: TokenPair) -> HubResult<()> {
        self.write(|st, tx| {
            let mut conn = st
                .connections
                .get(conn_id)
                .cloned()
                .ok_or_else(|| HubError::NotFound(format!("connection {conn_id} not found")))?;
            conn.tokens = tokens;
            st.put_connection_quietly(tx, conn);
            Ok(())
        })
        .await
    }

    /// Removes a page, its conversations and their messages.
    pub async fn delete_connection(&self, conn_id: &str) -> HubResult<()> {
        let store = self.store.clone();
        let mut blobs = Vec::new();
        self.write(|st, tx| {
            let conn = st
                .connections
                .remove(conn_id)
                .ok_or_else(|| HubError::NotFound(format!("connection {conn_id} not found")))?;
            if let Some(rule_id) = &conn.rule_id {
                remove_source(st, tx, rule_id, conn_id);
            }
            tx.batch.delete(format!("conn/{conn_id}"));
            let convs: Vec<ConversationId> = st
                .conversations
                .values()
                .filter(|c| c.connection_id == conn_id)
                .map(|c| c.id.clone())
                .collect();
            for id in convs {
                if let Some(c) = st.conversations.remove(&id) {
                    st.by_customer
                        .remove(&(c.connection_id, c.customer.user_id));
                }
                tx.batch.delete(key_conv(&id));
                // The messages with everything that points at them: reply jobs, id and client-key
                // lookups, the time index.
                for m in store.scan_json::<Message>(&format!("msg/{id}/"))? {
                    let (at, n) = m.thread_order();
                    tx.batch.delete(key_msg(&id, n));
                    tx.batch.delete(key_msg_time(&id, at, n));
                    tx.batch.delete(format!("mref/{}", m.id));
                    tx.batch.delete(format!("job/{}", m.id));
                    let job: Option<super::conversations::OutboundJob> =
                        store.get_json(&format!("job/{}", m.id))?;
                    blobs.extend(job.and_then(|j| j.attachment).map(|a| a.blob));
                    if let Some(key) = &m.client_key {
                        let key = super::conversations::key_client(&m.sender, &id, key);
                        tx.batch.delete(key);
                    }
                }
            }
            let zmid = format!("zmid/{conn_id}/");
            for (k, _) in store.range(
                zmid.as_bytes(),
                &prefix_end(zmid.as_bytes()),
                false,
                usize::MAX,
            )? {
                tx.batch.delete(k);
            }
            let mut audience = vec![conn.connector.clone()];
            audience.push(EVERYONE.into());
            tx.emit(EventBody::ConnectionRemoved { id: conn.id }, audience);
            Ok(())
        })
        .await?;
        for blob in blobs {
            self.blobs.remove(&blob);
        }
        Ok(())
    }

    pub async fn create_rule(&self, input: RuleInput) -> HubResult<Rule> {
        let metrics = self.metrics.clone();
        self.write(|st, tx| save_rule(st, tx, None, input, &metrics))
            .await
    }

    pub async fn update_rule(&self, id: &str, input: RuleInput) -> HubResult<Rule> {
        let metrics = self.metrics.clone();
        self.write(|st, tx| save_rule(st, tx, Some(id), input, &metrics))
            .await
    }

    /// Deletes a rule; its pages stay shared with no rule (their waiting conversations are for
    /// admins) and their conversations are reconciled.
    pub async fn delete_rule(&self, id: &str) -> HubResult<()> {
        let metrics = self.metrics.clone();
        self.write(|st, tx| {
            let rule = st
                .rules
                .remove(id)
                .ok_or_else(|| HubError::NotFound(format!("rule {id} not found")))?;
            for source in &rule.sources {
                if let Some(mut conn) = st.connections.get(source).cloned() {
                    conn.rule_id = None;
                    st.put_connection(tx, conn, None);
                }
            }
            tx.batch.delete(format!("rule/{id}"));
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
