// Drives GET /docs (Swagger UI) in headless Chromium as a person would: the operations render,
// Authorize takes the API key, "Execute" on GET /v1/stats answers 401 without it and 200 with
// it, POST /v1/search with a typed body answers 200, and every operation opens without a
// resolver error. Every request that leaves 127.0.0.1 is aborted and counted (any is a
// failure), as are page errors and Content-Security-Policy violations. Run by
// scripts/check-api-page.sh, which starts the server and sets:
//
//   BASE_URL    http://127.0.0.1:PORT of the server
//   API_KEY     a key the server accepts
//   PW_DIR      the directory where playwright-core is installed
//   SCREENSHOT  where to write the PNG
//   CHROMIUM    the browser (default /usr/bin/chromium)
import { createRequire } from 'node:module';
import path from 'node:path';

const { BASE_URL, API_KEY, PW_DIR, SCREENSHOT } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
for (const [name, value] of Object.entries({ BASE_URL, API_KEY, PW_DIR, SCREENSHOT })) {
  if (!value) {
    console.error(`check-api-page: ${name} is not set`);
    process.exit(2);
  }
}
// playwright-core lives in a cache outside the repo, so it is required from there.
const { chromium } = createRequire(path.join(PW_DIR, 'package.json'))('playwright-core');

const WAIT = { timeout: 20_000 };
const outside = [];
const pageErrors = [];

class CheckFailed extends Error {}

function fail(reason) {
  throw new CheckFailed(reason);
}

function isLoopback(url) {
  try {
    const u = new URL(url);
    // data: and blob: URLs never leave the page.
    if (u.protocol === 'data:' || u.protocol === 'blob:') return true;
    return u.hostname === '127.0.0.1';
  } catch {
    return false;
  }
}

// The live answer of an operation after "Execute": the status in its "Server response" table
// (cleared before each run, so this is the new answer).
async function executeAndReadStatus(op) {
  await op.locator('button.execute').click();
  const status = op.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor(WAIT);
  return (await status.innerText()).trim();
}

let page = null;

