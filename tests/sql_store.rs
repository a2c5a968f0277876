//! The SQL store's contract, run on both engines (issue 10): the schema migrates from empty and
//! concurrently; the event log stays gap-free and in commit order across writers; a token refresh
//! is single-flight, reply jobs are taken once and in order, webhooks are stored once, across
//! hubs. "Hubs" are separate connection pools on one database: three on PostgreSQL, two on SQLite
//! (the hub and a `sop admin` sharing the file). The hub's own decisions across hubs (claims,
//! round robin, publishing) are tested in `tests/hubs.rs`.

mod common;
use common::*;
use sop_console::model::*;
use sop_console::server::hub::{Hub, OaInfo};
use sop_console::store::sql::events::{LoggedEvent, NewEvent};
use sop_console::store::sql::Db;
use sop_console::wire::{NewAccount, ReplyInput};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_reaches_the_latest_schema_on_both_engines() {
    for url in databases().await {
        let db = Db::open(&url).await.unwrap();
        let applied = db.applied_migrations().await.unwrap();
        assert_eq!(
            applied,
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            "{}",
            db.engine_name()
        );
        assert_eq!(db.event_head().await.unwrap(), 0);
        db.close().await;
        // Opening again migrates nothing and finds the store sound.
        let again = Db::open(&url).await.unwrap();
        assert_eq!(
            again.applied_migrations().await.unwrap(),
            vec![1, 2, 3, 4, 5, 6, 7, 8]
        );
        again.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_starting_together_on_an_empty_database_migrate_it_once() {
    let url = pg::database().await;
    let opens = (0..3).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Db::open(&url).await })
    });
    let mut hubs = Vec::new();
    for open in opens {
        hubs.push(open.await.unwrap().expect("every hub starts"));
    }
    for db in &hubs {
        assert_eq!(
            db.applied_migrations().await.unwrap(),
            vec![1, 2, 3, 4, 5, 6, 7, 8]
        );
    }
}

