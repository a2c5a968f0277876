use super::*;
use crate::model::{Customer, Origin, DAY_MS};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

fn rule(members: &[&str], method: Method) -> Rule {
    Rule {
        id: "r1".into(),
        name: "Chia chat cho nhóm Best Sale".into(),
        sources: vec!["p1".into()],
        members: members.iter().map(|m| m.to_string()).collect(),
        method,
        old_conversations: OldConversations::None,
        cursor: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn shared(rule: &Rule) -> Page<'_> {
    Page {
        chat_mode: ChatMode::Shared,
        connector: "admin",
        rule: Some(rule),
    }
}

fn conv(state: ConvState, last_interaction_at: Option<Ms>) -> Conversation {
    Conversation {
        id: "c".into(),
        connection_id: "p1".into(),
        customer: Customer::default(),
        assignee: None,
        state,
        status: ConvStatus::Open,
        origin: Origin::History,
        last_interaction_at,
        last_activity_at: 0,
        waiting_since: None,
        unread: BTreeMap::new(),
        preview: String::new(),
        assignments: vec![],
        created_at: 0,
    }
}

/// Routes `n` new conversations, carrying the cursor as the hub does.
fn route_many(mut r: Rule, n: usize, available: &HashSet<String>) -> (Vec<Route>, Rule) {
    let mut out = vec![];
    for _ in 0..n {
        let d = route_new(shared(&r), &|m| available.contains(m));
        if let Some(c) = d.cursor {
            r.cursor = Some(c);
        }
        out.push(d.route);
    }
    (out, r)
}

#[test]
fn seed_round_robin_gives_two_each_in_turn() {
    let r = rule(&["HuongNT256", "QueCT3", "TriLM22"], Method::RoundRobin);
    let all: HashSet<String> = r.members.iter().cloned().collect();
    let (routes, r) = route_many(r, 6, &all);
    let order: Vec<_> = routes
        .iter()
        .map(|x| match x {
            Route::Assign { to, .. } => to.as_str(),
            Route::Unclaimed => "-",
        })
        .collect();
    assert_eq!(
        order,
        [
            "HuongNT256",
            "QueCT3",
            "TriLM22",
            "HuongNT256",
            "QueCT3",
            "TriLM22"
        ]
    );
    assert_eq!(r.cursor.as_deref(), Some("TriLM22"));
}

#[test]
fn round_robin_skips_away_members() {
    let r = rule(&["a", "b", "c"], Method::RoundRobin);
    let avail: HashSet<String> = ["a", "c"].iter().map(|s| s.to_string()).collect();
    let (routes, _) = route_many(r, 4, &avail);
    assert!(routes
        .iter()
        .all(|x| !matches!(x, Route::Assign { to, .. } if to == "b")));
    assert_eq!(
        routes[0],
        Route::Assign {
            to: "a".into(),
            reason: AssignReason::Rule
        }
    );
    assert_eq!(
        routes[1],
        Route::Assign {
            to: "c".into(),
            reason: AssignReason::Rule
        }
    );
}

#[test]
fn round_robin_with_nobody_available_queues() {
    let r = rule(&["a", "b"], Method::RoundRobin);
    let d = route_new(shared(&r), &|_| false);
    assert_eq!(d.route, Route::Unclaimed);
    assert_eq!(
        d.cursor, None,
        "an unassigned conversation must not move the cursor"
    );
}

#[test]
fn removed_cursor_member_restarts_at_first_member() {
    let mut r = rule(&["a", "b"], Method::RoundRobin);
    r.cursor = Some("gone".into());
    assert_eq!(
        next_round_robin(&r.members, r.cursor.as_deref(), &|_| true),
        Some("a".into())
    );
}

#[test]
fn self_claim_leaves_new_conversations_unclaimed() {
    let r = rule(&["a", "b"], Method::SelfClaim);
    assert_eq!(route_new(shared(&r), &|_| true).route, Route::Unclaimed);
}

#[test]
fn shared_page_without_rule_waits() {
    let page = Page {
        chat_mode: ChatMode::Shared,
        connector: "admin",
        rule: None,
    };
    assert_eq!(route_new(page, &|_| true).route, Route::Unclaimed);
}

#[test]
fn drain_assigns_oldest_first_in_turn_and_stops_when_nobody_is_available() {
    let r = rule(&["a", "b"], Method::RoundRobin);
    let queue: Vec<String> = ["c1", "c2", "c3"].iter().map(|s| s.to_string()).collect();
    let (assigned, cursor) = drain_queue(&r, &queue, &|m| m == "b");
    assert_eq!(
        assigned,
        vec![
            ("c1".to_string(), "b".to_string()),
            ("c2".into(), "b".into()),
            ("c3".into(), "b".into())
        ]
    );
    assert_eq!(cursor.as_deref(), Some("b"));
    let (none, _) = drain_queue(&r, &queue, &|_| false);
    assert!(none.is_empty());
    let sc = rule(&["a"], Method::SelfClaim);
    assert!(drain_queue(&sc, &queue, &|_| true).0.is_empty());
}

#[test]
fn eligibility_follows_the_page() {
    let r = rule(&["a"], Method::RoundRobin);
    assert!(is_eligible(shared(&r), "a"));
    assert!(!is_eligible(shared(&r), "admin"));
    let only = Page {
        chat_mode: ChatMode::OnlyMe,
        connector: "admin",
        rule: Some(&r),
    };
    assert!(is_eligible(only, "admin"));
    assert!(!is_eligible(only, "a"));
    let mut c = conv(ConvState::Assigned, None);
    c.assignee = Some("a".into());
    let nobody_admin = |_: &str| false;
    assert!(keeps_assignee(shared(&r), &c, &nobody_admin));
    assert!(!keeps_assignee(only, &c, &nobody_admin));
    assert!(
        keeps_assignee(only, &c, &|a| a == "a"),
        "admins keep what they hold"
    );
}

#[test]
fn old_conversation_options_do_what_the_seed_says() {
    let now = 30 * DAY_MS;
    let recent = conv(ConvState::Unattended, Some(now - 2 * DAY_MS));
    let stale = conv(ConvState::Unattended, Some(now - 8 * DAY_MS));
    let never = conv(ConvState::Unattended, None);
    let mut done = conv(ConvState::Unattended, Some(now));
    done.status = ConvStatus::Done;
    let assigned = conv(ConvState::Assigned, Some(now));

    for c in [&recent, &stale, &never] {
        assert!(!old_conversation_selected(OldConversations::None, c, now));
        assert!(old_conversation_selected(OldConversations::All, c, now));
    }
    assert!(old_conversation_selected(
        OldConversations::Available,
        &recent,
        now
    ));
    assert!(!old_conversation_selected(
        OldConversations::Available,
        &stale,
        now
    ));
    assert!(!old_conversation_selected(
        OldConversations::Available,
        &never,
        now
    ));
    for opt in [
        OldConversations::None,
        OldConversations::Available,
        OldConversations::All,
    ] {
        assert!(!old_conversation_selected(opt, &done, now));
        assert!(!old_conversation_selected(opt, &assigned, now));
    }
}

proptest! {
    /// N conversations over k available members: counts differ by at most one, away members get none.
    #[test]
    fn round_robin_is_fair(n in 0usize..200, k in 1usize..8, away_mask in 0u16..256) {
        let members: Vec<String> = (0..k).map(|i| format!("m{i}")).collect();
        let names: Vec<&str> = members.iter().map(|s| s.as_str()).collect();
        let avail: HashSet<String> = members.iter().enumerate()
            .filter(|(i, _)| away_mask & (1 << i) == 0).map(|(_, m)| m.clone()).collect();
        let (routes, _) = route_many(rule(&names, Method::RoundRobin), n, &avail);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in &routes {
            match r {
                Route::Assign { to, .. } => *counts.entry(to.clone()).or_default() += 1,
                Route::Unclaimed => prop_assert!(avail.is_empty(), "queued while someone was available"),
            }
        }
        for m in counts.keys() { prop_assert!(avail.contains(m)); }
        if !avail.is_empty() {
            let per: Vec<usize> = avail.iter().map(|m| counts.get(m).copied().unwrap_or(0)).collect();
            let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "counts {per:?}");
        }
    }

    /// An only_me page always goes to its connector, whatever the rule and availability say.
    #[test]
    fn only_me_always_goes_to_connector(k in 0usize..5, avail in any::<bool>(), sc in any::<bool>()) {
        let members: Vec<String> = (0..k).map(|i| format!("m{i}")).collect();
        let names: Vec<&str> = members.iter().map(|s| s.as_str()).collect();
        let r = rule(&names, if sc { Method::SelfClaim } else { Method::RoundRobin });
        let page = Page { chat_mode: ChatMode::OnlyMe, connector: "boss", rule: Some(&r) };
        let d = route_new(page, &|_| avail);
        prop_assert_eq!(d.route, Route::Assign { to: "boss".into(), reason: AssignReason::OnlyMe });
    }

    /// Draining takes the queue in order (all of it when anyone is available, none otherwise),
    /// gives each conversation to the next available member after the previous one, starting
    /// after the rule's cursor, and leaves the cursor on the last one served.
    #[test]
    fn drain_serves_the_queue_in_order_in_turn(
        q in 0usize..30,
        available in proptest::collection::vec(any::<bool>(), 1..6),
        cursor in proptest::option::of(0usize..6),
    ) {
        let k = available.len();
        let members: Vec<String> = (0..k).map(|i| format!("m{i}")).collect();
        let names: Vec<&str> = members.iter().map(|s| s.as_str()).collect();
        let mut r = rule(&names, Method::RoundRobin);
        r.cursor = cursor.filter(|&c| c < k).map(|c| members[c].clone());
        let queue: Vec<String> = (0..q).map(|i| format!("c{i}")).collect();
        let is_available = |m: &str| available[m[1..].parse::<usize>().unwrap()];
        let (served, last) = drain_queue(&r, &queue, &is_available);

        // The model: walk the members in a circle from after the cursor, skipping the away.
        let mut expected = Vec::new();
        let mut at = cursor.filter(|&c| c < k).map(|c| c + 1).unwrap_or(0);
        if available.iter().any(|&a| a) {
            for conv in &queue {
                while !available[at % k] {
                    at += 1;
                }
                expected.push((conv.clone(), members[at % k].clone()));
                at += 1;
            }
        }
        prop_assert_eq!(&served, &expected);
        let expected_cursor = expected.last().map(|(_, m)| m.clone()).or(r.cursor.clone());
        prop_assert_eq!(last, expected_cursor);
    }
}
