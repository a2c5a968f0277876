//! The hub applying a verified webhook: event parsing, routing, storing, receipts, echoes — on a
//! real SQLite database, with the OAs of the seed corpus connected. Whatever the body, applying it must
//! not panic and must leave the hub able to apply the next one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sop_console::model::{Role, TokenPair};
use sop_console::server::hub::{Hub, OaInfo};
use sop_console::store::sql::Db;
use sop_console::wire::NewAccount;
use std::sync::{Arc, OnceLock};

/// OA ids used by the seed corpus (the reference's examples).
const OAS: &[&str] = &["388613280878808645", "1423847451268726170", "oa", "2"];

struct Fixture {
    hub: Arc<Hub>,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sop-fuzz-apply-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let hub = runtime.block_on(async {
            let url = format!("sqlite://{}", dir.join("sop.db").display());
            let db = Arc::new(Db::open(&url).await.expect("temp database"));
            let hub = Hub::open(db, &dir, 10_000).await.expect("hub");
            let (admin, _) = hub
                .create_account(NewAccount {
                    email: "admin@fuzz.vn".into(),
                    username: "admin".into(),
                    name: "Admin".into(),
                    role: Role::Admin,
                })
                .await
                .expect("account");
            for oa in OAS {
                let info = OaInfo {
                    oa_id: oa.to_string(),
                    name: format!("OA {oa}"),
                    ..Default::default()
                };
                hub.upsert_connection(info, &admin.id, TokenPair::default())
                    .await
                    .expect("connection");
            }
            hub
        });
        Fixture { hub, runtime }
    })
}

fuzz_target!(|body: &[u8]| {
    let f = fixture();
    f.runtime
        .block_on(f.hub.apply_webhooks(&[body]))
        .expect("applying a webhook never fails on its content");
});
