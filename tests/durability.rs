//! Crash safety of the real `sop serve` process: acknowledged writes survive SIGKILL, and a second
//! hub on the same data dir is refused with a clear message.

mod common;
use common::{get_json, process};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// `sop serve` on a free port; its base URL.
fn serve(dir: &Path) -> (process::Proc, String) {
    let port = process::free_port();
    (
        process::hub(dir, port, None),
        format!("http://127.0.0.1:{port}"),
    )
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = common::temp_dir("crash");
    let token = process::admin_token(&dir);
    let (mut hub, url) = serve(&dir);
    let http = reqwest::Client::new();

    // A second hub on the same data dir fails at once, clearly.
    let second = Command::new(process::SOP)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another sop process"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let r = http
            .post(format!("{url}/api/v1/accounts"))
            .bearer_auth(&token)
            .json(&json!({"email": format!("agent{i}@sop.vn"), "username": format!("agent{i}"), "name": format!("Nhân viên {i}"), "role": "agent"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        acknowledged.push((
            body["account"]["username"].as_str().unwrap().to_string(),
            body["token"].as_str().unwrap().to_string(),
        ));
    }
    // The last agent goes away; the change is acknowledged, then the process dies.
    let (_, last_token) = acknowledged.last().unwrap().clone();
    let r = http
        .put(format!("{url}/api/v1/me/availability"))
        .bearer_auth(&last_token)
        .json(&json!({"availability": "away"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    hub.kill().unwrap(); // SIGKILL
    hub.wait().unwrap();

    let (mut hub, url) = serve(&dir);
    let accounts: Value = get_json(&http, format!("{url}/api/v1/accounts"), &token).await;
    assert_eq!(accounts.as_array().unwrap().len(), 41);
    for (username, agent_token) in &acknowledged {
        let me: Value = get_json(&http, format!("{url}/api/v1/me"), agent_token).await;
        assert_eq!(
            me["username"],
            json!(username),
            "token of {username} still works"
        );
    }
    let me: Value = get_json(&http, format!("{url}/api/v1/me"), &last_token).await;
    assert_eq!(me["availability"], "away");
    hub.kill().unwrap();
    hub.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_consent_started_before_a_restart_completes_after_it() {
    const OA: &str = "1423847451268726170";
    let dir = common::temp_dir("consent-restart");
    let port = process::free_port();
    let hub = format!("http://127.0.0.1:{port}");
    let (_sim, sim) = process::sim_for(port).await;
    let http = reqwest::Client::new();
    http.post(format!("{sim}/sim/oas"))
        .json(&json!({"oa_id": OA, "name": "Công ty Luật TNHH Thành Đồng", "admins": ["z1"]}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let token = process::admin_token(&dir);
    let mut proc = process::hub(&dir, port, Some(&sim));
    let url = common::authorize(&http, &hub, &token).await;

    // The hub dies (a deploy, a crash) while the admin is on Zalo's consent page.
    proc.kill().unwrap();
    proc.wait().unwrap();
    let _proc = process::hub(&dir, port, Some(&sim));
    let (status, page) = common::walk_consent(url.clone(), &sim, OA, "z1", "allow").await;
    assert_eq!(status, 200, "{page}");
    let conns = get_json(&http, format!("{hub}/api/v1/connections"), &token).await;
    assert_eq!(conns[0]["oa_id"], OA, "{conns}");

    // Single use, restart or not: the same consent again is refused.
    let (status, page) = common::walk_consent(url, &sim, OA, "z1", "allow").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("hết hạn"), "{page}");
    let _ = std::fs::remove_dir_all(&dir);
}
