//! Search over a big store (issue 11): `messages` customer messages in 50 per conversation,
//! Vietnamese text from a vocabulary, searched in this process through `Hub::search` (the
//! database's index, then the visibility policy) as an admin and as an agent who sees a tenth of
//! the conversations. The database is `SOP_BENCH_SEARCH_DATABASE` (an empty PostgreSQL database)
//! or a SQLite file of the run.

use super::{percentile, Row};
use crate::model::text::fold;
use crate::model::{Account, Role, TokenPair};
use crate::server::hub::{Hub, OaInfo};
use crate::store::sql::Db;
use crate::wire::NewAccount;
use anyhow::Result;
use sqlx::QueryBuilder;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const PER_CONVERSATION: usize = 50;
const PAGES: usize = 10;

const FAMILY: [&str; 10] = [
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
];
const MIDDLE: [&str; 6] = ["Văn", "Thị", "Hữu", "Ngọc", "Minh", "Thanh"];
const GIVEN: [&str; 16] = [
    "An", "Bình", "Dung", "Đạt", "Hùng", "Lan", "Mai", "Nam", "Phương", "Quân", "Sơn", "Tâm",
    "Thảo", "Trang", "Việt", "Yến",
];
const WORDS: [&str; 48] = [
    "cho", "em", "hỏi", "giá", "dịch", "vụ", "bao", "nhiêu", "ạ", "shop", "còn", "hàng", "không",
    "đặt", "lịch", "hẹn", "tư", "vấn", "hợp", "đồng", "giao", "hàng", "tận", "nơi", "thanh",
    "toán", "chuyển", "khoản", "địa", "chỉ", "ở", "đâu", "mấy", "giờ", "mở", "cửa", "cảm", "ơn",
    "nhiều", "bảo", "hành", "đổi", "trả", "size", "màu", "đỏ", "xanh", "được",
];

/// What agents type, accents left out as they do.
const QUERIES: [&str; 12] = [
    "da",
    "dat lich",
    "gia dich vu",
    "nguyen van",
    "vo thi dung",
    "bao hanh",
    "chuyen khoan",
    "doi tra size",
    "0912",
    "h",
    "giao hang tan noi",
    "mau do",
];

/// A small deterministic generator (the same store every run).
struct Rng(u64);
impl Rng {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        from[(self.0 % from.len() as u64) as usize]
    }
}

pub async fn run(dir: &Path, messages: usize) -> Result<Vec<Row>> {
    let url = match std::env::var("SOP_BENCH_SEARCH_DATABASE") {
        Ok(url) => url,
        Err(_) => format!("sqlite://{}", dir.join("search.db").display()),
    };
    std::fs::create_dir_all(dir)?;
    let db = Arc::new(Db::open(&url).await?);
    let hub = Hub::open(db.clone(), dir, 1_000).await?;
    let (admin, _) = hub
        .create_account(NewAccount {
            email: "admin@sop.vn".into(),
            username: "admin".into(),
            name: "Admin".into(),
            role: Role::Admin,
        })
        .await?;
    let (agent, _) = hub
        .create_account(NewAccount {
            email: "agent@sop.vn".into(),
            username: "agent".into(),
            name: "Agent".into(),
            role: Role::Agent,
        })
        .await?;
    let mut pages = Vec::new();
    for p in 0..PAGES {
        let oa = OaInfo {
            oa_id: format!("oa{p}"),
            name: format!("Trang {p}"),
            ..Default::default()
        };
        pages.push(
            hub.upsert_connection(oa, &admin.id, TokenPair::default())
                .await?
                .0,
        );
    }
    hub.shutdown().await; // it closes the database's pools

    let db = Arc::new(Db::open(&url).await?);
    let conversations = messages.div_ceil(PER_CONVERSATION);
    let t0 = Instant::now();
    fill(&db, &pages, &agent, conversations).await?;
    let filled = t0.elapsed().as_secs_f64();
    // Statistics as a store in use has them, and no vacuum of a million fresh rows running
    // beside the measurement (it would share the two cores).
    match &*db {
        Db::Postgres(d) => {
            sqlx::query("VACUUM ANALYZE messages, conversations")
                .execute(&d.pool)
                .await?;
        }
        Db::Sqlite(d) => {
            sqlx::query("ANALYZE").execute(&d.writer).await?;
        }
    }

    let hub = Hub::open(db.clone(), dir, 1_000).await?;
    let mut rows = Vec::new();
    for (who, label) in [(&admin, "admin"), (&agent, "agent (sees 1/10)")] {
        let mut samples = Vec::new();
        let mut slowest = ("", 0.0);
        let mut hits = 0;
        for _ in 0..10 {
            for q in QUERIES {
                let t = Instant::now();
                let page = hub.search(who, q, None, 20).await?;
                let took = super::ms(t.elapsed());
                samples.push(took);
                if took > slowest.1 {
                    slowest = (q, took);
                }
                hits += page.items.len();
            }
        }
        samples.sort_by(f64::total_cmp);
        let p99 = percentile(&samples, 0.99);
        rows.push(Row {
            name: if who.role == Role::Admin {
                "search, first page (20), as admin"
            } else {
                "search, first page (20), as agent"
            },
            value: format!(
                "p50 {:.2} ms, p99 {p99:.2} ms ({} searches, {hits} hits; slowest {:?} {:.1} ms)",
                percentile(&samples, 0.5),
                samples.len(),
                slowest.0,
                slowest.1
            ),
            budget: "p99 ≤ 50 ms",
            limit: format!(
                "{messages} messages, {conversations} conversations on {}; {label}; filled in {filled:.0} s",
                db.engine_name()
            ),
            ratio: format!("{:.2}× budget", p99 / 50.0),
            ok: p99 <= 50.0,
        });
    }
    hub.shutdown().await;
    Ok(rows)
}

