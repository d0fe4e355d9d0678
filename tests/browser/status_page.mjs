// One page of the public status page as a person sees it, at each width asked for: what the
// page says (title, banner, components with their status and bars, incidents, timeline), whether
// a planted script ran, console errors and CSP violations, serious/critical axe violations,
// sideways overflow, whether the stylesheet applied, and a full-page screenshot.
//
// Input (argv[2], JSON): { url, dir, name, widths: [1280, 375] }.
// Output: one JSON line { views: [{ width, status, ... }] }.
import { args, browser, watchedPage, seriousViolations, screenshot, overflowsWidth, done } from './lib.mjs';

const { url, dir, name, widths = [1280, 375] } = args();
const b = await browser();
const views = [];
try {
  for (const width of widths) {
    const context = await b.newContext({ viewport: { width, height: 900 } });
    const { page, problems } = await watchedPage(context);
    const response = await page.goto(url, { waitUntil: 'load', timeout: 15000 });
    const seen = await page.evaluate(() => {
      const text = (el) => (el ? el.innerText.trim() : null);
      const all = (sel, f) => [...document.querySelectorAll(sel)].map(f);
      const banner = document.querySelector('.banner');
      return {
        title: document.title,
        h1: text(document.querySelector('h1')),
        banner: text(banner),
        // The stylesheet applied (a CSP refusal or a wrong Content-Type would leave it unstyled).
        styled: banner ? getComputedStyle(banner).color === 'rgb(255, 255, 255)' : getComputedStyle(document.body).margin === '0px',
        components: all('.component', (c) => ({
          name: text(c.querySelector('.component-name')),
          status: text(c.querySelector('.component-status')),
          description: text(c.querySelector('.component-description')),
          uptime: text(c.querySelector('.uptime')),
          days: c.querySelectorAll('.bars .day').length,
          day_texts: [...c.querySelectorAll('.bars .day')].map((d) => d.getAttribute('title')),
          day_width: c.querySelector('.bars .day') ? c.querySelector('.bars .day').getBoundingClientRect().width : 0,
        })),
        incidents: all('.incident', (i) => ({
          title: text(i.querySelector('h3, h4')),
          state: text(i.querySelector('.state')),
          body: text(i.querySelector('.body')),
          affects: text(i.querySelector('.affects')),
          link: i.querySelector('a') ? i.querySelector('a').href : null,
        })),
        timeline: all('.timeline li', (li) => ({
          state: text(li.querySelector('.update-state')),
          when: text(li.querySelector('.when')),
          datetime: li.querySelector('time') ? li.querySelector('time').getAttribute('datetime') : null,
          body: text(li.querySelector('.body')),
        })),
        past_days: all('.past-day h3', (h) => text(h)),
        text: document.body.innerText,
        pwned: window.__pwned === undefined ? null : String(window.__pwned),
        scripts: document.querySelectorAll('script').length,
      };
    });
    const overflow = await overflowsWidth(page);
    // What went wrong while the page loaded and rendered (axe's injection below is not the page's).
    const pageProblems = [...problems];
    const violations = await seriousViolations(page);
    const shot = await screenshot(page, dir, `${name}-${width}`);
    views.push({ width, status: response ? response.status() : 0, ...seen, overflow, violations, problems: pageProblems, screenshot: shot });
    await context.close();
  }
} finally {
  await b.close();
}
done({ views });
