//! Pure `update` tests for each flow, and snapshot tests of every screen (TestBackend + insta) at
//! 80×24 and 120×40, with hostile customer text.

use super::app::*;
use super::data::*;
use super::i18n::Lang;
use super::keymap::{Action, Keymap};
use super::msg::*;
use super::popups::add_connection::AddStep;
use super::popups::rule_editor::RuleEditor;
use super::popups::Modal;
use super::tabs::inbox::{in_view, Focus};
use super::tabs::Tab;
use super::ui::Theme;
use crate::model::*;
use crate::wire::{
    AuthorizeResponse, ConnectionView, Event, EventBody, OutboundAttachment, OutboundKind,
    TransferTarget, View,
};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::collections::BTreeMap;

/// 2026-11-25 10:00 UTC.
const NOW: Ms = 1_795_600_800_000;
const THEME: Theme = Theme {
    color: false,
    utc_offset_min: 420,
};

fn account(id: &str, username: &str, role: Role) -> Account {
    Account {
        id: id.into(),
        email: format!("{}@sop.vn", username.to_lowercase()),
        username: username.into(),
        name: username.into(),
        role,
        availability: Availability::Available,
        created_at: 0,
    }
}

fn conv(
    id: &str,
    name: &str,
    state: ConvState,
    assignee: Option<&str>,
    minutes_ago: i64,
    preview: &str,
) -> Conversation {
    Conversation {
        id: id.into(),
        connection_id: "p1".into(),
        customer: Customer {
            user_id: format!("u-{id}"),
            display_name: name.into(),
            avatar: String::new(),
            fetched_at: NOW,
            labels: vec![],
            follows: None,
        },
        assignee: assignee.map(str::to_string),
        state,
        status: ConvStatus::Open,
        origin: Origin::Live,
        last_interaction_at: Some(NOW - minutes_ago * 60_000),
        last_activity_at: NOW - minutes_ago * 60_000,
        waiting_since: (state == ConvState::Unclaimed).then_some(NOW - minutes_ago * 60_000),
        unread: if assignee == Some("a2") {
            BTreeMap::from([("a2".to_string(), 2)])
        } else {
            BTreeMap::new()
        },
        preview: preview.into(),
        assignments: vec![],
        created_at: NOW - minutes_ago * 60_000,
    }
}

fn message(
    id: &str,
    conv: &str,
    dir: Direction,
    text: &str,
    delivery: Option<Delivery>,
    minutes_ago: i64,
) -> Message {
    Message {
        id: id.into(),
        conversation_id: conv.into(),
        direction: dir,
        sender: if dir == Direction::Inbound {
            "u".into()
        } else {
            "a2".into()
        },
        sender_name: if dir == Direction::Inbound {
            String::new()
        } else {
            "HuongNT256".into()
        },
        kind: MessageKind::Text,
        text: text.into(),
        attachments: vec![],
        zalo_msg_id: Some(format!("z{id}")),
        quote_msg_id: None,
        client_key: None,
        delivery,
        error_code: None,
        error_reason: None,
        created_at: NOW - minutes_ago * 60_000,
        raw: None,
    }
}

const HOSTILE: &str = "Xin chào\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7} \0 \u{202e}ngược\u{202c} 🎉👍 Tie\u{302}\u{301}ng Vie\u{323}\u{302}t";

fn connection(
    id: &str,
    name: &str,
    connector: &str,
    mode: ChatMode,
    status: ConnectionStatus,
) -> ConnectionView {
    ConnectionView {
        id: id.into(),
        oa_id: format!("oa-{id}"),
        name: name.into(),
        avatar: String::new(),
        category: String::new(),
        connector: connector.into(),
        connected_at: NOW - DAY_MS,
        last_connected_at: NOW - 2 * HOUR_MS,
        chat_mode: mode,
        rule_id: (mode == ChatMode::Shared).then(|| "r1".to_string()),
        status,
        status_reason: (status == ConnectionStatus::NeedsReauth)
            .then(|| "Quyền truy cập đã bị thu hồi trong Zalo".to_string()),
        token_expires_at: Some(NOW + 20 * HOUR_MS),
        last_event_at: Some(NOW - 5 * 60_000),
        last_error: None,
    }
}

/// An agent (HuongNT256) in a rule with a few conversations, one of them hostile.
fn agent_app() -> App {
    let mut app = App::new(Lang::Vi, Keymap::default_map(), Notify::default(), NOW);
    app.load_snapshot(Snapshot {
        me: Some(account("a2", "HuongNT256", Role::Agent)),
        conversations: vec![
            conv(
                "c1",
                "Trần Văn An",
                ConvState::Assigned,
                Some("a2"),
                3,
                "Cho em hỏi giá dịch vụ",
            ),
            conv("c2", HOSTILE, ConvState::Unclaimed, None, 30, HOSTILE),
            conv(
                "c3",
                "Phạm Thị Bình",
                ConvState::Unclaimed,
                None,
                5,
                "Văn phòng làm việc đến mấy giờ?",
            ),
        ],
        connections: vec![connection(
            "p1",
            "Công ty Luật TNHH Thành Đồng",
            "a1",
            ChatMode::Shared,
            ConnectionStatus::Connected,
        )],
        rules: vec![Rule {
            id: "r1".into(),
            name: "Chia chat cho nhóm Best Sale".into(),
            sources: vec!["p1".into()],
            members: vec!["a2".into(), "a3".into(), "a4".into()],
            method: Method::SelfClaim,
            old_conversations: OldConversations::None,
            cursor: None,
            created_at: 0,
            updated_at: 0,
        }],
        // What the hub sends an agent: no colleagues (accounts are admin-only).
        accounts: vec![],
        head: 10,
        dead_webhooks: 0,
        quick_replies: vec![],
    });
    app.data.link = Link::Connected;
    app.data.live = true;
    app.data.messages.insert(
        "c1".into(),
        vec![
            message(
                "m1",
                "c1",
                Direction::Inbound,
                "Chào shop, cho em hỏi giá dịch vụ tư vấn hợp đồng ạ?",
                None,
                10,
            ),
            message(
                "m2",
                "c1",
                Direction::Outbound,
                "Dạ, em gửi báo giá ngay ạ.",
                Some(Delivery::Seen),
                8,
            ),
            message(
                "m3",
                "c1",
                Direction::Outbound,
                "Anh xem giúp em nhé.",
                Some(Delivery::Delivered),
                7,
            ),
            Message {
                error_code: Some(-230),
                error_reason: Some("Hết thời hạn trả lời".into()),
                ..message(
                    "m4",
                    "c1",
                    Direction::Outbound,
                    "Còn đó không ạ?",
                    Some(Delivery::Failed),
                    6,
                )
            },
            message("m5", "c1", Direction::Inbound, HOSTILE, None, 3),
        ],
    );
    app
}

fn admin_app() -> App {
    let mut app = agent_app();
    app.data.me = Some(account("a1", "CuongLM", Role::Admin));
    app.data
        .accounts
        .insert("a1".into(), account("a1", "CuongLM", Role::Admin));
    for (id, username, role) in [
        ("a2", "HuongNT256", Role::Agent),
        ("a3", "QueCT3", Role::Agent),
        ("a4", "TriLM22", Role::Agent),
    ] {
        app.data
            .accounts
            .insert(id.into(), account(id, username, role));
    }
    app.data.connections.insert(
        "p2".into(),
        connection(
            "p2",
            "Shop Hoa Tươi",
            "a3",
            ChatMode::OnlyMe,
            ConnectionStatus::NeedsReauth,
        ),
    );
    app
}

fn key(code: KeyCode) -> Msg {
    Msg::Term(TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}
fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}
fn ctrl(c: char) -> Msg {
    Msg::Term(TermEvent::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::CONTROL,
    )))
}
/// The ids of the conversations the inbox lists now, in order.
fn listed(app: &App) -> Vec<&str> {
    app.inbox
        .visible(&app.data)
        .iter()
        .map(|c| c.id.as_str())
        .collect()
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(ch(c));
    }
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.draw(f, &THEME)).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn no_escapes(screen: &str) {
    assert!(
        !screen
            .chars()
            .any(|c| c == '\u{1b}' || c == '\0' || c == '\u{7}' || c == '\u{202e}'),
        "control characters reached the screen"
    );
}

