// Browser test of the ops dashboard: drives Debian's chromium through playwright-core against a
// running broker that serves /dashboard. Prints one "ok - ..." line per check; exits 0 when all
// pass, 1 on the first failure (with dashboard-failure.png in the screenshot directory).
//
//   LABELBROKER_URL              broker base URL, e.g. http://127.0.0.1:8080 (required)
//   LABELBROKER_VIEWER_KEY       a valid key with at least the viewer role (required)
//   LABELBROKER_EXPECT_VENDORS   comma-separated vendor ids that must each have a card (required)
//   LABELBROKER_SCREENSHOT_DIR   where the PNGs go (default: build)
//   LABELBROKER_EXPECT_CAP=0     do not require a cap line (brokers without concentration `cap`)
//   LABELBROKER_EXPECT_JOBS=0    do not require a number for jobs in flight (brokers without it)
//   CHROMIUM                     chromium binary (default /usr/bin/chromium)
//
// Run from the repository root: node tests/browser/dashboard.mjs

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const OVERALL_TIMEOUT_MS = 90000;
const CARDS_TIMEOUT_MS = 30000;
const WRONG_KEY = `lbk_000000000000_${'0'.repeat(40)}`;

const env = process.env;
const baseUrl = (env.LABELBROKER_URL || '').replace(/\/+$/, '');
const key = env.LABELBROKER_VIEWER_KEY || '';
const expectVendors = (env.LABELBROKER_EXPECT_VENDORS || '').split(',').map((v) => v.trim()).filter(Boolean);
const shotDir = env.LABELBROKER_SCREENSHOT_DIR || 'build';
const expectCap = env.LABELBROKER_EXPECT_CAP !== '0';
const expectJobs = env.LABELBROKER_EXPECT_JOBS !== '0';
const executablePath = env.CHROMIUM || '/usr/bin/chromium';

let browser = null;
let page = null;
let finished = false;

function ok(message) {
  console.log(`ok - ${message}`);
}

async function fail(message) {
  if (finished) return;
  finished = true;
  // Playwright's messages carry terminal colours and a call log; the first lines say enough.
  const text = String(message).replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter(Boolean).slice(0, 3).join(' | ');
  console.log(`not ok - ${text}`);
  if (page) {
    try {
      const file = path.join(shotDir, 'dashboard-failure.png');
      await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
      console.log(`# screenshot of the failure: ${file}`);
    } catch (err) {
      console.log(`# could not take a failure screenshot: ${err.message}`);
    }
  }
  await closeBrowser();
  process.exit(1);
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
}

// The whole run is bounded, whatever hangs.
const watchdog = setTimeout(() => { fail(`the test did not finish within ${OVERALL_TIMEOUT_MS / 1000} s`); }, OVERALL_TIMEOUT_MS);

function check(condition, message, detail = '') {
  if (!condition) throw new Error(detail ? `${message}: ${detail}` : message);
  ok(message);
}

