//! `GET /search`: customers and messages of the conversations the caller may see, found by what
//! agents type (accents and case ignored, every word a prefix), newest first. The database finds
//! candidates (`store::sql::search`); the visibility policy the views use keeps the caller's.

use super::*;
use crate::store::sql::search::terms;
use crate::wire::{self, SearchHit};

/// Candidates read per query to the database, at most: a query asks for what is still missing
/// (the database's work grows with the rows it produces), and for more each time the policy
/// dropped some.
const MAX_BATCH: usize = 1_000;
/// Candidates one request looks at, at most, before answering with what it found and a cursor:
/// an agent who may see few of many matches gets pages, not a request that scans everything.
const SCAN_BUDGET: usize = 2_000;
/// Customers listed at the top of the first page.
const CUSTOMERS: usize = 10;
/// Up to this many conversations visible to the caller, the database is asked for theirs only;
/// beyond, it is asked for all and the policy keeps the caller's.
const WITHIN: usize = 5_000;

impl Hub {
    pub async fn search(
        &self,
        who: &Account,
        query: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> HubResult<wire::Page<SearchHit>> {
        let terms = terms(query);
        if terms.is_empty() {
            return Err(HubError::Invalid(
                "q: type at least one letter or digit to search for".into(),
            ));
        }
        let limit = limit.clamp(1, 100);
        let mut before = cursor.map(parse_search_cursor).transpose()?;
        // An agent sees a part of the conversations: the database looks only there.
        let within: Option<Vec<String>> = if who.is_admin() {
            None
        } else {
            self.read(|st| visible_ids(st, who, WITHIN)).await
        };
        let within = within.as_deref();
        let mut items = Vec::new();
        if before.is_none() {
            let ids = self
                .db
                .search_customers(&terms, (CUSTOMERS * 5) as i64, within)
                .await
                .map_err(store_error)?;
            let found = self
                .read(|st| {
                    ids.iter()
                        .filter_map(|id| st.conversations.get(id))
                        .filter(|c| st.may_see_conversation(who, c))
                        .take(CUSTOMERS)
                        .map(|c| SearchHit {
                            conversation: c.clone(),
                            message: None,
                        })
                        .collect::<Vec<_>>()
                })
                .await;
            items.extend(found);
        }
        let mut scanned = 0;
        let mut asked = 0;
        loop {
            let missing = limit.saturating_sub(items.len()).max(1);
            asked = (missing + 1).max(asked * 4).min(MAX_BATCH);
            let batch = self
                .db
                .search_messages(&terms, before, asked as i64, within)
                .await
                .map_err(store_error)?;
            let exhausted = batch.len() < asked;
            scanned += batch.len();
            let (hits, last) = self
                .read(|st| {
                    let mut hits = Vec::new();
                    let mut last = None;
                    for (seq, m) in batch {
                        last = Some(seq);
                        let Some(c) = st.conversations.get(&m.conversation_id) else {
                            continue;
                        };
                        if st.may_see_conversation(who, c) {
                            hits.push(SearchHit {
                                conversation: c.clone(),
                                message: Some(m),
                            });
                            if hits.len() + items.len() >= limit {
                                break;
                            }
                        }
                    }
                    (hits, last)
                })
                .await;
            items.extend(hits);
            before = last.or(before);
            let full = items.len() >= limit;
            if exhausted && !full {
                return Ok(wire::Page {
                    items,
                    next_cursor: None,
                });
            }
            if full || scanned >= SCAN_BUDGET {
                return Ok(wire::Page {
                    items,
                    next_cursor: before.map(|b| format!("m{b}")),
                });
            }
        }
    }
}

/// The ids of the conversations `who` may see, at most `cap` (`None` beyond). The views' policy
/// (`visibility::conversation_audience`) gives a conversation to its assignee and to whom its
/// page gives it in its state (waiting or not): the pages are asked once per state, with a
/// probe, and every conversation is visited only when some page gives `who` any (an agent who
/// sees only their own: their 2,000 ids from the index instead of a visit to 20,000
/// conversations, 4 ms).
fn visible_ids(st: &State, who: &Account, cap: usize) -> Option<Vec<String>> {
    let mut ids: Vec<String> = st
        .by_assignee
        .get(&who.id)
        .map(|assigned| assigned.iter().cloned().collect())
        .unwrap_or_default();
    let Some(template) = st.conversations.values().next() else {
        return Some(ids);
    };
    let gives: HashMap<&str, [bool; 2]> = st
        .connections
        .keys()
        .map(|page| {
            let probe = |state| {
                let unassigned = Conversation {
                    connection_id: page.clone(),
                    state,
                    assignee: None,
                    ..template.clone()
                };
                st.may_see_conversation(who, &unassigned)
            };
            let given = [probe(ConvState::Assigned), probe(ConvState::Unclaimed)];
            (page.as_str(), given)
        })
        .collect();
    if gives.values().flatten().any(|&given| given) {
        for c in st.conversations.values() {
            let waiting = c.state == ConvState::Unclaimed;
            let given = gives
                .get(c.connection_id.as_str())
                .is_some_and(|g| g[waiting as usize]);
            if given && c.assignee.as_deref() != Some(who.id.as_str()) {
                ids.push(c.id.clone());
            }
        }
    }
    (ids.len() <= cap).then_some(ids)
}

fn parse_search_cursor(c: &str) -> HubResult<i64> {
    c.strip_prefix('m')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| HubError::Invalid(format!("bad cursor {c:?}")))
}
