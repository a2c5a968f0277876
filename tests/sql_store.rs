//! The SQL store's contract, run on both engines (issue 10): the schema migrates from empty and
//! concurrently, and the event log stays gap-free and in commit order across writers (PostgreSQL:
//! three hubs' pools; SQLite: the hub and a `sop admin` process sharing the file).

mod common;
use common::*;
use sop_console::store::sql::events::{LoggedEvent, NewEvent};
use sop_console::store::sql::Db;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_reaches_the_latest_schema_on_both_engines() {
    for url in databases().await {
        let db = Db::open(&url).await.unwrap();
        let applied = db.applied_migrations().await.unwrap();
        assert_eq!(applied, vec![1], "{}", db.engine_name());
        assert_eq!(db.event_head().await.unwrap(), 0);
        db.close().await;
        // Opening again migrates nothing and finds the store sound.
        let again = Db::open(&url).await.unwrap();
        assert_eq!(again.applied_migrations().await.unwrap(), vec![1]);
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
        assert_eq!(db.applied_migrations().await.unwrap(), vec![1]);
    }
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
        let handles = if url.starts_with("sqlite") { 2 } else { 3 };
        Db::open(&url).await.unwrap();
        let mut dbs = Vec::new();
        for _ in 0..handles {
            dbs.push(Arc::new(Db::connect(&url).await.unwrap()));
        }
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