async function main() {
  if (!baseUrl) throw new Error('LABELBROKER_URL is not set (e.g. http://127.0.0.1:8080)');
  if (!key) throw new Error('LABELBROKER_VIEWER_KEY is not set');
  if (!expectVendors.length) throw new Error('LABELBROKER_EXPECT_VENDORS is not set (comma-separated vendor ids)');
  mkdirSync(shotDir, { recursive: true });

  browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'], timeout: 20000 });
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  page = await context.newPage();
  page.setDefaultTimeout(10000);

  // Console errors fail the test (a CSP violation is one). The single exception: Chromium logs
  // the expected 401 of the wrong-key step as "Failed to load resource".
  const consoleErrors = [];
  let allow401 = true;
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (allow401 && /status of 401/.test(text)) return;
    consoleErrors.push(text);
  });
  page.on('pageerror', (err) => consoleErrors.push(`page error: ${err.message}`));

  const response = await page.goto(`${baseUrl}/dashboard`, { waitUntil: 'load', timeout: 15000 });
  check(response && response.status() === 200, 'GET /dashboard answers 200', `status ${response && response.status()}`);
  const csp = response.headers()['content-security-policy'] || '';
  if (!csp) console.log('# note: /dashboard was served without a Content-Security-Policy header');
  await page.locator('#key-input').waitFor({ state: 'visible' });
  ok('the key form is shown');

  // A well-formed but unknown key: the broker answers 401 and the page says the key is wrong.
  await page.fill('#key-input', WRONG_KEY);
  await page.click('#key-submit');
  const alert = page.locator('#dashboard-error[role="alert"]');
  await alert.waitFor({ state: 'visible', timeout: 15000 }).catch(() => {
    throw new Error('no #dashboard-error alert appeared after submitting a wrong key');
  });
  const alertText = (await alert.textContent()) || '';
  check(/key/i.test(alertText) && /401/.test(alertText), 'a wrong key shows a 401 alert that mentions the key', JSON.stringify(alertText));
  await page.locator('#key-input').waitFor({ state: 'visible', timeout: 5000 });
  ok('the key form is shown again after the 401');
  const wrongStored = await page.evaluate((k) => Object.values(sessionStorage).includes(k), WRONG_KEY);
  check(!wrongStored, 'the rejected key is not kept in sessionStorage');

  // The real key: every expected vendor gets a card with numbers in it.
  allow401 = false;
  await page.fill('#key-input', key);
  await page.click('#key-submit');
  try {
    await page.waitForFunction((vendors) => {
      const digit = (card, field) => /\d/.test(card.querySelector(`[data-field="${field}"]`)?.textContent || '');
      return vendors.every((v) => {
        const card = [...document.querySelectorAll('article.vendor-card')].find((c) => c.dataset.vendor === v);
        return card && digit(card, 'gold-accuracy') && digit(card, 'share') && digit(card, 'cost-per-correct');
      });
    }, expectVendors, { timeout: CARDS_TIMEOUT_MS, polling: 250 });
  } catch {
    const seen = await page.evaluate(() => [...document.querySelectorAll('article.vendor-card')].map((c) => {
      const f = (name) => (c.querySelector(`[data-field="${name}"]`)?.textContent || '').trim();
      return `${c.dataset.vendor} [gold "${f('gold-accuracy')}", share "${f('share')}", cost "${f('cost-per-correct')}"]`;
    }));
    const alertNow = await alert.isVisible() ? ` alert: "${((await alert.textContent()) || '').trim()}"` : '';
    throw new Error(`within ${CARDS_TIMEOUT_MS / 1000} s not every expected vendor (${expectVendors.join(', ')}) had a card with `
      + `gold accuracy, share and cost per correct label; cards seen: ${seen.length ? seen.join('; ') : 'none'}.${alertNow}`);
  }
  ok(`a vendor card with gold accuracy, share and cost for each of ${expectVendors.join(', ')}`);
  check(!(await alert.isVisible()), 'the error alert is gone once the key is accepted');

  for (const field of ['latency', 'breaker', 'spend-month']) {
    const n = await page.locator(`article.vendor-card [data-field="${field}"]`).count();
    check(n >= expectVendors.length, `every card has a ${field} field`, `${n} found`);
  }

  const charts = await page.locator('svg.share-chart').count();
  check(charts >= 1, 'at least one share-over-time chart (svg.share-chart)', `${charts} found`);
  const capLines = await page.locator('svg.share-chart .cap-line').count();
  if (expectCap) check(capLines >= 1, 'a share chart draws the cap line (.cap-line)', 'no .cap-line in any svg.share-chart');
  else console.log(`# cap line not required (LABELBROKER_EXPECT_CAP=0); ${capLines} found`);

  const market = async (field) => ((await page.locator(`#market [data-field="${field}"]`).textContent()) || '').trim();
  const hhi = await market('hhi');
  check(/\d/.test(hhi), 'the market panel shows the HHI', JSON.stringify(hhi));
  const eff = await market('effective-vendors');
  check(/\d/.test(eff), 'the market panel shows the effective number of vendors', JSON.stringify(eff));
  const jobs = await market('jobs-in-flight');
  if (expectJobs) check(/\d/.test(jobs), 'the market panel shows jobs in flight', JSON.stringify(jobs));
  else check(jobs.length > 0, 'the market panel has a jobs-in-flight figure (number not required)', 'empty');
  const updated = await market('last-updated');
  check(/\d/.test(updated), 'the market panel shows when it was last updated', JSON.stringify(updated));

  const laptopShot = path.join(shotDir, 'dashboard-laptop.png');
  await page.screenshot({ path: laptopShot });
  ok(`screenshot ${laptopShot} (1366×768)`);
  const laptopOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(laptopOverflow <= 0, 'no horizontal scrolling at 1366×768', `${laptopOverflow}px too wide`);

  await page.setViewportSize({ width: 2560, height: 1440 });
  await page.waitForTimeout(300);
  const wallOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(wallOverflow <= 0, 'no horizontal scrolling at 2560×1440', `${wallOverflow}px too wide`);
  const wallShot = path.join(shotDir, 'dashboard-wall.png');
  await page.screenshot({ path: wallShot, fullPage: true });
  ok(`screenshot ${wallShot} (2560×1440, full page)`);

  const storage = await page.evaluate((k) => ({
    session: Object.values(sessionStorage).includes(k),
    local: Object.values(localStorage).some((v) => v.includes(k)),
    url: location.href.includes(k),
  }), key);
  check(storage.session, 'the key is kept in sessionStorage');
  check(!storage.local, 'the key is not in localStorage');
  check(!storage.url, 'the key is not in the URL');

  check(consoleErrors.length === 0, 'no console errors or page errors (CSP violations included)', consoleErrors.join(' | '));

  // Forgetting the key clears it and brings the form back.
  await page.click('#forget-key');
  await page.locator('#key-input').waitFor({ state: 'visible', timeout: 5000 });
  const forgotten = await page.evaluate((k) => !Object.values(sessionStorage).includes(k), key);
  check(forgotten, '"Forget key" removes the key from sessionStorage and shows the form');
}

main()
  .then(async () => {
    if (finished) return;
    finished = true;
    clearTimeout(watchdog);
    await closeBrowser();
    console.log('# all dashboard checks passed');
    process.exit(0);
  })
  .catch((err) => fail(err && err.message ? err.message : String(err)));
