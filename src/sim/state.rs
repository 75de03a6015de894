//! The simulator's world: apps, people, codes, tokens, followers, faults and call counts.
//!
//! People are named by the control API and exist as soon as they are mentioned; each has one
//! openid per app and one unionid per open platform, derived by hashing so they are stable
//! across restarts of the simulator.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::domain::{AppConfig, AppKind};
use secrecy::ExposeSecret;

/// Access tokens live this long, as WeChat's do.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// After `cgi-bin/token` issues a new token the old one keeps working this long.
pub const CLASSIC_OVERLAP: Duration = Duration::from_secs(300);
/// Login codes expire after five minutes.
pub const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// An app as the simulated WeChat knows it (with its secrets: it is WeChat).
#[derive(Clone, Debug)]
pub struct SimApp {
    pub app_id: String,
    pub secret: String,
    pub kind: AppKind,
    pub open_platform: Option<String>,
    pub token: Option<String>,
    pub encoding_aes_key: Option<String>,
}

impl From<&AppConfig> for SimApp {
    fn from(a: &AppConfig) -> Self {
        SimApp {
            app_id: a.app_id.clone(),
            secret: a.secret.expose_secret().to_owned(),
            kind: a.kind,
            open_platform: a.open_platform.clone(),
            token: a.token.as_ref().map(|t| t.expose_secret().to_owned()),
            encoding_aes_key: a
                .encoding_aes_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned()),
        }
    }
}

/// An issued login code.
#[derive(Debug)]
pub struct Code {
    pub app_id: String,
    pub person: String,
    pub used: bool,
    pub issued: Instant,
}

