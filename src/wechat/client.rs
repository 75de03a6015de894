//! The reqwest client for `api.weixin.qq.com` (or the simulator).
//!
//! Every call goes through [`WechatClient::call`], which reads WeChat's `errcode` envelope,
//! counts the call in metrics by API and errcode, and retries a bounded number of times on
//! the failures that are safe to retry (`-1` system busy, connection and timeout errors).
//! Secrets travel in query strings, so reqwest errors are always stripped of their URL.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::domain::AppConfig;
use crate::domain::Error;
use crate::domain::LoginCode;

/// Errcodes meaning "this access token is not valid": drop it, refresh once, retry once.
pub const TOKEN_ERRCODES: [i64; 3] = [40001, 42001, 40014];

/// How many attempts a retryable failure gets in total.
const ATTEMPTS: u32 = 2;

/// A failed call, before it is turned into a domain error: the token manager needs to see
/// token errcodes before [`CallError::into_error`] maps them.
#[derive(Debug, Clone)]
pub enum CallError {
    /// WeChat answered with a non-zero errcode. `after_timeout`: an earlier attempt of the
    /// same call timed out, so WeChat may have acted on it (a 40163 then means our own first
    /// attempt used the code).
    Wechat {
        errcode: i64,
        errmsg: String,
        after_timeout: bool,
    },
    /// No usable answer: connection refused, timeout, non-JSON body.
    Transport(String),
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        e.into_error()
    }
}

impl CallError {
    /// True when WeChat says the access token used is invalid or expired.
    pub fn is_token_error(&self) -> bool {
        matches!(self, CallError::Wechat { errcode, .. } if TOKEN_ERRCODES.contains(errcode))
    }

    /// The one mapping of WeChat failures to domain errors (and so to the contract's codes).
    pub fn into_error(self) -> Error {
        match self {
            // A 40163 right after our own timed-out attempt most likely means our first
            // request did reach WeChat and used the code: WeChat's failure, not the client's.
            CallError::Wechat {
                errcode: 40163,
                errmsg,
                after_timeout: true,
            } => Error::Upstream {
                errcode: Some(40163),
                errmsg: Some(errmsg),
                detail: "code used by an attempt that timed out".into(),
            },
            CallError::Wechat {
                errcode, errmsg, ..
            } => match errcode {
                40029 | 40163 | 40028 => Error::InvalidCode { errcode, errmsg },
                // An openid WeChat does not know: the caller's argument.
                40003 => Error::WechatBadRequest { errcode, errmsg },
                45011 | 45009 => Error::RateLimited {
                    errcode: Some(errcode),
                    errmsg: Some(errmsg),
                },
                _ => Error::Upstream {
                    errcode: Some(errcode),
                    errmsg: Some(errmsg),
                    detail: format!("WeChat errcode {errcode}"),
                },
            },
            CallError::Transport(detail) => Error::Upstream {
                errcode: None,
                errmsg: None,
                detail,
            },
        }
    }
}

/// What `sns/jscode2session` returns. The session key stays a secret from here on.
#[derive(Debug, Deserialize)]
pub struct CodeSession {
    pub openid: String,
    #[serde(default)]
    pub unionid: Option<String>,
    pub session_key: SecretString,
}

/// What `sns/oauth2/access_token` returns. The user access token is not used yet (it would
/// fetch the profile with `sns/userinfo`) and stays a secret.
#[derive(Debug, Deserialize)]
pub struct OAuthSession {
    pub openid: String,
    #[serde(default)]
    pub unionid: Option<String>,
    pub access_token: SecretString,
}

/// What `cgi-bin/user/info` returns (the fields wxunion uses).
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub subscribe: i64,
    pub openid: String,
    #[serde(default)]
    pub unionid: Option<String>,
}

/// What `wxa/business/getuserphonenumber` returns.
#[derive(Deserialize)]
pub struct PhoneAnswer {
    pub phone_info: PhoneInfo,
}

/// The number inside a [`PhoneAnswer`]. Its `Debug` shows no digits: a phone number is
/// personal data and never goes to the logs.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneInfo {
    pub phone_number: String,
    pub pure_phone_number: String,
    pub country_code: String,
}

impl std::fmt::Debug for PhoneInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneInfo(..)")
    }
}

/// A token as WeChat issues it.
#[derive(Debug, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
}

/// One page of `cgi-bin/user/get`.
#[derive(Debug, Deserialize)]
pub struct FollowerPage {
    pub total: i64,
    pub count: i64,
    #[serde(default)]
    pub data: Option<FollowerData>,
    #[serde(default)]
    pub next_openid: String,
}