// ----- update -----

#[test]
fn claim_acts_on_the_selected_conversation_and_the_loser_sees_the_winner() {
    let mut app = agent_app();
    app.update(ch('u'));
    assert_eq!(app.inbox.view, View::Unclaimed);
    let fx = app.update(ch('c'));
    // Unclaimed is sorted by waiting time: c2 has waited 30 minutes. It is opened and claimed.
    assert!(
        matches!(&fx[..], [Effect::Api(ApiCall::LoadMessages { id: open, .. }), Effect::Api(ApiCall::Claim(id))] if id == "c2" && open == "c2"),
        "{fx:?}"
    );
    assert_eq!(app.inbox.open.as_deref(), Some("c2"));
    app.update(Msg::Net(NetEvent::ClaimLost {
        winner: Some("Cao Thị Quế (QueCT3)".into()),
    }));
    assert!(app.data.notice.as_deref().unwrap().contains("QueCT3"));
}

/// Seen in the demo: `c` on the list claimed the selected customer, who then left *Chưa ai nhận*;
/// the cursor moved to the next one, and `r` opened the composer on that other customer. A reply
/// goes to the conversation on screen: the claimed one stays open, and from the list `r` answers
/// the one under the cursor, not one opened earlier.
#[test]
fn a_reply_goes_to_the_conversation_on_screen() {
    let mut app = agent_app();
    app.update(ch('u'));
    let fx = app.update(ch('c'));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Api(ApiCall::Claim(id)) if id == "c2")),
        "{fx:?}"
    );
    // The claim lands: c2 is mine now and leaves the unclaimed view.
    let mut claimed = app.data.conversations.get("c2").unwrap().clone();
    claimed.state = ConvState::Assigned;
    claimed.assignee = Some("a2".into());
    let body = EventBody::Conversation {
        conversation: claimed,
    };
    app.update(Msg::Net(NetEvent::Event(Box::new(Event {
        seq: 100,
        at: NOW,
        body,
    }))));
    app.update(ch('r'));
    typed(&mut app, "Dạ");
    let fx = app.update(key(KeyCode::Enter));
    let [Effect::Api(ApiCall::Reply(item))] = &fx[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(item.conversation_id, "c2", "the claimed customer");

    // From the list, `r` answers the selected conversation even when another is still open.
    app.update(key(KeyCode::Esc));
    app.update(ch('u'));
    assert_eq!(app.inbox.focus, Focus::List);
    assert_eq!(
        app.inbox
            .selected_conversation(&app.data)
            .map(|c| c.id.as_str()),
        Some("c3")
    );
    app.update(ch('r'));
    typed(&mut app, "Dạ");
    let fx = app.update(key(KeyCode::Enter));
    let [Effect::Api(ApiCall::Reply(item))] = &fx[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(item.conversation_id, "c3", "the one under the cursor");
}

#[test]
fn reply_flow_normalises_text_and_queues_it_in_the_outbox() {
    let mut app = agent_app();
    app.update(key(KeyCode::Enter));
    assert_eq!(app.inbox.open.as_deref(), Some("c1"));
    app.update(ch('r'));
    assert_eq!(app.inbox.focus, Focus::Composer);
    typed(&mut app, "Tie\u{302}\u{301}ng Vie\u{323}\u{302}t q");
    let fx = app.update(key(KeyCode::Enter));
    let [Effect::Api(ApiCall::Reply(item))] = &fx[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(item.text, "Tiếng Việt q");
    assert_eq!(item.conversation_id, "c1");
    assert_eq!(app.data.outbox.len(), 1);
    assert_eq!(app.inbox.composer.value(), "");
    // The hub's echo of the message clears the outbox.
    let mut m = message(
        "m9",
        "c1",
        Direction::Outbound,
        "Tiếng Việt q",
        Some(Delivery::Pending),
        0,
    );
    m.client_key = Some(item.client_key.clone());
    app.update(Msg::Net(NetEvent::Event(Box::new(Event {
        seq: 11,
        at: NOW,
        body: EventBody::Message { message: m },
    }))));
    assert!(app.data.outbox.is_empty());
    assert_eq!(app.data.last_seq, 11);
}

#[test]
fn a_reply_typed_offline_waits_and_goes_when_the_link_returns() {
    let mut app = agent_app();
    app.data.link = Link::Reconnecting {
        retry_at: NOW + 3000,
    };
    app.update(key(KeyCode::Enter));
    app.update(ch('r'));
    typed(&mut app, "offline");
    app.update(key(KeyCode::Enter));
    assert!(app.data.notice.as_deref().unwrap().contains("ngoại tuyến"));
    assert_eq!(app.data.outbox.len(), 1);
    let fx = app.update(Msg::Net(NetEvent::Link(Link::Connected)));
    let replies = fx
        .iter()
        .filter(|e| matches!(e, Effect::Api(ApiCall::Reply(_))))
        .count();
    assert_eq!(replies, 1);
}

#[test]
fn over_long_replies_are_refused_before_sending() {
    let mut app = agent_app();
    app.update(key(KeyCode::Enter));
    app.update(ch('r'));
    app.update(Msg::Term(TermEvent::Paste("a".repeat(2001))));
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert!(app.data.notice.as_deref().unwrap().contains("2001/2000"));
}

#[test]
fn urgent_jumps_to_the_unclaimed_waiting_longest() {
    let mut app = agent_app();
    let fx = app.update(ch('g'));
    assert_eq!(app.inbox.view, View::Unclaimed);
    assert_eq!(app.inbox.open.as_deref(), Some("c2"));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Api(ApiCall::LoadMessages { id, .. }) if id == "c2")));
}

fn news(fx: &[Effect]) -> Vec<(NewsKind, &str)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some((n.kind, n.conversation_id.as_str())),
            _ => None,
        })
        .collect()
}

fn event(seq: u64, body: EventBody) -> Msg {
    Msg::Net(NetEvent::Event(Box::new(Event { seq, at: NOW, body })))
}

#[test]
fn notify_on_new_unclaimed_in_my_rules_and_new_messages_in_mine_but_not_during_replay() {
    let mut app = agent_app();
    let new = conv("c9", "Khách mới", ConvState::Unclaimed, None, 0, "Alo");
    let fx = app.update(event(
        11,
        EventBody::Conversation {
            conversation: new.clone(),
        },
    ));
    assert_eq!(news(&fx), [(NewsKind::Unclaimed, "c9")]);
    let fx = app.update(event(
        12,
        EventBody::Message {
            message: message("m10", "c1", Direction::Inbound, "Alo", None, 0),
        },
    ));
    assert_eq!(news(&fx), [(NewsKind::Mine, "c1")]);
    app.data.live = false;
    let fx = app.update(event(
        13,
        EventBody::Conversation {
            conversation: conv("c10", "X", ConvState::Unclaimed, None, 0, ""),
        },
    ));
    assert!(fx.is_empty());
}

