// GraphiQL in a real browser, with no internet: Debian's chromium, headless, driven by
// playwright-core (which never downloads a browser).
//
//   node graphiql.mjs WXUNION_URL SIM_URL [SCREENSHOT.png]
//
// Every request to a host other than 127.0.0.1 / localhost / [::1] is aborted and recorded;
// the run fails if GraphiQL attempted any, if the page logs an error or a
// Content-Security-Policy violation, or if one of its own requests fails. Then it does what
// a person following the README's walk-through does: mints a login code from the simulator,
// types a loginWithCode mutation into the editor, presses the run button, reads the session
// token (wxs_...) from the result pane, pastes it into the headers editor as
// {"Authorization": "Bearer ..."} and asks `me`, and opens the documentation explorer on the
// Query type. The screenshot (argument or GRAPHIQL_SCREENSHOT) shows the final state.
//
// Environment: CHROMIUM (default /usr/bin/chromium), GRAPHIQL_APP_ID (default the sandbox's
// demo mini program wxacme000000000mp1), GRAPHIQL_PERSON (default alice),
// GRAPHIQL_HEADED=1 to watch.
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [base, sim, shotArg] = process.argv.slice(2);
if (!base || !sim) {
  console.error('usage: node graphiql.mjs WXUNION_URL SIM_URL [SCREENSHOT.png]');
  process.exit(2);
}
const screenshot = shotArg || process.env.GRAPHIQL_SCREENSHOT || '';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const appId = process.env.GRAPHIQL_APP_ID || 'wxacme000000000mp1';
const person = process.env.GRAPHIQL_PERSON || 'alice';
const STEP_MS = 30_000;

if (!existsSync(executablePath)) {
  console.error(`FAIL: no browser at ${executablePath}: apt-get install chromium`);
  process.exit(1);
}

const started = Date.now();
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
const LOCAL = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

const blocked = []; // requests to other hosts (aborted)
const problems = []; // page errors, console errors, CSP violations, failed local requests