/// Conversations and their messages, straight into the tables (multi-row inserts, folded search
/// text as the hub writes it); a tenth assigned to the agent.
async fn fill(
    db: &Db,
    pages: &[crate::model::Connection],
    agent: &Account,
    n: usize,
) -> Result<()> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    const CHUNK: usize = 100; // conversations per transaction
    let mut seq = 0i64;
    for start in (0..n).step_by(CHUNK) {
        let mut convs = Vec::new();
        let mut msgs = Vec::new();
        for c in start..(start + CHUNK).min(n) {
            let name = format!(
                "{} {} {}",
                rng.pick(&FAMILY),
                rng.pick(&MIDDLE),
                rng.pick(&GIVEN)
            );
            let user = format!("u{c}");
            let search = format!("{} {user}", fold(&name));
            let page = pages[c % pages.len()].id.clone();
            let assignee = (c % 10 == 0).then(|| agent.id.clone());
            for k in 0..PER_CONVERSATION {
                seq += 1;
                let words: Vec<&str> = (0..8 + k % 7).map(|_| rng.pick(&WORDS)).collect();
                let mut text = words.join(" ");
                if k == 7 {
                    text.push_str(&format!(" sđt 09{:08}", c));
                }
                msgs.push((seq, format!("c{c}"), page.clone(), text));
            }
            convs.push((format!("c{c}"), page, user, name, search, assignee, seq));
        }
        crate::in_transaction!(db, tx => {
            let mut q = QueryBuilder::new(
                "INSERT INTO conversations (id, connection_id, customer_id, customer_name, \
                 assignee, state, status, origin, last_activity_at, waiting_at, created_at, \
                 customer_search) ",
            );
            q.push_values(&convs, |mut row, (id, page, user, name, search, assignee, at)| {
                row.push_bind(id.as_str())
                    .push_bind(page.as_str())
                    .push_bind(user.as_str())
                    .push_bind(name.as_str())
                    .push_bind(assignee.as_deref())
                    .push_bind(if assignee.is_some() { "assigned" } else { "unattended" })
                    .push_bind("open")
                    .push_bind("live")
                    .push_bind(*at)
                    .push_bind(*at)
                    .push_bind(*at);
                row.push_bind(search.as_str());
            });
            q.build().execute(&mut *tx).await?;
            for rows in msgs.chunks(500) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO messages (id, seq, conversation_id, connection_id, direction, \
                     sender, sender_name, kind, text, created_at, search) ",
                );
                q.push_values(rows, |mut row, (seq, conv, page, text)| {
                    row.push_bind(format!("m{seq}"))
                        .push_bind(*seq)
                        .push_bind(conv.as_str())
                        .push_bind(page.as_str())
                        .push_bind("inbound")
                        .push_bind("u")
                        .push_bind("")
                        .push_bind("text")
                        .push_bind(text.as_str())
                        .push_bind(*seq)
                        .push_bind(fold(text));
                });
                q.build().execute(&mut *tx).await?;
            }
        });
    }
    crate::in_transaction!(db, tx => {
        for (name, value) in [("message", seq), ("conversation", n as i64)] {
            sqlx::query("UPDATE counters SET value = $1 WHERE name = $2")
                .bind(value)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
    });
    Ok(())
}
