//! The SQL store's cost per webhook, measured early (issue 10: "measure its SQLite driver's
//! per-statement overhead"): the writes one customer message makes — the raw webhook, the
//! message, the conversation's activity, the unread count, the event — for a batch of webhooks
//! per durable commit, on SQLite through sqlx, with one statement per row and with multi-row
//! statements. CPU is this process's (sqlx's SQLite driver runs on a worker thread inside it).

use super::{cpu_seconds, Row};
use crate::store::sql::Db;
use anyhow::Result;
use sqlx::QueryBuilder;
use std::path::Path;
use std::time::Instant;

/// Webhooks per durable commit, as the issue's measurement.
const BATCH: usize = 64;
const CONVERSATIONS: usize = 1_000;

async fn prepare(dir: &Path) -> Result<Db> {
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let db = Db::open(&url).await?;
    crate::in_transaction!(&db, tx => {
        sqlx::query("INSERT INTO accounts (id, email, username, email_key, username_key, name, role, availability, created_at) VALUES ('a1', 'a@sop.vn', 'a', 'a@sop.vn', 'a', 'A', 'agent', 'available', 0)")
            .execute(&mut *tx).await?;
        sqlx::query("INSERT INTO connections (id, oa_id, name, connector, connected_at, last_connected_at, chat_mode, status) VALUES ('p1', 'oa', 'Trang', 'a1', 0, 0, 'shared', 'connected')")
            .execute(&mut *tx).await?;
        for c in 0..CONVERSATIONS {
            sqlx::query("INSERT INTO conversations (id, connection_id, customer_id, customer_name, assignee, state, status, origin, last_activity_at, waiting_at, created_at) VALUES ($1, 'p1', $1, 'Khách', 'a1', 'assigned', 'open', 'live', 0, 0, 0)")
                .bind(format!("c{c}"))
                .execute(&mut *tx).await?;
        }
    });
    Ok(db)
}

