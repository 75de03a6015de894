//! Sandbox mode: zero configuration, a simulated WeChat and demo apps.

use serde_json::json;
use wxunion::app::Application;
use wxunion::sandbox;

use crate::helpers::{post_json, sandbox_config};

#[tokio::test]
async fn sandbox_mode_serves_demo_apps_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let config = sandbox_config(dir.path());
    let app = Application::build(config).await.unwrap();
    let sim = app
        .simulator()
        .expect("sandbox mode starts the simulator")
        .clone();
    let addr = app.local_addr();
    let banner = sandbox::banner(app.config(), addr, sim.addr);
    assert!(banner.contains("SANDBOX MODE"));
    assert!(banner.contains(&format!("http://{addr}/graphql")));
    assert!(banner.contains(&format!("http://{}/sim/code", sim.addr)));
    assert!(banner.contains(sandbox::DEMO_MINI_PROGRAM));
    assert_eq!(app.config().apps.len(), 4);
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));

    // The banner's recipe: mint a code, log in, follow, ask with the demo key.
    let http = reqwest::Client::new();
    let code = post_json(
        &http,
        &format!("{}/sim/code", sim.base_url()),
        &json!({ "app_id": sandbox::DEMO_MINI_PROGRAM, "person": "alice" }),
    )
    .await;
    let query = "mutation($a: String!, $c: String!) { loginWithCode(appId: $a, code: $c) { user { unionId } } }";
    let login = post_json(&http, &format!("http://{addr}/graphql"), &json!({ "query": query, "variables": { "a": sandbox::DEMO_MINI_PROGRAM, "c": code["code"] } })).await;
    let union_id = login["data"]["loginWithCode"]["user"]["unionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(union_id, code["unionid"].as_str().unwrap());
    let follow = post_json(
        &http,
        &format!("{}/sim/follow", sim.base_url()),
        &json!({ "app_id": sandbox::DEMO_OFFICIAL_ACCOUNT, "person": "alice" }),
    )
    .await;
    assert_eq!(follow["delivered"], true, "{follow}");
    assert_eq!(follow["reply"]["verified"], true, "{follow}");
    let user_query =
        format!("{{ user(unionId: \"{union_id}\") {{ identities {{ appId subscribed }} }} }}");
    crate::helpers::eventually(15, || async {
        let v: serde_json::Value = http
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(sandbox::DEMO_API_KEY)
            .json(&json!({ "query": user_query }))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let ids = v["data"]["user"]["identities"].as_array()?.clone();
        ids.iter()
            .any(|i| i["appId"] == sandbox::DEMO_OFFICIAL_ACCOUNT && i["subscribed"] == true)
            .then_some(())
    })
    .await;
    server.abort();
}
