//! Labels ("Nhãn"): a page's Zalo tags on its followers, kept on the customer of each
//! conversation. A change made here is written with its tag job in one transaction, and the tag
//! sender (`server/zalo/tags.rs`) takes it to Zalo's tag API; tags set in Zalo itself (OA
//! Manager's `add_user_to_tag`, `user/detail`'s `tag_names`) come in without a job.

use super::conversations::visible_conversation;
use super::*;
use crate::model::text::{char_count, nfc};
use crate::store::sql::labels::{TagJob, TagOp};
use crate::wire::LabelChoices;

/// Longer names are refused (Zalo's own limit is not documented; OA Manager shows short ones).
const MAX_LABEL_CHARS: usize = 50;

/// A label name as stored: NFC, trimmed, 1–50 characters, no control characters.
fn label_name(raw: &str) -> HubResult<String> {
    let name = nfc(raw.trim());
    if name.is_empty() || char_count(&name) > MAX_LABEL_CHARS || name.chars().any(char::is_control)
    {
        return Err(HubError::Invalid(format!(
            "label name: 1-{MAX_LABEL_CHARS} characters, no control characters"
        )));
    }
    Ok(name)
}

/// How a tag job ended at Zalo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOutcome {
    Done,
    /// Zalo refused it for good (the reason, for the log).
    Refused(String),
}

impl Hub {
    /// The conversation's customer's labels and the page's, for choosing.
    pub async fn label_choices(&self, who: &Account, conv_id: &str) -> HubResult<LabelChoices> {
        let conv = self
            .read(|st| visible_conversation(st, who, conv_id))
            .await?;
        let page = self
            .db
            .page_labels(&conv.connection_id)
            .await
            .map_err(store_error)?;
        Ok(LabelChoices {
            attached: conv.customer.labels,
            page,
        })
    }

    /// Puts a label on the conversation's customer (a new name becomes the page's).
    pub async fn attach_label(
        &self,
        who: &Account,
        conv_id: &str,
        name: &str,
    ) -> HubResult<Conversation> {
        let name = label_name(name)?;
        self.set_label(who, conv_id, name, true).await
    }

    /// Takes a label off the conversation's customer (the page keeps it).
    pub async fn detach_label(
        &self,
        who: &Account,
        conv_id: &str,
        name: &str,
    ) -> HubResult<Conversation> {
        self.set_label(who, conv_id, nfc(name.trim()), false).await
    }

    /// The label on (or off) the customer, with the job that tells Zalo in the same change.
    /// Already so: nothing changes.
    async fn set_label(
        &self,
        who: &Account,
        conv_id: &str,
        name: String,
        on: bool,
    ) -> HubResult<Conversation> {
        let conversation = self
            .write(async |st, tx| {
                let mut conv = visible_conversation(st, who, conv_id)?;
                if conv.customer.labels.contains(&name) == on {
                    return Ok(conv);
                }
                let (page, user) = (conv.connection_id.clone(), conv.customer.user_id.clone());
                if on {
                    let page_knows = tx.db.add_page_labels(&page, std::slice::from_ref(&name));
                    page_knows.await.map_err(store_error)?;
                    insert_sorted(&mut conv.customer.labels, name.clone());
                } else {
                    conv.customer.labels.retain(|l| *l != name);
                }
                let op = if on { TagOp::Tag } else { TagOp::Untag };
                queue(tx, &page, &user, op, &name).await?;
                let before = st.conversation_audience(&conv);
                st.put_conversation(tx, conv.clone(), before);
                Ok(conv)
            })
            .await?;
        self.tags_ready.notify_one();
        Ok(conversation)
    }

    /// Removes a label from the page and every customer of it (admins).
    pub async fn remove_page_label(
        &self,
        who: &Account,
        conn_id: &str,
        name: &str,
    ) -> HubResult<()> {
        if !who.is_admin() {
            return Err(HubError::Forbidden("labels are removed by admins".into()));
        }
        let name = nfc(name.trim());
        self.write(async |st, tx| {
            if !st.connections.contains_key(conn_id) {
                return Err(HubError::NotFound(format!(
                    "connection {conn_id} not found"
                )));
            }
            tx.db
                .remove_page_label(conn_id, &name)
                .await
                .map_err(store_error)?;
            queue(tx, conn_id, "", TagOp::Remove, &name).await?;
            let labelled: Vec<Conversation> = st
                .conversations
                .values()
                .filter(|c| c.connection_id == conn_id && c.customer.labels.contains(&name))
                .cloned()
                .collect();
            for mut conv in labelled {
                conv.customer.labels.retain(|l| *l != name);
                let before = st.conversation_audience(&conv);
                st.put_conversation(tx, conv, before);
            }
            Ok(())
        })
        .await?;
        self.tags_ready.notify_one();
        Ok(())
    }