/// A colleague's note that mentions me notifies, mine does not; nothing notifies for the thread
/// I am reading; each kind can be switched off.
#[test]
fn a_mention_notifies_except_in_the_thread_being_read_and_each_kind_can_be_switched_off() {
    let note = |id: &str, conv: &str, sender: &str, text: &str| Message {
        kind: MessageKind::Note,
        sender: sender.into(),
        sender_name: sender.into(),
        ..message(id, conv, Direction::Outbound, text, None, 0)
    };
    let mut app = agent_app();
    let fx = app.update(event(
        11,
        EventBody::Message {
            message: note("n1", "c3", "a3", "@huongnt256 xem giúp khách này"),
        },
    ));
    let got: Vec<&Notification> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1, "{fx:?}");
    assert_eq!(got[0].kind, NewsKind::Mention);
    assert_eq!(got[0].conversation_id, "c3");
    assert!(
        got[0].title.contains("a3") && got[0].body.contains("xem giúp"),
        "{got:?}"
    );
    // My own note, and a note for someone else: nothing.
    for (seq, n) in [
        (12, note("n2", "c3", "a2", "@HuongNT256 tự nhắc")),
        (13, note("n3", "c3", "a3", "@QueCT3 xem giúp")),
    ] {
        let fx = app.update(event(seq, EventBody::Message { message: n }));
        assert!(news(&fx).is_empty(), "{fx:?}");
    }
    // Reading c1: its news is not news; c3's still is.
    app.update(key(KeyCode::Enter));
    assert_eq!(app.inbox.open.as_deref(), Some("c1"));
    let fx = app.update(event(
        14,
        EventBody::Message {
            message: message("m11", "c1", Direction::Inbound, "Alo", None, 0),
        },
    ));
    assert!(news(&fx).is_empty(), "{fx:?}");
    let fx = app.update(event(
        15,
        EventBody::Message {
            message: note("n4", "c3", "a3", "@HuongNT256 ơi"),
        },
    ));
    assert_eq!(news(&fx), [(NewsKind::Mention, "c3")]);
    // Switched off in the config.
    app.data.notify.mention = false;
    let fx = app.update(event(
        16,
        EventBody::Message {
            message: note("n5", "c3", "a3", "@HuongNT256 ơi"),
        },
    ));
    assert!(news(&fx).is_empty());
}

#[test]
fn notifications_reach_the_terminal_and_tmux_without_control_characters() {
    let n = Notification {
        kind: NewsKind::Mention,
        conversation_id: "c1".into(),
        title: "QueCT3 nhắc đến bạn".into(),
        body: "xem; giúp\u{1b}]52;c;ZXZpbA==\u{7} nhé".into(),
    };
    let both = super::Alert {
        bell: true,
        desktop: true,
    };
    let plain = String::from_utf8(super::alert_bytes(&n, both, false)).unwrap();
    assert_eq!(
        plain,
        "\u{7}\u{1b}]9;QueCT3 nhắc đến bạn: xem giúp␛]52cZXZpbA==� nhé\u{7}\
         \u{1b}]777;notify;QueCT3 nhắc đến bạn;xem giúp␛]52cZXZpbA==� nhé\u{7}"
    );
    let tmux = String::from_utf8(super::alert_bytes(&n, both, true)).unwrap();
    assert!(
        tmux.starts_with("\u{7}\u{1b}Ptmux;\u{1b}\u{1b}]9;QueCT3"),
        "{tmux:?}"
    );
    assert_eq!(
        tmux.matches("\u{1b}\\").count(),
        2,
        "two passthroughs: {tmux:?}"
    );
    let quiet = super::Alert {
        bell: false,
        desktop: false,
    };
    assert!(super::alert_bytes(&n, quiet, false).is_empty());
}

#[test]
fn add_connection_walks_the_seed_steps() {
    let mut app = admin_app();
    app.update(ch('2'));
    let fx = app.update(ch('n'));
    assert!(matches!(&fx[..], [Effect::Api(ApiCall::Authorize)]));
    let fx = app.update(Msg::Net(NetEvent::Authorize(AuthorizeResponse {
        authorization_url: "https://oauth.zaloapp.com/v4/oa/permission?app_id=1".into(),
        state: "s".into(),
        expires_at: NOW,
    })));
    assert!(
        matches!(&fx[..], [Effect::Copy(u)] if u.contains("/v4/oa/permission")),
        "OSC 52 copy"
    );
    assert!(matches!(
        app.modal,
        Some(Modal::AddConnection(AddStep::Consent { .. }))
    ));
    // The hub says the page is connected, started by me: step 3.
    let conn = connection(
        "p7",
        "OA Mới",
        "a1",
        ChatMode::OnlyMe,
        ConnectionStatus::Connected,
    );
    app.update(Msg::Net(NetEvent::Event(Box::new(Event {
        seq: 20,
        at: NOW,
        body: EventBody::Connection {
            connection: conn,
            started_by: Some("a1".into()),
        },
    }))));
    assert!(
        matches!(app.modal, Some(Modal::AddConnection(AddStep::Permission { ref connection_id, choice: 0 })) if connection_id == "p7")
    );
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    assert!(matches!(
        app.modal,
        Some(Modal::AddConnection(AddStep::PickRule { .. }))
    ));
    // "Thêm vào quy tắc đã có": the existing rule, with the new page added.
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    let Some(Modal::RuleEditor(ed)) = &app.modal else {
        panic!("{:?}", app.modal)
    };
    assert_eq!(ed.id.as_deref(), Some("r1"));
    assert_eq!(ed.sources, vec!["p1".to_string(), "p7".into()]);
}

#[test]
fn only_me_choice_sets_the_chat_mode() {
    let mut app = admin_app();
    app.modal = Some(Modal::AddConnection(AddStep::Permission {
        connection_id: "p2".into(),
        choice: 0,
    }));
    let fx = app.update(key(KeyCode::Enter));
    assert!(
        matches!(&fx[..], [Effect::Api(ApiCall::SetChatMode { id, mode: ChatMode::OnlyMe })] if id == "p2")
    );
    assert!(app.modal.is_none());
}

#[test]
fn rule_editor_refuses_unknown_members_and_confirms_history_sharing() {
    let mut app = admin_app();
    app.update(ch('3'));
    app.update(ch('N'));
    typed(&mut app, "Nhóm mới");
    app.update(key(KeyCode::Tab));
    app.update(ch(' ')); // select the first page
    app.update(key(KeyCode::Tab));
    typed(&mut app, "ghost@nowhere.vn");
    app.update(key(KeyCode::Enter));
    let Some(Modal::RuleEditor(ed)) = &app.modal else {
        panic!()
    };
    assert!(ed.error.as_deref().unwrap().contains("ghost@nowhere.vn"));
    assert!(ed.members.is_empty());
    app.update(ctrl('u'));
    typed(&mut app, "que");
    app.update(key(KeyCode::Enter)); // unique prefix completes to QueCT3
    app.update(key(KeyCode::Tab));
    app.update(ch(' ')); // self-claim
    app.update(key(KeyCode::Tab));
    app.update(ch(' ')); // available
    app.update(ch(' ')); // all
    let fx = app.update(ctrl('s'));
    assert!(fx.is_empty());
    assert!(
        matches!(app.modal, Some(Modal::ConfirmRule(_))),
        "history sharing needs a confirmation"
    );
    let fx = app.update(ch('y'));
    let [Effect::Api(ApiCall::SaveRule { id: None, input })] = &fx[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(input.name, "Nhóm mới");
    assert_eq!(input.members, vec!["QueCT3".to_string()]);
    assert_eq!(input.method, Method::SelfClaim);
    assert_eq!(input.old_conversations, OldConversations::All);
    assert_eq!(input.sources.len(), 1);
}

#[test]
fn help_and_palette_come_from_the_keymap() {
    let mut app = agent_app();
    app.update(ch('?'));
    assert!(matches!(app.modal, Some(Modal::Help(_))));
    app.update(key(KeyCode::Esc));
    app.update(ch(':'));
    typed(&mut app, "nhận chat");
    let fx = app.update(key(KeyCode::Enter));
    assert!(
        matches!(fx.last(), Some(Effect::Api(ApiCall::Claim(_)))),
        "{fx:?}"
    );
}

#[test]
fn every_action_is_in_the_help_of_exactly_one_component() {
    let entries = help_entries();
    for (a, name) in super::keymap::ALL_ACTIONS {
        let n = entries.iter().filter(|e| *e == a).count();
        assert_eq!(n, 1, "{name} is listed {n} times in the help");
    }
    assert_eq!(entries.len(), super::keymap::ALL_ACTIONS.len());
}

#[test]
fn filter_narrows_the_list() {
    let mut app = agent_app();
    app.update(ch('u'));
    app.update(ch('/'));
    typed(&mut app, "bình");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.inbox.visible(&app.data).len(), 1);
    assert_eq!(app.inbox.visible(&app.data)[0].id, "c3");
    app.update(key(KeyCode::Esc));
    assert_eq!(app.inbox.visible(&app.data).len(), 2);
}

