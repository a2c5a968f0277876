//! The simulator's tag API (reference §4.7), the first brick of labels synced with Zalo: tags on
//! followers through `tag/*`, read back by `gettagsofoa` and `user/detail`, refused for someone
//! who does not follow, rate-limited on demand; a tag added in "OA Manager" (the control API)
//! reaches the hub as an `add_user_to_tag` webhook (see `labels.rs` for what the hub makes of it).

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const OA: &str = "oa-tags";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_go_on_followers_come_back_in_user_detail_and_oa_manager_tags_reach_the_hub() {
    let s = start_stack().await;
    s.sim_oa(
        OA,
        "Trang",
        &[("an", "Trần Văn An", 0), ("binh", "Lê Bình", 0)],
    )
    .await;
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    s.sim_post(&format!("/oas/{OA}/customers/binh/unfollow"), json!({}))
        .await;
    let token = s.sim_post(&format!("/oas/{OA}/tokens"), json!({})).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let http = &s.t.http;
    let call = |path: &str, body: Option<Value>| {
        let url = format!("{}{path}", s.sim_base);
        let req = match &body {
            Some(b) => http.post(url).json(b),
            None => http.get(url),
        };
        let req = req.header("access_token", token.clone());
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let tag = |user: &str, name: &str| json!({"user_id": user, "tag_name": name});
    let r = call("/v2.0/oa/tag/tagfollower", Some(tag("an", "VIP"))).await;
    assert_eq!(r["error"], 0, "{r}");
    let r = call("/v2.0/oa/tag/gettagsofoa", None).await;
    assert_eq!(r["data"], json!(["VIP"]));
    let detail = call("/v3.0/oa/user/detail?data={\"user_id\":\"an\"}", None).await;
    assert_eq!(
        detail["data"]["tags_and_notes_info"]["tag_names"],
        json!(["VIP"])
    );
    // Not a follower: refused; no tag name: refused.
    let r = call("/v2.0/oa/tag/tagfollower", Some(tag("binh", "VIP"))).await;
    assert_eq!(r["error"], -213, "{r}");
    let r = call("/v2.0/oa/tag/tagfollower", Some(json!({"user_id": "an"}))).await;
    assert_eq!(r["error"], -201, "{r}");
    // Rate limited once (-32), then taken.
    let aimed = json!({"rate_limit_next": 1, "rate_limit_path": "/v2.0/oa/tag/tagfollower"});
    s.sim_post("/faults", aimed).await;
    let r = call("/v2.0/oa/tag/tagfollower", Some(tag("an", "Khách sỉ"))).await;
    assert_eq!(r["error"], -32, "{r}");
    let r = call("/v2.0/oa/tag/tagfollower", Some(tag("an", "Khách sỉ"))).await;
    assert_eq!(r["error"], 0, "{r}");
    // Off the follower, then off the OA.
    let r = call("/v2.0/oa/tag/rmfollowerfromtag", Some(tag("an", "VIP"))).await;
    assert_eq!(r["error"], 0, "{r}");
    let tags = s.sim_get(&format!("/oas/{OA}/tags")).await;
    assert_eq!(tags, json!({"Khách sỉ": ["an"], "VIP": []}));
    let r = call("/v2.0/oa/tag/rmtag", Some(json!({"tag_name": "VIP"}))).await;
    assert_eq!(r["error"], 0, "{r}");
    let r = call("/v2.0/oa/tag/gettagsofoa", None).await;
    assert_eq!(r["data"], json!(["Khách sỉ"]));

    // Tagged in OA Manager: on the follower at Zalo, and the webhook reaches the hub.
    s.sim_post(
        &format!("/oas/{OA}/customers/an/tags"),
        json!({"name": "Đã mua"}),
    )
    .await;
    let tags = s.sim_get(&format!("/oas/{OA}/tags")).await;
    assert_eq!(tags["Đã mua"], json!(["an"]));
    let db = s.t.hub.db().clone();
    eventually("the add_user_to_tag webhook applied by the hub", || async {
        let sql = "SELECT COUNT(*) FROM page_labels WHERE name = 'Đã mua'";
        (count(&db, sql).await == 1).then_some(())
    })
    .await;
    s.t.stop().await;
}
