//! `User.events`: the audit trail, recorded with each change, paged newest first by an
//! opaque cursor, visible to service callers and the user themself, pruned after retention.

use serde_json::{Value, json};

use crate::helpers::*;

const EVENT_FIELDS: &str = "edges { cursor node { id kind appId openId at detail } } \
                            pageInfo { hasNextPage endCursor }";

fn my_events_query() -> String {
    format!(
        "query($first: Int, $after: String) {{ me {{ events(first: $first, after: $after) {{ {EVENT_FIELDS} }} }} }}"
    )
}

fn events_by_id_query() -> String {
    format!(
        "query($id: ID!, $first: Int, $after: String) {{ userById(id: $id) {{ events(first: $first, after: $after) {{ {EVENT_FIELDS} }} }} }}"
    )
}

impl TestApp {
    /// One page of a user's events as a service caller reads it; panics on errors.
    pub async fn events_page(
        &self,
        user_id: &str,
        first: Option<i64>,
        after: Option<&str>,
    ) -> Value {
        let v = self
            .graphql(
                &events_by_id_query(),
                json!({ "id": user_id, "first": first, "after": after }),
                Some(API_KEY),
            )
            .await;
        assert!(v["errors"].is_null(), "{v}");
        v["data"]["userById"]["events"].clone()
    }

    /// Every event of a user (up to 100), newest first.
    pub async fn all_events(&self, user_id: &str) -> Vec<Value> {
        let page = self.events_page(user_id, Some(100), None).await;
        assert_eq!(page["pageInfo"]["hasNextPage"], false);
        nodes(&page)
    }
}

