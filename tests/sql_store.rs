//! The SQL store's contract, run on both engines (issue 10): the schema migrates from empty and
//! concurrently; the event log stays gap-free and in commit order across writers; a claim has one
//! winner and round robin stays fair across hubs. "Hubs" are separate connection pools on one
//! database: three on PostgreSQL, two on SQLite (the hub and a `sop admin` sharing the file).

mod common;
use common::*;
use sop_console::model::*;
use sop_console::store::sql::conversations::Claim;
use sop_console::store::sql::events::{LoggedEvent, NewEvent};
use sop_console::store::sql::{Db, StoreError};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_reaches_the_latest_schema_on_both_engines() {
    for url in databases().await {
        let db = Db::open(&url).await.unwrap();
        let applied = db.applied_migrations().await.unwrap();
        assert_eq!(applied, vec![1, 2], "{}", db.engine_name());
        assert_eq!(db.event_head().await.unwrap(), 0);
        db.close().await;
        // Opening again migrates nothing and finds the store sound.
        let again = Db::open(&url).await.unwrap();
        assert_eq!(again.applied_migrations().await.unwrap(), vec![1, 2]);
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
        assert_eq!(db.applied_migrations().await.unwrap(), vec![1, 2]);
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

fn agent(name: &str) -> Account {
    Account {
        id: String::new(),
        email: format!("{}@sop.vn", name.to_lowercase()),
        username: name.into(),
        name: name.into(),
        role: Role::Agent,
        availability: Availability::Available,
        created_at: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_unique_by_handle_and_found_by_token_hash() {
    for url in databases().await {
        let db = Db::open(&url).await.unwrap();
        let an = db.create_account(agent("An"), "hash-an").await.unwrap();
        assert_eq!(an.id, "a1");
        // The same username in other letters, or the same email, is refused.
        let mut again = agent("AN");
        again.email = "other@sop.vn".into();
        let e = db.create_account(again, "hash-2").await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Conflict {
                    code: "account_exists"
                }
            ),
            "{e:?}"
        );
        let e = db.create_account(agent("an"), "hash-3").await.unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
        let binh = db.create_account(agent("Binh"), "hash-binh").await.unwrap();
        assert_eq!(binh.id, "a2", "a refused account takes no id");
        assert_eq!(
            db.account_by_token("hash-binh").await.unwrap(),
            Some(binh.clone())
        );
        assert_eq!(db.account_by_token("nope").await.unwrap(), None);
        assert_eq!(db.accounts().await.unwrap(), vec![an, binh]);
    }
}

/// Three hubs (PostgreSQL; on SQLite two processes) race 100 claims for the same waiting
/// conversation, 20 times: exactly one wins each round, the others learn who, and one
/// assignment and one event are logged per round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_raced_across_hubs_has_exactly_one_winner() {
    const ROUNDS: usize = 20;
    const CLAIMS: usize = 100;
    for url in databases().await {
        let setup = Db::open(&url).await.unwrap();
        let mut agents = Vec::new();
        for i in 0..CLAIMS {
            agents.push(
                setup
                    .create_account(agent(&format!("nv{i}")), &format!("h{i}"))
                    .await
                    .unwrap(),
            );
        }
        let page = page_of(&agents[0]);

        setup.insert_connection(&page).await.unwrap();
        let hubs = hubs_on(&url).await;
        let handles = hubs.len();
        let engine = setup.engine_name();
        for round in 0..ROUNDS {
            let conv = new_conversation(round);
            setup.insert_conversation(&conv).await.unwrap();
            let claims = agents.iter().enumerate().map(|(i, who)| {
                let (db, who, id) = (hubs[i % handles].clone(), who.clone(), conv.id.clone());
                tokio::spawn(async move {
                    db.claim(&id, &who, 2, |c| {
                        (
                            2,
                            "[]".into(),
                            format!("{{\"claimed\":\"{}\"}}", c.assignee.as_deref().unwrap()),
                        )
                    })
                    .await
                })
            });
            let mut winners = Vec::new();
            let mut holders = Vec::new();
            for claim in claims.collect::<Vec<_>>() {
                match claim.await.unwrap().unwrap() {
                    Claim::Won(c, events) => {
                        assert_eq!(events.len(), 1);
                        winners.push(c.assignee.clone().unwrap());
                    }
                    Claim::Taken { holder } => {
                        holders.push(holder.expect("the loser learns who won"))
                    }
                }
            }
            assert_eq!(winners.len(), 1, "{engine} round {round}: {winners:?}");
            assert_eq!(holders.len(), CLAIMS - 1);
            assert!(
                holders.iter().all(|h| h == &winners[0]),
                "{engine}: every loser names the winner"
            );
            let stored = setup.conversation(&conv.id).await.unwrap().unwrap();
            assert_eq!(stored.assignee.as_ref(), Some(&winners[0]));
            assert_eq!(stored.state, ConvState::Assigned);
            assert_eq!(stored.assignments.len(), 1, "{engine}: one assignment");
        }
        assert_eq!(
            setup.event_head().await.unwrap(),
            ROUNDS as i64,
            "{engine}: one event per round"
        );
        println!(
            "{engine}: {ROUNDS} rounds of {CLAIMS} claims over {handles} hubs, one winner each"
        );
    }
}

fn page_of(connector: &Account) -> Connection {
    Connection {
        id: "p1".into(),
        oa_id: "1423847451268726170".into(),
        name: "Trang".into(),
        avatar: String::new(),
        category: String::new(),
        connector: connector.id.clone(),
        connected_at: 1,
        last_connected_at: 1,
        chat_mode: ChatMode::Shared,
        rule_id: None,
        status: ConnectionStatus::Connected,
        status_reason: None,
        tokens: TokenPair::default(),
        last_event_at: None,
        last_error: None,
    }
}

/// A reply as an agent writes it, before the store numbers it.
fn reply_by(who: &Account, conversation: &str, text: &str, client_key: &str) -> Message {
    Message {
        id: String::new(),
        conversation_id: conversation.into(),
        direction: Direction::Outbound,
        sender: who.id.clone(),
        sender_name: who.name.clone(),
        kind: MessageKind::Text,
        text: text.into(),
        attachments: vec![],
        zalo_msg_id: None,
        quote_msg_id: None,
        client_key: Some(client_key.into()),
        delivery: Some(Delivery::Pending),
        error_code: None,
        error_reason: None,
        created_at: 1,
        raw: None,
    }
}

fn new_conversation(n: usize) -> Conversation {
    Conversation {
        id: format!("c{n}"),
        connection_id: "p1".into(),
        customer: Customer {
            user_id: format!("u{n}"),
            display_name: "Khách".into(),
            ..Default::default()
        },
        assignee: None,
        state: ConvState::Unclaimed,
        status: ConvStatus::Open,
        origin: Origin::Live,
        last_interaction_at: Some(1),
        last_activity_at: 1,
        waiting_since: None,
        unread: Default::default(),
        preview: "Xin chào".into(),
        assignments: vec![],
        created_at: 1,
    }
}

/// 3,000 new conversations routed at once through three hubs (PostgreSQL; two on SQLite) by a
/// three-member round-robin rule: the members' counts differ by at most one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_robin_stays_fair_across_hubs() {
    use futures_util::StreamExt;
    const CONVERSATIONS: usize = 3_000;
    for url in databases().await {
        let setup = Db::open(&url).await.unwrap();
        let owner = setup.create_account(agent("Chu"), "h-chu").await.unwrap();
        let mut members = Vec::new();
        for name in ["Huong", "Que", "Tri"] {
            members.push(
                setup
                    .create_account(agent(name), &format!("h-{name}"))
                    .await
                    .unwrap()
                    .id,
            );
        }
        setup.insert_connection(&page_of(&owner)).await.unwrap();
        let rule = setup
            .create_rule(Rule {
                id: String::new(),
                name: "Chia đều".into(),
                sources: vec!["p1".into()],
                members: members.clone(),
                method: Method::RoundRobin,
                old_conversations: OldConversations::None,
                cursor: None,
                created_at: 1,
                updated_at: 1,
            })
            .await
            .unwrap();
        assert_eq!(rule.id, "r1");
        let hubs = hubs_on(&url).await;
        let handles = hubs.len();
        let engine = setup.engine_name();
        let started = std::time::Instant::now();
        let routed: Vec<Conversation> = futures_util::stream::iter(0..CONVERSATIONS)
            .map(|n| {
                let db = hubs[n % handles].clone();
                async move {
                    let (conv, _) = db
                        .open_conversation(new_conversation(n), 2, |c| {
                            (2, "[]".into(), format!("{{\"conv\":\"{}\"}}", c.id))
                        })
                        .await
                        .unwrap();
                    conv
                }
            })
            .buffer_unordered(48)
            .collect()
            .await;
        let mut counts = std::collections::BTreeMap::new();
        for c in &routed {
            assert_eq!(c.state, ConvState::Assigned);
            *counts.entry(c.assignee.clone().unwrap()).or_insert(0usize) += 1;
        }
        let (min, max) = (
            counts.values().min().unwrap(),
            counts.values().max().unwrap(),
        );
        println!(
            "{engine}: {CONVERSATIONS} conversations over {handles} hubs in {:?}: {counts:?}",
            started.elapsed()
        );
        assert_eq!(counts.len(), 3, "{engine}: {counts:?}");
        assert!(max - min <= 1, "{engine}: unfair {counts:?}");
        assert_eq!(setup.event_head().await.unwrap(), CONVERSATIONS as i64);
    }
}