#[test]
fn threads_read_in_the_customers_time_order_whatever_order_they_arrive_in() {
    let mut app = agent_app();
    // History synced newest first gets the higher ids; a live event carries an older message.
    let synced: Vec<Message> = (0..4)
        .map(|i| {
            message(
                &format!("m{}", 10 + i),
                "c9",
                Direction::Inbound,
                &format!("09:5{}", 9 - i),
                None,
                40 + i,
            )
        })
        .collect();
    app.update(Msg::Net(NetEvent::Messages {
        conversation_id: "c9".into(),
        items: synced,
        next_cursor: None,
        older: false,
    }));
    app.update(Msg::Net(NetEvent::Event(Box::new(Event {
        seq: 11,
        at: NOW,
        body: EventBody::Message {
            message: message("m20", "c9", Direction::Inbound, "older", None, 50),
        },
    }))));
    let texts: Vec<&str> = app.data.messages["c9"]
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts, ["older", "09:56", "09:57", "09:58", "09:59"]);
}

#[test]
fn history_replies_without_a_staff_name_show_the_page() {
    let mut app = agent_app();
    let mut m = message(
        "m9",
        "c1",
        Direction::Outbound,
        "Dạ, văn phòng xin nghe ạ.",
        Some(Delivery::Sent),
        1,
    );
    m.sender_name = String::new();
    app.data.messages.get_mut("c1").unwrap().push(m);
    app.update(key(KeyCode::Enter));
    let screen = render(&app, 120, 40);
    assert!(
        screen.contains("→ Công ty Luật TNHH Thành Đồng ✓"),
        "{screen}"
    );
}

fn target(id: &str, username: &str, name: &str, availability: Availability) -> TransferTarget {
    TransferTarget {
        id: id.into(),
        username: username.into(),
        name: name.into(),
        role: Role::Agent,
        availability,
    }
}

#[test]
fn transfer_offers_the_targets_the_hub_lists_with_completion() {
    let mut app = agent_app();
    app.update(key(KeyCode::Enter)); // focus the thread of c1 (mine)
    let fx = app.update(ch('t'));
    assert!(
        matches!(fx.as_slice(), [Effect::Api(ApiCall::TransferTargets(id))] if id == "c1"),
        "{fx:?}"
    );
    // Enter before the list arrives does nothing.
    typed(&mut app, "q");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    app.update(Msg::Net(NetEvent::TransferTargets {
        conversation_id: "c1".into(),
        targets: vec![
            target("a3", "QueCT3", "Cao Thị Quế", Availability::Away),
            target("a4", "TriLM22", "Lê Minh Trí", Availability::Available),
        ],
    }));
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("QueCT3 · Cao Thị Quế · Vắng mặt"),
        "{screen}"
    );
    assert!(!screen.contains("TriLM22"), "filtered by what was typed");
    app.update(key(KeyCode::Tab));
    let fx = app.update(key(KeyCode::Enter));
    assert!(
        matches!(fx.as_slice(), [Effect::Api(ApiCall::Transfer { id, to })] if id == "c1" && to == "QueCT3"),
        "{fx:?}"
    );
    // By name without accents; an unknown name keeps the dialog open and says so.
    app.update(ch('t'));
    app.update(Msg::Net(NetEvent::TransferTargets {
        conversation_id: "c1".into(),
        targets: vec![target(
            "a4",
            "TriLM22",
            "Lê Minh Trí",
            Availability::Available,
        )],
    }));
    typed(&mut app, "le minh");
    let fx = app.update(key(KeyCode::Enter));
    assert!(
        matches!(fx.as_slice(), [Effect::Api(ApiCall::Transfer { to, .. })] if to == "TriLM22")
    );
    app.update(ch('t'));
    app.update(Msg::Net(NetEvent::TransferTargets {
        conversation_id: "c1".into(),
        targets: vec![],
    }));
    typed(&mut app, "QueCT3");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert!(app.modal.is_some());
    assert!(app.data.notice.as_deref().unwrap_or("").contains("QueCT3"));
}

#[test]
fn conversations_that_leave_my_sight_leave_the_console() {
    let mut app = agent_app();
    app.update(ch('u'));
    assert_eq!(app.inbox.visible(&app.data).len(), 2);
    let mut rule = app.data.rules["r1"].clone();
    rule.members.retain(|m| m != "a2");
    let ev = |seq, body| Msg::Net(NetEvent::Event(Box::new(Event { seq, at: NOW, body })));
    app.update(ev(11, EventBody::Rule { rule }));
    let c3 = app.data.conversations.get("c3").unwrap().clone();
    app.update(ev(12, EventBody::Conversation { conversation: c3 }));
    let ids = listed(&app);
    assert_eq!(ids, ["c2"], "c3 was dropped once the hub said so");
    // Handed over to a colleague: gone from Mine, messages too.
    let mut c1 = app.data.conversations.get("c1").unwrap().clone();
    c1.assignee = Some("a3".into());
    app.update(ev(13, EventBody::Conversation { conversation: c1 }));
    assert!(app.data.conversations.get("c1").is_none() && !app.data.messages.contains_key("c1"));
}

#[test]
fn a_reply_the_hub_did_not_answer_is_retried_with_backoff_and_shown_pending() {
    let mut app = agent_app();
    app.update(Msg::Tick(NOW));
    app.update(key(KeyCode::Enter));
    app.update(ch('r'));
    typed(&mut app, "Dạ em gửi lại");
    let fx = app.update(key(KeyCode::Enter));
    let Some(Effect::Api(ApiCall::Reply(item))) = fx.first() else {
        panic!("{fx:?}")
    };
    let key_sent = item.client_key.clone();
    let deferred = || {
        Msg::Net(NetEvent::ReplyDeferred {
            client_key: key_sent.clone(),
            error: "connection reset".into(),
        })
    };
    app.update(deferred());
    let retry_at = app.data.outbox[0].retry_at.expect("a retry is scheduled");
    assert!(
        (NOW + 750..=NOW + 1_250).contains(&retry_at),
        "{}",
        retry_at - NOW
    );
    let screen = render(&app, 80, 24);
    let secs = (retry_at - NOW + 999) / 1000;
    assert!(
        screen.contains(&format!("đang chờ gửi — thử lại sau {secs}s")),
        "{screen}"
    );
    assert!(
        app.update(Msg::Tick(retry_at - 1)).is_empty(),
        "not before its time"
    );
    let fx = app.update(Msg::Tick(retry_at));
    assert!(
        matches!(fx.as_slice(), [Effect::Api(ApiCall::Reply(o))] if o.client_key == key_sent),
        "the same client key again: {fx:?}"
    );
    // The next failure waits longer.
    app.update(deferred());
    let second = app.data.outbox[0].retry_at.unwrap() - retry_at;
    assert!((1_500..=2_500).contains(&second), "{second}");
    app.update(Msg::Net(NetEvent::ReplyAccepted {
        client_key: key_sent.clone(),
        message: Box::new(message(
            "m9",
            "c1",
            Direction::Outbound,
            "Dạ em gửi lại",
            Some(Delivery::Pending),
            0,
        )),
    }));
    assert!(app.data.outbox.is_empty());
}

fn loads(fx: &[Effect]) -> Vec<&str> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Api(ApiCall::LoadMessages { id, before: None }) => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_thread_pane_follows_the_cursor_loading_one_thread_at_a_time() {
    let mut app = agent_app();
    let fx = app.update(ch('u'));
    assert_eq!(
        loads(&fx),
        ["c2"],
        "the selected row's thread is loaded, no Enter needed"
    );
    assert!(loads(&app.update(ch('j'))).is_empty(), "one load at a time");
    let fx = app.update(Msg::Net(NetEvent::Messages {
        conversation_id: "c2".into(),
        items: vec![message(
            "m7",
            "c2",
            Direction::Inbound,
            "Còn phòng trống không?",
            None,
            30,
        )],
        next_cursor: None,
        older: false,
    }));
    assert_eq!(loads(&fx), ["c3"], "then the row the cursor moved to");
    app.update(Msg::Net(NetEvent::Messages {
        conversation_id: "c3".into(),
        items: vec![message(
            "m8",
            "c3",
            Direction::Inbound,
            "Văn phòng làm việc đến mấy giờ?",
            None,
            5,
        )],
        next_cursor: None,
        older: false,
    }));
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("Phạm Thị Bình") && screen.contains("Văn phòng làm việc đến mấy"),
        "{screen}"
    );
    assert!(loads(&app.update(ch('k'))).is_empty(), "already loaded");
    assert!(render(&app, 80, 24).contains("Còn phòng trống không?"));
    // Enter moves focus into the thread.
    app.update(key(KeyCode::Enter));
    assert_eq!(app.inbox.focus, Focus::Conversation);
}

