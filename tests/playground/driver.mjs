// Drives the Microsoft 365 Agents Playground's page with playwright-core and Debian's Chromium, for
// tests/support/playground.py. Commands come as JSON lines on stdin ({"id": 1, "cmd": "say", ...}); every
// answer is one JSON line on stdout ({"id": 1, "ok": true, ...} or {"id": 1, "ok": false, "error": "..."}).
// Commands: open, say {text, expect}, click {titles, expect}, wait_text {text, regex, count}, state, screenshot
// {path}, dump {path} (the page's HTML, to find selectors when the Playground changes), network, close; each
// takes a deadline in ms ({"timeout": 15000}). Selectors: the Playground's chat messages from the bot are
// .fai-OutputCard, Adaptive Cards .ac-adaptiveCard (Microsoft's renderer), the compose box a Lexical editor.
//
// Nothing leaves the machine: Chromium's own traffic goes to the loopback sink given as --proxy, and every
// request of the page to a host other than 127.0.0.1/localhost is aborted (and listed by `network`).
//
//   node driver.mjs --url http://127.0.0.1:PORT/ --chromium /usr/bin/chromium --proxy http://127.0.0.1:SINK
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);
const aborted = [];       // non-loopback requests the page tried; all were aborted
const escaped = [];       // non-loopback requests that got an answer: must stay empty
let browser, page;
let baseline = 0;         // how many cards were on the page before the last message or click

const isLoopback = (url) => {
  try {
    const u = new URL(url);
    return u.protocol === "data:" || u.protocol === "blob:" || LOOPBACK.has(u.hostname);
  } catch {
    return false;
  }
};
const norm = (s) => (s || "").replace(/\s+/g, " ").trim().toLowerCase();
const cards = () => page.locator(".ac-adaptiveCard");
const botMessages = () => page.locator(".fai-OutputCard");     // one per message from the bot

async function open({ timeout = 20000 }) {
  browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    proxy: { server: args.proxy, bypass: "127.0.0.1,localhost" },
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
      "--disable-domain-reliability", "--disable-sync", "--no-pings", "--no-first-run"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 }, locale: "nl-NL" });
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (isLoopback(url)) return route.continue();
    aborted.push(url);
    return route.abort("blockedbyclient");
  });
  page.on("requestfinished", (request) => { if (!isLoopback(request.url())) escaped.push(request.url()); });
  await page.goto(args.url, { timeout });
  await page.getByText("Personal Chat", { exact: true }).first().click({ timeout });
  await compose().waitFor({ state: "visible", timeout });
  return {};
}

// The compose box: a Lexical editor (contenteditable), its placeholder a span beside it.
const compose = () => page.locator("[data-lexical-editor=true], [contenteditable=true][role=textbox]").first();

// Type a message and send it; with `expect`, wait until a message of the bot that came after it shows
// that text (whitespace and case aside).
async function say({ text, expect, timeout = 15000 }) {
  baseline = await cards().count();
  const before = await botMessages().count();
  const box = compose();
  await box.fill(text, { timeout });
  await box.press("Enter", { timeout });
  const replies = expect ? await reply({ expect, after: before, timeout }) : [];
  return { replies, cards: (await cards().count()) - baseline };
}

async function reply({ expect, after, timeout }) {
  const deadline = Date.now() + timeout;
  let shown = [];
  while (Date.now() < deadline) {
    const count = await botMessages().count();
    shown = [];
    for (let i = after; i < count; i++) shown.push(await botMessages().nth(i).innerText());
    if (shown.some((s) => norm(s).includes(norm(expect)))) return shown;
    await page.waitForTimeout(100);
  }
  throw new Error(`no reply showing ${JSON.stringify(expect)} within ${timeout} ms; new replies: ${JSON.stringify(shown)}`);
}

