//! REST handlers under `/api/v1` (documented in docs/api.md).

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Caller};
use super::AppState;
use crate::model::*;
use crate::wire::*;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

type ApiResult<T> = Result<T, ApiError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/me/availability", put(set_availability))
        .route("/accounts", get(list_accounts).post(create_account))
        .route("/accounts/{id}/token", post(rotate_token))
        .route("/connections", get(list_connections))
        .route(
            "/connections/{id}",
            get(get_connection).delete(delete_connection),
        )
        .route("/connections/{id}/chat-mode", put(set_chat_mode))
        .route("/rules", get(list_rules).post(create_rule))
        .route(
            "/rules/{id}",
            get(get_rule).put(update_rule).delete(delete_rule),
        )
        .route("/webhooks/dead", get(dead_webhooks))
        .route("/search", get(search))
        .route("/mentions", get(mentions))
        .route(
            "/quick-replies",
            get(list_quick_replies).post(create_quick_reply),
        )
        .route(
            "/quick-replies/{id}",
            put(update_quick_reply).delete(delete_quick_reply),
        )
        .route(
            "/quick-replies/{id}/attachment",
            get(quick_reply_attachment),
        )
        .route("/conversations/{id}/notes", post(add_note))
        .route("/conversations/{id}/colleagues", get(colleagues))
        .route("/conversations/{id}/customer", get(customer_panel))
        .route(
            "/conversations/{id}/labels",
            get(label_choices).post(attach_label),
        )
        .route(
            "/conversations/{id}/labels/{name}",
            axum::routing::delete(detach_label),
        )
        .route(
            "/connections/{id}/labels/{name}",
            axum::routing::delete(remove_page_label),
        )
        .route("/conversations", get(list_conversations))
        .route("/conversations/counts", get(counts))
        .route("/conversations/{id}", get(get_conversation))
        .route("/conversations/{id}/messages", get(list_messages))
        .route("/conversations/{id}/claim", post(claim))
        .route("/conversations/{id}/reply", post(reply))
        .route("/conversations/{id}/transfer", post(transfer))
        .route(
            "/conversations/{id}/transfer-targets",
            get(transfer_targets),
        )
        .route("/conversations/{id}/release", post(release))
        .route("/conversations/{id}/done", post(done))
        .route("/conversations/{id}/read", post(read))
}

async fn me(caller: Caller) -> Json<Account> {
    Json(caller.0)
}

async fn set_availability(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SetAvailability>,
) -> ApiResult<Json<Account>> {
    Ok(Json(
        app.hub
            .set_availability(&caller.0.id, body.availability)
            .await?,
    ))
}

async fn list_accounts(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Account>>> {
    caller.require_admin()?;
    Ok(Json(
        app.hub.read(|st| st.accounts().cloned().collect()).await,
    ))
}

async fn create_account(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewAccount>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let (account, token) = app.hub.create_account(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountWithToken { account, token }),
    ))
}

async fn rotate_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountWithToken>> {
    caller.require_admin()?;
    let (account, token) = app.hub.rotate_token(&id).await?;
    Ok(Json(AccountWithToken { account, token }))
}

async fn dead_webhooks(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<crate::server::hub::DeadWebhook>>> {
    caller.require_admin()?;
    Ok(Json(app.hub.dead_webhooks().await?))
}

async fn list_connections(
    State(app): State<AppState>,
    caller: Caller,
) -> Json<Vec<ConnectionView>> {
    Json(
        app.hub
            .read(|st| {
                st.connections()
                    .filter(|c| st.may_see_connection(&caller.0, c))
                    .map(ConnectionView::from)
                    .collect()
            })
            .await,
    )
}

async fn get_connection(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    app.hub
        .read(|st| match st.connection(&id) {
            Some(c) if st.may_see_connection(&caller.0, c) => Some(ConnectionView::from(c)),
            _ => None,
        })
        .await
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("connection {id} not found")))
}