/// A hub follows events committed through the others: 1,000 events written by two hubs arrive
/// at a third once each, in order, also when its LISTEN connection is killed midway (PostgreSQL),
/// or with no doorbell at all between processes (SQLite: the follower's poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_follows_what_the_others_commit() {
    use sop_console::store::sql::feed;
    const EVENTS: usize = 1_000;
    for url in databases().await {
        Db::open(&url).await.unwrap();
        let writers = [
            Arc::new(Db::connect(&url).await.unwrap()),
            Arc::new(Db::connect(&url).await.unwrap()),
        ];
        let follower = Arc::new(Db::connect(&url).await.unwrap());
        let engine = follower.engine_name();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let following = tokio::spawn(feed::follow(follower.clone(), 0, tx));
        let mut sent_at = std::collections::HashMap::new();
        let writing = {
            let writers = writers.clone();
            tokio::spawn(async move {
                let mut at = Vec::new();
                for n in 0..EVENTS / 5 {
                    let events = (0..5)
                        .map(|i| {
                            (
                                n as i64,
                                "[]".to_string(),
                                format!("{{\"n\":{n},\"i\":{i}}}"),
                            )
                        })
                        .collect();
                    let logged = writers[n % 2].append_events(events).await.unwrap();
                    let now = std::time::Instant::now();
                    at.extend(logged.into_iter().map(|e| (e.seq, now)));
                    if n == EVENTS / 10 {
                        if let Db::Postgres(d) = &*writers[0] {
                            // Kill every LISTEN connection: the follower must notice and read.
                            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
                                .execute(&d.pool)
                                .await
                                .unwrap();
                        }
                    }
                }
                at
            })
        };
        let mut received = Vec::new();
        let mut latencies = Vec::new();
        while received.len() < EVENTS {
            let event = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{engine}: stalled after {}", received.len()))
                .unwrap();
            let arrived = std::time::Instant::now();
            received.push(event.seq);
            latencies.push(arrived);
        }
        for (seq, at) in writing.await.unwrap() {
            sent_at.insert(seq, at);
        }
        assert_eq!(
            received,
            (1..=EVENTS as i64).collect::<Vec<_>>(),
            "{engine}: once each, in order"
        );
        let mut lag: Vec<_> = received
            .iter()
            .zip(&latencies)
            .map(|(seq, arrived)| arrived.saturating_duration_since(sent_at[seq]))
            .collect();
        lag.sort();
        println!(
            "{engine}: {EVENTS} events followed across hubs; commit → follower p50 {:?}, p99 {:?}",
            lag[lag.len() / 2],
            lag[lag.len() * 99 / 100]
        );
        drop(rx);
        tokio::time::timeout(std::time::Duration::from_secs(5), following)
            .await
            .expect("the follower ends with its receiver")
            .unwrap();
    }
}

