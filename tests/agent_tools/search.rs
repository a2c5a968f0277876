//! `GET /search` through the API, on the engine `SOP_TEST_ENGINE` picks: what Vietnamese agents
//! type finds what customers wrote (accents, case and `đ` ignored, words as prefixes), newest
//! first, in pages; and nobody finds anything of a conversation they may not see.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;
use sop_console::model::{Connection, Conversation};
use sop_console::routing::visibility;
use std::collections::{BTreeMap, BTreeSet};

/// A customer of `page` writes `text`; the hub has read their profile (name) from Zalo.
async fn customer_says(
    t: &TestHub,
    page: &Connection,
    user: &str,
    name: &str,
    msg_id: &str,
    text: &str,
) -> Conversation {
    let mut m = customer_message(&page.id, user, msg_id);
    m.text = text.into();
    let conv = match t.hub.ingest(m).await.unwrap() {
        sop_console::server::hub::Ingested::New { conversation, .. } => *conversation,
        other => panic!("{other:?}"),
    };
    let profile = sop_console::zalo::client::UserProfile {
        display_name: name.to_string(),
        ..Default::default()
    };
    t.hub.set_profile(&conv.id, profile).await.unwrap();
    conv
}

/// Every page of a search, `limit` hits a page: (conversation id, message text or None).
async fn search_all(
    t: &TestHub,
    token: &str,
    q: &str,
    limit: usize,
) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = reqwest::Url::parse("http://x/api/v1/search").unwrap();
        url.query_pairs_mut()
            .append_pair("q", q)
            .append_pair("limit", &limit.to_string());
        if let Some(c) = &cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let path = format!("{}?{}", url.path(), url.query().unwrap());
        let (status, body) = t.get(&path, token).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= limit, "{q}: a page longer than its limit");
        for hit in items {
            out.push((
                hit["conversation"]["id"].as_str().unwrap().to_string(),
                hit["message"]["text"].as_str().map(str::to_string),
            ));
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// The conversations a search found (by customer or by message).
fn conversations(hits: &[(String, Option<String>)]) -> BTreeSet<String> {
    hits.iter().map(|(c, _)| c.clone()).collect()
}

#[tokio::test]
async fn agents_find_customers_and_messages_typing_without_accents() {
    let t = start_hub().await;
    let admin = t.admin_token.clone();
    let page = t.page("oa-search").await;
    let dung = customer_says(
        &t,
        &page,
        "u1",
        "Võ Thị Dung",
        "m1",
        "Cho em hỏi giá dịch vụ",
    )
    .await;
    let dat = customer_says(
        &t,
        &page,
        "u2",
        "Nguyễn Văn Đạt",
        "m2",
        "Em muốn Đặt lịch hẹn ạ",
    )
    .await;
    let an = customer_says(
        &t,
        &page,
        "u3",
        "Trần Văn An",
        "m3",
        "Khách hàng chia sẻ thông tin / shared info — name: An, phone: 0912345678",
    )
    .await;
    // A later message with the same words as Dung's: newest first.
    customer_says(
        &t,
        &page,
        "u1",
        "Võ Thị Dung",
        "m4",
        "Giá dịch vụ trọn gói bao nhiêu?",
    )
    .await;

    let hits = search_all(&t, &admin, "vo thi dung", 20).await;
    assert_eq!(hits, [(dung.id.clone(), None)], "the customer by name");

    let hits = search_all(&t, &admin, "dat lich", 20).await;
    assert_eq!(
        hits,
        [(dat.id.clone(), Some("Em muốn Đặt lịch hẹn ạ".into()))],
        "a message by its words"
    );

    let hits = search_all(&t, &admin, "NGUYEN", 20).await;
    assert_eq!(hits, [(dat.id.clone(), None)], "case ignored");

    for q in ["đ", "d", "Đ", "da"] {
        let hits = search_all(&t, &admin, q, 20).await;
        assert!(
            hits.contains(&(dat.id.clone(), None)),
            "{q:?} finds Đạt: {hits:?}"
        );
    }
    assert!(
        search_all(&t, &admin, "da", 20)
            .await
            .contains(&(dat.id.clone(), Some("Em muốn Đặt lịch hẹn ạ".into()))),
        "two letters already find the message"
    );

    let hits = search_all(&t, &admin, "0912", 20).await;
    assert_eq!(
        conversations(&hits),
        BTreeSet::from([an.id.clone()]),
        "the shared phone"
    );

    let hits = search_all(&t, &admin, "gia dich vu", 20).await;
    assert_eq!(
        hits,
        [
            (
                dung.id.clone(),
                Some("Giá dịch vụ trọn gói bao nhiêu?".into())
            ),
            (dung.id.clone(), Some("Cho em hỏi giá dịch vụ".into())),
        ],
        "newest first"
    );
    // One hit a page: the same hits, each once, in the same order.
    assert_eq!(search_all(&t, &admin, "gia dich vu", 1).await, hits);

    assert!(search_all(&t, &admin, "xyz", 20).await.is_empty());
    for q in ["", "  -- * \"", "%20"] {
        let path = format!("/api/v1/search?q={q}");
        let (status, body) = t.get(&path, &admin).await;
        assert_eq!(status.as_u16() / 100, 4, "{q:?}: {status} {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    let (status, _) = t.get("/api/v1/search?q=gia&cursor=zzz", &admin).await;
    assert_eq!(status.as_u16() / 100, 4);
    t.stop().await;
}

/// A small deterministic generator, so a failing world can be rebuilt from its seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random worlds (pages shared by rules or kept for one agent, conversations waiting, handed
/// over, done): for every account, search finds exactly the matching conversations the views'
/// visibility policy lets it see — never one more.
#[tokio::test]
async fn search_never_returns_what_the_caller_may_not_see() {
    for seed in [7u64, 42, 1_234_567, 99_991] {
        let mut rng = Rng(seed);
        let t = start_hub().await;
        let mut agents = Vec::new();
        for name in ["HuongNT256", "QueCT3", "TriLM22", "AnhPT9"] {
            agents.push(t.account(name, "agent").await);
        }
        let names: Vec<String> = agents.iter().map(|(a, _)| a.username.clone()).collect();
        let mut pages = Vec::new();
        for i in 0..2 {
            let page = t.page(&format!("oa-shared-{i}")).await;
            let members: Vec<&str> = names
                .iter()
                .filter(|_| rng.below(2) == 0)
                .map(String::as_str)
                .collect();
            if !members.is_empty() {
                let method = ["round_robin", "self_claim"][rng.below(2)];
                t.rule(&format!("R{i}"), &[&page], &members, method).await;
            }
            pages.push(page);
        }
        // A page one agent connected and keeps for herself.
        let owner = &agents[rng.below(agents.len())].0;
        let (own, _) = t
            .hub
            .upsert_connection(
                sop_console::server::hub::OaInfo {
                    oa_id: "oa-own".into(),
                    name: "Own".into(),
                    ..Default::default()
                },
                &owner.id,
                sop_console::model::TokenPair::default(),
            )
            .await
            .unwrap();
        pages.push(own);
        let mut texts = BTreeMap::new();
        for i in 0..15 {
            let page = &pages[rng.below(pages.len())];
            let text = ["Bánh mì còn không ạ?", "Cho hỏi giá bánh", "Xin chào"][rng.below(3)];
            let c =
                customer_says(&t, page, &format!("u{i}"), "Khách", &format!("m{i}"), text).await;
            texts.insert(c.id.clone(), text);
            match rng.below(4) {
                0 => {} // as it arrived: waiting, or assigned by the rule's turns
                1 | 2 => {
                    let to = &names[rng.below(names.len())];
                    let path = format!("/api/v1/conversations/{}/transfer", c.id);
                    // Refused (422) when `to` may not take this page's conversations.
                    let (status, body) = t.post(&path, &t.admin_token, json!({"to": to})).await;
                    assert!(
                        [StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY].contains(&status),
                        "{body}"
                    );
                }
                _ => {
                    let path = format!("/api/v1/conversations/{}/done", c.id);
                    let (status, body) = t.post(&path, &t.admin_token, json!({})).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            }
        }
        let mut everyone = vec![(t.admin.clone(), t.admin_token.clone())];
        everyone.extend(agents.iter().cloned());
        let mut seen_by_some_not_all = false;
        for (who, token) in &everyone {
            // What the policy lets `who` see among the conversations with a matching message.
            let (matching, visible): (BTreeSet<String>, BTreeSet<String>) = t
                .hub
                .read(|st| {
                    let matching: Vec<&Conversation> = st
                        .conversations()
                        .filter(|c| c.customer.display_name == "Khách")
                        .collect();
                    let visible = matching
                        .iter()
                        .filter(|c| {
                            let page = st.page_by_id(&c.connection_id);
                            visibility::may_see_conversation(who, c, page)
                        })
                        .map(|c| c.id.clone())
                        .collect();
                    (matching.iter().map(|c| c.id.clone()).collect(), visible)
                })
                .await;
            let hits = search_all(&t, token, "banh", 2).await;
            let found: BTreeSet<String> = hits
                .iter()
                .filter(|(_, text)| text.as_deref().is_some_and(|s| s.contains("ánh")))
                .map(|(c, _)| c.clone())
                .collect();
            let found_any = conversations(&hits);
            let leaked: Vec<&String> = found_any.difference(&visible).collect();
            assert!(
                leaked.is_empty(),
                "seed {seed}: {} found conversations it may not see: {leaked:?}",
                who.username
            );
            let expected: BTreeSet<String> = visible
                .iter()
                .filter(|id| texts[*id].contains("ánh"))
                .cloned()
                .collect();
            assert_eq!(found, expected, "seed {seed}: {} missed some", who.username);
            seen_by_some_not_all |= !found.is_empty() && visible.len() < matching.len();
        }
        assert!(
            seen_by_some_not_all,
            "seed {seed}: a world where nobody is limited tests nothing"
        );
        t.stop().await;
    }
}