async function main() {
  const spec = await (await fetch(`${BASE_URL}/openapi.json`)).json();
  const methods = new Set(['get', 'put', 'post', 'delete', 'patch']);
  const operations = Object.values(spec.paths).flatMap((item) => Object.keys(item).filter((m) => methods.has(m)));

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Belt and braces beside the route handler below: no name but loopback resolves, and the
    // browser's own background services (updates, field trials) stay off.
    args: [
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    // On the context, so that requests of any page or worker it opens are covered too.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (isLoopback(url)) return route.continue();
      outside.push(url);
      return route.abort('blockedbyclient');
    });
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}`);
      });
    });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      // The browser logs the 401 that the check asks for on purpose; nothing else is expected.
      const deliberate = m.text().includes('status of 401') && m.location().url.endsWith('/v1/stats');
      if (!deliberate) pageErrors.push(`console: ${m.text()} (${m.location().url})`);
    });

    const response = await page.goto(`${BASE_URL}/docs`, { waitUntil: 'load' });
    if (!response || response.status() !== 200) fail(`GET /docs answered ${response && response.status()}`);
    if (!response.headers()['content-security-policy']) fail('GET /docs has no Content-Security-Policy');

    await page.locator('.swagger-ui .info .title').waitFor(WAIT);
    const title = await page.locator('.swagger-ui .info .title').innerText();
    if (!title.includes(spec.info.title)) fail(`title is ${JSON.stringify(title)}, not ${spec.info.title}`);
    await page.locator('.opblock').nth(operations.length - 1).waitFor(WAIT);
    const rendered = await page.locator('.opblock').count();
    if (rendered !== operations.length) fail(`${rendered} operations rendered, the spec has ${operations.length}`);
    console.log(`check-api-page: "${title.split('\n')[0]}" rendered ${rendered} operations`);

    // GET /v1/stats without the key: the server's 401 must be what the page shows.
    const stats = page.locator('.opblock-get', { has: page.locator('[data-path="/v1/stats"]') });
    await stats.locator('.opblock-summary').click();
    // With tryItOutEnabled the operation opens ready to run; otherwise this is the button.
    const tryIt = stats.locator('button.try-out__btn:not(.cancel)');
    if (await tryIt.count()) await tryIt.click();
    let status = await executeAndReadStatus(stats);
    if (status !== '401') fail(`GET /v1/stats without the key showed ${status}, expected 401`);

    // Authorize: the bearer scheme's dialog takes the key.
    await page.locator('.auth-wrapper button.authorize').click();
    const dialog = page.locator('.modal-ux');
    await dialog.locator('input[aria-label="auth-bearer-value"]').fill(API_KEY);
    await dialog.locator('button[type="submit"], button.modal-btn.authorize').first().click();
    await dialog.locator('button.btn-done').click();
    await dialog.waitFor({ state: 'detached', ...WAIT });

    await stats.locator('button.btn-clear').click();
    status = await executeAndReadStatus(stats);
    if (status !== '200') fail(`GET /v1/stats with the key showed ${status}, expected 200`);
    const statsBody = await stats.locator('.live-responses-table .response .microlight, .live-responses-table .response pre').first().innerText();
    if (!statsBody.includes('"documents"')) fail(`GET /v1/stats body shown: ${statsBody.slice(0, 200)}`);
    console.log('check-api-page: GET /v1/stats: 401 without the key, 200 after Authorize');

    // POST /v1/search with a body typed into the editor.
    const search = page.locator('.opblock-post', { has: page.locator('[data-path="/v1/search"]') });
    await search.locator('.opblock-summary').click();
    const tryIt2 = search.locator('button.try-out__btn:not(.cancel)');
    if (await tryIt2.count()) await tryIt2.click();
    await search.locator('textarea.body-param__text').fill('{"query": "running shoes", "k": 3}');
    status = await executeAndReadStatus(search);
    if (status !== '200') fail(`POST /v1/search showed ${status}, expected 200`);
    console.log('check-api-page: POST /v1/search with a typed body: 200');

    // The top of the page: title, Authorize (now locked) and GET /v1/stats with its 200. The
    // whole page, with every operation and schema, is some 10,000 pixels tall.
    await search.locator('.opblock-summary').click();
    await page.screenshot({ path: SCREENSHOT, fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1400 } });

    // Then every operation opened once: Swagger UI resolves an operation's schemas only when it
    // is opened, and lists what it cannot resolve in its Errors box (checked below).
    const all = page.locator('.opblock');
    for (let i = 0; i < rendered; i++) {
      const op = all.nth(i);
      if (!(await op.evaluate((el) => el.classList.contains('is-open')))) await op.locator('.opblock-summary').click();
      await op.locator('.responses-wrapper').waitFor(WAIT);
    }

    const problems = [];
    if (outside.length) problems.push(`${outside.length} request(s) outside 127.0.0.1 (blocked): ${[...new Set(outside)].join(', ')}`);
    const csp = await page.evaluate(() => window.__cspViolations);
    if (csp.length) problems.push(`Content-Security-Policy violations: ${csp.join('; ')}`);
    // Swagger UI lists what it could not read in the spec (or a response) in its Errors box.
    const errors = page.locator('.swagger-ui .errors-wrapper');
    if (await errors.count()) problems.push(`Swagger UI shows errors: ${(await errors.innerText()).replace(/\s+/g, ' ')}`);
    if (pageErrors.length) problems.push(`page errors: ${pageErrors.join('; ')}`);
    if (problems.length) fail(problems.join('\n  '));
    console.log(`check-api-page: OK, no request left 127.0.0.1; screenshot: ${SCREENSHOT}`);
  } catch (e) {
    // What the page showed when it failed is the quickest way to see why.
    if (page) await page.screenshot({ path: SCREENSHOT, fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`check-api-page: FAILED: ${e instanceof CheckFailed ? e.message : e && e.stack ? e.stack : e}`);
  if (page) console.error(`check-api-page: screenshot of the page at the failure: ${SCREENSHOT}`);
  process.exit(1);
});
