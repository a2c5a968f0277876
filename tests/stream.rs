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