/// 50 callers across hubs find the page's token expired at once: exactly one refresh reaches
/// Zalo (which burns a refresh token on first use), every caller gets the new token, and a token
/// Zalo refuses mid-validity is refreshed once more, again by one caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_refresh_is_single_flight_across_hubs() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for url in databases().await {
        let setup = Db::open(&url).await.unwrap();
        let owner = setup.create_account(agent("Chu"), "h-chu").await.unwrap();
        let mut page = page_of(&owner);
        page.tokens = TokenPair {
            access_token: "old-access".into(),
            refresh_token: "old-refresh".into(),
            access_expires_at: 0,
        };
        setup.insert_connection(&page).await.unwrap();
        let hubs = hubs_on(&url).await;
        let handles = hubs.len();
        let engine = setup.engine_name();
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
        let setup = Db::open(&url).await.unwrap();
        let owner = setup.create_account(agent("Chu"), "h-chu").await.unwrap();
        setup.insert_connection(&page_of(&owner)).await.unwrap();
        for c in 0..CONVERSATIONS {
            setup
                .insert_conversation(&new_conversation(c))
                .await
                .unwrap();
        }
        for r in 0..REPLIES {
            for c in 0..CONVERSATIONS {
                let msg = reply_by(
                    &owner,
                    &format!("c{c}"),
                    &format!("trả lời {r}"),
                    &format!("k{c}-{r}"),
                );
                setup
                    .queue_reply(msg, None, 0, |m| {
                        (1, "[]".into(), format!("{{\"m\":\"{}\"}}", m.id))
                    })
                    .await
                    .unwrap();
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
        let engine = setup.engine_name();
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
        let db = Db::open(&url).await.unwrap();
        let owner = db.create_account(agent("Chu"), "h-chu").await.unwrap();
        db.insert_connection(&page_of(&owner)).await.unwrap();
        db.insert_conversation(&new_conversation(0)).await.unwrap();
        let msg = reply_by(&owner, "c0", "Dạ", "k");
        let (msg, _) = db
            .queue_reply(msg, None, 0, |_| (1, "[]".into(), "{}".into()))
            .await
            .unwrap();
        let first = db.take_jobs(100, 50, 8).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].attempts, first[0].orphaned_lease), (0, 0));
        assert!(db.take_jobs(120, 50, 8).await.unwrap().is_empty(), "leased");
        // The taker died before sending (an upload, say): the job returns, not marked sending,
        // so the next taker may send it.
        let again = db.take_jobs(200, 50, 8).await.unwrap();
        assert_eq!(again[0].message_id, msg.id);
        assert_eq!((again[0].attempts, again[0].orphaned_lease), (1, 150));
        assert_eq!(again[0].sending, 0);
        // This taker dies after starting to send: the next one learns Zalo may have it.
        db.mark_sending(&msg.id).await.unwrap();
        let orphan = db.take_jobs(300, 50, 8).await.unwrap();
        assert_eq!((orphan[0].attempts, orphan[0].orphaned_lease), (2, 250));
        assert_eq!(orphan[0].sending, 1);
        // A retry asked for by the sender is an ordinary try.
        db.retry_job_at(&msg.id, 400).await.unwrap();
        assert!(
            db.take_jobs(350, 50, 8).await.unwrap().is_empty(),
            "not due yet"
        );
        let retried = db.take_jobs(400, 50, 8).await.unwrap();
        assert_eq!((retried[0].attempts, retried[0].orphaned_lease), (3, 0));
        db.finish_job(&msg.id).await.unwrap();
        assert!(db.take_jobs(10_000, 50, 8).await.unwrap().is_empty());
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