let browser;
let page;
let failure;
try {
  browser = await chromium.launch({
    executablePath,
    headless: !process.env.GRAPHIQL_HEADED,
    // Root in a container has no user namespace sandbox.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    let host = '';
    try {
      host = new URL(url).hostname;
    } catch {
      // not a URL with a host
    }
    if (url.startsWith('data:') || url.startsWith('blob:') || LOCAL.has(host)) {
      return route.continue();
    }
    blocked.push(url);
    return route.abort('blockedbyclient');
  });
  page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content.Security.Policy/i.test(m.text())) {
      problems.push(`console ${m.type()}: ${m.text()} (${m.location().url || 'no location'})`);
    }
  });
  page.on('requestfailed', (r) => {
    if (!blocked.includes(r.url())) {
      problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`);
    }
  });
  const introspectionErrors = [];
  page.on('response', async (r) => {
    if (r.status() >= 400) {
      problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
    }
    // GraphiQL's schema request: its errors explain an empty documentation explorer.
    if (r.request().method() === 'POST' && /IntrospectionQuery/.test(r.request().postData() ?? '')) {
      const body = await r.json().catch(() => null);
      for (const e of body?.errors ?? []) introspectionErrors.push(e.message);
    }
  });
  // Violations are also reported to the page as events; count them there too.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });

  log(`open ${base}/graphql in ${executablePath}`);
  const resp = await page.goto(`${base}/graphql`, { waitUntil: 'load', timeout: STEP_MS });
  if (!resp || resp.status() !== 200) throw new Error(`GET /graphql answered ${resp?.status()}`);
  const csp = resp.headers()['content-security-policy'] || '';
  if (!/script-src 'self'/.test(csp)) throw new Error(`no strict CSP on the page: "${csp}"`);
  await page.locator('.graphiql-query-editor .CodeMirror').waitFor({ state: 'visible', timeout: STEP_MS });
  log('GraphiQL is up');

  // What wx.login() hands a mini program: a code from the simulator.
  const minted = await fetch(`${sim}/sim/code`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ app_id: appId, person }),
  });
  if (!minted.ok) throw new Error(`POST ${sim}/sim/code answered ${minted.status}`);
  const { code } = await minted.json();
  log(`login code for ${person} in ${appId}: ${code}`);

  // Type into CodeMirror like a person: select all, replace. Brackets and quotes that
  // CodeMirror closes by itself are typed over, so the text ends up exactly as typed.
  const QUERY_EDITOR = '.graphiql-query-editor .CodeMirror';
  const HEADERS_EDITOR =
    'section.graphiql-editor-tool[aria-label="Headers"] .graphiql-editor:not(.hidden) .CodeMirror';
  const editorText = (selector) =>
    page.locator(selector).evaluate((el) => el.CodeMirror.getValue());
  const typeInto = async (selector, text) => {
    await page.locator(selector).click();
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.press('Delete');
    await page.keyboard.type(text, { delay: 5 });
    await page.keyboard.press('Escape'); // close an autocomplete popup, if any
    const got = await editorText(selector);
    if (got.replace(/\s+/g, ' ').trim() !== text.replace(/\s+/g, ' ').trim()) {
      throw new Error(`typed ${JSON.stringify(text)} but the editor holds ${JSON.stringify(got)}`);
    }
  };
  const run = async (want, what) => {
    await page.locator('.graphiql-execute-button').click();
    const pane = page.locator('.graphiql-response .result-window');
    await page.waitForFunction(
      ([sel, re]) => new RegExp(re).test(document.querySelector(sel)?.innerText ?? ''),
      ['.graphiql-response .result-window', want.source],
      { timeout: STEP_MS },
    ).catch(async () => {
      throw new Error(`${what}: the result pane never showed ${want}: ${await pane.innerText()}`);
    });
    return pane.innerText();
  };

  const mutation =
    `mutation { loginWithCode(appId: "${appId}", code: "${code}") ` +
    `{ sessionToken isNewUser user { id unionId } } }`;
  await typeInto(QUERY_EDITOR, mutation);
  log('typed the loginWithCode mutation');
  const loginResult = await run(/"sessionToken":\s*"wxs_/, 'loginWithCode');
  const token = loginResult.match(/wxs_[A-Za-z0-9_-]+/)?.[0];
  if (!token) throw new Error(`no session token in the result pane: ${loginResult}`);
  log(`session token in the result pane: ${token.slice(0, 10)}…`);

  // The headers editor: the token as a bearer, then `me`.
  await page.locator('.graphiql-editor-tools button', { hasText: 'Headers' }).click();
  await typeInto(HEADERS_EDITOR, `{"Authorization": "Bearer ${token}"}`);
  await typeInto(QUERY_EDITOR, '{ me { id unionId } }');
  const meResult = await run(/"me":\s*\{/, 'me');
  if (!meResult.includes('"unionId"')) throw new Error(`me without unionId: ${meResult}`);
  log('`me` with the token from the headers editor answered the user');

  // The documentation explorer: open it (it may already be), then the Query type.
  const docs = page.locator('.graphiql-doc-explorer');
  if (!(await docs.isVisible())) {
    await page.locator('button[aria-label="Show Documentation Explorer"]').click();
  }
  await docs.waitFor({ state: 'visible', timeout: STEP_MS });
  const rootType = docs.locator('a.graphiql-doc-explorer-type-name', { hasText: /^Query$/ }).first();
  const schemaError = docs.locator('.graphiql-doc-explorer-error');
  await rootType.or(schemaError).first().waitFor({ state: 'visible', timeout: STEP_MS });
  if (await schemaError.isVisible()) {
    throw new Error(
      `docs explorer: "${await schemaError.innerText()}"; the introspection query got: ` +
        (introspectionErrors.join('; ') || 'no GraphQL error'),
    );
  }
  await rootType.click();
  const fields = docs.locator('.graphiql-doc-explorer-field-name');
  await page.waitForFunction(
    () => {
      const names = [...document.querySelectorAll('.graphiql-doc-explorer-field-name')].map((e) => e.textContent);
      return names.includes('user') && names.includes('me');
    },
    null,
    { timeout: STEP_MS },
  );
  log(`docs explorer: Query has ${(await fields.allInnerTexts()).join(', ')}`);

  const violations = await page.evaluate(() => window.__cspViolations);
  for (const v of violations) problems.push(`CSP violation: ${v}`);
} catch (e) {
  failure = e;
} finally {
  if (page && screenshot) {
    await page.screenshot({ path: screenshot }).then(
      () => log(`screenshot: ${screenshot}`),
      (e) => log(`no screenshot: ${e.message}`),
    );
  }
  if (browser) await browser.close();
}

for (const url of blocked) console.error(`blocked request to another host: ${url}`);
for (const p of problems) console.error(p);
if (failure) {
  console.error(`FAIL: ${failure.message}`);
  process.exit(1);
}
if (blocked.length || problems.length) {
  console.error(`FAIL: ${blocked.length} request(s) to other hosts, ${problems.length} problem(s)`);
  process.exit(1);
}
log('PASS');