#[test]
fn filter_ignores_accents_and_case_as_agents_type() {
    let mut app = agent_app();
    app.update(ch('u'));
    for typed_text in ["binh", "PHAM THI", "Bình", "van phong lam"] {
        app.update(ch('/'));
        typed(&mut app, typed_text);
        app.update(key(KeyCode::Enter));
        let ids = listed(&app);
        assert_eq!(ids, ["c3"], "{typed_text:?}");
        app.update(key(KeyCode::Esc));
    }
    app.update(ch('m'));
    app.update(ch('/'));
    typed(&mut app, "tran van");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.inbox.visible(&app.data).len(), 1, "Trần Văn An");
}

// ----- snapshots -----

fn both_sizes(name: &str, app: &App) {
    for (w, h) in [(80, 24), (120, 40)] {
        let screen = render(app, w, h);
        no_escapes(&screen);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen);
    }
}

#[test]
fn snapshot_inbox_with_hostile_text() {
    let mut app = agent_app();
    app.update(key(KeyCode::Enter));
    both_sizes("inbox_conversation", &app);
    app.update(ch('u'));
    both_sizes("inbox_unclaimed", &app);
}

#[test]
fn snapshot_composer() {
    let mut app = agent_app();
    app.update(key(KeyCode::Enter));
    app.update(ch('R'));
    typed(&mut app, "Dạ, em chào anh ạ 👋");
    both_sizes("composer", &app);
}

#[test]
fn snapshot_connections_and_rules() {
    let mut app = admin_app();
    app.data.dead_webhooks = 2;
    app.update(ch('2'));
    both_sizes("connections", &app);
    app.update(ch('3'));
    both_sizes("rules", &app);
}

#[test]
fn snapshot_add_connection_steps() {
    let mut app = admin_app();
    app.tab = Tab::Connections;
    app.modal = Some(Modal::AddConnection(AddStep::Consent {
        url: "https://oauth.zaloapp.com/v4/oa/permission?app_id=3608465249409039670&redirect_uri=https%3A%2F%2Fsop.vn%2Fzalo%2Foauth%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&state=abc".into(),
        expires_at: NOW,
    }));
    both_sizes("add_connection_consent", &app);
    app.modal = Some(Modal::AddConnection(AddStep::Permission {
        connection_id: "p1".into(),
        choice: 1,
    }));
    both_sizes("add_connection_permission", &app);
    app.modal = Some(Modal::AddConnection(AddStep::PickRule {
        connection_id: "p1".into(),
        selected: 1,
    }));
    both_sizes("add_connection_pick_rule", &app);
}

#[test]
fn snapshot_rule_editor_and_confirmation() {
    let mut app = admin_app();
    app.tab = Tab::Rules;
    let rule = app.data.rules["r1"].clone();
    let mut ed = RuleEditor::from_rule(
        &rule,
        vec!["HuongNT256".into(), "QueCT3".into(), "TriLM22".into()],
    );
    ed.field = 2;
    ed.old = OldConversations::Available;
    ed.member_input = tui_input::Input::new("Tr".into());
    app.modal = Some(Modal::RuleEditor(ed.clone()));
    both_sizes("rule_editor", &app);
    app.modal = Some(Modal::ConfirmRule(ed));
    both_sizes("rule_confirm", &app);
}

#[test]
fn snapshot_long_vietnamese_names_at_80_columns() {
    let mut app = admin_app();
    let long_page =
        "Công ty Trách nhiệm Hữu hạn Dịch vụ Tư vấn Pháp lý và Đầu tư Thành Đồng Miền Nam";
    let long_rule =
        "Chia chat cho nhóm chăm sóc khách hàng doanh nghiệp khu vực Thành phố Hồ Chí Minh";
    app.data.connections.get_mut("p1").unwrap().name = long_page.into();
    app.data.rules.get_mut("r1").unwrap().name = long_rule.into();
    app.update(ch('2'));
    let screen = render(&app, 80, 24);
    // The rule is named once on the card, and wrapped lines keep the card's indentation.
    assert_eq!(
        screen.matches("Chia chat cho nhóm chăm sóc").count(),
        1,
        "{screen}"
    );
    for line in screen.lines().skip(2).take(5) {
        assert!(
            line.starts_with("   ") || line.starts_with("▸ "),
            "{line:?}\n{screen}"
        );
    }
    both_sizes("connections_long_names", &app);
    let rule = app.data.rules["r1"].clone();
    let mut ed = RuleEditor::from_rule(&rule, vec!["HuongNT256".into()]);
    ed.old = OldConversations::All;
    app.tab = Tab::Rules;
    app.modal = Some(Modal::RuleEditor(ed));
    let screen = render(&app, 80, 24);
    let warning: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("lịch sử") || l.contains("nhân viên chat"))
        .collect();
    assert!(
        warning.len() == 2 && warning[1].starts_with("│      "),
        "{screen}"
    );
    both_sizes("rule_editor_long_names", &app);
}

#[test]
fn snapshot_help_and_too_small() {
    let mut app = agent_app();
    app.run_action(Action::Help);
    both_sizes("help", &app);
    app.modal = None;
    let screen = render(&app, 50, 12);
    insta::assert_snapshot!("too_small", screen);
}

#[test]
fn snapshot_english_and_offline() {
    let mut app = agent_app();
    app.data.lang = Lang::En;
    app.data.link = Link::Reconnecting {
        retry_at: NOW + 4_000,
    };
    app.data.link_lost_at = Some(NOW - 1_000);
    app.update(key(KeyCode::Enter));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Reconnecting in 4s"), "{screen}");
    insta::assert_snapshot!("english_reconnecting_80x24", screen);
}

#[test]
fn the_status_line_tells_a_blip_from_being_offline_on_cached_data() {
    let status = |app: &App| render(app, 100, 24).lines().last().unwrap().to_string();
    let reconnecting = |at| Msg::Net(NetEvent::Link(Link::Reconnecting { retry_at: at }));
    // Started with the hub unreachable: the cache is all there is.
    let mut app = agent_app();
    app.data.link = Link::Connecting;
    app.update(reconnecting(NOW + 2_000));
    assert!(app.data.showing_cached_data());
    assert!(
        status(&app).contains("Ngoại tuyến — dữ liệu đã lưu · ↻ 2s"),
        "{}",
        status(&app)
    );
    // Up, then a drop: a blip being reconnected.
    app.update(Msg::Net(NetEvent::Link(Link::Connected)));
    assert!(status(&app).contains("✓ Đã kết nối"), "{}", status(&app));
    app.update(reconnecting(NOW + 1_000));
    assert!(!app.data.showing_cached_data());
    assert!(
        status(&app).contains("Đang kết nối lại sau 1s"),
        "{}",
        status(&app)
    );
    // Still down half a minute later: offline.
    app.update(Msg::Tick(NOW + OFFLINE_AFTER_MS));
    app.update(reconnecting(NOW + OFFLINE_AFTER_MS + 8_000));
    assert!(app.data.showing_cached_data());
    assert!(
        status(&app).contains("Ngoại tuyến — dữ liệu đã lưu · ↻ 8s"),
        "{}",
        status(&app)
    );
}

/// One change the inbox's index must follow: a conversation (re)written, or a page removed.
#[derive(Debug, Clone)]
enum InboxOp {
    Upsert {
        id: u8,
        state: u8,
        assignee: u8,
        done: bool,
        /// Created, waiting since and last active: three independent times, so a view sorted
        /// by the wrong one is caught.
        minutes_ago: i64,
        waited: i64,
        active: i64,
        page: u8,
    },
    RemovePage(u8),
}

