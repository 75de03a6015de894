// A tiny client for wxunion's GraphQL API, for a mini program.
//
// wxunion is your backend's identity service: the mini program sends it the code from
// wx.login(), gets back a session token, and from then on calls /graphql with
// `Authorization: Bearer <token>`. The session_key never reaches the mini program.
//
// In the mini program console (开发管理 → 开发设置 → 服务器域名) add your wxunion host to the
// "request合法域名" list; WeChat only lets wx.request call https hosts listed there.

// Where wxunion is served (https, no trailing slash).
const WXUNION_URL = 'https://id.example.com';
const TOKEN_KEY = 'wxunion_session';

// POSTs one GraphQL operation. Resolves with `data`, rejects with the first error (its
// `extensions.code` is one of BAD_REQUEST, UNKNOWN_APP, INVALID_CODE, UNAUTHENTICATED,
// FORBIDDEN, RATE_LIMITED, UPSTREAM_ERROR, INTERNAL).
function graphql(query, variables, token) {
  return new Promise((resolve, reject) => {
    const header = { 'Content-Type': 'application/json' };
    if (token) header.Authorization = `Bearer ${token}`;
    wx.request({
      url: `${WXUNION_URL}/graphql`,
      method: 'POST',
      header,
      data: { query, variables },
      success(res) {
        const body = res.data || {};
        if (body.errors && body.errors.length) {
          const e = body.errors[0];
          const err = new Error(e.message);
          err.code = (e.extensions && e.extensions.code) || 'UNKNOWN';
          reject(err);
        } else if (res.statusCode !== 200) {
          reject(new Error(`wxunion answered HTTP ${res.statusCode}`));
        } else {
          resolve(body.data);
        }
      },
      fail(e) {
        reject(new Error(e.errMsg));
      },
    });
  });
}

const LOGIN = `mutation($appId: String!, $code: String!) {
  loginWithCode(appId: $appId, code: $code) {
    sessionToken expiresAt isNewUser
    user { id unionId }
  }
}`;

// wx.login() → loginWithCode → the session token, kept in storage until it expires.
// A login code is single use and valid for five minutes: ask for a new one every time.
function login() {
  return new Promise((resolve, reject) => {
    wx.login({ success: resolve, fail: (e) => reject(new Error(e.errMsg)) });
  }).then(({ code }) => {
    // This mini program's own appId, as configured in wxunion's [[apps]].
    const appId = wx.getAccountInfoSync().miniProgram.appId;
    return graphql(LOGIN, { appId, code });
  }).then((data) => {
    const session = data.loginWithCode;
    wx.setStorageSync(TOKEN_KEY, {
      token: session.sessionToken,
      expiresAt: session.expiresAt,
    });
    return session;
  });
}

// The stored token while it is valid, else a fresh login.
function sessionToken() {
  const saved = wx.getStorageSync(TOKEN_KEY);
  if (saved && Date.parse(saved.expiresAt) > Date.now() + 60 * 1000) {
    return Promise.resolve(saved.token);
  }
  return login().then((s) => s.sessionToken);
}

// Runs an operation as the logged-in user; logs in again once if the session has ended
// (expired, or revoked on the server: UNAUTHENTICATED).
function call(query, variables) {
  return sessionToken()
    .then((token) => graphql(query, variables, token))
    .catch((err) => {
      if (err.code !== 'UNAUTHENTICATED') throw err;
      wx.removeStorageSync(TOKEN_KEY);
      return login().then((s) => graphql(query, variables, s.sessionToken));
    });
}

module.exports = { graphql, login, call };
