//! Several hubs on one database (issue 10), the hub's own code paths: three hubs on PostgreSQL;
//! on SQLite two sharing the file (what SQLite allows: a hub and `sop admin`). Each hub is a real
//! `Hub` with its own connection pool, cache and follower, so a decision taken on one hub's cache
//! while another committed would show here.

mod common;
use common::*;
use sop_console::model::*;
use sop_console::server::hub::{Hub, HubError, OaInfo};
use sop_console::store::sql::Db;
use sop_console::wire::{EventBody, NewAccount, RuleInput};
use std::sync::Arc;

async fn hubs_on(url: &str) -> Vec<Arc<Hub>> {
    let count = if url.starts_with("sqlite") { 2 } else { 3 };
    let mut hubs = Vec::new();
    for _ in 0..count {
        let db = Arc::new(Db::open(url).await.unwrap());
        hubs.push(Hub::open(db, &temp_dir("hub"), 1_000_000).await.unwrap());
    }
    hubs
}

async fn account(hub: &Hub, name: &str, role: Role) -> Account {
    hub.create_account(NewAccount {
        email: format!("{}@sop.vn", name.to_lowercase()),
        username: name.into(),
        name: name.into(),
        role,
    })
    .await
    .unwrap()
    .0
}

async fn page(hub: &Hub, connector: &Account) -> Connection {
    let oa = OaInfo {
        oa_id: "4321".into(),
        name: "Trang".into(),
        ..Default::default()
    };
    let tokens = TokenPair::default();
    hub.upsert_connection(oa, &connector.id, tokens)
        .await
        .unwrap()
        .0
}

async fn rule(hub: &Hub, page: &Connection, members: &[&Account], method: Method) {
    hub.create_rule(RuleInput {
        name: "Chia".into(),
        sources: vec![page.id.clone()],
        members: members.iter().map(|a| a.username.clone()).collect(),
        method,
        old_conversations: OldConversations::None,
    })
    .await
    .unwrap();
}

/// 100 agents race to claim the same waiting conversation through all hubs, 20 times: exactly
/// one wins each round and every loser is told who.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_raced_across_hubs_has_exactly_one_winner() {
    const ROUNDS: usize = 20;
    const CLAIMS: usize = 100;
    for url in databases().await {
        let hubs = hubs_on(&url).await;
        let admin = account(&hubs[0], "Chu", Role::Admin).await;
        let mut agents = Vec::new();
        for i in 0..CLAIMS {
            agents.push(account(&hubs[i % hubs.len()], &format!("nv{i}"), Role::Agent).await);
        }
        let page = page(&hubs[0], &admin).await;
        let members: Vec<&Account> = agents.iter().collect();
        rule(&hubs[1], &page, &members, Method::SelfClaim).await;
        for round in 0..ROUNDS {
            let hub = &hubs[round % hubs.len()];
            let message = customer_message(&page.id, &format!("u{round}"), &format!("z{round}"));
            let conv = new_conversation_of(hub, message).await;
            assert_eq!(conv.state, ConvState::Unclaimed);
            let claims = agents.iter().enumerate().map(|(i, who)| {
                let (hub, who, id) = (hubs[i % hubs.len()].clone(), who.clone(), conv.id.clone());
                tokio::spawn(async move { hub.claim(&who, &id).await })
            });
            let mut winners = Vec::new();
            let mut named = Vec::new();
            for claim in claims.collect::<Vec<_>>() {
                match claim.await.unwrap() {
                    Ok(c) => winners.push(c.assignee.unwrap()),
                    Err(HubError::Conflict { winner, .. }) => {
                        named.push(winner.expect("the loser learns who won").id)
                    }
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            assert_eq!(winners.len(), 1, "{url} round {round}: {winners:?}");
            assert_eq!(named.len(), CLAIMS - 1);
            assert!(named.iter().all(|w| w == &winners[0]), "{named:?}");
        }
    }
}

/// 3,000 new customers write through all hubs at once to a page with a three-member round-robin
/// rule: the members' counts differ by at most one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_robin_stays_fair_across_hubs() {
    use futures_util::StreamExt;
    const CUSTOMERS: usize = 3_000;
    for url in databases().await {
        let hubs = hubs_on(&url).await;
        let admin = account(&hubs[0], "Chu", Role::Admin).await;
        let mut members = Vec::new();
        for name in ["Huong", "Que", "Tri"] {
            members.push(account(&hubs[0], name, Role::Agent).await);
        }
        let page = page(&hubs[0], &admin).await;
        rule(
            &hubs[0],
            &page,
            &members.iter().collect::<Vec<_>>(),
            Method::RoundRobin,
        )
        .await;
        let started = std::time::Instant::now();
        let routed: Vec<Conversation> = futures_util::stream::iter(0..CUSTOMERS)
            .map(|n| {
                let (hub, page) = (hubs[n % hubs.len()].clone(), page.clone());
                async move {
                    let message = customer_message(&page.id, &format!("u{n}"), &format!("z{n}"));
                    new_conversation_of(&hub, message).await
                }
            })
            .buffer_unordered(48)
            .collect()
            .await;
        let mut counts = std::collections::BTreeMap::new();
        for c in &routed {
            *counts.entry(c.assignee.clone().unwrap()).or_insert(0usize) += 1;
        }
        println!(
            "{url}: {CUSTOMERS} customers over {} hubs in {:?}: {counts:?}",
            hubs.len(),
            started.elapsed()
        );
        let (min, max) = (counts.values().min(), counts.values().max());
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(max.unwrap() - min.unwrap() <= 1, "unfair: {counts:?}");
    }
}

/// What is changed through the other hubs reaches a console of the first: every event once, in
/// log order, and its cache (what its API answers) follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_publishes_what_the_others_commit() {
    const CUSTOMERS: usize = 300;
    for url in databases().await {
        let hubs = hubs_on(&url).await;
        let admin = account(&hubs[0], "Chu", Role::Admin).await;
        let page = page(&hubs[1], &admin).await;
        let watcher = &hubs[0];
        let mut live = watcher.subscribe();
        let from = watcher.published_seq();
        for n in 0..CUSTOMERS {
            let writer = &hubs[1 + n % (hubs.len() - 1)];
            let message = customer_message(&page.id, &format!("u{n}"), &format!("z{n}"));
            new_conversation_of(writer, message).await;
        }
        let head = hubs[1]
            .published_seq()
            .max(hubs[hubs.len() - 1].published_seq());
        let mut seqs = Vec::new();
        let mut conversations = std::collections::BTreeSet::new();
        while seqs.last().copied().unwrap_or(from) < head {
            let e = tokio::time::timeout(std::time::Duration::from_secs(10), live.recv())
                .await
                .unwrap_or_else(|_| panic!("{url}: stalled after {}", seqs.len()))
                .unwrap();
            if let EventBody::Conversation { conversation } = &e.event.body {
                conversations.insert(conversation.id.clone());
            }
            seqs.push(e.event.seq);
        }
        assert_eq!(
            seqs,
            ((from + 1)..=head).collect::<Vec<_>>(),
            "{url}: once each, in order"
        );
        assert_eq!(conversations.len(), CUSTOMERS);
        let seen = watcher.read(|st| st.conversations().count()).await;
        assert_eq!(seen, CUSTOMERS, "{url}: the watcher's cache has them all");
    }
}
