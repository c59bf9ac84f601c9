// End-to-end: the official `openai` npm package against the real `lmkit serve` (stories260K):
// models, completions (string and token-id prompts, greedy against llama2.c's golden output,
// stop strings, n, logprobs, echo), chat completions (plain, streamed, logprobs, seeds),
// embeddings (float and the SDK's default base64), errors as the SDK's APIError, the API key,
// concurrent requests, and a clean exit on SIGTERM. Not a unit test of the server's parts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import {
  MODEL_ID,
  expectCleanExit,
  fetchT,
  goldenIds,
  goldenOnceUponATime,
  startServer,
} from './lib/server.mjs';

const T = { timeout: 60000 };
const PROMPT = 'Once upon a time';

function client(url, apiKey = 'sk-unused') {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 60000 });
}

// The SDK's error for a promise that must fail.
async function apiError(promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, `expected an OpenAI.APIError, got ${e}`);
    return e;
  }
  assert.fail('the request succeeded but should have failed');
}

function assertErrorBody(e, status) {
  assert.equal(e.status, status, `status: ${e.message}`);
  assert.equal(typeof e.error, 'object', 'the body has an "error" object');
  assert.equal(typeof e.error.message, 'string');
  assert.ok(e.error.message.length > 0, 'error.message is not empty');
  assert.equal(typeof e.error.type, 'string');
}

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe('lmkit serve through the openai SDK', () => {
  let server;
  let api;
  const golden = goldenOnceUponATime();

  before(async () => {
    server = await startServer(['--parallel', '4']);
    api = client(server.url);
  });
  after(() => server && server.kill());

  it('lists the model', T, async () => {
    const page = await api.models.list();
    const models = page.data;
    assert.equal(models.length, 1);
    assert.equal(models[0].id, MODEL_ID);
    assert.equal(models[0].object, 'model');
    assert.equal(models[0].owned_by, 'lmkit');
    assert.equal(typeof models[0].created, 'number');
  });

  it('completes a string prompt greedily as llama2.c does, deterministically', T, async () => {
    const req = { model: MODEL_ID, prompt: PROMPT, max_tokens: 24, temperature: 0 };
    const a = await api.completions.create(req);
    assert.equal(a.object, 'text_completion');
    assert.equal(a.model, MODEL_ID);
    assert.equal(a.choices.length, 1);
    const text = a.choices[0].text;
    assert.ok(text.length > 0, 'non-empty completion');
    assert.ok(golden.startsWith(PROMPT + text),
              `greedy completion differs from llama2.c's:\n got: ${JSON.stringify(text)}\n` +
                  ` want a prefix of: ${JSON.stringify(golden.slice(PROMPT.length, 200))}`);
    assert.equal(a.choices[0].finish_reason, 'length');
    assert.equal(a.usage.completion_tokens, 24);
    assert.equal(a.usage.prompt_tokens, 5, 'BOS + 4 prompt tokens');
    assert.equal(a.usage.total_tokens, a.usage.prompt_tokens + a.usage.completion_tokens);
    const b = await api.completions.create(req);
    assert.equal(b.choices[0].text, text, 'temperature 0 is deterministic');
  });

  it('completes a token-id prompt like the same text', T, async () => {
    const ids = goldenIds().slice(0, 5);  // BOS, "Once upon a time"
    const [fromIds, fromText] = await Promise.all([
      api.completions.create({ model: MODEL_ID, prompt: ids, max_tokens: 16, temperature: 0 }),
      api.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: 16, temperature: 0 }),
    ]);
    assert.equal(fromIds.usage.prompt_tokens, ids.length);
    assert.equal(fromIds.usage.completion_tokens, 16);
    assert.equal(fromIds.choices[0].text, fromText.choices[0].text);
    assert.ok(golden.startsWith(PROMPT + fromIds.choices[0].text));
  });

  it('honours max_tokens', T, async () => {
    for (const n of [1, 5]) {
      const r = await api.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: n, temperature: 0 });
      assert.equal(r.usage.completion_tokens, n);
      assert.equal(r.choices[0].finish_reason, 'length');
      assert.ok(golden.startsWith(PROMPT + r.choices[0].text));
    }
  });

  it('stops at a stop string and leaves it out', T, async () => {
    const full = (await api.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: 40, temperature: 0 }))
                     .choices[0].text;
    // A stop string from the middle of the greedy text: the 4th word and the space before it.
    let at = -1;
    for (let k = 0, i = 0; k < 4; ++k) i = at = full.indexOf(' ', i + 1);
    assert.ok(at > 0, `the greedy text has at least 4 spaces: ${JSON.stringify(full)}`);
    const stop = full.slice(at, at + 6);
    const want = full.slice(0, full.indexOf(stop));
    const r = await api.completions.create({
      model: MODEL_ID, prompt: PROMPT, max_tokens: 40, temperature: 0, stop: ['<never>', stop],
    });
    assert.equal(r.choices[0].text, want, `stop ${JSON.stringify(stop)}`);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.completion_tokens < 40);
    const single = await api.completions.create({
      model: MODEL_ID, prompt: PROMPT, max_tokens: 40, temperature: 0, stop,
    });
    assert.equal(single.choices[0].text, want, 'stop as a single string');
  });

  it('returns n choices', T, async () => {
    const greedy = await api.completions.create({
      model: MODEL_ID, prompt: PROMPT, max_tokens: 8, temperature: 0, n: 2,
    });
    assert.deepEqual(greedy.choices.map((c) => c.index), [0, 1]);
    assert.equal(greedy.choices[0].text, greedy.choices[1].text, 'greedy choices agree');
    assert.equal(greedy.usage.completion_tokens, 16);
    const sampled = await api.completions.create({
      model: MODEL_ID, prompt: PROMPT, max_tokens: 8, temperature: 1, n: 2, seed: 5,
    });
    assert.equal(sampled.choices.length, 2);
    for (const c of sampled.choices) assert.ok(['stop', 'length'].includes(c.finish_reason));
  });

  it('returns logprobs for completions', T, async () => {
    const r = await api.completions.create({
      model: MODEL_ID, prompt: PROMPT, max_tokens: 6, temperature: 0, logprobs: 3,
    });
    const c = r.choices[0];
    const lp = c.logprobs;
    assert.ok(lp, 'logprobs present');
    assert.equal(lp.tokens.length, 6);
    assert.equal(lp.tokens.join(''), c.text);
    assert.equal(lp.token_logprobs.length, 6);
    assert.equal(lp.top_logprobs.length, 6);
    assert.equal(lp.text_offset.length, 6);
    for (let i = 0; i < 6; ++i) {
      const chosen = lp.token_logprobs[i];
      assert.ok(Number.isFinite(chosen) && chosen <= 0, `token_logprobs[${i}] = ${chosen}`);
      const top = Object.entries(lp.top_logprobs[i]);
      assert.equal(top.length, 3, `3 alternatives at ${i}`);
      for (const [, v] of top) {
        assert.ok(Number.isFinite(v) && v <= 0);
        assert.ok(chosen >= v - 1e-5, 'greedy picks the most likely token');
      }
      assert.ok(lp.tokens[i] in lp.top_logprobs[i], `the chosen token is among the top 3 at ${i}`);
      if (i > 0) assert.equal(lp.text_offset[i] - lp.text_offset[i - 1], lp.tokens[i - 1].length);
      assert.equal(c.text.substr(lp.text_offset[i], lp.tokens[i].length), lp.tokens[i],
                   `text_offset[${i}] points at tokens[${i}] in the text`);
    }
  });

  it('echoes the prompt', T, async () => {
    const r = await api.completions.create({
      model: MODEL_ID, prompt: PROMPT, max_tokens: 4, temperature: 0, echo: true,
    });
    const text = r.choices[0].text;
    assert.ok(text.startsWith(PROMPT), JSON.stringify(text));
    assert.ok(text.length > PROMPT.length);
    assert.ok(golden.startsWith(text), `echo + greedy is a prefix of llama2.c's output: ${JSON.stringify(text)}`);
    const withLp = await api.completions.create({
      model: MODEL_ID, prompt: PROMPT, max_tokens: 4, temperature: 0, echo: true, logprobs: 1,
    });
    const lp = withLp.choices[0].logprobs;
    assert.equal(withLp.choices[0].text, text);
    assert.equal(lp.tokens.join(''), text, 'echoed tokens spell the prompt and the completion');
    assert.equal(lp.token_logprobs[0], null, 'the first prompt token has no logprob');
    for (let i = 0; i < lp.tokens.length; ++i) {
      assert.equal(text.substr(lp.text_offset[i], lp.tokens[i].length), lp.tokens[i],
                   `text_offset[${i}] points at tokens[${i}] ${JSON.stringify(lp.tokens[i])} in the text`);
    }
    for (const v of lp.token_logprobs.slice(1)) assert.ok(Number.isFinite(v) && v <= 0);
  });

  const CHAT = [
    { role: 'system', content: 'You tell short stories.' },
    { role: 'user', content: 'Tell me a story about a cat.' },
  ];

  it('answers a chat, stopping at max_tokens', T, async () => {
    const r = await api.chat.completions.create({
      model: MODEL_ID, messages: CHAT, max_tokens: 8, temperature: 0,
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, MODEL_ID);
    assert.equal(typeof r.id, 'string');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.ok(r.choices[0].message.content.length > 0, 'non-empty reply');
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 8);
    assert.ok(r.usage.prompt_tokens > 10, 'the template and both messages are in the prompt');
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });

  it('streams the same reply as the non-streamed one', T, async () => {
    const req = { model: MODEL_ID, messages: CHAT, max_tokens: 40, temperature: 0, seed: 11 };
    const whole = await api.chat.completions.create(req);
    const stream = await api.chat.completions.create({ ...req, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length >= 2, `${chunks.length} chunks`);
    let content = '';
    for (const [i, ch] of chunks.entries()) {
      assert.equal(ch.object, 'chat.completion.chunk');
      assert.equal(ch.id, chunks[0].id, 'one id per stream');
      assert.equal(ch.model, MODEL_ID);
      if (!ch.choices.length) continue;  // a usage-only chunk
      const choice = ch.choices[0];
      if (choice.delta.role !== undefined) assert.equal(choice.delta.role, 'assistant');
      if (choice.delta.content) content += choice.delta.content;
      if (i < chunks.length - 1 && chunks[i + 1].choices.length) {
        assert.equal(choice.finish_reason, null, `only the last chunk finishes (chunk ${i})`);
      }
    }
    const last = chunks.filter((c) => c.choices.length).at(-1);
    assert.equal(last.choices[0].finish_reason, whole.choices[0].finish_reason);
    assert.equal(content, whole.choices[0].message.content);
  });

  it('reproduces a sampled reply from its seed', T, async () => {
    const req = { model: MODEL_ID, messages: CHAT, max_tokens: 24, temperature: 0.9, seed: 1234 };
    const a = await api.chat.completions.create(req);
    const b = await api.chat.completions.create(req);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  });

  it('returns chat logprobs', T, async () => {
    const r = await api.chat.completions.create({
      model: MODEL_ID, messages: CHAT, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2,
    });
    const items = r.choices[0].logprobs.content;
    assert.equal(items.length, r.usage.completion_tokens);
    assert.equal(items.map((t) => t.token).join(''), r.choices[0].message.content);
    for (const t of items) {
      assert.ok(Number.isFinite(t.logprob) && t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 2);
      assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
      assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5, 'greedy takes the top one');
    }
  });

  it('embeds strings as unit vectors', T, async () => {
    const one = await api.embeddings.create({ model: MODEL_ID, input: 'a cat sat on the mat', encoding_format: 'float' });
    assert.equal(one.object, 'list');
    assert.equal(one.data.length, 1);
    const v = one.data[0].embedding;
    assert.ok(Array.isArray(v) && v.length > 0);
    assert.ok(Math.abs(norm(v) - 1) < 1e-4, `norm ${norm(v)}`);
    assert.ok(one.usage.prompt_tokens > 0);

    const many = await api.embeddings.create({
      model: MODEL_ID, input: ['a cat sat on the mat', 'the dog ran', 'a cat sat on the mat'], encoding_format: 'float',
    });
    assert.deepEqual(many.data.map((d) => d.index), [0, 1, 2]);
    for (const d of many.data) {
      assert.equal(d.embedding.length, v.length);
      assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-4);
    }
    assert.deepEqual(many.data[0].embedding, many.data[2].embedding, 'same input, same vector');
    assert.deepEqual(many.data[0].embedding, v, 'same input, same vector across requests');
    assert.notDeepEqual(many.data[0].embedding, many.data[1].embedding);

    // The SDK asks for base64 unless told otherwise and decodes it to floats.
    const b64 = await api.embeddings.create({ model: MODEL_ID, input: 'a cat sat on the mat' });
    const w = Array.from(b64.data[0].embedding);
    assert.equal(w.length, v.length);
    for (let i = 0; i < v.length; ++i) assert.ok(Math.abs(w[i] - v[i]) < 1e-6, `base64 vs float at ${i}`);
  });

  it('serves concurrent requests like sequential ones', T, async () => {
    const req = { model: MODEL_ID, prompt: PROMPT, max_tokens: 32, temperature: 0 };
    const rs = await Promise.all([1, 2, 3, 4, 5].map(() => api.completions.create(req)));
    for (const r of rs) {
      assert.ok(golden.startsWith(PROMPT + r.choices[0].text), JSON.stringify(r.choices[0].text));
      assert.equal(r.usage.completion_tokens, 32);
    }
  });

  it('rejects bad parameters with 400 and an OpenAI error body', T, async () => {
    assertErrorBody(await apiError(api.completions.create({ model: MODEL_ID, prompt: PROMPT, temperature: -1 })), 400);
    assertErrorBody(await apiError(api.chat.completions.create({ model: MODEL_ID, messages: [] })), 400);
    assertErrorBody(await apiError(api.chat.completions.create({ model: MODEL_ID, messages: CHAT, temperature: -1 })), 400);
    const e = await apiError(api.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user' }] }));
    assertErrorBody(e, 400);
    // Not JSON at all.
    const r = await fetchT(`${server.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"messages": [',
    });
    assert.equal(r.status, 400);
    const body = await r.json();
    assert.equal(typeof body.error.message, 'string');
  });

  it('answers an unknown route with 404', T, async () => {
    const e = await apiError(api.get('/no-such-route'));
    assert.ok(e instanceof OpenAI.NotFoundError);
    assertErrorBody(e, 404);
  });

  it('reports health and metrics', T, async () => {
    const h = await fetchT(`${server.url}/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'ok' });
    const m = await fetchT(`${server.url}/metrics`);
    assert.equal(m.status, 200);
    const text = await m.text();
    assert.match(text, /^# (HELP|TYPE) /m, 'Prometheus text format');
  });

  it('drains and exits 0 on SIGTERM', T, async () => {
    await expectCleanExit(server);
  });
});