fn inbox_op() -> impl proptest::strategy::Strategy<Value = InboxOp> {
    use proptest::prelude::*;
    prop_oneof![
        8 => (0u8..40, 0u8..3, 0u8..3, any::<bool>(), (0i64..30, 0i64..30, 0i64..30), 0u8..3).prop_map(
            |(id, state, assignee, done, (minutes_ago, waited, active), page)| InboxOp::Upsert { id, state, assignee, done, minutes_ago, waited, active, page }
        ),
        1 => (0u8..3).prop_map(InboxOp::RemovePage),
    ]
}

proptest::proptest! {
    /// After any sequence of changes, every view's window (with or without a filter) is exactly
    /// the slice of a full scan sorted as the hub sorts — the index never drifts.
    #[test]
    fn the_inbox_index_always_matches_a_full_scan(
        ops in proptest::collection::vec(inbox_op(), 0..80),
        start in 0usize..30,
        count in 0usize..12,
        admin in proptest::bool::ANY,
        filter in proptest::option::of("[0-9]"),
    ) {
        let mut app = agent_app();
        if admin {
            app.data.me = Some(account("a1", "CuongLM", Role::Admin));
        }
        app.data.conversations.clear();
        for op in ops {
            match op {
                InboxOp::Upsert { id, state, assignee, done, minutes_ago, waited, active, page } => {
                    let state = [ConvState::Unclaimed, ConvState::Assigned, ConvState::Unattended][state as usize];
                    let assignee = [None, Some("a1"), Some("a2")][assignee as usize]
                        .filter(|_| state == ConvState::Assigned);
                    let mut c = conv(&format!("c{id}"), &format!("Khách {id}"), state, assignee, minutes_ago, "");
                    c.status = if done { ConvStatus::Done } else { ConvStatus::Open };
                    c.connection_id = format!("p{page}");
                    c.waiting_since = c.waiting_since.map(|_| NOW - waited * 60_000);
                    c.last_activity_at = NOW - active * 60_000;
                    app.data.conversations.insert(c);
                }
                InboxOp::RemovePage(page) => {
                    let page = format!("p{page}");
                    app.data.conversations.retain(|c| c.connection_id != page);
                }
            }
        }
        app.inbox.filter = filter.map(tui_input::Input::new);
        for view in [View::Mine, View::Unclaimed, View::All] {
            app.inbox.view = view;
            // The reference: scan everything, keep what the view shows, sort by the hub's order.
            let needle = app.inbox.filter.as_ref().map(|f| f.value().to_string()).unwrap_or_default();
            let mut expected: Vec<&Conversation> = app
                .data
                .conversations
                .values()
                .filter(|c| in_view(&app.data, view, c))
                .filter(|c| c.customer.display_name.to_lowercase().contains(&needle) || c.customer.user_id.contains(&needle) || c.preview.to_lowercase().contains(&needle))
                .collect();
            if view == View::Unclaimed {
                expected.sort_by_key(|c| (c.waiting_since.unwrap_or(c.created_at), c.id.clone()));
            } else {
                expected.sort_by_key(|c| (std::cmp::Reverse(c.last_activity_at), c.id.clone()));
            }
            let expected_ids: Vec<&str> = expected.iter().map(|c| c.id.as_str()).collect();
            let all: Vec<&str> = app.inbox.visible(&app.data).iter().map(|c| c.id.as_str()).collect();
            proptest::prop_assert_eq!(&all, &expected_ids, "{:?}", view);
            let (window, len) = app.inbox.visible_window(&app.data, start, count);
            proptest::prop_assert_eq!(len, expected_ids.len());
            let got: Vec<&str> = window.iter().map(|c| c.id.as_str()).collect();
            let slice: Vec<&str> = expected_ids.iter().skip(start).take(count).copied().collect();
            proptest::prop_assert_eq!(got, slice, "{:?}", view);
            if needle.is_empty() {
                proptest::prop_assert_eq!(app.data.count(view), expected_ids.len());
            }
        }
    }
}

#[test]
fn cache_keeps_the_snapshot_and_the_outbox_across_restarts() {
    let dir = std::env::temp_dir().join(format!("sop-cache-test-{}", rand::random::<u64>()));
    let app = agent_app();
    let outbox = vec![OutboxItem {
        client_key: "k1".into(),
        conversation_id: "c1".into(),
        text: "Gửi sau".into(),
        quote_msg_id: None,
        attachment: None,
        created_at: NOW,
        attempts: 0,
        retry_at: None,
    }];
    {
        let super::cache::Opened::Ready(c) = super::cache::Cache::open(&dir).unwrap() else {
            panic!("locked")
        };
        c.save_snapshot(&app.data.snapshot()).unwrap();
        c.save_outbox(&outbox).unwrap();
        // A second console of the same user runs without the cache.
        assert!(matches!(
            super::cache::Cache::open(&dir).unwrap(),
            super::cache::Opened::Locked
        ));
    }
    let c = loop {
        if let Ok(super::cache::Opened::Ready(c)) = super::cache::Cache::open(&dir) {
            break c;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (snapshot, loaded_outbox) = c.load();
    let snapshot = snapshot.expect("snapshot");
    assert_eq!(snapshot.conversations.len(), 3);
    assert_eq!(snapshot.head, 10);
    assert_eq!(snapshot.me.unwrap().username, "HuongNT256");
    assert_eq!(loaded_outbox.len(), 1);
    assert_eq!(loaded_outbox[0].text, "Gửi sau");
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_editor_draft_is_private_and_removed_afterwards() {
    use std::os::unix::fs::PermissionsExt;
    let draft = super::Draft::write("Dạ, em chào anh").unwrap();
    let path = draft.path();
    let file_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!((file_mode, dir_mode), (0o600, 0o700));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "Dạ, em chào anh");
    assert!(!std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    drop(draft);
    assert!(!path.exists() && !path.parent().unwrap().exists());
}

// ----- search -----

fn hit(app: &App, conv: &str, message: Option<Message>) -> crate::wire::SearchHit {
    crate::wire::SearchHit {
        conversation: app.data.conversations.get(conv).unwrap().clone(),
        message,
    }
}

fn searches(fx: &[Effect]) -> Vec<(String, Option<String>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Api(ApiCall::Search { query, cursor }) => Some((query.clone(), cursor.clone())),
            _ => None,
        })
        .collect()
}

/// An agent searching for a message in an old thread: results as she types (a late answer for
/// text she has typed over is dropped), Enter opens the thread there, loading older pages until
/// the message is in it, marked.
#[test]
fn search_shows_results_as_you_type_and_opens_the_thread_at_the_message() {
    let mut app = agent_app();
    app.update(ch('S'));
    assert!(matches!(app.modal, Some(Modal::Search(_))));
    let mut asked = vec![];
    for c in "gia".chars() {
        asked.extend(searches(&app.update(ch(c))));
    }
    let expected: Vec<(String, Option<String>)> =
        ["g", "gi", "gia"].map(|q| (q.to_string(), None)).into();
    assert_eq!(asked, expected, "one search per key typed");
    let old = message(
        "m0",
        "c1",
        Direction::Inbound,
        "Cho em hỏi giá cũ",
        None,
        600,
    );
    let results = |query: &str, items| {
        Msg::Net(NetEvent::SearchResults {
            query: query.into(),
            more: false,
            page: crate::wire::Page {
                items,
                next_cursor: None,
            },
        })
    };
    // The answer for "gi" arrives after the one for "gia": it is not shown.
    app.update(results("gia", vec![hit(&app, "c1", Some(old.clone()))]));
    app.update(results("gi", vec![hit(&app, "c3", None)]));
    let Some(Modal::Search(s)) = &app.modal else {
        panic!("{:?}", app.modal)
    };
    assert_eq!(s.results.len(), 1);
    assert_eq!(s.results[0].conversation.id, "c1");

    app.tab = Tab::Rules;
    let fx = app.update(key(KeyCode::Enter));
    assert!(app.modal.is_none());
    assert_eq!(app.tab, Tab::Inbox);
    assert_eq!(app.inbox.open.as_deref(), Some("c1"));
    assert_eq!(app.inbox.focus, Focus::Conversation);
    assert_eq!(loads(&fx), ["c1"]);
    // The newest page does not hold m0: the page before it is asked for, then no more.
    app.data.messages.remove("c1");
    let page = |items, next_cursor: Option<&str>, older| {
        Msg::Net(NetEvent::Messages {
            conversation_id: "c1".into(),
            items,
            next_cursor: next_cursor.map(str::to_string),
            older,
        })
    };
    let newest = message("m9", "c1", Direction::Inbound, "Mới nhất", None, 1);
    let fx = app.update(page(vec![newest], Some("m9"), false));
    assert!(fx.iter().any(|e| matches!(e,
        Effect::Api(ApiCall::LoadMessages { id, before: Some(b) }) if id == "c1" && b == "m9")));
    let fx = app.update(page(vec![old], Some("m0"), true));
    assert!(loads(&fx).is_empty(), "found: no more pages");
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("▶"),
        "the message found is marked\n{screen}"
    );
    assert!(screen.contains("Cho em hỏi giá cũ"), "{screen}");
    both_sizes("thread_at_search_result", &app);
}