// The buttons of the cards that arrived after the last message or click, newest card last.
async function newButtons() {
  const count = await cards().count();
  const found = [];
  for (let i = baseline; i < count; i++) {
    const buttons = cards().nth(i).locator("button, [role=button]");
    const n = await buttons.count();
    for (let j = 0; j < n; j++) {
      const button = buttons.nth(j);
      const title = ((await button.getAttribute("title")) || (await button.innerText()) || "").trim();
      if (title) found.push({ card: i, title, button });
    }
  }
  return found;
}

// Press the button whose title is one of `titles` (in order of preference: an exact title first, then a
// title that contains one), in a card that came after the last action. Waits until such a card is there.
async function click({ titles, expect, timeout = 15000 }) {
  const wanted = titles.map(norm).filter(Boolean);
  const deadline = Date.now() + timeout;
  let seen = [];
  while (Date.now() < deadline) {
    const found = await newButtons();
    seen = found.map((f) => f.title);
    const pick = (test) => {
      for (const w of wanted) {
        const hit = [...found].reverse().find((f) => test(norm(f.title), w));
        if (hit) return hit;
      }
      return null;
    };
    const hit = pick((t, w) => t === w) || pick((t, w) => t.includes(w));
    if (hit) {
      const before = await cards().count();
      const messages = await botMessages().count();
      await hit.button.click({ timeout: Math.max(1000, deadline - Date.now()) });
      baseline = before;
      const replies = expect ? await reply({ expect, after: messages, timeout: Math.max(1000, deadline - Date.now()) }) : [];
      return { clicked: hit.title, buttons: seen, replies, cards: (await cards().count()) - before };
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`no button titled ${JSON.stringify(titles)} in a new card; new buttons: ${JSON.stringify(seen)}`);
}

// Wait until the chat shows `text` (a regular expression when `regex`), at least `count` times.
async function waitText({ text, regex = false, count = 1, timeout = 15000 }) {
  const deadline = Date.now() + timeout;
  const pattern = regex ? new RegExp(text, "g") : null;
  let body = "";
  while (Date.now() < deadline) {
    body = await page.locator("body").innerText();
    const hits = pattern ? (body.match(pattern) || []) : body.split(text).slice(1);
    if (hits.length >= count) return { matches: pattern ? hits : [], cards: await cards().count() };
    await page.waitForTimeout(100);
  }
  throw new Error(`the page did not show ${JSON.stringify(text)} ${count}x within ${timeout} ms; it ends with: ` +
    JSON.stringify(body.slice(-600)));
}

// What the chat shows: every card's text and buttons, and the page's text.
async function state() {
  const all = [];
  const count = await cards().count();
  for (let i = 0; i < count; i++) {
    const card = cards().nth(i);
    const buttons = await card.locator("button, [role=button]").allInnerTexts();
    all.push({ text: await card.innerText(), buttons: buttons.map((b) => b.trim()).filter(Boolean) });
  }
  return { cards: all, body: await page.locator("body").innerText() };
}

async function screenshot({ path }) {
  await page.screenshot({ path, fullPage: true });
  return { path };
}

async function dump({ path }) {
  (await import("node:fs")).writeFileSync(path, await page.content());
  return { path };
}

const network = async () => ({ aborted, escaped });

async function close() {
  if (browser) await browser.close();
  browser = null;
  return {};
}

const commands = { open, say, click, wait_text: waitText, state, screenshot, network, close, dump };
const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    let request;
    try {
      request = JSON.parse(line);
    } catch {
      return;
    }
    const { id, cmd, ...params } = request;
    try {
      if (!commands[cmd]) throw new Error(`unknown command ${cmd}`);
      const result = await commands[cmd](params);
      process.stdout.write(JSON.stringify({ id, ok: true, ...result }) + "\n");
    } catch (error) {
      process.stdout.write(JSON.stringify({ id, ok: false, error: String(error && error.stack || error) }) + "\n");
    }
  });
});
lines.on("close", () => { queue.then(close).then(() => process.exit(0)); });