fn nodes(connection: &Value) -> Vec<Value> {
    connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// (kind, appId, detail) of each event, for comparisons.
fn summary(events: &[Value]) -> Vec<(String, Option<String>, Option<String>)> {
    events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["appId"].as_str().map(str::to_owned),
                e["detail"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn ev(
    kind: &str,
    app: Option<&str>,
    detail: Option<&str>,
) -> (String, Option<String>, Option<String>) {
    (
        kind.to_owned(),
        app.map(str::to_owned),
        detail.map(str::to_owned),
    )
}

fn id_of(event: &Value) -> i64 {
    event["id"].as_str().unwrap().parse().unwrap()
}

/// Newest first: ids strictly decreasing, times never increasing.
fn assert_newest_first(events: &[Value]) {
    for pair in events.windows(2) {
        assert!(id_of(&pair[0]) > id_of(&pair[1]), "{pair:?}");
        let at =
            |e: &Value| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap();
        assert!(at(&pair[0]) >= at(&pair[1]), "{pair:?}");
    }
}

#[tokio::test]
async fn every_action_records_its_event_in_order() {
    let app = spawn_app().await;
    let first = app.login(MP1, "alice").await;
    let user_id = first["user"]["id"].as_str().unwrap().to_owned();
    let union_id = first["user"]["unionId"].as_str().unwrap().to_owned();
    let mp1_open_id = first["identity"]["openId"].as_str().unwrap().to_owned();
    app.login(MP2, "alice").await;
    // Following the account: the callback records the follower as a user of its own, then
    // user/info reveals the unionid and merges it into alice.
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": "alice" }))
        .await;
    crate::callback::identity_in(&app, &union_id, OA, |i| i["subscribed"] == true).await;
    app.sim_post("/sim/unfollow", json!({ "app_id": OA, "person": "alice" }))
        .await;
    crate::callback::identity_in(&app, &union_id, OA, |i| i["subscribed"] == false).await;
    let v = app.revoke_sessions(&user_id, Some(API_KEY)).await;
    assert_eq!(v["data"]["revokeSessions"], 2, "{v}");

    let events = app.all_events(&user_id).await;
    assert_newest_first(&events);
    let follower = events
        .iter()
        .find(|e| e["kind"] == "MERGED")
        .and_then(|e| e["detail"].as_str())
        .unwrap()
        .to_owned();
    assert_ne!(follower, user_id);
    assert_eq!(
        summary(&events),
        vec![
            ev("SESSIONS_REVOKED", None, Some("2")),
            ev("UNSUBSCRIBED", Some(OA), None),
            ev("MERGED", Some(OA), Some(&follower)),
            ev("SUBSCRIBED", Some(OA), None),
            ev("IDENTITY_LINKED", Some(OA), None),
            ev("LOGIN", Some(MP2), None),
            ev("IDENTITY_LINKED", Some(MP2), None),
            ev("LOGIN", Some(MP1), None),
            ev("UNIONID_LEARNED", Some(MP1), Some(&union_id)),
            ev("IDENTITY_LINKED", Some(MP1), None),
        ]
    );
    let oa_open_id = report["openid"].as_str().unwrap();
    for e in &events {
        match e["appId"].as_str() {
            Some(MP1) => assert_eq!(e["openId"], mp1_open_id.as_str()),
            Some(OA) => assert_eq!(e["openId"], oa_open_id),
            _ => {}
        }
    }
    // A returning login records its LOGIN only.
    app.login(MP1, "alice").await;
    let events = app.all_events(&user_id).await;
    assert_eq!(summary(&events[..1]), vec![ev("LOGIN", Some(MP1), None)]);
    assert_eq!(events.len(), 11);
}

async fn a_merge_records_merged_and_brings_the_followers_events(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let (login, merged_away, _) = crate::lookups::merge_a_follower_into_a_login(&app, "kim").await;
    let user_id = login["user"]["id"].as_str().unwrap();
    let union_id = login["user"]["unionId"].as_str().unwrap();
    let events = app.all_events(user_id).await;
    assert_newest_first(&events);
    assert_eq!(
        summary(&events),
        vec![
            ev("MERGED", Some(OA), Some(&merged_away)),
            ev("LOGIN", Some(MP1), None),
            ev("UNIONID_LEARNED", Some(MP1), Some(union_id)),
            ev("IDENTITY_LINKED", Some(MP1), None),
            // The follower's own events, recorded before the login, moved across.
            ev("SUBSCRIBED", Some(OA), None),
            ev("IDENTITY_LINKED", Some(OA), None),
        ]
    );
    // The id merged away answers the survivor, events included; nothing stays behind.
    let page = app.events_page(&merged_away, Some(100), None).await;
    assert_eq!(nodes(&page), events);
    let left = format!("SELECT COUNT(*) FROM events WHERE user_id = '{merged_away}'");
    assert_eq!(app.count(&left).await, 0);
}

#[tokio::test]
async fn a_merge_records_merged_and_brings_the_followers_events_on_postgres() {
    a_merge_records_merged_and_brings_the_followers_events(Db::Postgres).await;
}

#[tokio::test]
async fn a_merge_records_merged_and_brings_the_followers_events_on_sqlite() {
    a_merge_records_merged_and_brings_the_followers_events(Db::Sqlite).await;
}

async fn paging_never_repeats_or_skips_while_events_arrive(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let first = app.login(MP1, "pat").await;
    let user_id = first["user"]["id"].as_str().unwrap().to_owned();
    for _ in 0..11 {
        app.login(MP1, "pat").await;
    }
    // 3 (first login) + 11 logins: 14 events, three pages of 5.
    let before: Vec<Value> = app.all_events(&user_id).await;
    assert_eq!(before.len(), 14);
    let token = app.login(MP2, "pat").await["sessionToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let before: Vec<Value> = app.all_events(&user_id).await;
    assert_eq!(before.len(), 16);

    // The user pages through their own events while new ones keep arriving.
    let mut seen: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let v = app
            .graphql(
                &my_events_query(),
                json!({ "first": 5, "after": after }),
                Some(&token),
            )
            .await;
        assert!(v["errors"].is_null(), "{v}");
        let page = &v["data"]["me"]["events"];
        let batch = nodes(page);
        assert!(batch.len() <= 5);
        pages += 1;
        if let Some(last) = page["edges"].as_array().unwrap().last() {
            assert_eq!(page["pageInfo"]["endCursor"], last["cursor"]);
        }
        seen.extend(batch);
        // Two new events (a login) between pages.
        app.login(MP1, "pat").await;
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = Some(page["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 4);
    // Exactly the events there were when paging began, each once, newest first.
    assert_eq!(seen, before);
    assert_newest_first(&seen);
    // What arrived meanwhile is newer than everything paged.
    let now = app.all_events(&user_id).await;
    assert_eq!(now.len(), before.len() + pages);
    assert_eq!(&now[pages..], &before[..]);
    assert!(id_of(&now[pages - 1]) > id_of(&before[0]));
}

#[tokio::test]
async fn paging_never_repeats_or_skips_while_events_arrive_on_postgres() {
    paging_never_repeats_or_skips_while_events_arrive(Db::Postgres).await;
}

#[tokio::test]
async fn paging_never_repeats_or_skips_while_events_arrive_on_sqlite() {
    paging_never_repeats_or_skips_while_events_arrive(Db::Sqlite).await;
}

#[tokio::test]
async fn page_size_and_cursor_are_checked() {
    let app = spawn_app().await;
    let login = app.login(MP1, "pat").await;
    let user_id = login["user"]["id"].as_str().unwrap();
    let ask = |first: Value, after: Value| {
        let app = &app;
        async move {
            app.graphql(
                &events_by_id_query(),
                json!({ "id": user_id, "first": first, "after": after }),
                Some(API_KEY),
            )
            .await
        }
    };
    for first in [json!(101), json!(-1), json!(1_000_000)] {
        assert_eq!(
            error_code(&ask(first, Value::Null).await),
            Some("BAD_REQUEST")
        );
    }
    for after in ["junk", "ev:1", "eHg6MQ", "ZXY6LTE", ""] {
        assert_eq!(
            error_code(&ask(json!(5), json!(after)).await),
            Some("BAD_REQUEST"),
            "{after}"
        );
    }
    // The defaults: 20 per page; null means the default too. 100 is allowed.
    let page = app.events_page(user_id, None, None).await;
    assert_eq!(nodes(&page).len(), 3);
    let v = app
        .graphql(
            &format!("{{ userById(id: \"{user_id}\") {{ events {{ {EVENT_FIELDS} }} }} }}"),
            json!({}),
            Some(API_KEY),
        )
        .await;
    assert_eq!(nodes(&v["data"]["userById"]["events"]).len(), 3, "{v}");
    let page = app.events_page(user_id, Some(100), None).await;
    assert_eq!(nodes(&page).len(), 3);
    // Zero: no edges, but says whether there is more.
    let page = app.events_page(user_id, Some(0), None).await;
    assert_eq!(nodes(&page).len(), 0);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert!(page["pageInfo"]["endCursor"].is_null());
    // The end: an empty page after the last event.
    let page = app.events_page(user_id, Some(3), None).await;
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    let last = page["pageInfo"]["endCursor"].as_str().unwrap();
    let page = app.events_page(user_id, Some(3), Some(last)).await;
    assert_eq!(nodes(&page).len(), 0);
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn events_are_for_service_callers_and_the_user_themself() {
    let app = spawn_app().await;
    let alice = app.login(MP1, "alice").await;
    let bob = app.login(MP1, "bob").await;
    let alice_token = alice["sessionToken"].as_str().unwrap();
    let bob_token = bob["sessionToken"].as_str().unwrap();
    let alice_id = alice["user"]["id"].as_str().unwrap();

    // Alice reads her own, through `me` and through her identities.
    let v = app
        .graphql(&my_events_query(), json!({}), Some(alice_token))
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(nodes(&v["data"]["me"]["events"]).len(), 3);
    let v = app
        .graphql(
            "{ me { identities { user { events { edges { node { kind } } } } } } }",
            json!({}),
            Some(alice_token),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");

    // Bob cannot reach Alice's events: the lookups that lead to another user are
    // service-only, so a session gets FORBIDDEN on the way.
    let v = app
        .graphql(
            &events_by_id_query(),
            json!({ "id": alice_id, "first": 5 }),
            Some(bob_token),
        )
        .await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");
    let v = app
        .graphql(
            &format!(
                "{{ user(unionId: \"{}\") {{ events {{ {EVENT_FIELDS} }} }} }}",
                alice["user"]["unionId"].as_str().unwrap()
            ),
            json!({}),
            Some(bob_token),
        )
        .await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");
    // Without a token: UNAUTHENTICATED.
    let v = app.graphql(&my_events_query(), json!({}), None).await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "{v}");

    // The login response itself may show them: the code just proved who is asking.
    let code = app.mint_code(MP2, "alice").await;
    let v = app
        .graphql(
            "mutation($code: String!) { loginWithCode(appId: \"wx1000000000000002\", code: $code) { sessionToken user { events(first: 2) { edges { node { kind appId } } } } } }",
            json!({ "code": code }),
            None,
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    let kinds: Vec<&str> = v["data"]["loginWithCode"]["user"]["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["LOGIN", "IDENTITY_LINKED"]);
    // Reached through the identity too: a nested path must not cost the client its token.
    let code = app.mint_code(MP2, "alice").await;
    let v = app
        .graphql(
            "mutation($code: String!) { loginWithCode(appId: \"wx1000000000000002\", code: $code) { sessionToken identity { user { events(first: 1) { edges { node { kind } } } identities { user { events(first: 1) { edges { node { kind } } } } } } } } }",
            json!({ "code": code }),
            None,
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert!(v["data"]["loginWithCode"]["sessionToken"].is_string());
    assert_eq!(
        v["data"]["loginWithCode"]["identity"]["user"]["events"]["edges"][0]["node"]["kind"],
        "LOGIN"
    );
}

#[tokio::test]
async fn events_past_retention_are_pruned() {
    let app = spawn_with(Options {
        extra: "event_retention_days = 30".into(),
        ..Options::default()
    })
    .await;
    let login = app.login(MP1, "alice").await;
    let user_id = login["user"]["id"].as_str().unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 3);
    let pruned = crate::sessions::service_ahead(&app, chrono::Duration::days(29))
        .await
        .prune()
        .await
        .unwrap();
    assert_eq!(pruned.events, 0);
    let later = crate::sessions::service_ahead(&app, chrono::Duration::days(31)).await;
    let pruned = later.prune().await.unwrap();
    assert_eq!(pruned.events, 3);
    assert!(app.all_events(user_id).await.is_empty());
    // Idempotent: another instance pruning at the same time finds nothing left.
    assert_eq!(later.prune().await.unwrap().events, 0);
}
