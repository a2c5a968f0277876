//! The hub applying a verified webhook: event parsing, routing, storing, receipts, echoes — on a
//! real sled store, with the OAs of the seed corpus connected. Whatever the body, applying it must
//! not panic and must leave the hub able to apply the next one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sop_console::model::{Role, TokenPair};
use sop_console::server::hub::{Hub, OaInfo};
use sop_console::store::SledStore;
use sop_console::wire::NewAccount;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// OA ids used by the seed corpus (the reference's examples).
const OAS: &[&str] = &["388613280878808645", "1423847451268726170", "oa", "2"];

struct Fixture {
    hub: Arc<Hub>,
    runtime: tokio::runtime::Runtime,
    next: AtomicU64,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sop-fuzz-apply-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(SledStore::open(&dir).expect("temp store"));
        let hub = Hub::open(store, &dir, 10_000).expect("hub");
        let (admin, _) = hub
            .create_account_blocking(NewAccount {
                email: "admin@fuzz.vn".into(),
                username: "admin".into(),
                name: "Admin".into(),
                role: Role::Admin,
            })
            .expect("account");
        for oa in OAS {
            hub.upsert_connection_blocking(
                OaInfo {
                    oa_id: oa.to_string(),
                    name: format!("OA {oa}"),
                    ..Default::default()
                },
                &admin.id,
                TokenPair::default(),
            )
            .expect("connection");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Fixture {
            hub,
            runtime,
            next: AtomicU64::new(1),
        }
    })
}

fuzz_target!(|body: &[u8]| {
    let f = fixture();
    let n = f.next.fetch_add(1, Ordering::Relaxed);
    f.runtime
        .block_on(f.hub.apply_webhooks(vec![(n, body.to_vec())]))
        .expect("applying a webhook never fails on its content");
});
