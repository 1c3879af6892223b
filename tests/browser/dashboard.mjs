// Real-browser test of the tocsin web dashboard (headless Chromium through playwright-core).
//
//   node dashboard.mjs --url http://127.0.0.1:8080 [--token T] [--out DIR]
//                      [--ticket INC-000001] [--breached INC-000002] [--actor NAME]
//
// (or TOCSIN_URL, TOCSIN_TOKEN, TOCSIN_OUT, TOCSIN_TICKET, TOCSIN_BREACHED, TOCSIN_ACTOR in
// the environment; CHROMIUM or --chromium for another browser binary than /usr/bin/chromium).
// --ticket: the ticket to acknowledge (default: the first row); --breached: a ticket whose
// response target has passed, which must be shown in red.
// It loads the page, waits until the open incident, the ticket and its SLA figures are shown,
// saves DIR/dashboard.png, acknowledges the ticket with the page's button (first without the
// token when one is given: the page must show the API's refusal), waits for the new state,
// saves DIR/after-ack.png and prints one JSON line. Exit 0 on success, 1 with the reason on
// stderr on any failure (DIR/failure.png then shows the page as it was).

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const WAIT_MS = 20000;
// Whatever hangs, the whole run ends within this long.
const TOTAL_MS = 120000;

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.TOCSIN_URL },
    token: { type: 'string', default: process.env.TOCSIN_TOKEN || '' },
    out: { type: 'string', default: process.env.TOCSIN_OUT || '.' },
    ticket: { type: 'string', default: process.env.TOCSIN_TICKET },
    breached: { type: 'string', default: process.env.TOCSIN_BREACHED },
    actor: { type: 'string', default: process.env.TOCSIN_ACTOR || 'browser-test' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});

function fail(message) {
  throw new Error(message);
}

// Wait for a condition evaluated in the page; fail with `what` (and the page's error line).
async function waitUntil(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 200 });
  } catch (e) {
    const shown = await page.locator('#load-error').textContent().catch(() => '');
    fail(`timed out waiting for ${what}${shown ? ` (the page shows: ${shown})` : ''}`);
  }
}

const text = (page, selector) => page.locator(selector).first().textContent();