/// A database left at the first schema version, with a page, a conversation and a reply waiting
/// to be sent as that version stored them, reaches the latest when a hub opens it; the hub finds
/// it all, the reply still to send, and search finds the message and the customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_the_first_migration_reaches_the_latest() {
    for url in databases().await {
        let db = Db::connect(&url).await.unwrap();
        // Only the first migration, from a copy of its file (sqlx reads a directory).
        let first = temp_dir("first-migration");
        std::fs::create_dir_all(&first).unwrap();
        let file = format!("migrations/{}/0001_schema.sql", db.engine_name());
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&file),
            first.join("0001_schema.sql"),
        )
        .unwrap();
        let migrator = sqlx::migrate::Migrator::new(first.as_path()).await.unwrap();
        let rows = [
            "UPDATE counters SET value = 1 WHERE name IN ('account', 'connection', 'conversation', 'message')",
            "UPDATE counters SET value = 0 WHERE name = 'event'",
            "INSERT INTO accounts (id, email, username, email_key, username_key, name, role, availability, created_at) \
             VALUES ('a1', 'chu@sop.vn', 'Chu', 'chu@sop.vn', 'chu', 'Chủ', 'admin', 'available', 1)",
            "INSERT INTO connections (id, oa_id, name, connector, connected_at, last_connected_at, chat_mode, status) \
             VALUES ('p1', '4321', 'Trang', 'a1', 1, 1, 'shared', 'connected')",
            "INSERT INTO connection_tokens (connection_id, access_token, refresh_token, access_expires_at, updated_at) \
             VALUES ('p1', 'at', 'rt', 9999999999999, 1)",
            "INSERT INTO conversations (id, connection_id, customer_id, customer_name, assignee, state, status, origin, \
             last_activity_at, waiting_at, created_at) \
             VALUES ('c1', 'p1', 'u1', 'Võ Thị Dung', 'a1', 'assigned', 'open', 'live', 2, 2, 2)",
            "INSERT INTO messages (id, seq, conversation_id, connection_id, direction, sender, sender_name, kind, text, created_at) \
             VALUES ('m1', 1, 'c1', 'p1', 'outbound', 'a1', 'Chủ', 'text', 'Dạ em chào chị', 3)",
            "INSERT INTO reply_jobs (message_id, message_seq, conversation_id, next_attempt_at) VALUES ('m1', 1, 'c1', 0)",
        ];
        match &db {
            Db::Sqlite(d) => {
                migrator.run(&d.writer).await.unwrap();
                for sql in rows {
                    sqlx::query(sql).execute(&d.writer).await.unwrap();
                }
            }
            Db::Postgres(d) => {
                migrator.run(&d.pool).await.unwrap();
                for sql in rows {
                    sqlx::query(sql).execute(&d.pool).await.unwrap();
                }
            }
        }
        assert_eq!(db.applied_migrations().await.unwrap(), vec![1]);
        db.close().await;

        let db = Arc::new(Db::open(&url).await.unwrap());
        assert_eq!(
            db.applied_migrations().await.unwrap(),
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            "{url}"
        );
        let hub = Hub::open(db.clone(), &temp_dir("upgraded"), 1_000)
            .await
            .unwrap();
        let conversation = hub
            .read(|st| st.conversation("c1").cloned())
            .await
            .expect("the conversation survives the upgrade");
        assert_eq!(conversation.customer.display_name, "Võ Thị Dung");
        let jobs = hub.outbound_jobs().await.unwrap();
        assert_eq!(jobs.len(), 1, "the waiting reply is still to send");
        let unsent = "SELECT COUNT(*) FROM reply_jobs WHERE message_id = 'm1' AND sending = 0";
        assert_eq!(count(&db, unsent).await, 1, "not marked as being sent");
        // What was stored before search existed is found by it (migration 3 and the fill).
        let terms = sop_console::store::sql::search::terms("da em chao");
        let found = db.search_messages(&terms, None, 10, None).await.unwrap();
        assert_eq!(found.len(), 1, "{url}: the old message is found");
        assert_eq!(found[0].1.id, "m1");
        let terms = sop_console::store::sql::search::terms("vo thi");
        assert_eq!(
            db.search_customers(&terms, 10, None).await.unwrap(),
            ["c1"],
            "{url}"
        );
        hub.shutdown().await;
    }
}

/// Several hubs on one database, each with its own pool: three on PostgreSQL; on SQLite two
/// (the hub and a `sop admin` sharing the file).
async fn hubs_on(url: &str) -> Vec<Arc<Db>> {
    let count = if url.starts_with("sqlite") { 2 } else { 3 };
    let mut hubs = Vec::new();
    for _ in 0..count {
        hubs.push(Arc::new(Db::connect(url).await.unwrap()));
    }
    hubs
}

