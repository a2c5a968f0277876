//! The customer panel through the API, against the simulator, on the engine `SOP_TEST_ENGINE`
//! picks: the profile (and whether they follow the page), what the customer shared with
//! `user_submit_info`, the staff's notes, their conversations — only for someone who may see the
//! conversation.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

const OA: &str = "oa-customers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_shows_what_the_customer_shared_and_what_the_staff_noted() {
    let s = start_stack().await;
    s.sim_oa(OA, "Trang", &[("an", "Trần Văn An", 0)]).await;
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    let (_, agent) = s.t.account("HuongNT256", "agent").await;
    let (_, stranger) = s.t.account("QueCT3", "agent").await;
    let conn =
        s.t.hub
            .read(|st| st.connections().next().unwrap().clone())
            .await;
    let rule = json!({"name": "r", "sources": [conn.id], "members": ["HuongNT256"],
                      "method": "round_robin", "old_conversations": "none"});
    let (status, body) = s.t.post("/api/v1/rules", &s.t.admin_token, rule).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.customer_says(OA, "an", "Chào shop").await;
    let conv = eventually("the agent's conversation", || async {
        let (_, b) = s.t.get("/api/v1/conversations?view=mine", &agent).await;
        b["items"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    s.sim_post(
        &format!("/oas/{OA}/customers/an/submit-info"),
        json!({"name": "Trần Văn An", "phone": "0912345678", "address": "12 Hàng Bài, Hà Nội"}),
    )
    .await;
    let notes = format!("/api/v1/conversations/{conv}/notes");
    let note = json!({"client_key": "k1", "text": "Khách quen, hay hỏi về hợp đồng lao động"});
    assert_eq!(s.t.post(&notes, &agent, note).await.0, StatusCode::CREATED);

    let path = format!("/api/v1/conversations/{conv}/customer");
    let panel = eventually("the shared info in the panel", || async {
        let (status, panel) = s.t.get(&path, &agent).await;
        assert_eq!(status, StatusCode::OK, "{panel}");
        (!panel["shared_info"].as_array()?.is_empty()).then_some(panel)
    })
    .await;
    assert_eq!(panel["customer"]["user_id"], "an");
    let fields = &panel["shared_info"][0]["fields"];
    assert_eq!(
        fields,
        &json!([
            ["address", "12 Hàng Bài, Hà Nội"],
            ["name", "Trần Văn An"],
            ["phone", "0912345678"]
        ])
    );
    let noted: Vec<&str> = panel["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(noted, ["Khách quen, hay hỏi về hợp đồng lao động"]);
    let convs: Vec<&str> = panel["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(convs, [conv.as_str()]);

    // Whether they follow the page: from their profile (user/detail), then from Zalo's unfollow.
    let follows = || async {
        let (_, panel) = s.t.get(&path, &agent).await;
        panel["customer"]["follows"].clone()
    };
    eventually("the profile says the customer follows", || async {
        (follows().await == json!(true)).then_some(())
    })
    .await;
    s.sim_post(&format!("/oas/{OA}/customers/an/unfollow"), json!({}))
        .await;
    eventually("the unfollow webhook applied", || async {
        (follows().await == json!(false)).then_some(())
    })
    .await;

    // Someone who may not see the conversation learns nothing of its customer.
    assert_eq!(s.t.get(&path, &stranger).await.0, StatusCode::NOT_FOUND);
    s.t.stop().await;
}