/// The openid list inside a [`FollowerPage`].
#[derive(Debug, Deserialize)]
pub struct FollowerData {
    pub openid: Vec<String>,
}

/// A cheap-to-clone client bound to one API base URL.
#[derive(Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    /// Parsed once, with a trailing slash: each call joins its API's path onto it instead of
    /// parsing a whole URL (about 6,000 instructions per login, `bench/callgrind.sh`).
    base: reqwest::Url,
}

enum Body<'a> {
    None,
    Json(&'a serde_json::Value),
}

impl WechatClient {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .pool_max_idle_per_host(64)
            .build()?;
        let base = reqwest::Url::parse(&format!("{}/", base.trim_end_matches('/')))
            .map_err(|e| anyhow::anyhow!("the WeChat API base is not a URL: {e}"))?;
        Ok(Self { http, base })
    }

    /// The URL of `api` (a path such as `sns/jscode2session`), under the base's path.
    fn url(&self, api: &str) -> Result<reqwest::Url, CallError> {
        self.base
            .join(api)
            .map_err(|e| CallError::Transport(format!("the URL of {api}: {e}")))
    }

    /// One WeChat API call with WeChat's error envelope and the bounded retry.
    async fn call<T: DeserializeOwned>(
        &self,
        api: &'static str,
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<T, CallError> {
        self.call_with(api, query, body, true).await
    }

    /// [`WechatClient::call`], retrying a timed-out attempt only if `retry_timeout`: a call
    /// others wait for (the access-token refresh) costs them at most one timeout.
    async fn call_with<T: DeserializeOwned>(
        &self,
        api: &'static str,
        query: &[(&str, &str)],
        body: Body<'_>,
        retry_timeout: bool,
    ) -> Result<T, CallError> {
        let mut timed_out_before = false;
        let mut last = CallError::Transport("not attempted".into());
        let url = self.url(api)?;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            let url = url.clone();
            let req = match body {
                Body::None => self.http.get(url),
                Body::Json(v) => self.http.post(url).json(v),
            };
            let started = std::time::Instant::now();
            let result = req.query(query).send().await;
            let outcome = match result {
                Ok(resp) => match resp.bytes().await {
                    Ok(bytes) => parse_envelope::<T>(&bytes),
                    Err(e) => Err(CallError::Transport(e.without_url().to_string())),
                },
                Err(e) => {
                    if e.is_timeout() {
                        timed_out_before = true;
                    }
                    Err(CallError::Transport(e.without_url().to_string()))
                }
            };
            record_call(api, &outcome, started.elapsed().as_secs_f64());
            match outcome {
                Ok(v) => return Ok(v),
                Err(e @ CallError::Transport(_)) if timed_out_before && !retry_timeout => {
                    tracing::warn!(api, attempt, error = ?e, "WeChat call timed out");
                    return Err(e);
                }
                Err(e @ CallError::Wechat { errcode: -1, .. })
                | Err(e @ CallError::Transport(_)) => {
                    tracing::warn!(api, attempt, error = ?e, "WeChat call failed, may retry");
                    last = e;
                }
                Err(CallError::Wechat {
                    errcode, errmsg, ..
                }) => {
                    return Err(CallError::Wechat {
                        errcode,
                        errmsg,
                        after_timeout: timed_out_before,
                    });
                }
            }
        }
        Err(last)
    }

    /// `sns/jscode2session`: a mini program's `wx.login` code → openid, unionid, session key.
    #[tracing::instrument(skip_all, fields(app_id = %app.app_id))]
    pub async fn code_to_session(
        &self,
        app: &AppConfig,
        code: &LoginCode,
    ) -> Result<CodeSession, Error> {
        self.exchange_code("sns/jscode2session", "js_code", app, code)
            .await
    }

    /// `sns/oauth2/access_token`: the code of an OAuth redirect (official-account web page,
    /// website, mobile app) → openid, unionid.
    #[tracing::instrument(skip_all, fields(app_id = %app.app_id))]
    pub async fn oauth_access_token(
        &self,
        app: &AppConfig,
        code: &LoginCode,
    ) -> Result<OAuthSession, Error> {
        self.exchange_code("sns/oauth2/access_token", "code", app, code)
            .await
    }

    /// Exchanges a single-use login code.
    async fn exchange_code<T: DeserializeOwned>(
        &self,
        api: &'static str,
        code_param: &str,
        app: &AppConfig,
        code: &LoginCode,
    ) -> Result<T, Error> {
        let query = [
            ("appid", app.app_id.as_str()),
            ("secret", app.secret.expose_secret()),
            (code_param, code.as_str()),
            ("grant_type", "authorization_code"),
        ];
        Ok(self.call(api, &query, Body::None).await?)
    }

    /// `cgi-bin/token` (classic) or `cgi-bin/stable_token`, as the app is configured. A
    /// timed-out attempt is not retried: every caller waiting for the token waits for this
    /// call, so a slow WeChat costs each of them one timeout, not two.
    #[tracing::instrument(skip_all, fields(app_id = %app.app_id, force_refresh))]
    pub async fn fetch_token(
        &self,
        app: &AppConfig,
        force_refresh: bool,
    ) -> Result<IssuedToken, CallError> {
        match app.token_endpoint {
            crate::domain::TokenEndpoint::Classic => {
                let query = [
                    ("grant_type", "client_credential"),
                    ("appid", app.app_id.as_str()),
                    ("secret", app.secret.expose_secret()),
                ];
                self.call_with("cgi-bin/token", &query, Body::None, false)
                    .await
            }
            crate::domain::TokenEndpoint::Stable => {
                let body = serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": app.app_id,
                    "secret": app.secret.expose_secret(),
                    "force_refresh": force_refresh,
                });
                self.call_with("cgi-bin/stable_token", &[], Body::Json(&body), false)
                    .await
            }
        }
    }

    /// `cgi-bin/user/info`: an official-account follower's openid → subscription and unionid.
    pub async fn user_info(
        &self,
        access_token: &str,
        open_id: &str,
    ) -> Result<UserInfo, CallError> {
        let query = [
            ("access_token", access_token),
            ("openid", open_id),
            ("lang", "zh_CN"),
        ];
        self.call("cgi-bin/user/info", &query, Body::None).await
    }

    /// `cgi-bin/user/get`: one page (up to 10 000) of an official account's follower openids.
    pub async fn user_get(
        &self,
        access_token: &str,
        next_openid: &str,
    ) -> Result<FollowerPage, CallError> {
        let query = [("access_token", access_token), ("next_openid", next_openid)];
        self.call("cgi-bin/user/get", &query, Body::None).await
    }
}