/// One batch with a statement per row.
async fn batch_row_by_row(db: &Db, first: usize) -> Result<()> {
    crate::in_transaction!(db, tx => {
        let mut events = Vec::with_capacity(BATCH);
        for w in first..first + BATCH {
            let conv = format!("c{}", w % CONVERSATIONS);
            let body = format!(r#"{{"event_name":"user_send_text","message":{{"msg_id":"z{w}","text":"Cho em hỏi giá ạ"}}}}"#);
            sqlx::query("INSERT INTO webhooks (n, dedupe_key, received_at, body) VALUES ($1, $2, $3, $4)")
                .bind(w as i64).bind(format!("oa/z{w}")).bind(w as i64).bind(&body)
                .execute(&mut *tx).await?;
            sqlx::query("INSERT INTO messages (id, seq, conversation_id, connection_id, direction, sender, sender_name, kind, text, zalo_msg_id, created_at) VALUES ($1, $2, $3, 'p1', 'inbound', 'u', 'Khách', 'text', $4, $5, $2)")
                .bind(format!("m{w}")).bind(w as i64).bind(&conv).bind("Cho em hỏi giá ạ").bind(format!("z{w}"))
                .execute(&mut *tx).await?;
            sqlx::query("UPDATE conversations SET last_activity_at = $2, preview = $3 WHERE id = $1")
                .bind(&conv).bind(w as i64).bind("Cho em hỏi giá ạ")
                .execute(&mut *tx).await?;
            sqlx::query("INSERT INTO unread (conversation_id, account_id, count) VALUES ($1, 'a1', 1) ON CONFLICT (conversation_id, account_id) DO UPDATE SET count = unread.count + 1")
                .bind(&conv)
                .execute(&mut *tx).await?;
            events.push((w as i64, r#"["a1"]"#.to_string(), body));
        }
        crate::append_events!(tx, events);
    });
    Ok(())
}

/// One batch with multi-row statements (one per table, the conversation updates excepted).
async fn batch_multi_row(db: &Db, first: usize) -> Result<()> {
    let rows: Vec<(i64, String, String)> = (first..first + BATCH)
        .map(|w| {
            (
                w as i64,
                format!("c{}", w % CONVERSATIONS),
                format!(r#"{{"event_name":"user_send_text","message":{{"msg_id":"z{w}","text":"Cho em hỏi giá ạ"}}}}"#),
            )
        })
        .collect();
    let Db::Sqlite(sqlite) = db else {
        anyhow::bail!("this measurement is SQLite's")
    };
    let mut tx = sqlite.writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut q = QueryBuilder::new("INSERT INTO webhooks (n, dedupe_key, received_at, body) ");
    q.push_values(&rows, |mut r, (w, _, body)| {
        r.push_bind(*w)
            .push_bind(format!("oa/z{w}"))
            .push_bind(*w)
            .push_bind(body.as_str());
    });
    q.build().execute(&mut *tx).await?;
    let mut q = QueryBuilder::new("INSERT INTO messages (id, seq, conversation_id, connection_id, direction, sender, sender_name, kind, text, zalo_msg_id, created_at) ");
    q.push_values(&rows, |mut r, (w, conv, _)| {
        r.push_bind(format!("m{w}"))
            .push_bind(*w)
            .push_bind(conv.as_str())
            .push_bind("p1")
            .push_bind("inbound")
            .push_bind("u")
            .push_bind("Khách")
            .push_bind("text")
            .push_bind("Cho em hỏi giá ạ")
            .push_bind(format!("z{w}"))
            .push_bind(*w);
    });
    q.build().execute(&mut *tx).await?;
    for (w, conv, _) in &rows {
        sqlx::query("UPDATE conversations SET last_activity_at = $2, preview = $3 WHERE id = $1")
            .bind(conv)
            .bind(*w)
            .bind("Cho em hỏi giá ạ")
            .execute(&mut *tx)
            .await?;
    }
    let mut q = QueryBuilder::new("INSERT INTO unread (conversation_id, account_id, count) ");
    q.push_values(&rows, |mut r, (_, conv, _)| {
        r.push_bind(conv.as_str()).push_bind("a1").push_bind(1);
    });
    q.push(" ON CONFLICT (conversation_id, account_id) DO UPDATE SET count = unread.count + excluded.count");
    q.build().execute(&mut *tx).await?;
    let events = rows
        .into_iter()
        .map(|(w, _, body)| (w, r#"["a1"]"#.to_string(), body))
        .collect();
    crate::append_events!(tx, events);
    tx.commit().await?;
    Ok(())
}

pub async fn run(dir: &Path, webhooks: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let batches = webhooks.div_ceil(BATCH).max(1);
    for (name, multi) in [
        ("sql: SQLite, a statement per row", false),
        ("sql: SQLite, multi-row statements", true),
    ] {
        let dir = dir.join(if multi { "multi" } else { "single" });
        std::fs::create_dir_all(&dir)?;
        let db = prepare(&dir).await?;
        // Unique conversations per batch would be kinder to the multi-row unread upsert; the
        // modulo keeps the conflict path honest: within a batch no conversation repeats
        // (BATCH < CONVERSATIONS).
        let cpu0 = cpu_seconds(std::process::id());
        let t0 = Instant::now();
        for b in 0..batches {
            if multi {
                batch_multi_row(&db, b * BATCH).await?;
            } else {
                batch_row_by_row(&db, b * BATCH).await?;
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(std::process::id()) - cpu0;
        let n = (batches * BATCH) as f64;
        db.close().await;
        rows.push(Row {
            name,
            value: format!("{:.0}/s, {:.1} µs CPU per webhook", n / wall, cpu / n * 1e6),
            budget: "≥ 10,000/s",
            limit: format!("{BATCH} per durable commit (synchronous=FULL)"),
            ratio: String::new(),
            ok: n / wall >= 10_000.0,
        });
    }
    Ok(rows)
}