/// Appends in a transaction that is rolled back after its events were numbered when `rollback`.
async fn append(
    db: &Db,
    events: Vec<NewEvent>,
    rollback: bool,
) -> anyhow::Result<Vec<LoggedEvent>> {
    Ok(sop_console::in_transaction!(db, tx => {
        let logged = sop_console::append_events!(tx, events);
        if rollback {
            anyhow::bail!("rolled back on purpose");
        }
        logged
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_log_is_gap_free_and_in_commit_order_across_writers() {
    const WRITERS: usize = 4;
    const TRANSACTIONS: usize = 60;
    for url in databases().await {
        // Three hubs on PostgreSQL; on SQLite the hub and an admin process share the file.
        Db::open(&url).await.unwrap();
        let dbs = hubs_on(&url).await;
        let handles = dbs.len();
        let engine = dbs[0].engine_name();
        let reader = {
            let db = dbs[handles - 1].clone();
            tokio::spawn(async move {
                let mut seen: Vec<LoggedEvent> = Vec::new();
                let mut idle_rounds = 0;
                while idle_rounds < 40 {
                    let since = seen.last().map(|e| e.seq).unwrap_or(0);
                    let batch = db.events_since(since, 1000).await.unwrap();
                    for (i, e) in batch.iter().enumerate() {
                        // A reader never sees a number before every smaller one is visible.
                        assert_eq!(e.seq, since + 1 + i as i64, "a gap after {since}");
                    }
                    idle_rounds = if batch.is_empty() { idle_rounds + 1 } else { 0 };
                    seen.extend(batch);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                seen
            })
        };
        let mut writers = Vec::new();
        for w in 0..WRITERS * handles {
            let db = dbs[w % handles].clone();
            writers.push(tokio::spawn(async move {
                let mut kept = Vec::new();
                for t in 0..TRANSACTIONS {
                    let n = 1 + (w + t) % 5;
                    let rollback = (w * 7 + t) % 6 == 0;
                    let events = (0..n)
                        .map(|i| {
                            (
                                t as i64,
                                "[\"*\"]".to_string(),
                                format!("{{\"w\":{w},\"t\":{t},\"i\":{i},\"rb\":{rollback}}}"),
                            )
                        })
                        .collect();
                    match append(&db, events, rollback).await {
                        Ok(logged) => kept.extend(logged),
                        Err(e) => assert!(rollback, "{e:#}"),
                    }
                }
                kept
            }));
        }
        let mut committed = Vec::new();
        for w in writers {
            committed.extend(w.await.unwrap());
        }
        committed.sort_by_key(|e| e.seq);
        let seen = reader.await.unwrap();
        let seqs: Vec<i64> = committed.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=committed.len() as i64).collect::<Vec<_>>(),
            "{engine}: gap-free"
        );
        assert_eq!(
            seen, committed,
            "{engine}: the reader saw exactly what committed"
        );
        assert!(
            seen.iter().all(|e| e.body.contains("\"rb\":false")),
            "{engine}"
        );
        assert_eq!(dbs[0].event_head().await.unwrap(), committed.len() as i64);
        println!(
            "{engine}: {} events from {} writers in order, rolled-back ones absent",
            committed.len(),
            WRITERS * handles
        );
    }
}

/// A hub to set the scene with: an admin, the page `p1` with `tokens`, and `customers`
/// conversations `c1`… (each with one message from its customer).
async fn scene(url: &str, tokens: TokenPair, customers: usize) -> (Arc<Hub>, Account) {
    let db = Arc::new(Db::open(url).await.unwrap());
    let hub = Hub::open(db, &temp_dir("scene"), 100_000).await.unwrap();
    let (admin, _) = hub
        .create_account(NewAccount {
            email: "chu@sop.vn".into(),
            username: "Chu".into(),
            name: "Chủ".into(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    let oa = OaInfo {
        oa_id: "4321".into(),
        ..Default::default()
    };
    hub.upsert_connection(oa, &admin.id, tokens).await.unwrap();
    for n in 0..customers {
        let message = customer_message("p1", &format!("u{n}"), &format!("z{n}"));
        new_conversation_of(&hub, message).await;
    }
    (hub, admin)
}

/// A reply by `who` in `conversation`: its message and job.
async fn reply(hub: &Hub, who: &Account, conversation: &str, text: &str) -> Message {
    let input = ReplyInput {
        client_key: format!("{conversation}-{text}"),
        text: text.into(),
        quote_msg_id: None,
        attachment: None,
    };
    hub.reply(who, conversation, input).await.unwrap()
}

/// 50 callers across hubs find the page's token expired at once: exactly one refresh reaches
/// Zalo (which burns a refresh token on first use), every caller gets the new token, and a token
/// Zalo refuses mid-validity is refreshed once more, again by one caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_refresh_is_single_flight_across_hubs() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for url in databases().await {
        let tokens = TokenPair {
            access_token: "old-access".into(),
            refresh_token: "old-refresh".into(),
            access_expires_at: 0,
        };
        let (setup, _) = scene(&url, tokens, 0).await;
        let hubs = hubs_on(&url).await;
        let handles = hubs.len();
        let engine = setup.db().engine_name();
        let refreshes = Arc::new(AtomicUsize::new(0));
        let race =
            |rejected: Option<&'static str>, expect_refresh_of: &'static str, new: &'static str| {
                let tasks: Vec<_> = (0..50)
                    .map(|i| {
                        let (db, refreshes) = (hubs[i % handles].clone(), refreshes.clone());
                        tokio::spawn(async move {
                            db.access_token("p1", rejected, |refresh_token| {
                                let refreshes = refreshes.clone();
                                async move {
                                    assert_eq!(
                                        refresh_token, expect_refresh_of,
                                        "a burnt refresh token reused"
                                    );
                                    refreshes.fetch_add(1, Ordering::SeqCst);
                                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                    Ok::<_, String>(TokenPair {
                                        access_token: format!("{new}-access"),
                                        refresh_token: format!("{new}-refresh"),
                                        access_expires_at: now_ms() + 3_600_000,
                                    })
                                }
                            })
                            .await
                            .unwrap()
                        })
                    })
                    .collect();
                async move {
                    let mut got = Vec::new();
                    for t in tasks {
                        got.push(t.await.unwrap());
                    }
                    got
                }
            };
        let got = race(None, "old-refresh", "new").await;
        assert_eq!(refreshes.load(Ordering::SeqCst), 1, "{engine}: one refresh");
        assert!(got.iter().all(|t| t == "new-access"), "{engine}: {got:?}");
        // Zalo refuses the new token early (-216): everyone retries with one more refresh.
        let got = race(Some("new-access"), "new-refresh", "newer").await;
        assert_eq!(
            refreshes.load(Ordering::SeqCst),
            2,
            "{engine}: one more refresh"
        );
        assert!(got.iter().all(|t| t == "newer-access"), "{engine}: {got:?}");
        println!("{engine}: 2 × 50 callers over {handles} hubs, 2 refreshes");
    }
}

/// 200 replies in 10 conversations, taken by workers on three hubs (two on SQLite): each is sent
/// exactly once, each conversation's in the order they were written, and the work is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reply_jobs_are_sent_once_in_order_per_conversation_across_hubs() {
    const CONVERSATIONS: usize = 10;
    const REPLIES: usize = 20;
    for url in databases().await {
        let (setup, owner) = scene(&url, TokenPair::default(), CONVERSATIONS).await;
        for r in 0..REPLIES {
            for c in 1..=CONVERSATIONS {
                reply(&setup, &owner, &format!("c{c}"), &format!("trả lời {r}")).await;
            }
        }
        let hubs = hubs_on(&url).await;
        let handles = hubs.len();
        let sent = Arc::new(parking_lot::Mutex::new(Vec::<(usize, String, i64)>::new()));
        let mut workers = Vec::new();
        for w in 0..handles * 2 {
            let db = hubs[w % handles].clone();
            let sent = sent.clone();
            workers.push(tokio::spawn(async move {
                let mut idle = 0;
                while idle < 20 {
                    let jobs = db.take_jobs(now_ms(), 30_000, 4).await.unwrap();
                    if jobs.is_empty() {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                    idle = 0;
                    for job in jobs {
                        assert_eq!(job.orphaned_lease, 0);
                        sent.lock().push((
                            w % handles,
                            job.conversation_id.clone(),
                            job.message_seq,
                        ));
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        db.finish_job(&job.message_id).await.unwrap();
                    }
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let sent = sent.lock().clone();
        let engine = setup.db().engine_name();
        assert_eq!(
            sent.len(),
            CONVERSATIONS * REPLIES,
            "{engine}: each sent once"
        );
        let mut seqs: Vec<i64> = sent.iter().map(|(_, _, s)| *s).collect();
        seqs.sort();
        seqs.dedup();
        assert_eq!(
            seqs.len(),
            CONVERSATIONS * REPLIES,
            "{engine}: no reply twice"
        );
        for c in 0..CONVERSATIONS {
            let order: Vec<i64> = sent
                .iter()
                .filter(|(_, conv, _)| conv == &format!("c{c}"))
                .map(|(_, _, s)| *s)
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "{engine}: c{c} out of order: {order:?}"
            );
        }
        let hubs_used: std::collections::BTreeSet<usize> =
            sent.iter().map(|(h, _, _)| *h).collect();
        assert_eq!(hubs_used.len(), handles, "{engine}: every hub sent some");
        println!(
            "{engine}: {} replies over {handles} hubs, once each, in order",
            sent.len()
        );
    }
}

/// A hub that took a reply and died leaves its lease to run out: the next taker sends it again
/// when the dead one had not begun sending, and learns the outcome is unknown when it had (never a
/// blind resend); a retry the sender asked for is not an orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_taker_died_comes_back_marked_orphaned() {
    for url in databases().await {
        let (hub, owner) = scene(&url, TokenPair::default(), 1).await;
        let db = hub.db();
        let msg = reply(&hub, &owner, "c1", "Dạ").await;
        // Times after the reply was queued.
        let t = now_ms() + 1_000;
        let first = db.take_jobs(t + 100, 50, 8).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].attempts, first[0].orphaned_lease), (0, 0));
        assert!(
            db.take_jobs(t + 120, 50, 8).await.unwrap().is_empty(),
            "leased"
        );
        // The taker died before sending (an upload, say): the job returns, not marked sending,
        // so the next taker may send it.
        let again = db.take_jobs(t + 200, 50, 8).await.unwrap();
        assert_eq!(again[0].message_id, msg.id);
        assert_eq!((again[0].attempts, again[0].orphaned_lease), (1, t + 150));
        assert_eq!(again[0].sending, 0);
        // This taker dies after starting to send: the next one learns Zalo may have it.
        db.mark_sending(std::slice::from_ref(&msg.id))
            .await
            .unwrap();
        let orphan = db.take_jobs(t + 300, 50, 8).await.unwrap();
        assert_eq!((orphan[0].attempts, orphan[0].orphaned_lease), (2, t + 250));
        assert_eq!(orphan[0].sending, 1);
        // A retry asked for by the sender is an ordinary try.
        db.retry_job_at(&msg.id, t + 400).await.unwrap();
        assert!(
            db.take_jobs(t + 350, 50, 8).await.unwrap().is_empty(),
            "not due yet"
        );
        let retried = db.take_jobs(t + 400, 50, 8).await.unwrap();
        assert_eq!((retried[0].attempts, retried[0].orphaned_lease), (3, 0));
        db.finish_job(&msg.id).await.unwrap();
        assert!(db.take_jobs(t + 10_000, 50, 8).await.unwrap().is_empty());
    }
}

/// Label changes go to Zalo in the order they were made, one at a time per page (a tag and then
/// its removal must not cross), under a lease like replies; other pages are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_jobs_are_taken_in_order_one_at_a_time_per_page() {
    use sop_console::store::sql::labels::TagOp;
    for url in databases().await {
        let (hub, owner) = scene(&url, TokenPair::default(), 2).await;
        let other = OaInfo {
            oa_id: "8765".into(),
            ..Default::default()
        };
        hub.upsert_connection(other, &owner.id, TokenPair::default())
            .await
            .unwrap();
        hub.attach_label(&owner, "c1", "VIP").await.unwrap();
        hub.detach_label(&owner, "c1", "VIP").await.unwrap();
        hub.attach_label(&owner, "c2", "Sỉ").await.unwrap();
        hub.remove_page_label(&owner, "p2", "Cũ").await.unwrap();
        let db = hub.db();
        let t = now_ms() + 1_000;
        let first = db.take_tag_jobs(t, 50, 8).await.unwrap();
        let taken: Vec<(&str, TagOp, &str)> = first
            .iter()
            .map(|j| (j.connection_id.as_str(), j.op(), j.name.as_str()))
            .collect();
        assert_eq!(
            taken,
            [("p1", TagOp::Tag, "VIP"), ("p2", TagOp::Remove, "Cũ")],
            "{}",
            db.engine_name()
        );
        assert!(
            db.take_tag_jobs(t + 10, 50, 8).await.unwrap().is_empty(),
            "leased"
        );
        // Zalo asked to wait: the same job again, later, before the page's next.
        db.retry_tag_job_at(first[0].n, t + 100).await.unwrap();
        db.finish_tag_job(first[1].n).await.unwrap();
        assert!(db.take_tag_jobs(t + 50, 50, 8).await.unwrap().is_empty());
        let again = db.take_tag_jobs(t + 100, 50, 8).await.unwrap();
        assert_eq!((again[0].n, again[0].attempts), (first[0].n, 1));
        db.finish_tag_job(again[0].n).await.unwrap();
        let next = db.take_tag_jobs(t + 200, 50, 8).await.unwrap();
        assert_eq!((next[0].op(), next[0].name.as_str()), (TagOp::Untag, "VIP"));
        assert_eq!(next[0].user_id, "u0");
        db.finish_tag_job(next[0].n).await.unwrap();
        let last = db.take_tag_jobs(t + 300, 50, 8).await.unwrap();
        assert_eq!(
            (last[0].user_id.as_str(), last[0].name.as_str()),
            ("u1", "Sỉ")
        );
    }
}

/// The same 500 webhooks delivered four times through every hub at once, in batches of 50, each
/// delivery in its own order (Zalo retrying through the balancer): each is stored once, exactly
/// one delivery is told it is new — the one that goes on to apply it — and none deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_delivered_through_every_hub_is_stored_once() {
    use rand::seq::SliceRandom;
    use sop_console::store::sql::webhooks::IncomingWebhook;
    const WEBHOOKS: usize = 500;
    for url in databases().await {
        Db::open(&url).await.unwrap();
        let hubs = hubs_on(&url).await;
        let engine = hubs[0].engine_name();
        // Four deliveries at a time through each hub.
        let deliveries = hubs.iter().cycle().take(hubs.len() * 4).map(|db| {
            let db = db.clone();
            let mut order: Vec<usize> = (0..WEBHOOKS).collect();
            order.shuffle(&mut rand::thread_rng());
            tokio::spawn(async move {
                let mut fresh = Vec::new();
                for chunk in order.chunks(50) {
                    let batch = chunk
                        .iter()
                        .map(|n| IncomingWebhook {
                            key: format!("1423847451268726170/z{n}"),
                            received_at: *n as i64,
                            body: format!("{{\"msg_id\":\"z{n}\"}}"),
                        })
                        .collect();
                    fresh.extend(
                        db.store_webhooks(batch)
                            .await
                            .expect("stored, never deadlocked"),
                    );
                }
                fresh
            })
        });
        let mut told_new = Vec::new();
        for d in deliveries.collect::<Vec<_>>() {
            told_new.extend(d.await.unwrap());
        }
        told_new.sort();
        let mut unique = told_new.clone();
        unique.dedup();
        assert_eq!(told_new.len(), WEBHOOKS, "{engine}: each new exactly once");
        assert_eq!(unique.len(), WEBHOOKS, "{engine}");
        let stored: i64 = match &*hubs[0] {
            Db::Sqlite(d) => sqlx::query_scalar("SELECT COUNT(*) FROM webhooks")
                .fetch_one(&d.writer)
                .await
                .unwrap(),
            Db::Postgres(d) => sqlx::query_scalar("SELECT COUNT(*) FROM webhooks")
                .fetch_one(&d.pool)
                .await
                .unwrap(),
        };
        assert_eq!(stored, WEBHOOKS as i64, "{engine}: stored once");
    }
}

/// Search newest first across the two ways PostgreSQL finds messages (walking back through the
/// newest `search_recent`, then the GIN index for the older ones): a rare word only old
/// messages have, a common word whose hits straddle the edge, and a page before a cursor. The
/// same answers on SQLite (FTS5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_old_and_new_messages_newest_first_on_both_engines() {
    use sop_console::store::sql::search::terms;
    for url in databases().await {
        let mut db = Db::open(&url).await.unwrap();
        if let Db::Postgres(pg) = &mut db {
            pg.search_recent = 3;
        }
        let rows = [
            "INSERT INTO accounts (id, email, username, email_key, username_key, name, role, availability, created_at) \
             VALUES ('a1', 'chu@sop.vn', 'Chu', 'chu@sop.vn', 'chu', 'Chủ', 'admin', 'available', 1)",
            "INSERT INTO connections (id, oa_id, name, connector, connected_at, last_connected_at, chat_mode, status) \
             VALUES ('p1', '4321', 'Trang', 'a1', 1, 1, 'shared', 'connected')",
            "INSERT INTO conversations (id, connection_id, customer_id, customer_name, assignee, state, status, origin, \
             last_activity_at, waiting_at, created_at, customer_search) \
             VALUES ('c1', 'p1', 'u1', 'Võ Thị Dung', 'a1', 'assigned', 'open', 'live', 2, 2, 2, 'vo thi dung u1')",
        ];
        let texts: Vec<String> = (1..=10)
            .map(|i| match i {
                2 => "Tin hiếm có".to_string(),
                _ => format!("Tin số {i}"),
            })
            .collect();
        insert_thread(&db, &rows, &texts).await.unwrap();
        let ids = |found: Vec<(i64, sop_console::model::Message)>| -> Vec<String> {
            found.into_iter().map(|(_, m)| m.id).collect()
        };
        let found = db
            .search_messages(&terms("hiem"), None, 5, None)
            .await
            .unwrap();
        assert_eq!(ids(found), ["m2"], "{url}: a rare word in an old message");
        let found = db
            .search_messages(&terms("tin"), None, 5, None)
            .await
            .unwrap();
        assert_eq!(
            ids(found),
            ["m10", "m9", "m8", "m7", "m6"],
            "{url}: across the edge"
        );
        let found = db
            .search_messages(&terms("tin"), Some(4), 5, None)
            .await
            .unwrap();
        assert_eq!(ids(found), ["m3", "m2", "m1"], "{url}: before a cursor");
        let within = ["c9".to_string()];
        let found = db
            .search_messages(&terms("tin"), None, 5, Some(&within))
            .await
            .unwrap();
        assert!(found.is_empty(), "{url}: only the conversations asked for");
        db.close().await;
    }
}

/// The rows, then `texts` as messages m1, m2, … of conversation c1 (search text folded).
async fn insert_thread(db: &Db, rows: &[&str], texts: &[String]) -> anyhow::Result<()> {
    sop_console::in_transaction!(db, tx => {
        for sql in rows {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        for (i, text) in texts.iter().enumerate() {
            let n = i as i64 + 1;
            sqlx::query(
                "INSERT INTO messages (id, seq, conversation_id, connection_id, direction, sender, \
                 sender_name, kind, text, created_at, search) \
                 VALUES ($1, $2, 'c1', 'p1', 'inbound', 'u1', '', 'text', $3, $2, $4)",
            )
            .bind(format!("m{n}"))
            .bind(n)
            .bind(text)
            .bind(sop_console::model::text::fold(text))
            .execute(&mut *tx)
            .await?;
        }
    });
    Ok(())
}