async function run(page, out) {
  const shots = [];
  const shot = async (name) => {
    const path = join(out, name);
    await page.screenshot({ path, fullPage: true });
    shots.push(path);
  };

  const response = await page.goto(args.url, { waitUntil: 'load' });
  if (!response || !response.ok()) fail(`GET ${args.url}: ${response ? response.status() : 'no answer'}`);

  // The seeded data, as the page shows it.
  await waitUntil(page, 'an open incident row', () => document.querySelector('#incidents tr[data-incident]'));
  const ticketSel = args.ticket ? `#tickets tr[data-ticket="${args.ticket}"]` : '#tickets tr[data-ticket]';
  await waitUntil(page, `the ticket row ${args.ticket || ''}`, (s) => document.querySelector(s), ticketSel);
  const ticket = await page.locator(ticketSel).first().getAttribute('data-ticket');
  const row = `#tickets tr[data-ticket="${ticket}"]`;
  await waitUntil(page, 'the SLA figures of the ticket', (r) => {
    const cell = document.querySelector(`${r} td[data-sla="response"]`);
    return cell && /left|breached|overdue|met/.test(cell.textContent);
  }, row);
  await waitUntil(page, 'the counts in the header', () =>
    Number(document.querySelector('#count-open-incidents').textContent) >= 1 &&
    Number(document.querySelector('#count-open-tickets').textContent) >= 1, null);
  if (args.breached) {
    await waitUntil(page, `the breached SLA of ${args.breached} in red`, (n) => {
      const cell = document.querySelector(`#tickets tr[data-ticket="${n}"] td[data-sla="response"]`);
      return cell && cell.dataset.breached === 'true' && getComputedStyle(cell).color === 'rgb(198, 40, 40)' &&
        Number(document.querySelector('#count-breached').textContent) >= 1;
    }, args.breached);
  }
  await waitUntil(page, 'both charts', () =>
    document.querySelector('#chart-daily rect.bar') && document.querySelector('#chart-mtt text'), null);
  const loadError = await page.locator('#load-error').isVisible();
  if (loadError) fail(`the page shows an error: ${await text(page, '#load-error')}`);

  const before = {
    state: await page.locator(row).getAttribute('data-state'),
    response: await text(page, `${row} td[data-sla="response"]`),
    resolution: await text(page, `${row} td[data-sla="resolution"]`),
    counts: {
      open_incidents: Number(await text(page, '#count-open-incidents')),
      open_tickets: Number(await text(page, '#count-open-tickets')),
      breached_open_tickets: Number(await text(page, '#count-breached')),
    },
    updated_at: await text(page, '#updated-at'),
  };
  if (before.state !== 'new') fail(`${ticket} is ${before.state}, expected new`);
  await shot('dashboard.png');

  // With a token configured, the API refuses an ack without it: the page must say so.
  let refused = null;
  if (args.token) {
    await page.locator(`${row} button[data-action="ack"]`).click();
    await waitUntil(page, 'the refusal of an ack without the token', () => {
      const m = document.querySelector('#action-message');
      return m && !m.hidden && m.classList.contains('error') && /401/.test(m.textContent);
    }, null);
    refused = await text(page, '#action-message');
  }
  // The operator's name (the API records it) and the token, saved by the page.
  await page.locator('#actor').fill(args.actor);
  await page.locator('#token').fill(args.token);
  await page.locator('#token-save').click();
  const saved = await page.evaluate(() => [localStorage.getItem('tocsin.actor'), localStorage.getItem('tocsin.token')]);
  if (saved[0] !== args.actor || saved[1] !== (args.token || null)) {
    fail(`the name and token were not saved in localStorage: ${JSON.stringify(saved)}`);
  }

  await page.locator(`${row} button[data-action="ack"]`).click();
  await waitUntil(page, `${ticket} shown as acknowledged`, (r) => {
    const tr = document.querySelector(r);
    return tr && tr.dataset.state === 'acknowledged' &&
      tr.querySelector('td[data-field="state"]').textContent === 'acknowledged' &&
      !tr.querySelector('button[data-action="ack"]');
  }, row);
  const message = await text(page, '#action-message');
  if (!/acknowledged/.test(message)) fail(`unexpected message after the ack: ${message}`);
  const after = {
    state: await page.locator(row).getAttribute('data-state'),
    response: await text(page, `${row} td[data-sla="response"]`),
    assignee: await text(page, `${row} td[data-field="assignee"]`),
  };
  await shot('after-ack.png');
  return { ok: true, ticket, before, refused_without_token: refused, after, screenshots: shots };
}

async function main() {
  if (!args.url) fail('give the dashboard URL: --url http://127.0.0.1:PORT (or TOCSIN_URL)');
  const out = resolve(args.out);
  mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    args: ['--no-sandbox'],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      // A refused request is logged by the browser; the page shows it, which is what we test.
      if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(`console error: ${m.text()}`);
    });
    let result;
    try {
      result = await run(page, out);
    } catch (e) {
      await page.screenshot({ path: join(out, 'failure.png'), fullPage: true }).catch(() => {});
      const extra = problems.length ? ` [${problems.join('; ')}]` : '';
      throw new Error(`${e.message}${extra} (screenshot: ${join(out, 'failure.png')})`);
    }
    if (problems.length) fail(problems.join('; '));
    console.log(JSON.stringify(result));
  } finally {
    await browser.close();
  }
}

setTimeout(() => {
  console.error(`dashboard test failed: still running after ${TOTAL_MS / 1000}s`);
  console.log(JSON.stringify({ ok: false, error: 'timed out' }));
  process.exit(1);
}, TOTAL_MS).unref();

main().catch((e) => {
  console.error(`dashboard test failed: ${e.message}`);
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