/// An issued phone code (`<button open-type="getPhoneNumber">`): single use, five minutes,
/// for the app that minted it.
#[derive(Debug)]
pub struct PhoneCode {
    pub app_id: String,
    pub phone: String,
    pub used: bool,
    pub issued: Instant,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct Token {
    pub app_id: String,
    pub expires: Instant,
    pub stable: bool,
}

/// A queued fault for one API: an errcode to answer with, a delay, a hold, or several.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub errcode: Option<i64>,
    #[serde(default)]
    pub errmsg: Option<String>,
    #[serde(default)]
    pub delay_ms: u64,
    /// Wait until the calls held are released ([`SimState::release`], `POST /sim/release`):
    /// "still pending" for as long as a test needs, instead of a delay it races against.
    #[serde(default)]
    pub hold: bool,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// A follow relation.
#[derive(Debug, Clone)]
pub struct Follow {
    pub subscribed: bool,
    pub since: i64,
    pub scene: Option<String>,
}

/// Everything mutable, behind one lock (the simulator is not the thing being benchmarked).
#[derive(Default)]
pub struct World {
    pub codes: HashMap<String, Code>,
    pub phone_codes: HashMap<String, PhoneCode>,
    pub tokens: HashMap<String, Token>,
    /// The current stable token per app and when it was last force-refreshed.
    pub stable: HashMap<String, (String, Option<Instant>)>,
    pub forced_today: HashMap<String, u32>,
    pub people_by_openid: HashMap<(String, String), String>,
    pub follows: HashMap<(String, String), Follow>,
    pub faults: HashMap<String, VecDeque<Fault>>,
    pub counts: HashMap<String, u64>,
    /// Every session_key handed out, so tests can prove none of them leaks.
    pub session_keys: Vec<String>,
    pub next_msg_id: u64,
}

/// The shared simulator state.
pub struct SimState {
    pub apps: HashMap<String, SimApp>,
    pub world: Mutex<World>,
    /// Where event callbacks go when a control call names no target (wxunion's base URL).
    pub callback_base: Mutex<Option<String>>,
    pub http: reqwest::Client,
    /// Bumped to release held calls; each held call holds one receiver.
    released: tokio::sync::watch::Sender<u64>,
}

impl SimState {
    pub fn new(apps: Vec<SimApp>) -> Self {
        SimState {
            apps: apps.into_iter().map(|a| (a.app_id.clone(), a)).collect(),
            world: Mutex::new(World {
                next_msg_id: 6_000_000_000_000_000_000,
                ..World::default()
            }),
            callback_base: Mutex::new(None),
            http: reqwest::Client::new(),
            released: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Waits for the next [`SimState::release`]; counted by [`SimState::held`] from the call on.
    pub async fn hold(&self) {
        let mut released = self.released.subscribe();
        // The sender lives as long as `self`, so this only ends with a release.
        let _ = released.changed().await;
    }

    /// How many calls are held right now.
    pub fn held(&self) -> usize {
        self.released.receiver_count()
    }

    /// Lets every call held right now go on (calls held later wait for the next release);
    /// returns how many there were.
    pub fn release(&self) -> usize {
        let held = self.held();
        self.released.send_modify(|n| *n = n.wrapping_add(1));
        held
    }

    /// The world lock; a poisoned lock is still consistent (every change is one insert).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets where follow/message events are posted by default.
    pub fn set_callback_base(&self, base: &str) {
        *self.callback_base.lock().unwrap_or_else(|e| e.into_inner()) = Some(base.to_owned());
    }

    pub fn callback_base(&self) -> Option<String> {
        self.callback_base
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a call and takes the next queued fault for the API, if any.
    pub fn enter(&self, api: &str) -> Option<Fault> {
        let mut w = self.world();
        *w.counts.entry(api.to_owned()).or_default() += 1;
        let queue = w.faults.get_mut(api)?;
        let front = queue.front_mut()?;
        let fault = front.clone();
        front.times = front.times.saturating_sub(1);
        if front.times == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    /// The openid of `person` in `app_id`; remembers the pair so APIs can map it back.
    pub fn open_id(&self, app_id: &str, person: &str) -> String {
        let id = derive("openid", app_id, person);
        self.world()
            .people_by_openid
            .insert((app_id.to_owned(), id.clone()), person.to_owned());
        id
    }

    /// The unionid of `person` under the app's open platform, if the app is bound to one.
    pub fn union_id(&self, app_id: &str, person: &str) -> Option<String> {
        let platform = self.apps.get(app_id)?.open_platform.as_ref()?;
        Some(derive("unionid", platform, person))
    }

    /// Mints a single-use login code for `person` in `app_id`.
    pub fn mint_code(&self, app_id: &str, person: &str) -> String {
        let code: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        self.open_id(app_id, person);
        self.world().codes.insert(
            code.clone(),
            Code {
                app_id: app_id.to_owned(),
                person: person.to_owned(),
                used: false,
                issued: Instant::now(),
            },
        );
        code
    }

    /// Mints a single-use phone code for `person` in `app_id`, answering `phone` (mainland
    /// digits, or `+<country> <digits>`) or the person's stable default number. Returns the
    /// code and the number it reveals.
    pub fn mint_phone_code(
        &self,
        app_id: &str,
        person: &str,
        phone: Option<&str>,
    ) -> (String, String) {
        let code: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let phone = phone.map_or_else(|| default_phone(person), str::to_owned);
        self.world().phone_codes.insert(
            code.clone(),
            PhoneCode {
                app_id: app_id.to_owned(),
                phone: phone.clone(),
                used: false,
                issued: Instant::now(),
            },
        );
        (code, phone)
    }

    /// Issues a fresh token string for an app.
    pub fn issue_token(w: &mut World, app_id: &str, stable: bool) -> String {
        let token: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(64)
            .map(char::from)
            .collect();
        w.tokens.insert(
            token.clone(),
            Token {
                app_id: app_id.to_owned(),
                expires: Instant::now() + TOKEN_LIFETIME,
                stable,
            },
        );
        token
    }

    /// Checks a token as WeChat does: 40001 for unknown/invalidated, 42001 for expired.
    pub fn check_token(&self, token: &str) -> Result<String, (i64, &'static str)> {
        let w = self.world();
        match w.tokens.get(token) {
            None => Err((
                40001,
                "invalid credential, access_token is invalid or not latest",
            )),
            Some(t) if t.expires <= Instant::now() => Err((42001, "access_token expired")),
            Some(t) => Ok(t.app_id.clone()),
        }
    }

    /// Drops every token of an app (as when its secret is reset), so the next use is 40001.
    pub fn invalidate_tokens(&self, app_id: &str) -> usize {
        let mut w = self.world();
        let before = w.tokens.len();
        w.tokens.retain(|_, t| t.app_id != app_id);
        w.stable.remove(app_id);
        before - w.tokens.len()
    }
}

/// A person's default phone number: `138` and eight digits derived from the name, so the
/// same person always has the same number.
pub fn default_phone(person: &str) -> String {
    let digest = Sha256::digest(format!("phone|{person}").as_bytes());
    let mut n = 0u64;
    for b in &digest[..8] {
        n = (n << 8) | u64::from(*b);
    }
    format!("138{:08}", n % 100_000_000)
}

/// `o` + 27 URL-safe characters, the shape of WeChat's openids and unionids.
fn derive(kind: &str, scope: &str, person: &str) -> String {
    let digest = Sha256::digest(format!("{kind}|{scope}|{person}").as_bytes());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    format!("o{}", &b64[..27])
}