    /// Due tag jobs, the oldest of each page, leased to this hub.
    pub async fn take_tag_jobs(&self, lease_ms: Ms, limit: usize) -> HubResult<Vec<TagJob>> {
        self.db
            .take_tag_jobs(now_ms(), lease_ms, limit as i64)
            .await
            .map_err(store_error)
    }

    /// Zalo asked to try later.
    pub async fn retry_tag_job_at(&self, job: &TagJob, at: Ms) -> HubResult<()> {
        self.db
            .retry_tag_job_at(job.n, at)
            .await
            .map_err(store_error)
    }

    /// The job is settled. A label Zalo refused to put on (the customer does not follow the
    /// page, say) comes off the customer here too, so the hub never shows a tag Zalo lacks.
    pub async fn finish_tag_job(&self, job: &TagJob, outcome: TagOutcome) -> HubResult<()> {
        if let (TagOp::Tag, TagOutcome::Refused(why)) = (job.op(), &outcome) {
            tracing::warn!(
                page = %job.connection_id,
                user = %job.user_id,
                label = %job.name,
                "Zalo refused the label, taken off again: {why}"
            );
            self.write(async |st, tx| {
                let conv = st.customer_conversation(&job.connection_id, &job.user_id);
                if let Some(mut conv) = conv.cloned() {
                    conv.customer.labels.retain(|l| *l != job.name);
                    let before = st.conversation_audience(&conv);
                    st.put_conversation(tx, conv, before);
                }
                Ok(())
            })
            .await?;
        }
        self.db.finish_tag_job(job.n).await.map_err(store_error)
    }

    /// The page's tags as Zalo lists them (`tag/gettagsofoa`, read when the page connects).
    pub async fn page_labels_from_zalo(&self, conn_id: &str, names: Vec<String>) -> HubResult<()> {
        let names: Vec<String> = names.iter().filter_map(|n| label_name(n).ok()).collect();
        self.write(async |_, tx| {
            let added = tx.db.add_page_labels(conn_id, &names).await;
            added.map_err(store_error)
        })
        .await
    }
}

/// The customer's tags as Zalo's `user/detail` gave them (the names become the page's too),
/// unless changes made here are still on their way to Zalo: then the hub's are the newer.
pub(super) async fn labels_from_profile(
    tx: &mut Tx,
    conv: &mut Conversation,
    names: &[String],
) -> HubResult<()> {
    let mut names: Vec<String> = names.iter().filter_map(|n| label_name(n).ok()).collect();
    names.sort();
    names.dedup();
    let (page, user) = (conv.connection_id.clone(), conv.customer.user_id.clone());
    let pending = tx.db.tag_jobs_pending(&page, &user).await;
    if conv.customer.labels == names || pending.map_err(store_error)? {
        return Ok(());
    }
    tx.db
        .add_page_labels(&page, &names)
        .await
        .map_err(store_error)?;
    conv.customer.labels = names;
    Ok(())
}

/// `add_user_to_tag` from Zalo (a tag set in OA Manager): the label on each of those customers
/// who have a conversation here, and the page's; no job (Zalo has it already).
pub(super) async fn tagged_in_zalo(
    st: &mut State,
    tx: &mut Tx,
    conn_id: &str,
    user_ids: &[String],
    name: &str,
) -> HubResult<usize> {
    let name = label_name(name)?;
    tx.db
        .add_page_labels(conn_id, std::slice::from_ref(&name))
        .await
        .map_err(store_error)?;
    let mut labelled = 0;
    for user in user_ids {
        let Some(mut conv) = st.customer_conversation(conn_id, user).cloned() else {
            continue;
        };
        labelled += 1;
        if insert_sorted(&mut conv.customer.labels, name.clone()) {
            let before = st.conversation_audience(&conv);
            st.put_conversation(tx, conv, before);
        }
    }
    Ok(labelled)
}

async fn queue(tx: &mut Tx, page: &str, user: &str, op: TagOp, name: &str) -> HubResult<()> {
    tx.db
        .queue_tag_job(page, user, op, name, now_ms())
        .await
        .map_err(store_error)
}

/// Adds `name` in order; false when it was there.
fn insert_sorted(labels: &mut Vec<String>, name: String) -> bool {
    match labels.binary_search(&name) {
        Ok(_) => false,
        Err(at) => {
            labels.insert(at, name);
            true
        }
    }
}