describe('lmkit serve --api-key', () => {
  let server;
  before(async () => {
    server = await startServer(['--api-key', 'sk-test-secret', '--parallel', '2']);
  });
  after(() => server && server.kill());

  it('refuses a wrong or missing key with 401', T, async () => {
    const e = await apiError(client(server.url, 'sk-wrong').models.list());
    assert.ok(e instanceof OpenAI.AuthenticationError);
    assertErrorBody(e, 401);
    const e2 = await apiError(client(server.url, 'sk-wrong').chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4,
    }));
    assertErrorBody(e2, 401);
    const r = await fetchT(`${server.url}/v1/models`);
    assert.equal(r.status, 401, 'no Authorization header');
  });

  it('serves the right key', T, async () => {
    const api = client(server.url, 'sk-test-secret');
    const models = await api.models.list();
    assert.equal(models.data[0].id, MODEL_ID);
    const r = await api.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 6, temperature: 0,
    });
    assert.equal(r.usage.completion_tokens, 6);
    const chunks = [];
    for await (const c of await api.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 6, temperature: 0, stream: true,
    })) chunks.push(c);
    const content = chunks.map((c) => (c.choices[0] && c.choices[0].delta.content) || '').join('');
    assert.equal(content, r.choices[0].message.content);
  });

  it('drains and exits 0 on SIGTERM', T, async () => {
    await expectCleanExit(server);
  });
});
