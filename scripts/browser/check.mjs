import { chromium } from 'playwright-core';
const base = process.argv[2];
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const page = await browser.newPage();
const text = async () => (await page.textContent('body')).replace(/\s+/g, ' ').trim();
await page.goto(base + '/'); console.log('1:', await text());
await page.goto(base + '/login');
await page.fill('input[name=username]', '<b>Ann & Bob</b>');
await page.click('input[type=submit]');
console.log('2:', await text(), '| url', page.url());
await page.reload(); console.log('3:', await text());
const cookies = await page.context().cookies();
console.log('cookie:', cookies.map(c => `${c.name} secure=${c.secure} httpOnly=${c.httpOnly} sameSite=${c.sameSite}`).join(', '));
await page.click('form[action="/logout"] button'); console.log('4:', await text());
await browser.close();
