//! The live stream over a real websocket: replay after a disconnect, visibility, resync, live.

mod common;
use common::*;
use sop_console::server::stream::may_receive;
use sop_console::wire::{EventBody, Frame};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Reads frames until `Live`, returning the events before it.
async fn replay(sock: &mut ws::Socket) -> (u64, Vec<sop_console::wire::Event>) {
    let mut events = Vec::new();
    let Some(Frame::Hello { head, .. }) = ws::next(sock, WAIT).await else {
        panic!("expected hello")
    };
    loop {
        match ws::next(sock, WAIT)
            .await
            .expect("stream ended during replay")
        {
            Frame::Event { event } => events.push(event),
            Frame::Live { .. } => return (head, events),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_since_gets_exactly_the_missed_visible_events_in_order() {
    let t = start_hub().await;
    let (member, member_token) = t.account("HuongNT256", "agent").await;
    let shared = t.page("oa-shared").await;
    let private = t.page("oa-private").await; // only_me for the admin: invisible to the member
    t.rule("Best Sale", &[&shared], &["HuongNT256"], "round_robin")
        .await;

    let mut sock = ws::connect(&t.ws_url(None), &member_token).await;
    let (head, replayed) = replay(&mut sock).await;
    assert!(replayed.is_empty(), "no since: live only");
    sock.close(None).await.ok();

    // 1,000+ events while it is away: 300 messages it may see, 200 it may not.
    for i in 0..500 {
        let page = if i % 5 < 3 { &shared } else { &private };
        t.inbound(page, &format!("u{i}"), &format!("m{i}")).await;
    }
    let now_head = t.hub.published_seq();
    assert!(now_head - head >= 1000, "only {} events", now_head - head);

    let mut sock = ws::connect(&t.ws_url(Some(head)), &member_token).await;
    let (_, got) = replay(&mut sock).await;
    let expected: Vec<u64> = t
        .hub
        .read_events(head, now_head, usize::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|e| may_receive(&member, e))
        .map(|e| e.event.seq)
        .collect();
    let got_seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(
        got_seqs, expected,
        "exactly the missed visible events, in order"
    );
    assert_eq!(got.len(), 600);
    for e in &got {
        if let EventBody::Conversation { conversation } = &e.body {
            assert_eq!(
                conversation.connection_id, shared.id,
                "never a conversation it may not see"
            );
        }
    }

    // Then live: a new message arrives within the wait, nothing from the private page.
    t.inbound(&private, "secret", "s1").await;
    let c = t.inbound(&shared, "live-user", "live1").await;
    match ws::next(&mut sock, WAIT).await {
        Some(Frame::Event { event }) => match event.body {
            EventBody::Conversation { conversation } => assert_eq!(conversation.id, c.id),
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("expected a live event, got {other:?}"),
    }
    t.stop().await;
}

#[tokio::test]
async fn a_client_older_than_the_log_is_told_to_resync() {
    let t = start_hub_with(Default::default(), 300).await;
    let page = t.page("oa-1").await;
    for i in 0..400 {
        t.inbound(&page, &format!("u{i}"), &format!("m{i}")).await;
    }
    let mut sock = ws::connect(&t.ws_url(Some(1)), &t.admin_token).await;
    assert!(matches!(
        ws::next(&mut sock, WAIT).await,
        Some(Frame::Hello { .. })
    ));
    match ws::next(&mut sock, WAIT).await {
        Some(Frame::Resync { oldest, head }) => {
            assert!(oldest > 2, "oldest {oldest}");
            assert_eq!(head, t.hub.published_seq());
        }
        other => panic!("expected resync, got {other:?}"),
    }
    // A client from the future (e.g. a wiped hub) is told the same.
    let mut sock = ws::connect(&t.ws_url(Some(u64::MAX / 2)), &t.admin_token).await;
    ws::next(&mut sock, WAIT).await;
    assert!(matches!(
        ws::next(&mut sock, WAIT).await,
        Some(Frame::Resync { .. })
    ));
    t.stop().await;
}

/// A console that was on another hub reconnects to one that has not yet read that hub's last
/// events from the log (hubs follow it, every second at worst): it is not told to start over; the
/// events it already has are skipped and the next ones come live. (Seen in the balancer test:
/// under load a hub a console fled to could be a few events behind.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ahead_of_this_hub_but_not_of_the_log_resumes_without_resync() {
    let t = start_hub().await;
    let page = t.page("oa-1").await;
    let head = t.hub.published_seq();
    // Another hub's change: in the log, not yet read by this hub (no doorbell rung).
    let body = serde_json::to_string(&EventBody::RuleRemoved { id: "r-x".into() }).unwrap();
    let other_hub = vec![(sop_console::model::now_ms(), "[]".to_string(), body)];
    let db = t.hub.db().clone();
    let appended: anyhow::Result<_> = async {
        Ok(sop_console::in_transaction!(&*db, tx => sop_console::append_events!(tx, other_hub)))
    }
    .await;
    assert_eq!(appended.unwrap()[0].seq as u64, head + 1);
    let mut sock = ws::connect(&t.ws_url(Some(head + 1)), &t.admin_token).await;
    let Some(Frame::Hello { head: hub_head, .. }) = ws::next(&mut sock, WAIT).await else {
        panic!("expected hello")
    };
    match ws::next(&mut sock, WAIT).await {
        Some(Frame::Live { seq }) => assert_eq!(seq, head + 1),
        other => panic!(
            "expected live from {} (hub at {hub_head}), got {other:?}",
            head + 1
        ),
    }
    // The next change comes live, the one the client had never again.
    let conv = t.inbound(&page, "u1", "m1").await;
    loop {
        match ws::next(&mut sock, WAIT).await {
            Some(Frame::Event { event }) => {
                assert!(event.seq > head + 1, "{event:?} again");
                if matches!(&event.body, EventBody::Conversation { conversation } if conversation.id == conv.id)
                {
                    break;
                }
            }
            other => panic!("expected the next change live, got {other:?}"),
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn stream_requires_a_valid_token() {
    let t = start_hub().await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        t.ws_url(None),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    t.stop().await;
}
