//! Crash safety of the real `sop serve` process: acknowledged writes survive SIGKILL, and a second
//! hub on the same data dir is refused with a clear message.

mod common;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const SOP: &str = env!("CARGO_BIN_EXE_sop");

fn admin_token(dir: &Path) -> String {
    let out = Command::new(SOP)
        .args(["admin", "--data-dir"])
        .arg(dir)
        .args([
            "account",
            "add",
            "--email",
            "admin@sop.vn",
            "--username",
            "admin",
            "--name",
            "Admin",
            "--role",
            "admin",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

/// Starts `sop serve` on a free port and returns it with its base URL.
fn serve(dir: &Path) -> (Child, String) {
    let mut child = Command::new(SOP)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://"), "unexpected first line {line:?}");
    (child, url)
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = common::temp_dir("crash");
    let token = admin_token(&dir);
    let (mut hub, url) = serve(&dir);
    let http = reqwest::Client::new();

    // A second hub on the same data dir fails at once, clearly.
    let second = Command::new(SOP)
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
    let accounts: Vec<Value> = http
        .get(format!("{url}/api/v1/accounts"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(accounts.len(), 41);
    for (username, agent_token) in &acknowledged {
        let me: Value = http
            .get(format!("{url}/api/v1/me"))
            .bearer_auth(agent_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            me["username"],
            json!(username),
            "token of {username} still works"
        );
    }
    let me: Value = http
        .get(format!("{url}/api/v1/me"))
        .bearer_auth(&last_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["availability"], "away");
    hub.kill().unwrap();
    hub.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