async fn delete_connection(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    app.hub.delete_connection(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_chat_mode(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetChatMode>,
) -> ApiResult<Json<ConnectionView>> {
    caller.require_admin()?;
    let conn = app.hub.set_chat_mode(&id, body.chat_mode).await?;
    Ok(Json(ConnectionView::from(&conn)))
}

async fn list_rules(State(app): State<AppState>, caller: Caller) -> Json<Vec<Rule>> {
    Json(
        app.hub
            .read(|st| {
                st.rules()
                    .filter(|r| st.may_see_rule(&caller.0, r))
                    .cloned()
                    .collect()
            })
            .await,
    )
}

async fn get_rule(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Rule>> {
    app.hub
        .read(|st| {
            st.rule(&id)
                .filter(|r| st.may_see_rule(&caller.0, r))
                .cloned()
        })
        .await
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("rule {id} not found")))
}

async fn create_rule(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RuleInput>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    Ok((StatusCode::CREATED, Json(app.hub.create_rule(body).await?)))
}

async fn update_rule(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RuleInput>,
) -> ApiResult<Json<Rule>> {
    caller.require_admin()?;
    Ok(Json(app.hub.update_rule(&id, body).await?))
}

async fn delete_rule(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    app.hub.delete_rule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    view: Option<View>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn list_conversations(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<crate::wire::Page<Conversation>>> {
    let view = q.view.unwrap_or(View::Mine);
    Ok(Json(
        app.hub
            .list_conversations(&caller.0, view, q.cursor.as_deref(), q.limit.unwrap_or(100))
            .await?,
    ))
}

async fn counts(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<Counts>> {
    Ok(Json(app.hub.counts(&caller.0).await?))
}

async fn get_conversation(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.hub.get_conversation(&caller.0, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    before: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn search(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<crate::wire::Page<crate::wire::SearchHit>>> {
    Ok(Json(
        app.hub
            .search(&caller.0, &q.q, q.cursor.as_deref(), q.limit.unwrap_or(20))
            .await?,
    ))
}

#[derive(Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn mentions(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<crate::wire::Page<crate::wire::SearchHit>>> {
    Ok(Json(
        app.hub
            .mentions(&caller.0, q.cursor.as_deref(), q.limit.unwrap_or(20))
            .await?,
    ))
}

async fn list_quick_replies(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<crate::model::QuickReply>>> {
    Ok(Json(app.hub.quick_replies(&caller.0).await?))
}

async fn create_quick_reply(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<crate::wire::QuickReplyInput>,
) -> ApiResult<impl IntoResponse> {
    let q = app.hub.create_quick_reply(&caller.0, body).await?;
    Ok((StatusCode::CREATED, Json(q)))
}

async fn update_quick_reply(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<crate::wire::QuickReplyInput>,
) -> ApiResult<Json<crate::model::QuickReply>> {
    Ok(Json(
        app.hub.update_quick_reply(&caller.0, &id, body).await?,
    ))
}

async fn quick_reply_attachment(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::wire::OutboundAttachment>> {
    Ok(Json(app.hub.quick_reply_attachment(&caller.0, &id).await?))
}

async fn delete_quick_reply(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.hub.delete_quick_reply(&caller.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_note(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<crate::wire::NoteInput>,
) -> ApiResult<impl IntoResponse> {
    let (note, created) = app.hub.add_note(&caller.0, &id, body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(note)))
}

async fn customer_panel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::wire::CustomerPanel>> {
    Ok(Json(app.hub.customer_panel(&caller.0, &id).await?))
}

async fn label_choices(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<LabelChoices>> {
    Ok(Json(app.hub.label_choices(&caller.0, &id).await?))
}

async fn attach_label(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LabelInput>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(
        app.hub.attach_label(&caller.0, &id, &body.name).await?,
    ))
}

async fn detach_label(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.hub.detach_label(&caller.0, &id, &name).await?))
}

async fn remove_page_label(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    app.hub.remove_page_label(&caller.0, &id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn colleagues(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<crate::wire::TransferTarget>>> {
    Ok(Json(app.hub.colleagues(&caller.0, &id).await?))
}

async fn list_messages(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> ApiResult<Json<crate::wire::Page<Message>>> {
    Ok(Json(
        app.hub
            .list_messages(&caller.0, &id, q.before.as_deref(), q.limit.unwrap_or(50))
            .await?,
    ))
}

async fn claim(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.hub.claim(&caller.0, &id).await?))
}

async fn reply(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplyInput>,
) -> ApiResult<impl IntoResponse> {
    let msg = app.hub.reply(&caller.0, &id, body).await?;
    Ok((StatusCode::ACCEPTED, Json(msg)))
}

async fn transfer(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TransferInput>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.hub.transfer(&caller.0, &id, &body.to).await?))
}

async fn transfer_targets(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<TransferTarget>>> {
    Ok(Json(app.hub.transfer_targets(&caller.0, &id).await?))
}

async fn release(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.hub.release(&caller.0, &id).await?))
}

async fn done(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.hub.mark_done(&caller.0, &id).await?))
}

async fn read(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.hub.mark_read(&caller.0, &id).await?))
}