impl WechatClient {
    /// `wxa/business/getuserphonenumber`: a mini program's phone code → the number. The code
    /// is single use: an invalid, expired or used one is 40029 (INVALID_CODE).
    pub async fn user_phone_number(
        &self,
        access_token: &str,
        code: &str,
    ) -> Result<PhoneInfo, CallError> {
        let body = serde_json::json!({ "code": code });
        self.call::<PhoneAnswer>(
            "wxa/business/getuserphonenumber",
            &[("access_token", access_token)],
            Body::Json(&body),
        )
        .await
        .map(|a| a.phone_info)
    }
}

#[derive(Deserialize)]
struct BatchInfo {
    user_info_list: Vec<UserInfo>,
}

impl WechatClient {
    /// `cgi-bin/user/info/batchget`: up to 100 followers in one call.
    pub async fn user_info_batch(
        &self,
        access_token: &str,
        open_ids: &[String],
    ) -> Result<Vec<UserInfo>, CallError> {
        let body = serde_json::json!({
            "user_list": open_ids.iter().map(|o| serde_json::json!({ "openid": o, "lang": "zh_CN" })).collect::<Vec<_>>(),
        });
        self.call::<BatchInfo>(
            "cgi-bin/user/info/batchget",
            &[("access_token", access_token)],
            Body::Json(&body),
        )
        .await
        .map(|b| b.user_info_list)
    }
}

/// Counts one attempt of a WeChat call by API and errcode (`0`, a WeChat errcode, or
/// `transport`) and records its duration. A successful attempt and the duration go through
/// this thread's handles for the API, so the hot path builds and hashes no metric key (about
/// 2,000 instructions per login, `bench/callgrind.sh`); an error, rarer and with an errcode
/// from WeChat, is counted through the recorder each time.
fn record_call<T>(api: &'static str, outcome: &Result<T, CallError>, seconds: f64) {
    CALL_METRICS.with_borrow_mut(|apis| {
        let handles = apis.entry(api).or_insert_with(|| CallHandles {
            succeeded: metrics::counter!("wxunion_wechat_calls_total", "api" => api, "errcode" => "0"),
            seconds: metrics::histogram!("wxunion_wechat_call_seconds", "api" => api),
        });
        handles.seconds.record(seconds);
        match outcome {
            Ok(_) => handles.succeeded.increment(1),
            Err(e) => {
                let code = match e {
                    CallError::Wechat { errcode, .. } => errcode.to_string(),
                    CallError::Transport(_) => "transport".to_owned(),
                };
                metrics::counter!("wxunion_wechat_calls_total", "api" => api, "errcode" => code)
                    .increment(1);
            }
        }
    });
}

