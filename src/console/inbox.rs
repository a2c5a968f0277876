//! The conversations the console knows, with the inbox's orders kept up to date on every change:
//! a frame reads a window of a sorted index instead of scanning (and selecting from) 100,000
//! conversations on every redraw and every key.

use crate::model::{AccountId, ConvState, ConvStatus, Conversation, Ms};
use crate::wire::View;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A conversation id shared by the map and the indexes (one allocation, not three: 100,000
/// conversations must stay within the console's memory budget).
type Id = Arc<str>;
/// Latest activity first (ties by id): the order of Mine and All.
type ByActivity = BTreeSet<(Reverse<Ms>, Id)>;
/// Longest waiting first (ties by id): the order of Unclaimed.
type ByWaiting = BTreeSet<(Ms, Id)>;

#[derive(Default)]
pub struct Inbox {
    all: HashMap<Id, Conversation>,
    by_activity: ByActivity,
    by_assignee: HashMap<AccountId, ByActivity>,
    unclaimed: ByWaiting,
}

fn activity_key(c: &Conversation, id: &Id) -> (Reverse<Ms>, Id) {
    (Reverse(c.last_activity_at), id.clone())
}

fn waiting_key(c: &Conversation, id: &Id) -> (Ms, Id) {
    (c.waiting_at(), id.clone())
}

/// The order a view shows, as the hub sorts: latest activity first, or in Unclaimed the longest
/// waiting first; ties by id. The indexes' keys sort the same way.
pub fn view_order(view: View) -> impl Fn(&&Conversation, &&Conversation) -> Ordering {
    move |a, b| {
        if view == View::Unclaimed {
            (a.waiting_at(), &a.id).cmp(&(b.waiting_at(), &b.id))
        } else {
            (Reverse(a.last_activity_at), &a.id).cmp(&(Reverse(b.last_activity_at), &b.id))
        }
    }
}

/// Whether a conversation is in the Unclaimed view.
pub fn is_unclaimed(c: &Conversation) -> bool {
    c.state == ConvState::Unclaimed && c.status == ConvStatus::Open
}

impl Inbox {
    pub fn get(&self, id: &str) -> Option<&Conversation> {
        self.all.get(id)
    }

    pub fn values(&self) -> impl Iterator<Item = &Conversation> {
        self.all.values()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Adds or replaces a conversation.
    pub fn insert(&mut self, c: Conversation) {
        let id = match self.all.get_key_value(c.id.as_str()) {
            Some((id, _)) => id.clone(),
            None => Id::from(c.id.as_str()),
        };
        self.unindex(&id);
        self.by_activity.insert(activity_key(&c, &id));
        if let Some(who) = &c.assignee {
            self.by_assignee
                .entry(who.clone())
                .or_default()
                .insert(activity_key(&c, &id));
        }
        if is_unclaimed(&c) {
            self.unclaimed.insert(waiting_key(&c, &id));
        }
        self.all.insert(id, c);
    }

    pub fn remove(&mut self, id: &str) {
        if let Some((id, _)) = self.all.get_key_value(id) {
            let id = id.clone();
            self.unindex(&id);
            self.all.remove(&id);
        }
    }

    /// Keeps only the conversations for which `keep` is true.
    pub fn retain(&mut self, keep: impl Fn(&Conversation) -> bool) {
        let gone: Vec<Id> = self
            .all
            .iter()
            .filter(|(_, c)| !keep(c))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.unindex(&id);
            self.all.remove(&id);
        }
    }

    pub fn clear(&mut self) {
        *self = Inbox::default();
    }

    /// The conversations of a view in its order. `me` and `admin` say who is looking.
    pub fn ordered<'a>(
        &'a self,
        view: View,
        me: &str,
        admin: bool,
    ) -> Box<dyn Iterator<Item = &'a Conversation> + 'a> {
        let lookup = move |id: &Id| self.all.get(id);
        match view {
            View::Mine => match self.by_assignee.get(me) {
                Some(set) => Box::new(set.iter().filter_map(move |(_, id)| lookup(id))),
                None => Box::new(std::iter::empty()),
            },
            View::Unclaimed => {
                Box::new(self.unclaimed.iter().filter_map(move |(_, id)| lookup(id)))
            }
            View::All if admin => Box::new(
                self.by_activity
                    .iter()
                    .filter_map(move |(_, id)| lookup(id)),
            ),
            View::All => Box::new(std::iter::empty()),
        }
    }

    /// How many conversations a view holds.
    pub fn count(&self, view: View, me: &str, admin: bool) -> usize {
        match view {
            View::Mine => self.by_assignee.get(me).map_or(0, BTreeSet::len),
            View::Unclaimed => self.unclaimed.len(),
            View::All if admin => self.all.len(),
            View::All => 0,
        }
    }

    fn unindex(&mut self, id: &Id) {
        let Some(old) = self.all.get(id) else {
            return;
        };
        self.by_activity.remove(&activity_key(old, id));
        if let Some(who) = &old.assignee {
            if let Some(set) = self.by_assignee.get_mut(who) {
                set.remove(&activity_key(old, id));
                if set.is_empty() {
                    self.by_assignee.remove(who);
                }
            }
        }
        self.unclaimed.remove(&waiting_key(old, id));
    }
}

impl FromIterator<Conversation> for Inbox {
    fn from_iter<I: IntoIterator<Item = Conversation>>(list: I) -> Inbox {
        let list = list.into_iter();
        let mut inbox = Inbox::default();
        // One allocation for the map: growing it by doubling would hold two tables at once.
        inbox.all.reserve(list.size_hint().0);
        for c in list {
            inbox.insert(c);
        }
        inbox
    }
}
