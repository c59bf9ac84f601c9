// Runs the end-to-end suites with `node --test` after checking what they need: the lmkit binary
// (env LMKIT_BIN), the shared stories260K model (env LMKIT_SHARED_DIR, else
// LMKIT_SHARED_DIR_DEFAULT; absent: exit 77, which ctest reports as skipped) and the npm
// packages (absent: fail, telling to run scripts/setup.sh).
// Usage: node run.mjs FILE.test.mjs...   Not a test runner of its own; a watchdog kills a hung run.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const files = process.argv.slice(2);
const fail = (msg, code = 1) => {
  console.error(`server e2e: ${msg}`);
  process.exit(code);
};
if (!files.length) fail('usage: node run.mjs FILE.test.mjs...');

// The environment wins over the build's default (LMKIT_SHARED_DIR_DEFAULT, set by ctest).
const shared = process.env.LMKIT_SHARED_DIR || process.env.LMKIT_SHARED_DIR_DEFAULT;
if (shared) process.env.LMKIT_SHARED_DIR = shared;
const model = shared && path.join(shared, 'models', 'stories260K', 'stories260K.bin');
if (!model || !fs.existsSync(model)) {
  fail(`SKIPPED: the shared test model is absent (${model || 'LMKIT_SHARED_DIR is not set'}); ` +
       'set LMKIT_SHARED_DIR to the folder holding models/stories260K', 77);
}
const bin = process.env.LMKIT_BIN;
if (!bin || !fs.existsSync(bin)) fail(`LMKIT_BIN does not name the lmkit binary (${bin || 'unset'})`);

const lock = JSON.parse(fs.readFileSync(path.join(here, 'package.json'), 'utf8'));
for (const dep of Object.keys(lock.devDependencies || {})) {
  if (!fs.existsSync(path.join(here, 'node_modules', dep, 'package.json'))) {
    fail(`the npm package "${dep}" is not installed in ${path.join(here, 'node_modules')}: ` +
         'run scripts/setup.sh (it runs `npm ci` in tests/server/js)');
  }
}

const major = Number(process.versions.node.split('.')[0]);
if (major < 18) fail(`node ${process.versions.node} is too old: the suites need node 18 or newer`);

const watchdogMs = Number(process.env.LMKIT_E2E_WATCHDOG_MS || 540000);
// Its own process group, so the watchdog also reaches the servers and browsers the suites start.
const child = spawn(process.execPath, ['--test', '--test-reporter=spec', ...files], {
  cwd: here,
  stdio: 'inherit',
  detached: true,
});
const killAll = () => {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
};
const watchdog = setTimeout(() => {
  console.error(`server e2e: still running after ${watchdogMs} ms; killing it`);
  killAll();
}, watchdogMs);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(1);
  });
}
child.on('exit', (code) => {
  clearTimeout(watchdog);
  process.exit(code === null || code === 77 ? 1 : code);
});
