// Shared by the page tests: Debian's chromium driven headless by playwright-core, console
// errors collected, axe-core run inside the page, screenshots saved.
//
// A page test is a Node script run by a Rust test (`tests/browser.rs`'s `run_script`), which
// passes its inputs as JSON in argv[2] and reads one JSON object printed on the last line of
// stdout. Every failure is an exception, so the script exits non-zero with a message.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(process.env.CANARYD_NODE_MODULES + '/');
const { chromium } = require('playwright-core');
const axePath = require.resolve('axe-core/axe.min.js');

export function args() {
  return JSON.parse(process.argv[2] || '{}');
}

// Starts chromium. `httpCredentials` (basic auth) and the viewport are per context.
export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}

// A page that records what a person would not see: console errors, page errors, failed
// requests and CSP violations (which chromium reports as console errors).
export async function watchedPage(context) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  return { page, problems };
}

// Runs axe-core in the page (injected through the DevTools protocol, so the page's CSP does not
// apply) and returns the violations of impact serious or critical, one line each.
export async function seriousViolations(page) {
  await page.addScriptTag({ path: axePath }).catch(async () => {
    // A strict CSP refuses script tags: evaluate the source instead (CDP is not subject to CSP).
    const { readFileSync } = await import('node:fs');
    await page.evaluate(readFileSync(axePath, 'utf8'));
  });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact}: ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')})`);
}

// Saves a full-page screenshot under `dir` (the test's artefact directory) and returns its path.
export async function screenshot(page, dir, name) {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

// Whether the page is usable at this width: nothing wider than the viewport (no sideways
// scrolling).
export async function overflowsWidth(page) {
  return page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
}

export function done(result) {
  console.log(JSON.stringify(result));
}