/// One API's metric handles.
struct CallHandles {
    succeeded: metrics::Counter,
    seconds: metrics::Histogram,
}

thread_local! {
    /// Each thread's handles by API (a fixed set of `&'static str` paths). The recorder is
    /// installed before the service makes any call (`Application::build`).
    static CALL_METRICS: std::cell::RefCell<std::collections::HashMap<&'static str, CallHandles>> =
        std::cell::RefCell::default();
}

/// Reads WeChat's envelope: a non-zero `errcode` is an error whatever else the body holds.
fn parse_envelope<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| CallError::Transport("WeChat answered with a body that is not JSON".into()))?;
    let errcode = value
        .get("errcode")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    if errcode != 0 {
        let errmsg = value
            .get("errmsg")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        return Err(CallError::Wechat {
            errcode,
            errmsg,
            after_timeout: false,
        });
    }
    serde_json::from_value(value)
        .map_err(|e| CallError::Transport(format!("unexpected WeChat response shape: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_are_joined_under_the_base_path() {
        let timeout = Duration::from_secs(1);
        for (base, url) in [
            (
                "https://api.weixin.qq.com",
                "https://api.weixin.qq.com/sns/jscode2session",
            ),
            (
                "http://127.0.0.1:9/",
                "http://127.0.0.1:9/sns/jscode2session",
            ),
            (
                "http://sim.test/wx",
                "http://sim.test/wx/sns/jscode2session",
            ),
            (
                "http://sim.test/wx//",
                "http://sim.test/wx/sns/jscode2session",
            ),
        ] {
            let client = WechatClient::new(base, timeout).unwrap();
            let joined = client
                .url("sns/jscode2session")
                .map_err(|e| format!("{e:?}"));
            assert_eq!(joined.map(String::from), Ok(url.to_owned()), "{base}");
        }
        assert!(WechatClient::new("not a url", timeout).is_err());
    }
    #[test]
    fn errcodes_map_to_the_contract_codes() {
        let w = |errcode| {
            CallError::Wechat {
                errcode,
                errmsg: "m".into(),
                after_timeout: false,
            }
            .into_error()
        };
        assert!(matches!(
            w(40003),
            Error::WechatBadRequest { errcode: 40003, .. }
        ));
        assert!(matches!(
            CallError::Wechat {
                errcode: 40163,
                errmsg: "m".into(),
                after_timeout: true
            }
            .into_error(),
            Error::Upstream {
                errcode: Some(40163),
                ..
            }
        ));
        assert!(matches!(
            w(40029),
            Error::InvalidCode { errcode: 40029, .. }
        ));
        assert!(matches!(
            w(40163),
            Error::InvalidCode { errcode: 40163, .. }
        ));
        assert!(matches!(
            w(45011),
            Error::RateLimited {
                errcode: Some(45011),
                ..
            }
        ));
        assert!(matches!(
            w(-1),
            Error::Upstream {
                errcode: Some(-1),
                ..
            }
        ));
        assert!(matches!(
            CallError::Transport("t".into()).into_error(),
            Error::Upstream { errcode: None, .. }
        ));
    }

    #[test]
    fn envelope_with_errcode_is_an_error_even_with_other_fields() {
        let r: Result<UserInfo, _> =
            parse_envelope(br#"{"errcode":40003,"errmsg":"invalid openid","openid":"x"}"#);
        assert!(matches!(r, Err(CallError::Wechat { errcode: 40003, .. })));
        let ok: UserInfo =
            parse_envelope(br#"{"subscribe":1,"openid":"o1","unionid":"u1"}"#).unwrap();
        assert_eq!(ok.unionid.as_deref(), Some("u1"));
    }

    #[test]
    fn phone_info_is_read_and_not_printed_by_debug() {
        let a: PhoneAnswer = parse_envelope(
            br#"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"timestamp":1,"appid":"wx1"}}}"#,
        )
        .unwrap();
        assert_eq!(a.phone_info.country_code, "86");
        assert!(!format!("{:?}", a.phone_info).contains("138"));
    }

    #[test]
    fn session_key_is_not_printed_by_debug() {
        let s: CodeSession =
            parse_envelope(br#"{"openid":"o","session_key":"c2VjcmV0LWtleQ=="}"#).unwrap();
        assert!(!format!("{s:?}").contains("c2VjcmV0LWtleQ"));
    }
}
