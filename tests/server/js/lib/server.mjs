// Test helper: starts the real `lmkit serve` binary (env LMKIT_BIN) on port 0 with the shared
// stories260K model, waits for its "listening on" line and stops it with SIGTERM, reporting the
// exit status. Not a test and not a mock: every request in the suites goes to the real server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const BIN = process.env.LMKIT_BIN || '';
export const SHARED = process.env.LMKIT_SHARED_DIR || '';
export const MODEL_DIR = path.join(SHARED, 'models', 'stories260K');
export const MODEL = path.join(MODEL_DIR, 'stories260K.bin');
export const TOKENIZER = path.join(MODEL_DIR, 'tok512.bin');
export const MODEL_ID = 'stories260K';

// What llama2.c's run.c prints greedily for "Once upon a time" (the prompt included).
export function goldenOnceUponATime() {
  return fs.readFileSync(path.join(MODEL_DIR, 'ref_greedy_once_upon_a_time_n256.txt'), 'utf8');
}
// The same run's token ids: BOS, the prompt's 4 tokens, then the greedy continuation.
export function goldenIds() {
  return fs
    .readFileSync(path.join(MODEL_DIR, 'ref_greedy_once_upon_a_time_n256.ids'), 'utf8')
    .trim()
    .split(/\s+/)
    .map(Number);
}

const READY = /lmkit serve: listening on (http:\/\/127\.0\.0\.1:(\d+))/;

// Starts `lmkit serve` with extra flags; resolves once it prints its address.
export async function startServer(extra = [], { readyTimeoutMs = 60000 } = {}) {
  if (!BIN) throw new Error('LMKIT_BIN is not set (the path of the lmkit binary)');
  // One thread unless told otherwise: the model is tiny, and ctest may run other work beside.
  const threads = process.env.LMKIT_E2E_THREADS || '1';
  const args = ['serve', '-m', MODEL, '--tokenizer', TOKENIZER, '--port', '0', '--threads', threads, ...extra];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 200000) stderr = stderr.slice(-100000);
  });
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`lmkit serve did not print its address within ${readyTimeoutMs} ms\n` +
                       `command: ${BIN} ${args.join(' ')}\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, readyTimeoutMs);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = READY.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${BIN}: ${e.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`lmkit serve exited before listening (code ${code}, signal ${signal})\n` +
                       `command: ${BIN} ${args.join(' ')}\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
  });

  let stopped = null;
  return {
    url,
    args,
    proc,
    stderr: () => stderr,
    // SIGTERM, then the exit status ({code, signal}); SIGKILL and an error after timeoutMs.
    stop(timeoutMs = 30000) {
      if (stopped) return stopped;
      stopped = (async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return exited;
        proc.kill('SIGTERM');
        let timer;
        const late = new Promise((resolve) => {
          timer = setTimeout(() => resolve(null), timeoutMs);
        });
        const r = await Promise.race([exited, late]);
        clearTimeout(timer);
        if (r === null) {
          proc.kill('SIGKILL');
          await exited;
          throw new Error(`lmkit serve did not exit within ${timeoutMs} ms of SIGTERM\nstderr: ${stderr}`);
        }
        return r;
      })();
      return stopped;
    },
    // For after() hooks: make sure nothing outlives the suite, whatever happened.
    kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}

// SIGTERM: the server drains and exits 0 (not killed by a signal).
export async function expectCleanExit(server) {
  const { code, signal } = await server.stop();
  assert.equal(signal, null, `killed by ${signal}; stderr:\n${server.stderr()}`);
  assert.equal(code, 0, `exit code; stderr:\n${server.stderr()}`);
}

// fetch with a deadline, so a stuck server fails the test instead of hanging it.
export async function fetchT(url, init = {}, timeoutMs = 30000) {
  return fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
}
