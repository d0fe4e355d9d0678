// The operator view in Chromium, as the person on call uses it (run by tests/operator_view.rs).
// Input (argv[2], JSON): base, user, password, pages (paths), artefacts (screenshot dir).
// Prints one JSON object: per page and width what a person would see and what went wrong, the
// overview's check order, the login check's waterfall, and the silence added then expired
// through the forms.
import { args, browser, watchedPage, seriousViolations, screenshot, overflowsWidth, done } from './lib.mjs';

const input = args();
const b = await browser();
const out = { pages: [], dialogs: [], overview: {}, waterfall: {}, silence: {} };

function context(width) {
  return b.newContext({
    httpCredentials: { username: input.user, password: input.password, send: 'always' },
    viewport: { width, height: 900 },
  });
}

function watchDialogs(page) {
  // A planted script that ran would most likely alert, or set window.__pwned.
  page.on('dialog', async (d) => {
    out.dialogs.push(d.message());
    await d.dismiss();
  });
}

// Polls `probe` (reloading the page) until it returns true, for at most `ms`.
async function until(page, ms, probe) {
  const end = Date.now() + ms;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() > end) return false;
    await page.waitForTimeout(250);
    await page.reload();
  }
}

// What a person would see of the page now, then axe's verdict. Problems are taken before axe:
// injecting axe is refused by the page's CSP (then evaluated through the DevTools protocol),
// which chromium reports as a console error of axe's making, not the page's.
async function look(page, problems, name, status) {
  await page.waitForLoadState('load');
  const seen = {
    name,
    status,
    overflows: await overflowsWidth(page),
    pwned: await page.evaluate(() => window.__pwned ?? null),
    scripts: await page.evaluate(() => document.querySelectorAll('script').length),
    screenshot: await screenshot(page, input.artefacts, name),
    problems: problems.splice(0),
  };
  seen.axe = await seriousViolations(page);
  problems.splice(0);
  return seen;
}

// Clicks `button` and waits for the answer to its POST and the page it leads to.
async function submit(page, button) {
  const [posted] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    button.click(),
  ]);
  await page.waitForLoadState('load');
  if (posted.status() !== 303) {
    throw new Error(`the form's POST answered ${posted.status()}: ${await posted.text().catch(() => '')} (request headers: ${JSON.stringify(await posted.request().allHeaders())})`);
  }
  return { url: page.url(), post_status: posted.status(), post_text: posted.status() === 303 ? '' : await posted.text().catch(() => '') };
}

try {
  for (const [width, tag] of [[1280, 'wide'], [375, 'narrow']]) {
    const ctx = await context(width);
    const { page, problems } = await watchedPage(ctx);
    watchDialogs(page);
    for (const path of input.pages) {
      const resp = await page.goto(input.base + path);
      const name = `${tag}${path.replaceAll('/', '-').replace(/-$/, '')}`;
      out.pages.push(await look(page, problems, name, resp.status()));
    }
    await ctx.close();
  }

  const ctx = await context(1280);
  const { page, problems } = await watchedPage(ctx);
  watchDialogs(page);

  // The overview: check names in table order.
  await page.goto(input.base + '/ui/');
  out.overview.checks = await page.$$eval('section[aria-labelledby="checks"] tbody tr td[data-label="Check"]', (tds) => tds.map((td) => td.innerText.trim()));
  out.overview.statuses = await page.$$eval('section[aria-labelledby="checks"] tbody tr td[data-label="Status"]', (tds) => tds.map((td) => td.innerText.trim()));
  out.overview.text = await page.innerText('main');

  // The login check: its last run's waterfall and its last runs.
  await page.goto(input.base + '/ui/checks/demo-login');
  out.waterfall.steps = await page.$$eval('section[aria-labelledby="steps"] .waterfall .wf-name', (els) => els.map((e) => e.innerText.trim()));
  out.waterfall.legend = await page.$$eval('section[aria-labelledby="steps"] ul.legend li', (els) => els.map((e) => e.innerText.trim()));
  out.waterfall.phase_bars_per_step = await page.$$eval('section[aria-labelledby="steps"] .waterfall .wf-row', (rows) =>
    rows.map((r) => [...r.querySelectorAll('rect')].filter((x) => x.getAttribute('class').startsWith('ph-') && x.getBoundingClientRect().width > 0).length));
  out.waterfall.widest_bar_px = await page.$$eval('section[aria-labelledby="steps"] .waterfall rect', (rects) =>
    Math.max(0, ...rects.map((x) => x.getBoundingClientRect().width)));
  out.waterfall.runs = await page.$$eval('section[aria-labelledby="runs"] .wf-row', (rows) => rows.length);
  out.waterfall.table_text = await page.innerText('table.phases');

  await page.goto(input.base + '/ui/checks/echo-api');
  out.echo_text = await page.innerText('main');

  // A silence through the form, for the firing echo alert.
  const alertCard = () => page.locator('article', { hasText: 'echo-api · EchoFailing' });
  await page.goto(input.base + '/ui/silences');
  await page.fill('#matchers', 'check=echo-api\nalertname=EchoFailing');
  await page.fill('#duration', '1h');
  await page.fill('#comment', '<b>maintenance</b> of the echo target');
  const added = await submit(page, page.locator('button', { hasText: 'Add silence' }));
  out.silence.after_add_url = added.url;
  out.silence.add_status = added.post_status;
  out.silence.listed = await page.innerText('section[aria-labelledby="active"]');
  // The list with a silence and its Expire button, as seen and as axe judges it.
  out.pages.push(await look(page, problems, 'wide-silences-after-add', 200));

  await page.goto(input.base + '/ui/alerts');
  out.silence.alert_silenced = await until(page, 5000, async () =>
    (await alertCard().innerText()).includes('yes: it notifies nobody now'));

  await page.goto(input.base + '/ui/silences');
  const card = page.locator('article.silence', { hasText: 'check=echo-api' });
  const expired = await submit(page, card.locator('button', { hasText: 'Expire' }));
  out.silence.after_expire_url = expired.url;
  out.silence.expire_status = expired.post_status;
  out.silence.gone = (await page.locator('article.silence').count()) === 0
    && (await page.innerText('section[aria-labelledby="active"]')).includes('No silence is active or pending.');
  await page.goto(input.base + '/ui/alerts');
  out.silence.alert_unsilenced = await until(page, 5000, async () => {
    const text = await alertCard().innerText();
    return /Silenced\s+no/.test(text);
  });
  out.pages.push(await look(page, problems, 'wide-alerts-after-expire', 200));
  await ctx.close();
} finally {
  await b.close();
}
done(out);
