//! Who may see what, defined once (issue 10): the hub's answers, the audiences of its events and
//! the console's cache all ask these functions. Admins see everything; the functions below say
//! which other accounts do. Pure: no lookups, the caller passes the page and its rule.

use super::Page;
use crate::model::{Account, AccountId, ChatMode, ConvState, Conversation, Rule};

/// The accounts other than admins that may see a conversation: its assignee; the connector of an
/// only-me page; and, while it waits to be claimed, the members of its page's rule. Unattended
/// conversations stay with admins: handing them out shares history, which the seed makes an
/// explicit choice of the rule's old-conversation setting. Sorted, without duplicates.
pub fn conversation_audience(conv: &Conversation, page: Option<Page<'_>>) -> Vec<AccountId> {
    let mut out = Vec::new();
    if let Some(a) = &conv.assignee {
        out.push(a.clone());
    }
    if let Some(page) = page {
        if conv.state == ConvState::Unclaimed {
            out.extend(waiting_audience(page));
        } else if page.chat_mode == ChatMode::OnlyMe {
            out.push(page.connector.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The accounts other than admins that may see the conversations waiting on a page (the
/// unclaimed queue): the connector of an only-me page and the members of its rule.
pub fn waiting_audience(page: Page<'_>) -> Vec<AccountId> {
    let mut out = Vec::new();
    if page.chat_mode == ChatMode::OnlyMe {
        out.push(page.connector.to_string());
    }
    if let Some(rule) = page.rule {
        out.extend(rule.members.iter().cloned());
    }
    out
}

pub fn may_see_conversation(who: &Account, conv: &Conversation, page: Option<Page<'_>>) -> bool {
    who.is_admin()
        || conversation_audience(conv, page)
            .iter()
            .any(|a| a == &who.id)
}

/// The accounts other than admins that may see a page: its connector and its rule's members.
pub fn page_audience(connector: &str, rule: Option<&Rule>) -> Vec<AccountId> {
    let mut out = vec![connector.to_string()];
    if let Some(rule) = rule {
        out.extend(rule.members.iter().cloned());
    }
    out.sort();
    out.dedup();
    out
}

pub fn may_see_page(who: &Account, connector: &str, rule: Option<&Rule>) -> bool {
    who.is_admin() || page_audience(connector, rule).contains(&who.id)
}

pub fn may_see_rule(who: &Account, rule: &Rule) -> bool {
    who.is_admin() || rule.members.contains(&who.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Availability, ConvStatus, Customer, Method, OldConversations, Origin, Role,
    };
    use proptest::prelude::*;

    const PEOPLE: [&str; 4] = ["a1", "a2", "a3", "a4"];

    fn account(id: &str, admin: bool) -> Account {
        Account {
            id: id.into(),
            email: format!("{id}@sop.vn"),
            username: id.into(),
            name: id.into(),
            role: if admin { Role::Admin } else { Role::Agent },
            availability: Availability::Available,
            created_at: 0,
        }
    }

    fn conversation(assignee: Option<usize>, state: ConvState) -> Conversation {
        Conversation {
            id: "c1".into(),
            connection_id: "p1".into(),
            customer: Customer::default(),
            assignee: assignee.map(|i| PEOPLE[i].to_string()),
            state,
            status: ConvStatus::Open,
            origin: Origin::Live,
            last_interaction_at: None,
            last_activity_at: 0,
            waiting_since: None,
            unread: Default::default(),
            preview: String::new(),
            assignments: vec![],
            created_at: 0,
        }
    }

    fn rule(members: &[usize]) -> Rule {
        Rule {
            id: "r1".into(),
            name: "r".into(),
            sources: vec!["p1".into()],
            members: members.iter().map(|&i| PEOPLE[i].to_string()).collect(),
            method: Method::RoundRobin,
            old_conversations: OldConversations::None,
            cursor: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// The rule as the seed's guide states it, written independently of the code above.
    fn seed_says_visible(
        who: &Account,
        conv: &Conversation,
        page: Option<(ChatMode, &str)>,
        rule: Option<&Rule>,
    ) -> bool {
        let is = |id: &Option<String>| id.as_deref() == Some(who.id.as_str());
        let own_only_me_page = matches!(page, Some((ChatMode::OnlyMe, c)) if c == who.id);
        let waiting_in_my_rule = conv.state == ConvState::Unclaimed
            && page.is_some()
            && rule.is_some_and(|r| r.members.iter().any(|m| m == &who.id));
        who.is_admin() || is(&conv.assignee) || own_only_me_page || waiting_in_my_rule
    }

    proptest! {
        #[test]
        fn visibility_matches_the_seed_rule(
            who in 0usize..4,
            admin in any::<bool>(),
            assignee in proptest::option::of(0usize..4),
            state in prop_oneof![Just(ConvState::Unclaimed), Just(ConvState::Assigned), Just(ConvState::Unattended)],
            page in proptest::option::of((any::<bool>(), 0usize..4)),
            members in proptest::collection::vec(0usize..4, 0..4),
            has_rule in any::<bool>(),
        ) {
            let who = account(PEOPLE[who], admin);
            let conv = conversation(assignee, state);
            let rule = rule(&members);
            let rule = has_rule.then_some(&rule);
            let page_info = page.map(|(only_me, c)| {
                (if only_me { ChatMode::OnlyMe } else { ChatMode::Shared }, PEOPLE[c])
            });
            let page = page_info.map(|(chat_mode, connector)| Page { chat_mode, connector, rule });
            prop_assert_eq!(
                may_see_conversation(&who, &conv, page),
                seed_says_visible(&who, &conv, page_info, rule)
            );
            // A non-admin sees it exactly when its events are addressed to them.
            if !admin {
                prop_assert_eq!(
                    conversation_audience(&conv, page).contains(&who.id),
                    may_see_conversation(&who, &conv, page)
                );
            }
        }
    }

    #[test]
    fn pages_and_rules() {
        let r = rule(&[1, 2]);
        assert!(may_see_page(&account("a2", false), "a1", Some(&r)));
        assert!(may_see_page(&account("a1", false), "a1", None));
        assert!(!may_see_page(&account("a4", false), "a1", Some(&r)));
        assert!(may_see_page(&account("a4", true), "a1", Some(&r)));
        assert!(may_see_rule(&account("a3", false), &r));
        assert!(!may_see_rule(&account("a1", false), &r));
        assert_eq!(page_audience("a2", Some(&r)), vec!["a2", "a3"]);
    }
}
