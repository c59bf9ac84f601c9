// End-to-end: the chat page that `lmkit serve` embeds, driven in headless Chromium (Debian's
// /usr/bin/chromium, or env CHROMIUM) with puppeteer-core against the real server: the model
// name, a streamed reply, the conversation sent back on the next turn, Stop on a long reply,
// the API key flow with the server's error shown inline, the narrow layout, and a screenshot
// (env LMKIT_SCREENSHOT; docs/img/chat-page.png too when LMKIT_UPDATE_DOC_SCREENSHOT=1).
// Not a visual-regression test: the screenshot is for people.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

import { MODEL_ID, expectCleanExit, fetchT, startServer } from './lib/server.mjs';

const T = { timeout: 90000 };
const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = process.env.LMKIT_SCREENSHOT || '';
const DOC_SCREENSHOT = path.resolve(here, '../../../docs/img/chat-page.png');

async function launch() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: run scripts/setup.sh (Debian package chromium) or set CHROMIUM`);
  }
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // --no-sandbox: CI containers often run as root, where Chromium's sandbox refuses to start.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run',
           '--disable-extensions', '--lang=en-US'],
    timeout: 60000,
    protocolTimeout: 60000,
  });
}

async function openPage(browser, url) {
  const page = await browser.newPage();
  page.setDefaultTimeout(30000);
  await page.setViewport({ width: 1100, height: 720, deviceScaleFactor: 1 });
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  await page.goto(url, { waitUntil: 'load' });
  return { page, problems };
}

// Bodies of the chat requests the page sends, in order.
function recordChatRequests(page) {
  const bodies = [];
  page.on('request', (req) => {
    if (req.url().endsWith('/v1/chat/completions') && req.method() === 'POST') {
      bodies.push(JSON.parse(req.postData()));
    }
  });
  return bodies;
}

const lastReply = '#messages article.msg.assistant:last-of-type';

async function sendMessage(page, text) {
  await page.click('#prompt');
  await page.type('#prompt', text);
  await page.keyboard.press('Enter');
}

// Waits for the last assistant message to leave the streaming state; returns its state and text.
async function waitReply(page, timeout = 60000) {
  await page.waitForFunction(
    (sel) => {
      const m = document.querySelectorAll('#messages article.msg.assistant');
      const last = m[m.length - 1];
      return last && last.dataset.state !== 'streaming';
    },
    { timeout, polling: 50 },
    lastReply);
  return page.evaluate(() => {
    const m = document.querySelectorAll('#messages article.msg.assistant');
    const last = m[m.length - 1];
    return {
      state: last.dataset.state,
      finish: last.dataset.finish,
      text: last.querySelector('.content').textContent,
      meta: last.querySelector('.meta').textContent,
    };
  });
}

// Counts text changes inside the message list, to tell a streamed reply from one dropped in whole.
async function countTextUpdates(page) {
  await page.evaluate(() => {
    window.__lmkitUpdates = 0;
    new MutationObserver((records) => {
      for (const r of records) if (r.type === 'characterData') window.__lmkitUpdates += 1;
    }).observe(document.getElementById('messages'), { subtree: true, characterData: true });
  });
}

async function setField(page, selector, value) {
  await page.$eval(selector, (el, v) => {
    el.value = v;
    el.dispatchEvent(new Event('input', { bubbles: true }));
    el.dispatchEvent(new Event('change', { bubbles: true }));
  }, String(value));
}

describe('chat page', () => {
  let server;
  let browser;
  before(async () => {
    server = await startServer(['--parallel', '2']);
    browser = await launch();
  });
  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) server.kill();
  });

  it('is served at / with the embedded assets', T, async () => {
    const r = await fetchT(`${server.url}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    assert.match(await r.text(), /<title>lmkit chat<\/title>/);
    for (const [p, type] of [['/app.js', /javascript/], ['/app.css', /^text\/css/], ['/favicon.svg', /^image\/svg\+xml/]]) {
      const a = await fetchT(`${server.url}${p}`);
      assert.equal(a.status, 200, p);
      assert.match(a.headers.get('content-type'), type, p);
    }
    assert.equal((await fetchT(`${server.url}/no-such-file.js`)).status, 404);
  });

  it('shows the model and streams replies, sending the conversation back', T, async () => {
    const { page, problems } = await openPage(browser, server.url);
    const requests = recordChatRequests(page);
    await page.waitForSelector('#model-name[data-state="ready"]');
    assert.equal(await page.$eval('#model-name', (e) => e.textContent), MODEL_ID);

    await setField(page, '#max-tokens', 64);  // short replies keep the screenshot readable
    await countTextUpdates(page);
    await sendMessage(page, 'Tell me a story about a dog.');
    // While it streams, Send is disabled and Stop is enabled.
    await page.waitForSelector(`${lastReply}[data-state="streaming"]`, { timeout: 10000 }).catch(() => {});
    const first = await waitReply(page);
    assert.equal(first.state, 'done', `reply state (meta: ${first.meta})`);
    assert.ok(first.text.trim().length > 0, 'the reply has text');
    assert.ok(['stop', 'length'].includes(first.finish), `finish_reason ${first.finish}`);
    assert.ok((await page.evaluate(() => window.__lmkitUpdates)) >= 2, 'the reply arrived in pieces');
    assert.equal(await page.$eval('#send', (b) => b.disabled), false);
    assert.equal(await page.$eval('#stop', (b) => b.disabled), true);

    assert.equal(requests.length, 1);
    assert.equal(requests[0].stream, true);
    assert.equal(requests[0].model, MODEL_ID);
    assert.equal(requests[0].max_tokens, 64);
    assert.deepEqual(requests[0].messages.at(-1), { role: 'user', content: 'Tell me a story about a dog.' });

    await sendMessage(page, 'What happened next?');
    const second = await waitReply(page);
    assert.equal(second.state, 'done');
    assert.ok(second.text.trim().length > 0);
    assert.equal(requests.length, 2);
    assert.deepEqual(requests[1].messages.map((m) => m.role), ['user', 'assistant', 'user']);
    assert.equal(requests[1].messages[1].content, first.text, 'the first reply is replayed');
    assert.equal(await page.$$eval('#messages article.msg', (m) => m.length), 4);

    if (SCREENSHOT) {
      fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT });
      assert.ok(fs.statSync(SCREENSHOT).size > 10000, 'a real screenshot');
      if (process.env.LMKIT_UPDATE_DOC_SCREENSHOT === '1') {
        fs.mkdirSync(path.dirname(DOC_SCREENSHOT), { recursive: true });
        fs.copyFileSync(SCREENSHOT, DOC_SCREENSHOT);
      }
    }
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('stops a long reply with the Stop button', T, async () => {
    const { page, problems } = await openPage(browser, server.url);
    await page.waitForSelector('#model-name[data-state="ready"]');
    await setField(page, '#max-tokens', 440);  // within the 512-token context with the prompt
    // A slow link, so that the reply is still streaming when Stop is pressed however fast the
    // server generates.
    await page.emulateNetworkConditions({ download: 1500, upload: 1e6, latency: 20 });
    await sendMessage(page, 'Tell me a very long story.');
    // Some text, or the end of the reply (which fails below with what the page showed).
    await page.waitForFunction(
      (sel) => {
        const last = document.querySelector(sel);
        return last && (last.dataset.state !== 'streaming' || last.querySelector('.content').textContent.length > 0);
      },
      { polling: 20, timeout: 30000 }, lastReply);
    const before = await page.$eval(lastReply, (e) => e.dataset.state);
    const errors = await page.$$eval('#messages article.msg.error .content', (m) => m.map((e) => e.textContent));
    assert.equal(before, 'streaming', `still streaming when Stop is pressed (errors shown: ${JSON.stringify(errors)})`);
    await page.click('#stop');
    const stopped = await waitReply(page, 5000);
    assert.equal(stopped.state, 'stopped', `state after Stop (meta: ${stopped.meta})`);
    assert.match(stopped.meta, /stopped/);
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(await page.$eval(lastReply, (e) => e.querySelector('.content').textContent), stopped.text,
                 'nothing arrives after Stop');
    assert.equal(await page.$eval('#send', (b) => b.disabled), false);
    assert.equal(await page.$eval('#stop', (b) => b.disabled), true);

    // The server is still fine, and the page can chat again.
    await page.emulateNetworkConditions(null);
    await setField(page, '#max-tokens', 16);
    await sendMessage(page, 'And a short one?');
    const next = await waitReply(page);
    assert.equal(next.state, 'done');
    assert.ok(next.text.length > 0);
    assert.equal((await fetchT(`${server.url}/health`)).status, 200);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('fits a phone-sized screen and labels every control', T, async () => {
    const { page, problems } = await openPage(browser, server.url);
    await page.setViewport({ width: 390, height: 800, deviceScaleFactor: 1 });
    await page.waitForSelector('#model-name[data-state="ready"]');
    await page.click('#settings-toggle');
    const layout = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      width: window.innerWidth,
      settingsVisible: !document.getElementById('settings').hidden,
      unlabeled: [...document.querySelectorAll('input, textarea, select')]
        .filter((e) => !e.labels || e.labels.length === 0)
        .map((e) => e.id),
    }));
    assert.ok(layout.scrollWidth <= layout.width, `no horizontal scrolling (${layout.scrollWidth} > ${layout.width})`);
    assert.ok(layout.settingsVisible);
    assert.deepEqual(layout.unlabeled, []);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('lets the server drain and exit 0 on SIGTERM', T, async () => {
    await browser.close();
    browser = null;
    await expectCleanExit(server);
  });
});

