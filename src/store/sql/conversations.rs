//! Conversations: creating, reading, and the claim that has one winner across hubs.

use super::events::{LoggedEvent, NewEvent};
use super::rows::{from_name, name_of};
use super::{Db, StoreError};
use crate::model::{Account, AccountId, AssignReason, ConvState, Conversation, Ms};
use crate::routing;

/// How a claim ended.
#[derive(Debug)]
pub enum Claim {
    /// This caller won: the conversation as committed and the events logged with it.
    Won(Box<Conversation>, Vec<LoggedEvent>),
    /// Someone else holds it (`None`: it waits for nobody, e.g. closed or unattended).
    Taken { holder: Option<AccountId> },
}

/// Reads one conversation with its unread counts and assignment history; the same statements
/// whether `$conn` is a pool or an open transaction.
#[macro_export]
macro_rules! load_conversation {
    ($conn:expr, $id:expr) => {{
        let id: &str = $id;
        let sql = format!(
            "SELECT {} FROM conversations WHERE id = $1",
            $crate::store::sql::rows::CONVERSATION_COLUMNS
        );
        let row: Option<$crate::store::sql::rows::ConversationRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&mut *$conn)
            .await?;
        match row {
            None => None,
            Some(row) => {
                let unread: Vec<(String, i32)> = sqlx::query_as(
                    "SELECT account_id, count FROM unread WHERE conversation_id = $1",
                )
                .bind(id)
                .fetch_all(&mut *$conn)
                .await?;
                let assignments: Vec<$crate::store::sql::rows::AssignmentRow> = sqlx::query_as(
                    "SELECT at, to_account, by_account, reason FROM assignments \
                     WHERE conversation_id = $1 ORDER BY n",
                )
                .bind(id)
                .fetch_all(&mut *$conn)
                .await?;
                Some(row.into_conversation(unread, assignments)?)
            }
        }
    }};
}