#[test]
fn snapshot_search() {
    let mut app = agent_app();
    app.update(ch('S'));
    for c in "tien".chars() {
        app.update(ch(c));
    }
    let items = vec![
        hit(&app, "c2", None),
        hit(
            &app,
            "c2",
            Some(message("m8", "c2", Direction::Inbound, HOSTILE, None, 90)),
        ),
        hit(
            &app,
            "c1",
            Some(message(
                "m7",
                "c1",
                Direction::Inbound,
                "Cho em hỏi tiền dịch vụ tư vấn hợp đồng lao động trọn gói là bao nhiêu ạ?",
                None,
                30,
            )),
        ),
    ];
    app.update(Msg::Net(NetEvent::SearchResults {
        query: "tien".into(),
        more: false,
        page: crate::wire::Page {
            items,
            next_cursor: Some("m7".into()),
        },
    }));
    app.update(key(KeyCode::Down));
    both_sizes("search", &app);
}

// ----- notes -----

/// `N` writes a private note: `@` + letters completes a colleague with Tab, Enter sends it, and
/// the text stays until the hub has it (a refusal keeps it for another try).
#[test]
fn a_note_completes_mentions_and_keeps_its_text_until_the_hub_has_it() {
    let mut app = agent_app();
    let fx = app.update(ch('N'));
    assert_eq!(app.inbox.focus, Focus::Composer);
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Api(ApiCall::Colleagues(id)) if id == "c1")));
    app.update(Msg::Net(NetEvent::Colleagues {
        conversation_id: "c1".into(),
        list: vec![
            target("a1", "CuongLM", "Cường", Availability::Available),
            target("a3", "QueCT3", "Quế", Availability::Away),
        ],
    }));
    typed(&mut app, "@qu");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.inbox.composer.value(), "@QueCT3 ");
    typed(&mut app, "xem giúp khách này");
    let fx = app.update(key(KeyCode::Enter));
    let sent: Vec<(&str, &str)> =
        fx.iter()
            .filter_map(|e| match e {
                Effect::Api(ApiCall::Note {
                    conversation_id,
                    client_key,
                    text,
                }) => Some((conversation_id.as_str(), text.as_str()))
                    .filter(|_| !client_key.is_empty()),
                _ => None,
            })
            .collect();
    assert_eq!(sent, [("c1", "@QueCT3 xem giúp khách này")]);
    assert!(app.data.outbox.is_empty(), "a note is not a reply");
    // Refused: the text is still there.
    app.update(Msg::Net(NetEvent::Failed("@quect3 cannot see".into())));
    assert_eq!(app.inbox.composer.value(), "@QueCT3 xem giúp khách này");
    // Sent again and taken.
    let fx = app.update(key(KeyCode::Enter));
    let Some(Effect::Api(ApiCall::Note { client_key, .. })) = fx.first() else {
        panic!("{fx:?}")
    };
    let note = Message {
        kind: MessageKind::Note,
        client_key: Some(client_key.clone()),
        ..message(
            "m20",
            "c1",
            Direction::Outbound,
            "@QueCT3 xem giúp khách này",
            None,
            0,
        )
    };
    app.update(Msg::Net(NetEvent::NoteAdded(Box::new(note))));
    assert_eq!(app.inbox.composer.value(), "");
    assert_eq!(app.inbox.focus, Focus::Conversation);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("✎ Ghi chú nội bộ · HuongNT256"), "{screen}");
    assert!(screen.contains("┃ @QueCT3 xem giúp"), "{screen}");
    both_sizes("thread_with_a_note", &app);
}

#[test]
fn snapshot_note_composer_and_mentions() {
    let mut app = agent_app();
    app.update(ch('N'));
    app.update(Msg::Net(NetEvent::Colleagues {
        conversation_id: "c1".into(),
        list: vec![
            target("a1", "CuongLM", "Cường", Availability::Available),
            target("a3", "QueCT3", "Quế", Availability::Away),
        ],
    }));
    typed(&mut app, "Khách hỏi giá sỉ, @");
    both_sizes("note_composer", &app);

    let mut app = agent_app();
    let fx = app.update(ch('@'));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Api(ApiCall::Mentions { cursor: None }))));
    let note = Message {
        kind: MessageKind::Note,
        sender: "a3".into(),
        sender_name: "QueCT3".into(),
        ..message(
            "m21",
            "c2",
            Direction::Outbound,
            "@HuongNT256 khách này cần gấp",
            None,
            5,
        )
    };
    app.update(Msg::Net(NetEvent::Mentions {
        more: false,
        page: crate::wire::Page {
            items: vec![hit(&app, "c2", Some(note))],
            next_cursor: None,
        },
    }));
    both_sizes("mentions", &app);
}

// ----- quick replies -----

fn quick(id: &str, shortcut: &str, title: &str, text: &str, owner: Option<&str>) -> QuickReply {
    QuickReply {
        id: id.into(),
        owner: owner.map(str::to_string),
        shortcut: shortcut.into(),
        title: title.into(),
        text: text.into(),
        attachment: None,
        updated_at: NOW,
    }
}

fn with_quick_replies(app: &mut App) {
    for q in [
        quick(
            "q1",
            "gia",
            "Báo giá dịch vụ",
            "Chào {ten_khach}, em là {ten_nhan_vien} của {ten_trang}. Giá tư vấn là 500.000đ ạ.",
            None,
        ),
        quick(
            "q2",
            "chao",
            "Chào khách",
            "Dạ em chào {ten_khach} ạ",
            Some("a2"),
        ),
        QuickReply {
            attachment: Some(Attachment {
                kind: "image".into(),
                url: String::new(),
                name: "ban-do.png".into(),
                size: Some(228),
            }),
            ..quick(
                "q3",
                "diachi",
                "Địa chỉ văn phòng",
                "Văn phòng ở 12 Hàng Bài ạ",
                None,
            )
        },
    ] {
        app.data.quick_replies.insert(q.id.clone(), q);
    }
}

/// In a reply, `/` + letters lists the matching quick replies (accents ignored, letters in
/// order); ↑↓ picks and Tab puts its text in, variables filled for this conversation.
#[test]
fn slash_letters_offer_quick_replies_and_tab_inserts_one_filled() {
    let mut app = agent_app();
    with_quick_replies(&mut app);
    app.data.me.as_mut().unwrap().name = "Hương".into();
    app.update(ch('r'));
    typed(&mut app, "Dạ /d");
    let shortcuts = |app: &App| -> Vec<String> {
        app.inbox
            .quick_candidates(&app.data)
            .iter()
            .map(|q| q.shortcut.clone())
            .collect()
    };
    // "diachi" by its shortcut first, then "gia" ("dịch vụ" in its title).
    assert_eq!(shortcuts(&app), ["diachi", "gia"]);
    app.update(key(KeyCode::Backspace));
    typed(&mut app, "gv");
    assert_eq!(shortcuts(&app), ["gia"], "g…v in order: gia's title");
    app.update(key(KeyCode::Backspace));
    app.update(key(KeyCode::Backspace));
    typed(&mut app, "c");
    assert_eq!(shortcuts(&app), ["chao", "diachi", "gia"]);
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Tab));
    assert_eq!(
        app.inbox.composer.value(),
        "Dạ Chào Trần Văn An, em là Hương của Công ty Luật TNHH Thành Đồng. Giá tư vấn là 500.000đ ạ."
    );
    assert!(
        app.inbox.quick_candidates(&app.data).is_empty(),
        "the list closes"
    );
    let fx = app.update(key(KeyCode::Enter));
    assert!(fx.iter().any(|e| matches!(e,
        Effect::Api(ApiCall::Reply(o)) if o.text.starts_with("Dạ Chào Trần Văn An"))));
    // A shared one removed elsewhere leaves the list.
    app.update(event(11, EventBody::QuickReplyRemoved { id: "q1".into() }));
    assert!(!app.data.quick_replies.contains_key("q1"));
}