describe('chat page with --api-key', () => {
  const KEY = 'sk-page-secret';
  let server;
  let browser;
  before(async () => {
    server = await startServer(['--api-key', KEY]);
    browser = await launch();
  });
  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) server.kill();
  });

  it('asks for the key, shows the server error inline, then chats with it', T, async () => {
    const { page } = await openPage(browser, server.url);
    await page.waitForSelector('#model-name[data-state="error"]');
    assert.match(await page.$eval('#model-name', (e) => e.textContent), /API key/);
    assert.equal(await page.$eval('#settings', (e) => e.hidden), false, 'settings open for the key');

    // Without the key the request fails; the page shows the server's own message.
    const direct = await fetchT(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(direct.status, 401);
    const serverMessage = (await direct.json()).error.message;
    await sendMessage(page, 'Hello?');
    await page.waitForSelector('#messages article.msg.error');
    const shown = await page.$eval('#messages article.msg.error .content', (e) => e.textContent);
    assert.equal(shown, serverMessage);
    assert.equal(await page.$eval('#messages article.msg.error', (e) => e.getAttribute('role')), 'alert');
    assert.equal(await page.$eval('#prompt', (e) => e.value), 'Hello?', 'the text is back for a retry');

    // With the key: the model appears, the key is remembered, and the chat works.
    await page.type('#api-key', KEY);
    await page.$eval('#api-key', (e) => e.dispatchEvent(new Event('change', { bubbles: true })));
    await page.waitForSelector('#model-name[data-state="ready"]');
    assert.equal(await page.$eval('#model-name', (e) => e.textContent), MODEL_ID);
    assert.equal(await page.evaluate(() => localStorage.getItem('lmkit.chat.apiKey')), KEY);
    await page.click('#send');
    const reply = await waitReply(page);
    assert.equal(reply.state, 'done', reply.meta);
    assert.ok(reply.text.trim().length > 0);

    // A reload keeps the key.
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('#model-name[data-state="ready"]');
    await page.close();
  });

  it('lets the server drain and exit 0 on SIGTERM', T, async () => {
    await browser.close();
    browser = null;
    await expectCleanExit(server);
  });
});