/// Inserts a conversation and its assignment history in the caller's transaction.
macro_rules! insert_conversation_rows {
    ($tx:expr, $conv:expr) => {{
        let c: &Conversation = $conv;
        insert_conversation_sql(c)
            .execute(&mut *$tx)
            .await
            .map_err(|e| StoreError::conflict_if_unique(e, "conversation_exists"))?;
        for (n, a) in c.assignments.iter().enumerate() {
            insert_assignment_sql(
                n as i64 + 1,
                a.at,
                a.to.as_deref(),
                a.by.as_deref(),
                a.reason,
            )
            .bind(&c.id)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

impl Db {
    /// Stores a new conversation as given (its id already chosen).
    pub async fn insert_conversation(&self, c: &Conversation) -> Result<(), StoreError> {
        crate::in_transaction!(self, tx => insert_conversation_rows!(tx, c));
        Ok(())
    }

    /// A new conversation, routed by its page's rule in the same transaction: the rule row is
    /// locked, the turn read, the conversation assigned (or queued) and the cursor moved, so
    /// round robin stays fair however many hubs route at once.
    pub async fn open_conversation(
        &self,
        mut conv: Conversation,
        now: Ms,
        event: impl Fn(&Conversation) -> NewEvent,
    ) -> Result<(Conversation, Vec<LoggedEvent>), StoreError> {
        let opened = crate::in_transaction!(self, tx => {
            let page: Option<(String, String)> = sqlx::query_as(
                "SELECT chat_mode, connector FROM connections WHERE id = $1",
            )
            .bind(&conv.connection_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (chat_mode, connector) = page
                .ok_or_else(|| StoreError::NotFound(format!("page {}", conv.connection_id)))?;
            let (rule, available) = match crate::rule_of_page_locked!(tx, &conv.connection_id) {
                Some((rule, available)) => (Some(rule), available),
                None => (None, vec![]),
            };
            let page = routing::Page {
                chat_mode: from_name(&chat_mode)?,
                connector: &connector,
                rule: rule.as_ref(),
            };
            let decision = routing::route_new(page, &|m| available.iter().any(|a| a == m));
            match decision.route {
                routing::Route::Assign { to, reason } => conv.land(Some(to), None, reason, now),
                routing::Route::Unclaimed => conv.land(None, None, AssignReason::Rule, now),
            }
            if let (Some(rule), Some(cursor)) = (&rule, &decision.cursor) {
                sqlx::query("UPDATE rules SET cursor = $2 WHERE id = $1")
                    .bind(&rule.id)
                    .bind(cursor)
                    .execute(&mut *tx)
                    .await?;
            }
            insert_conversation_rows!(tx, &conv);
            let logged = crate::append_events!(tx, vec![event(&conv)]);
            (conv, logged)
        });
        self.ring().await;
        Ok(opened)
    }

    pub async fn conversation(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        Ok(crate::on_engine!(readers self, pool => {
            let mut conn = pool.acquire().await?;
            crate::load_conversation!(conn, id)
        }))
    }

    /// Claims a conversation waiting in the queue (an admin may also take an unattended one):
    /// one conditional UPDATE, so across any number of hubs exactly one caller wins; the winner's
    /// assignment and events commit with it. `event` makes the winner's event from the claimed
    /// conversation.
    pub async fn claim(
        &self,
        conv_id: &str,
        who: &Account,
        now: Ms,
        event: impl Fn(&Conversation) -> NewEvent,
    ) -> Result<Claim, StoreError> {
        let claim = crate::in_transaction!(self, tx => {
            let won: Option<String> = sqlx::query_scalar(
                "UPDATE conversations SET assignee = $2, state = 'assigned', waiting_since = NULL \
                 WHERE id = $1 AND (state = 'unclaimed' OR ($3 AND state = 'unattended')) \
                 RETURNING id",
            )
            .bind(conv_id)
            .bind(&who.id)
            .bind(who.is_admin())
            .fetch_optional(&mut *tx)
            .await?;
            if won.is_none() {
                let holder: Option<Option<String>> =
                    sqlx::query_scalar("SELECT assignee FROM conversations WHERE id = $1")
                        .bind(conv_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                match holder {
                    None => return Err(StoreError::NotFound(format!("conversation {conv_id}"))),
                    Some(holder) => Claim::Taken { holder },
                }
            } else {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM assignments WHERE conversation_id = $1",
                )
                .bind(conv_id)
                .fetch_one(&mut *tx)
                .await?;
                insert_assignment_sql(n + 1, now, Some(&who.id), Some(&who.id), AssignReason::Claim)
                    .bind(conv_id)
                    .execute(&mut *tx)
                    .await?;
                let conversation = crate::load_conversation!(tx, conv_id)
                    .ok_or_else(|| StoreError::NotFound(format!("conversation {conv_id}")))?;
                debug_assert_eq!(conversation.state, ConvState::Assigned);
                let logged = crate::append_events!(tx, vec![event(&conversation)]);
                Claim::Won(Box::new(conversation), logged)
            }
        });
        if matches!(claim, Claim::Won(..)) {
            self.ring().await;
        }
        Ok(claim)
    }
}

/// `INSERT INTO conversations` for every column.
fn insert_conversation_sql<'q, DB: sqlx::Database>(
    c: &'q Conversation,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO conversations (id, connection_id, customer_id, customer_name, \
         customer_avatar, customer_fetched_at, assignee, state, status, origin, \
         last_interaction_at, last_activity_at, waiting_since, waiting_at, preview, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(c.id.as_str())
    .bind(c.connection_id.as_str())
    .bind(c.customer.user_id.as_str())
    .bind(c.customer.display_name.as_str())
    .bind(c.customer.avatar.as_str())
    .bind(c.customer.fetched_at)
    .bind(c.assignee.as_deref())
    .bind(name_of(&c.state))
    .bind(name_of(&c.status))
    .bind(name_of(&c.origin))
    .bind(c.last_interaction_at)
    .bind(c.last_activity_at)
    .bind(c.waiting_since)
    .bind(c.waiting_at())
    .bind(c.preview.as_str())
    .bind(c.created_at)
}

/// `INSERT INTO assignments`, the conversation id bound last (`$6`).
fn insert_assignment_sql<'q, DB: sqlx::Database>(
    n: i64,
    at: Ms,
    to: Option<&'q str>,
    by: Option<&'q str>,
    reason: AssignReason,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO assignments (n, at, to_account, by_account, reason, conversation_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(n)
    .bind(at)
    .bind(to)
    .bind(by)
    .bind(name_of(&reason))
}
