// lmkit chat page logic: keeps the conversation in the browser, sends it to
// /v1/chat/completions with stream: true and renders the reply as the server-sent events
// arrive (fetch + ReadableStream), with Stop (AbortController), settings kept in localStorage,
// an optional API key sent as a Bearer token, and the server's error messages shown inline.
// Not a general OpenAI client: it uses only the routes and fields lmkit serve implements.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    modelName: $('model-name'),
    modelCtx: $('model-ctx'),
    statusDot: $('status-dot'),
    messages: $('messages'),
    emptyHint: $('empty-hint'),
    composer: $('composer'),
    prompt: $('prompt'),
    send: $('send'),
    stop: $('stop'),
    newChat: $('new-chat'),
    settingsToggle: $('settings-toggle'),
    settings: $('settings'),
    system: $('system-prompt'),
    temperature: $('temperature'),
    temperatureValue: $('temperature-value'),
    topP: $('top-p'),
    topPValue: $('top-p-value'),
    maxTokens: $('max-tokens'),
    seed: $('seed'),
    apiKey: $('api-key'),
  };

  const SETTINGS_KEY = 'lmkit.chat.settings';
  const API_KEY_KEY = 'lmkit.chat.apiKey';

  // The committed conversation: {role, content} turns the next request replays.
  let conversation = [];
  let modelId = null;
  let controller = null;  // AbortController of the reply being streamed, or null

  // ---- storage --------------------------------------------------------------------------

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;  // storage disabled (private mode, file://): settings just do not persist
    }
  }
  function storageSet(key, value) {
    try {
      if (value === null || value === '') window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch {
      /* not persisted; the page still works */
    }
  }

  function loadSettings() {
    let s = {};
    try {
      s = JSON.parse(storageGet(SETTINGS_KEY) || '{}') || {};
    } catch {
      s = {};
    }
    if (typeof s.system === 'string') els.system.value = s.system;
    if (typeof s.temperature === 'number') els.temperature.value = String(s.temperature);
    if (typeof s.top_p === 'number') els.topP.value = String(s.top_p);
    if (typeof s.max_tokens === 'number') els.maxTokens.value = String(s.max_tokens);
    if (typeof s.seed === 'number') els.seed.value = String(s.seed);
    els.apiKey.value = storageGet(API_KEY_KEY) || '';
    showSliderValues();
  }

  function saveSettings() {
    const s = {
      system: els.system.value,
      temperature: Number(els.temperature.value),
      top_p: Number(els.topP.value),
      max_tokens: Number(els.maxTokens.value),
    };
    if (els.seed.value !== '') s.seed = Number(els.seed.value);
    storageSet(SETTINGS_KEY, JSON.stringify(s));
  }

  function showSliderValues() {
    els.temperatureValue.textContent = Number(els.temperature.value).toFixed(2);
    els.topPValue.textContent = Number(els.topP.value).toFixed(2);
  }

  // ---- HTTP -----------------------------------------------------------------------------

  function headers() {
    const h = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' };
    const key = els.apiKey.value.trim();
    if (key) h.Authorization = 'Bearer ' + key;
    return h;
  }

  // The server's error.message from an error response, or the best description available.
  async function errorText(response) {
    let text = '';
    try {
      text = await response.text();
      const body = JSON.parse(text);
      if (body && body.error && typeof body.error.message === 'string') {
        return body.error.message;
      }
    } catch {
      /* not JSON: fall through */
    }
    const status = `HTTP ${response.status}${response.statusText ? ' ' + response.statusText : ''}`;
    return text ? `${status}: ${text.slice(0, 300)}` : status;
  }

  function setModelState(state, text) {
    els.modelCtx.textContent = '';
    els.modelName.dataset.state = state;
    els.statusDot.dataset.state = state;
    els.modelName.textContent = text;
    els.modelName.title = text;
  }

  let modelsRequest = 0;
  async function loadModel() {
    const mine = ++modelsRequest;
    setModelState('pending', 'connecting…');
    try {
      const r = await fetch('/v1/models', { headers: headers() });
      if (mine !== modelsRequest) return;
      if (!r.ok) {
        const msg = await errorText(r);
        if (mine !== modelsRequest) return;
        if (r.status === 401) {
          setModelState('error', 'API key needed');
          openSettings(true);
          els.apiKey.focus();
        } else {
          setModelState('error', msg);
        }
        modelId = null;
        return;
      }
      const body = await r.json();
      if (mine !== modelsRequest) return;
      const first = body && Array.isArray(body.data) && body.data[0];
      if (!first || typeof first.id !== 'string') throw new Error('the server lists no model');
      modelId = first.id;
      setModelState('ready', modelId);
      els.modelCtx.textContent =
          Number.isInteger(first.context_length) ? `${first.context_length} tokens of context` : '';
      document.title = `${modelId} · lmkit chat`;
    } catch (e) {
      if (mine !== modelsRequest) return;
      modelId = null;
      setModelState('error', `server unreachable (${e.message})`);
    }
  }

  // Server-sent events over a fetch body: calls onData(payload) for every event's data (data:
  // lines joined by "\n"), ignoring comments and other fields. Resolves when the body ends.
  async function readEvents(body, onData) {
    const reader = body.getReader();
    const decoder = new TextDecoder('utf-8');
    let buffer = '';
    let data = [];
    const line = (raw) => {
      const l = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (l === '') {
        if (data.length) onData(data.join('\n'));
        data = [];
      } else if (l.startsWith('data:')) {
        data.push(l.slice(l[5] === ' ' ? 6 : 5));
      }
      // ':' comments, event:, id: and retry: carry nothing this page uses.
    };
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        line(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
      if (done) break;
    }
    if (buffer) line(buffer);
    line('');  // an unterminated last event still counts
  }

  // ---- rendering ------------------------------------------------------------------------

  function nearBottom() {
    const m = els.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }
  function scrollDown(force) {
    if (force || nearBottom()) els.messages.scrollTop = els.messages.scrollHeight;
  }

  function addMessage(role, text, cls) {
    els.emptyHint.hidden = true;
    const wrap = document.createElement('article');
    wrap.className = `msg ${cls || role}`;
    const label = document.createElement('div');
    label.className = 'role';
    label.textContent = role === 'user' ? 'You' : role === 'assistant' ? modelId || 'Assistant' : 'Error';
    const content = document.createElement('div');
    content.className = 'content';
    content.textContent = text;
    const meta = document.createElement('div');
    meta.className = 'meta';
    wrap.append(label, content, meta);
    els.messages.append(wrap);
    scrollDown(true);
    return { wrap, content, meta };
  }

  function setBusy(busy) {
    els.send.disabled = busy;
    els.stop.disabled = !busy;
    document.body.dataset.busy = busy ? 'true' : 'false';
  }

  function openSettings(open) {
    els.settings.hidden = !open;
    els.settingsToggle.setAttribute('aria-expanded', String(open));
  }

  // ---- sending --------------------------------------------------------------------------

  function requestBody(messages) {
    const body = {
      messages,
      stream: true,
      stream_options: { include_usage: true },  // a last chunk with the token counts
      temperature: Number(els.temperature.value),
      top_p: Number(els.topP.value),
    };
    if (modelId) body.model = modelId;
    const maxTokens = parseInt(els.maxTokens.value, 10);
    if (Number.isFinite(maxTokens)) body.max_tokens = maxTokens;
    const seed = parseInt(els.seed.value, 10);
    if (Number.isFinite(seed)) body.seed = seed;
    return body;
  }

  async function send(text) {
    if (controller) return;
    const userTurn = { role: 'user', content: text };
    const messages = [];
    const system = els.system.value.trim();
    if (system) messages.push({ role: 'system', content: system });
    messages.push(...conversation, userTurn);

    const user = addMessage('user', text);
    const reply = addMessage('assistant', '');
    reply.wrap.dataset.state = 'streaming';
    reply.wrap.setAttribute('aria-busy', 'true');
    const textNode = document.createTextNode('');
    reply.content.append(textNode);

    controller = new AbortController();
    setBusy(true);
    const started = performance.now();
    let firstAt = 0;
    let chunks = 0;
    let finish = null;
    let sawDone = false;
    let state = 'done';
    let error = null;
    let usage = null;

    try {
      const r = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: headers(),
        body: JSON.stringify(requestBody(messages)),
        signal: controller.signal,
      });
      if (!r.ok) throw new Error(await errorText(r));
      if (!r.body) throw new Error('the response has no body to stream');
      await readEvents(r.body, (payload) => {
        if (payload === '[DONE]') {
          sawDone = true;
          return;
        }
        let chunk;
        try {
          chunk = JSON.parse(payload);
        } catch {
          throw new Error(`unreadable event from the server: ${payload.slice(0, 200)}`);
        }
        if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) return;
        let piece = choice.delta && choice.delta.content;
        if (piece) {
          if (!firstAt) firstAt = performance.now();
          chunks += 1;
          // Tokenizers often start a reply with a space ("▁Once"); the bubble needs none.
          if (!textNode.data) piece = piece.replace(/^\s+/, '');
        }
        if (piece) {
          const follow = nearBottom();
          textNode.appendData(piece);
          scrollDown(follow);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      });
      if (!sawDone && !finish) throw new Error('the stream ended before the reply finished');
    } catch (e) {
      if (e.name === 'AbortError') {
        state = 'stopped';
      } else {
        state = 'error';
        error = e.message || String(e);
        controller.abort();  // a failure while reading: release the connection
      }
    } finally {
      controller = null;
      setBusy(false);
    }

    const seconds = (performance.now() - started) / 1000;
    const content = textNode.data;
    reply.wrap.dataset.state = state;
    reply.wrap.removeAttribute('aria-busy');
    if (state === 'error') {
      if (content) {
        // Part of a reply arrived before the failure: keep it visible, flag it, forget it.
        reply.meta.textContent = 'incomplete';
      } else {
        reply.wrap.remove();
      }
      const err = addMessage('error', error, 'error');
      err.wrap.setAttribute('role', 'alert');
      err.wrap.dataset.state = 'error';
      user.meta.textContent = 'not sent: edit and send again';
      if (!els.prompt.value) els.prompt.value = text;
      if (/api key/i.test(error) || /unauthori[sz]ed/i.test(error)) openSettings(true);
      return;
    }
    conversation.push(userTurn, { role: 'assistant', content });
    const parts = [];
    if (state === 'stopped') parts.push('stopped');
    else if (finish === 'length') parts.push('reached max tokens');
    else if (finish) parts.push(`finished (${finish})`);
    if (!content) parts.push('empty reply');
    const tokens = usage && usage.completion_tokens ? usage.completion_tokens : chunks;
    if (tokens) {
      parts.push(`${tokens} ${usage ? 'tokens' : 'chunks'}`);
      const decodeSeconds = firstAt ? (performance.now() - firstAt) / 1000 : 0;
      if (decodeSeconds > 0 && tokens > 1) parts.push(`${((tokens - 1) / decodeSeconds).toFixed(0)}/s`);
    }
    parts.push(`${seconds.toFixed(2)} s`);
    reply.meta.textContent = parts.join(' · ');
    reply.wrap.dataset.finish = finish || '';
  }

  // ---- wiring ---------------------------------------------------------------------------

  els.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = els.prompt.value.trim();
    if (!text || controller) return;
    els.prompt.value = '';
    send(text);
  });
  els.prompt.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      els.composer.requestSubmit();
    }
  });
  els.stop.addEventListener('click', () => {
    if (controller) controller.abort();
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && controller) controller.abort();
  });
  els.newChat.addEventListener('click', () => {
    if (controller) controller.abort();
    conversation = [];
    for (const m of [...els.messages.querySelectorAll('.msg')]) m.remove();
    els.emptyHint.hidden = false;
    els.prompt.focus();
  });
  els.settingsToggle.addEventListener('click', () => openSettings(els.settings.hidden));
  for (const el of [els.system, els.temperature, els.topP, els.maxTokens, els.seed]) {
    el.addEventListener('input', () => {
      showSliderValues();
      saveSettings();
    });
  }
  els.apiKey.addEventListener('change', () => {
    storageSet(API_KEY_KEY, els.apiKey.value.trim());
    loadModel();
  });

  loadSettings();
  setBusy(false);
  loadModel();
  els.prompt.focus();
})();