/// A quick reply with an image: Tab shows the file on the composer, Enter sends the text and
/// asks the hub for the file, which goes out in that thread even if another is open by then;
/// Esc drops it.
#[test]
fn a_quick_reply_file_is_sent_after_its_text_in_its_own_thread() {
    let mut app = agent_app();
    with_quick_replies(&mut app);
    app.update(ch('r'));
    let conv = app.inbox.open.clone().unwrap();
    typed(&mut app, "/diachi");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.inbox.composer.value(), "Văn phòng ở 12 Hàng Bài ạ");
    both_sizes("quick_reply_file", &app);
    let fx = app.update(key(KeyCode::Enter));
    let calls: Vec<&ApiCall> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Api(call) => Some(call),
            _ => None,
        })
        .collect();
    assert!(
        matches!(calls.as_slice(), [ApiCall::Reply(o), ApiCall::QuickReplyFile { id, conversation }]
            if o.text == "Văn phòng ở 12 Hàng Bài ạ" && id == "q3" && *conversation == conv),
        "{calls:?}"
    );
    assert!(app.inbox.quick_file.is_none());

    // The file arrives after the agent moved on: it still goes to the thread it was for.
    app.inbox.open = None;
    let attachment = OutboundAttachment {
        kind: OutboundKind::Image,
        name: "ban-do.png".into(),
        content_base64: "iVBORw0KGgo=".into(),
    };
    let fx = app.update(Msg::Net(NetEvent::Attachment {
        conversation: conv.clone(),
        attachment,
    }));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Api(ApiCall::Reply(o))
            if o.conversation_id == conv && o.attachment.is_some() && o.text.is_empty())),
        "{fx:?}"
    );

    // Esc in the composer drops the file with the reply.
    app.inbox.open = Some(conv);
    app.update(key(KeyCode::Esc));
    app.update(ch('r'));
    typed(&mut app, "/diachi");
    app.update(key(KeyCode::Tab));
    assert!(app.inbox.quick_file.is_some());
    app.update(key(KeyCode::Esc));
    assert!(app.inbox.quick_file.is_none());
}

#[test]
fn snapshot_quick_replies() {
    let mut app = agent_app();
    with_quick_replies(&mut app);
    let hostile = quick("q4", "zz", HOSTILE, HOSTILE, None);
    app.data.quick_replies.insert(hostile.id.clone(), hostile);
    app.update(ch('r'));
    typed(&mut app, "/");
    app.update(key(KeyCode::Down));
    both_sizes("quick_replies", &app);
}

// ----- customer panel -----

#[test]
fn the_customer_panel_opens_from_a_thread_and_enter_opens_a_conversation() {
    let mut app = agent_app();
    app.update(key(KeyCode::Enter));
    let fx = app.update(ch('p'));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Api(ApiCall::CustomerPanel(id)) if id == "c1")));
    both_sizes("customer_panel_loading", &app);
    let c1 = app.data.conversations.get("c1").unwrap().clone();
    let older = Conversation {
        id: "c7".into(),
        connection_id: "p9".into(),
        status: ConvStatus::Done,
        ..c1.clone()
    };
    let note = Message {
        kind: MessageKind::Note,
        sender_name: "QueCT3".into(),
        ..message(
            "m30",
            "c1",
            Direction::Outbound,
            "Khách quen, ưu tiên trả lời sớm",
            None,
            60,
        )
    };
    let panel = crate::wire::CustomerPanel {
        customer: Customer {
            avatar: "https://s120-ava-talk.zadn.vn/a/b/c/an.jpg".into(),
            follows: Some(true),
            ..c1.customer.clone()
        },
        shared_info: vec![crate::wire::SharedInfo {
            at: NOW - 3_600_000,
            fields: vec![
                ("address".into(), "12 Hàng Bài, Hoàn Kiếm".into()),
                ("name".into(), HOSTILE.into()),
                ("phone".into(), "0912345678".into()),
            ],
        }],
        notes: vec![note],
        conversations: vec![c1, older],
    };
    app.update(Msg::Net(NetEvent::CustomerPanel {
        conversation_id: "c1".into(),
        panel: Box::new(panel),
    }));
    // Labels put on while the panel is open show in it.
    labelled(&mut app, 40, "c1", &["VIP", HOSTILE]);
    both_sizes("customer_panel", &app);
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    assert!(app.modal.is_none());
    assert_eq!(app.inbox.open.as_deref(), Some("c7"));
}

// ----- labels -----

/// The hub's word that conversation `id`'s customer now has `labels`.
fn labelled(app: &mut App, seq: u64, id: &str, labels: &[&str]) {
    let mut c = app.data.conversations.get(id).unwrap().clone();
    c.customer.labels = labels.iter().map(|l| l.to_string()).collect();
    app.update(event(seq, EventBody::Conversation { conversation: c }));
}

fn label_calls(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Api(ApiCall::AttachLabel { id, name }) => Some(format!("+{id}:{name}")),
            Effect::Api(ApiCall::DetachLabel { id, name }) => Some(format!("-{id}:{name}")),
            _ => None,
        })
        .collect()
}

#[test]
fn labels_are_put_on_created_and_taken_off_from_the_popup_and_filter_the_inbox() {
    let mut app = agent_app();
    let fx = app.update(ch('L'));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Api(ApiCall::Labels(id)) if id == "c1")));
    both_sizes("labels_loading", &app);
    labelled(&mut app, 50, "c1", &["VIP"]);
    let choices = crate::wire::LabelChoices {
        attached: vec!["VIP".into()],
        page: vec!["Khách sỉ".into(), "VIP".into(), HOSTILE.into()],
    };
    app.update(Msg::Net(NetEvent::Labels {
        conversation_id: "c1".into(),
        choices,
    }));
    both_sizes("labels", &app);
    // Enter on a label the customer has takes it off; on one they lack puts it on.
    app.update(key(KeyCode::Down));
    assert_eq!(label_calls(&app.update(key(KeyCode::Enter))), ["-c1:VIP"]);
    app.update(key(KeyCode::Up));
    assert_eq!(
        label_calls(&app.update(key(KeyCode::Enter))),
        ["+c1:Khách sỉ"]
    );
    // Typed without accents: the matching label; a new name: created.
    typed(&mut app, "khach si");
    assert_eq!(
        label_calls(&app.update(key(KeyCode::Enter))),
        ["+c1:Khách sỉ"]
    );
    for _ in 0..8 {
        app.update(key(KeyCode::Backspace));
    }
    typed(&mut app, "Đã mua");
    both_sizes("labels_create", &app);
    assert_eq!(
        label_calls(&app.update(key(KeyCode::Enter))),
        ["+c1:Đã mua"]
    );
    app.update(key(KeyCode::Esc));
    assert!(app.modal.is_none());

    // The hub's events: labels in the list, and `/#` keeps the conversations with a label.
    labelled(&mut app, 51, "c1", &["Khách sỉ", "Đã mua"]);
    labelled(&mut app, 52, "c2", &["VIP"]);
    both_sizes("inbox_labels", &app);
    app.update(ch('/'));
    typed(&mut app, "#da");
    app.update(key(KeyCode::Enter));
    let ids = listed(&app);
    assert_eq!(ids, ["c1"]);
    app.update(key(KeyCode::Esc));
    app.update(ch('u'));
    app.update(ch('/'));
    typed(&mut app, "vip");
    app.update(key(KeyCode::Enter));
    let ids = listed(&app);
    assert_eq!(ids, ["c2"]);
}
