//! Hub-level behaviour of DESIGN §3, in process on a real SQLite database.

use super::admin::OaInfo;
use super::*;
use crate::wire::{NewAccount, ReplyInput, RuleInput, View};

struct Fixture {
    hub: Arc<Hub>,
    /// Removed on drop unless taken.
    dir: Option<std::path::PathBuf>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Fixture {
    /// Closes the hub and opens its database again, as a restart does.
    async fn reopen(mut self) -> Fixture {
        let dir = self.dir.take().unwrap();
        self.hub.shutdown().await;
        drop(self);
        Fixture::open(dir).await
    }

    async fn open(dir: std::path::PathBuf) -> Fixture {
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("sop.db").display());
        let db = Arc::new(Db::open(&url).await.unwrap());
        let hub = Hub::open(db, &dir, 10_000).await.unwrap();
        Fixture {
            hub,
            dir: Some(dir),
        }
    }
}

async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("sop-hub-{}", rand::random::<u64>()));
    Fixture::open(dir).await
}

async fn account(hub: &Hub, username: &str, role: Role) -> Account {
    hub.create_account(NewAccount {
        email: format!("{}@example.vn", username.to_lowercase()),
        username: username.into(),
        name: username.into(),
        role,
    })
    .await
    .unwrap()
    .0
}

async fn page(hub: &Hub, oa_id: &str, connector: &Account) -> Connection {
    hub.upsert_connection(
        OaInfo {
            oa_id: oa_id.into(),
            name: format!("OA {oa_id}"),
            ..Default::default()
        },
        &connector.id,
        TokenPair::default(),
    )
    .await
    .unwrap()
    .0
}

fn inbound(conn: &Connection, user: &str, msg_id: &str) -> Inbound {
    Inbound {
        connection_id: conn.id.clone(),
        customer_user_id: user.into(),
        direction: Direction::Inbound,
        sender_name: String::new(),
        zalo_msg_id: Some(msg_id.into()),
        kind: MessageKind::Text,
        text: format!("Xin chào {msg_id}"),
        attachments: vec![],
        quote_msg_id: None,
        at: now_ms(),
        origin: Origin::Live,
        raw: None,
    }
}

async fn send(hub: &Hub, conn: &Connection, user: &str, msg_id: &str) -> Conversation {
    match hub.ingest(inbound(conn, user, msg_id)).await.unwrap() {
        Ingested::New { conversation, .. } => *conversation,
        Ingested::Duplicate { .. } => panic!("unexpected duplicate {msg_id}"),
    }
}

fn rule_input(
    name: &str,
    sources: &[&Connection],
    members: &[&str],
    method: Method,
    old: OldConversations,
) -> RuleInput {
    RuleInput {
        name: name.into(),
        sources: sources.iter().map(|c| c.id.clone()).collect(),
        members: members.iter().map(|s| s.to_string()).collect(),
        method,
        old_conversations: old,
    }
}

struct Seed {
    f: Fixture,
    admin: Account,
    agents: Vec<Account>,
    conn: Connection,
}

async fn seed(method: Method) -> Seed {
    let f = fixture().await;
    let admin = account(&f.hub, "CuongLM", Role::Admin).await;
    let mut agents = vec![];
    for u in ["HuongNT256", "QueCT3", "TriLM22"] {
        agents.push(account(&f.hub, u, Role::Agent).await);
    }
    let conn = page(&f.hub, "1423847451268726170", &admin).await;
    f.hub
        .create_rule(rule_input(
            "Chia chat cho nhóm Best Sale",
            &[&conn],
            &["HuongNT256", "queCT3@example.vn", "TriLM22"],
            method,
            OldConversations::None,
        ))
        .await
        .unwrap();
    Seed {
        f,
        admin,
        agents,
        conn,
    }
}

async fn everyone_away(s: &Seed) {
    for a in &s.agents {
        s.f.hub
            .set_availability(&a.id, Availability::Away)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn seed_round_robin_spreads_six_customers_two_each() {
    let s = seed(Method::RoundRobin).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        let c = send(&s.f.hub, &s.conn, &format!("u{i}"), &format!("m{i}")).await;
        assert_eq!(c.state, ConvState::Assigned);
        *counts.entry(c.assignee.unwrap()).or_default() += 1;
    }
    for a in &s.agents {
        assert_eq!(counts.get(&a.id), Some(&2), "{counts:?}");
    }
    // The turn survives a restart: the seventh goes to the first member, and after a restart
    // the eighth to the second (a cursor lost on restart would start again at the first).
    let (agents, conn) = (s.agents.clone(), s.conn.clone());
    let c = send(&s.f.hub, &conn, "u6", "m6").await;
    assert_eq!(c.assignee.as_deref(), Some(agents[0].id.as_str()));
    let f = s.f.reopen().await;
    let c = send(&f.hub, &conn, "u7", "m7").await;
    assert_eq!(c.assignee.as_deref(), Some(agents[1].id.as_str()));
}

#[tokio::test]
async fn a_second_message_keeps_the_assignee_and_is_idempotent() {
    let s = seed(Method::RoundRobin).await;
    let c1 = send(&s.f.hub, &s.conn, "u1", "m1").await;
    let c2 = send(&s.f.hub, &s.conn, "u1", "m2").await;
    assert_eq!(c1.id, c2.id);
    assert_eq!(c1.assignee, c2.assignee);
    assert_eq!(c2.unread_for(c2.assignee.as_ref().unwrap()), 2);
    let dup = s.f.hub.ingest(inbound(&s.conn, "u1", "m2")).await.unwrap();
    assert!(matches!(dup, Ingested::Duplicate { .. }));
    let who =
        s.f.hub
            .read(|st| st.account(c1.assignee.as_ref().unwrap()).unwrap().clone())
            .await;
    assert_eq!(
        s.f.hub
            .list_messages(&who, &c1.id, None, 50)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

#[tokio::test]
async fn nobody_available_queues_then_drains_oldest_first() {
    let s = seed(Method::RoundRobin).await;
    everyone_away(&s).await;
    let mut queued = vec![];
    for i in 0..4 {
        queued.push(send(&s.f.hub, &s.conn, &format!("u{i}"), &format!("m{i}")).await);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(queued.iter().all(|c| c.state == ConvState::Unclaimed));
    let que = &s.agents[1];
    let waiting =
        s.f.hub
            .list_conversations(que, View::Unclaimed, None, 10)
            .await
            .unwrap();
    let order: Vec<&str> = waiting.items.iter().map(|c| c.id.as_str()).collect();
    let oldest_first: Vec<&str> = queued.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        order, oldest_first,
        "the queue shows the longest waiting first"
    );

    // Two members become eligible in one change (the rule is saved with them, both available):
    // the queue is served oldest first, in turn — the order shows in who gets which.
    let newcomer = account(&s.f.hub, "MoiVao", Role::Agent).await;
    let rule_id =
        s.f.hub
            .read(|st| st.rules().next().unwrap().id.clone())
            .await;
    s.f.hub
        .update_rule(
            &rule_id,
            rule_input(
                "r",
                &[&s.conn],
                &["CuongLM", "MoiVao"],
                Method::RoundRobin,
                OldConversations::None,
            ),
        )
        .await
        .unwrap();
    let got: Vec<Option<String>> =
        s.f.hub
            .read(|st| {
                queued
                    .iter()
                    .map(|c| st.conversation(&c.id).unwrap().assignee.clone())
                    .collect()
            })
            .await;
    let (admin, newcomer) = (Some(s.admin.id.clone()), Some(newcomer.id));
    assert_eq!(got, [admin.clone(), newcomer.clone(), admin, newcomer]);
}

#[tokio::test]
async fn self_claim_has_one_winner_and_the_loser_learns_who() {
    let s = seed(Method::SelfClaim).await;
    let c = send(&s.f.hub, &s.conn, "u1", "m1").await;
    assert_eq!(c.state, ConvState::Unclaimed);
    for a in &s.agents {
        assert_eq!(s.f.hub.counts(a).await.unwrap().unclaimed, 1);
    }
    let won = s.f.hub.claim(&s.agents[1], &c.id).await.unwrap();
    assert_eq!(won.assignee.as_deref(), Some(s.agents[1].id.as_str()));
    match s.f.hub.claim(&s.agents[0], &c.id).await {
        Err(HubError::Conflict { code, winner, .. }) => {
            assert_eq!(code, "already_claimed");
            assert_eq!(winner.unwrap().username, "QueCT3");
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    // The loser no longer sees it.
    assert!(s.f.hub.get_conversation(&s.agents[0], &c.id).await.is_err());
}

#[tokio::test]
async fn replying_to_an_unclaimed_conversation_claims_it_and_keys_are_idempotent() {
    let s = seed(Method::SelfClaim).await;
    let c = send(&s.f.hub, &s.conn, "u1", "m1").await;
    let input = ReplyInput {
        client_key: "k1".into(),
        text: "Da, em chào anh".into(),
        quote_msg_id: None,
        attachment: None,
    };
    let m1 =
        s.f.hub
            .reply(&s.agents[2], &c.id, input.clone())
            .await
            .unwrap();
    let m2 = s.f.hub.reply(&s.agents[2], &c.id, input).await.unwrap();
    assert_eq!(m1.id, m2.id);
    assert_eq!(s.f.hub.outbound_jobs().await.unwrap().len(), 1);
    let conv = s.f.hub.get_conversation(&s.agents[2], &c.id).await.unwrap();
    assert_eq!(conv.assignee.as_deref(), Some(s.agents[2].id.as_str()));
    assert_eq!(conv.assignments.last().unwrap().reason, AssignReason::Reply);
    let too_long = ReplyInput {
        client_key: "k2".into(),
        text: "a".repeat(2001),
        quote_msg_id: None,
        attachment: None,
    };
    assert!(matches!(
        s.f.hub.reply(&s.agents[2], &c.id, too_long).await,
        Err(HubError::Invalid(_))
    ));
    // NFD input counts after NFC: 2000 composed characters fit.
    let nfd = "e\u{302}\u{301}".repeat(2000);
    let ok = ReplyInput {
        client_key: "k3".into(),
        text: nfd,
        quote_msg_id: None,
        attachment: None,
    };
    assert_eq!(
        s.f.hub
            .reply(&s.agents[2], &c.id, ok)
            .await
            .unwrap()
            .text
            .chars()
            .count(),
        2000
    );
}

#[tokio::test]
async fn done_reopens_on_a_new_message_with_the_same_assignee() {
    let s = seed(Method::RoundRobin).await;
    let c = send(&s.f.hub, &s.conn, "u1", "m1").await;
    let owner =
        s.f.hub
            .read(|st| st.account(c.assignee.as_ref().unwrap()).unwrap().clone())
            .await;
    let done = s.f.hub.mark_done(&owner, &c.id).await.unwrap();
    assert_eq!(done.status, ConvStatus::Done);
    let again = send(&s.f.hub, &s.conn, "u1", "m2").await;
    assert_eq!(again.status, ConvStatus::Open);
    assert_eq!(again.assignee, c.assignee);
}

#[tokio::test]
async fn only_me_page_goes_to_its_connector() {
    let f = fixture().await;
    let admin = account(&f.hub, "boss", Role::Admin).await;
    let agent = account(&f.hub, "agent", Role::Agent).await;
    let conn = page(&f.hub, "oa1", &agent).await;
    assert_eq!(conn.chat_mode, ChatMode::OnlyMe);
    let c = send(&f.hub, &conn, "u1", "m1").await;
    assert_eq!(c.assignee.as_deref(), Some(agent.id.as_str()));
    assert!(matches!(
        f.hub.release(&agent, &c.id).await,
        Err(HubError::Conflict { .. })
    ));
    let _ = admin;
}

#[tokio::test]
async fn removing_a_member_leaves_conversations_unattended_then_old_conversation_handling_applies()
{
    for (old, expect_assigned) in [
        (OldConversations::None, false),
        (OldConversations::Available, true),
        (OldConversations::All, true),
    ] {
        let s = seed(Method::RoundRobin).await;
        let c = send(&s.f.hub, &s.conn, "u1", "m1").await;
        assert_eq!(c.assignee.as_deref(), Some(s.agents[0].id.as_str()));
        let rule = s.f.hub.read(|st| st.rules().next().unwrap().clone()).await;
        let updated =
            s.f.hub
                .update_rule(
                    &rule.id,
                    rule_input(
                        &rule.name,
                        &[&s.conn],
                        &["QueCT3", "TriLM22"],
                        Method::RoundRobin,
                        old,
                    ),
                )
                .await
                .unwrap();
        assert_eq!(updated.members.len(), 2);
        let after =
            s.f.hub
                .read(|st| st.conversation(&c.id).unwrap().clone())
                .await;
        if expect_assigned {
            assert_eq!(after.state, ConvState::Assigned, "{old:?}");
            assert_ne!(after.assignee.as_deref(), Some(s.agents[0].id.as_str()));
            assert_eq!(
                after.assignments.last().unwrap().reason,
                AssignReason::OldConversations
            );
        } else {
            assert_eq!(after.state, ConvState::Unattended, "{old:?}");
            assert_eq!(
                after.assignments.last().unwrap().reason,
                AssignReason::MemberRemoved
            );
            // Unattended history stays with admins.
            assert!(s.f.hub.get_conversation(&s.agents[1], &c.id).await.is_err());
            assert!(s.f.hub.get_conversation(&s.admin, &c.id).await.is_ok());
        }
    }
}

#[tokio::test]
async fn history_conversations_follow_the_available_option() {
    let f = fixture().await;
    let admin = account(&f.hub, "boss", Role::Admin).await;
    let agent = account(&f.hub, "HuongNT256", Role::Agent).await;
    let conn = page(&f.hub, "oa1", &admin).await;
    let now = now_ms();
    for (user, age_days) in [("recent", 1), ("stale", 10)] {
        let mut m = inbound(&conn, user, user);
        m.origin = Origin::History;
        m.at = now - age_days * DAY_MS;
        f.hub.ingest(m).await.unwrap();
    }
    let all = f
        .hub
        .list_conversations(&admin, View::All, None, 10)
        .await
        .unwrap()
        .items;
    assert!(all
        .iter()
        .all(|c| c.state == ConvState::Unattended && c.unread.is_empty()));
    f.hub
        .create_rule(rule_input(
            "r",
            &[&conn],
            &["HuongNT256"],
            Method::RoundRobin,
            OldConversations::Available,
        ))
        .await
        .unwrap();
    let mine = f
        .hub
        .list_conversations(&agent, View::Mine, None, 10)
        .await
        .unwrap()
        .items;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].customer.user_id, "recent");
}

#[tokio::test]
async fn rule_conflicts_and_unknown_members_are_refused() {
    let s = seed(Method::RoundRobin).await;
    let err =
        s.f.hub
            .create_rule(rule_input(
                "other",
                &[&s.conn],
                &["QueCT3"],
                Method::SelfClaim,
                OldConversations::None,
            ))
            .await
            .unwrap_err();
    match err {
        HubError::Conflict { code, rule, .. } => {
            assert_eq!(code, "rule_conflict");
            assert_eq!(rule.unwrap().name, "Chia chat cho nhóm Best Sale");
        }
        e => panic!("{e:?}"),
    }
    let p2 = page(&s.f.hub, "oa2", &s.admin).await;
    let err =
        s.f.hub
            .create_rule(rule_input(
                "x",
                &[&p2],
                &["QueCT3", "nobody@x.vn"],
                Method::SelfClaim,
                OldConversations::None,
            ))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, HubError::Invalid(m) if m.contains("nobody@x.vn")),
        "{err:?}"
    );
}

#[tokio::test]
async fn state_survives_reopen() {
    let s = seed(Method::RoundRobin).await;
    let conv_id = send(&s.f.hub, &s.conn, "u1", "m1").await.id;
    let f = s.f.reopen().await;
    let hub = &f.hub;
    let conv = hub
        .read(|st| st.conversation(&conv_id).cloned())
        .await
        .expect("conversation persisted");
    assert_eq!(conv.state, ConvState::Assigned);
    assert_eq!(hub.read(|st| st.rules().count()).await, 1);
}

#[tokio::test]
async fn an_admin_who_claimed_keeps_the_conversation_when_the_customer_writes_again() {
    let s = seed(Method::RoundRobin).await;
    everyone_away(&s).await;
    let c = send(&s.f.hub, &s.conn, "u1", "m1").await;
    assert_eq!(c.state, ConvState::Unclaimed);
    s.f.hub.claim(&s.admin, &c.id).await.unwrap();
    let again = send(&s.f.hub, &s.conn, "u1", "m2").await;
    assert_eq!(again.assignee.as_deref(), Some(s.admin.id.as_str()));
    assert_eq!(again.state, ConvState::Assigned);
}

/// A webhook is stored once by its body whatever delivers it again (Zalo's retries, another
/// hub), before or after a restart, and applied once.
#[tokio::test]
async fn a_webhook_is_stored_and_applied_once() {
    let f = fixture().await;
    let body: &[u8] = br#"{"event_name":"shop_has_order","n":1}"#;
    let first = f.hub.apply_webhooks(&[body, body]).await.unwrap();
    assert_eq!(first.applied, 1);
    let f = f.reopen().await;
    let again = f.hub.apply_webhooks(&[body]).await.unwrap();
    assert_eq!(again.applied, 0, "a retry after the restart is a duplicate");
    let other: &[u8] = br#"{"event_name":"shop_has_order","n":2}"#;
    assert_eq!(f.hub.apply_webhooks(&[other]).await.unwrap().applied, 1);
}

#[test]
fn the_shared_frame_is_exactly_what_the_wire_type_serialises() {
    let event = Event {
        seq: 7,
        at: 1,
        body: EventBody::RuleRemoved { id: "r1".into() },
    };
    let stored = StoredEvent::new(event.clone(), vec![]);
    let ours: serde_json::Value = serde_json::from_str(stored.frame_json()).unwrap();
    let theirs = serde_json::to_value(crate::wire::Frame::Event { event }).unwrap();
    assert_eq!(ours, theirs);
}
