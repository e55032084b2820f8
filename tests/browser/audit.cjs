// Every page type of the account pages, audited: a screenshot at 390 px and at 1280 px,
// the Nu HTML Checker on its HTML (0 errors), and Lighthouse 12 (accessibility >= 98, best
// practices 100) on every page type a browser reaches with GET.
//
// Run by tests/tests/pages.rs after journey.cjs, which leaves CAIRN_WORK/state.json (the
// project's and team's addresses and ada's cookies). Needs CAIRN_URL, CAIRN_WORK,
// CAIRN_CHROMIUM, CAIRN_BROWSER_TOOLS, CAIRN_JAVA, CAIRN_VNU_JAR; screenshots go to
// CAIRN_SCREENSHOTS. Prints one line per page and check; exits non-zero if any check fails.
"use strict";

const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { pathToFileURL } = require("node:url");

const tools = process.env.CAIRN_BROWSER_TOOLS;
const { chromium } = require(path.join(tools, "node_modules", "playwright-core"));
const base = process.env.CAIRN_URL;
const work = process.env.CAIRN_WORK;
const shots = process.env.CAIRN_SCREENSHOTS;
const state = JSON.parse(fs.readFileSync(path.join(work, "state.json"), "utf8"));

const failures = [];
function check(ok, text) {
  console.log(`audit: ${ok ? "ok  " : "FAIL"} ${text}`);
  if (!ok) failures.push(text);
}

/// The Nu HTML Checker's errors in `html`.
function vnuErrors(name, html) {
  const file = path.join(work, `${name}.html`);
  fs.writeFileSync(file, html);
  let output;
  try {
    output = execFileSync(process.env.CAIRN_JAVA, ["-jar", process.env.CAIRN_VNU_JAR, "--format", "json", "--stdout", file], { encoding: "utf8" });
  } catch (error) {
    // vnu exits 1 when it reports errors; its JSON is still on stdout.
    output = error.stdout;
  }
  return JSON.parse(output).messages.filter((message) => message.type === "error");
}

async function main() {
  fs.mkdirSync(shots, { recursive: true });
  const port = 9300 + Math.floor(Math.random() * 500);
  const browser = await chromium.launch({
    executablePath: process.env.CAIRN_CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", `--remote-debugging-port=${port}`],
  });
  const { default: lighthouse } = await import(pathToFileURL(path.join(tools, "node_modules", "lighthouse", "core", "index.js")).href);
  try {
    const signedIn = await browser.newContext();
    await signedIn.addCookies(state.cookies);
    const anonymous = await browser.newContext();
    // Lighthouse audits in the browser's default context (not Playwright's contexts), so the
    // session goes there, once the anonymous pages (listed first) are done; Lighthouse is told
    // not to reset storage, which would delete it.
    let sessionInDefaultContext = false;
    async function signInDefaultContext() {
      const cdp = await browser.newBrowserCDPSession();
      await cdp.send("Storage.setCookies", {
        cookies: state.cookies.map(({ name, value, domain, path: where, expires, httpOnly, secure }) =>
          ({ name, value, domain, path: where, expires, httpOnly, secure, sameSite: "Lax" })),
      });
      sessionInDefaultContext = true;
    }

    // Page types reached with GET: [name, path, signed in].
    const pages = [
      ["start", "/", false],
      ["sign-in", "/account/sign-in", false],
      ["sign-up", "/account/sign-up", false],
      ["account", "/account", true],
      ["tokens", "/account/tokens", true],
      ["teams", "/account/teams", true],
      ["team", state.team, true],
      ["projects", "/account/projects", true],
      ["project", state.project, true],
      ["tree", `${state.project}/versions/1?path=requests`, true],
      ["restore", `${state.project}/versions/1/restore`, true],
      ["not-found", "/account/projects/00000000000000000000000000000000", true],
    ];
    // Lighthouse refuses to audit a page answered with an error status (its runtime error
    // NOT_HTML/ERRORED_DOCUMENT_REQUEST): the 404 page is checked by the Nu HTML Checker and
    // looked at in its screenshots only.
    const noLighthouse = new Set(["not-found"]);
    for (const [name, where, needsSession] of pages) {
      const context = needsSession ? signedIn : anonymous;
      const page = await context.newPage();
      const response = await page.goto(`${base}${where}`);
      check(page.url() === `${base}${where}`, `${name}: the browser stayed at ${page.url()}`);
      const html = await response.text();
      for (const width of [390, 1280]) {
        await page.setViewportSize({ width, height: 900 });
        await page.screenshot({ path: path.join(shots, `${name}-${width}.png`), fullPage: true });
      }
      const errors = vnuErrors(name, html);
      check(errors.length === 0, `${name}: Nu HTML Checker ${errors.length} errors ${errors.map((e) => `line ${e.lastLine}: ${e.message}`).join("; ")}`);
      await page.close();
      if (noLighthouse.has(name)) {
        console.log(`audit: skip ${name}: Lighthouse does not audit a ${response.status()} answer`);
        continue;
      }
      if (needsSession && !sessionInDefaultContext) {
        await signInDefaultContext();
      }
      assert.equal(needsSession, sessionInDefaultContext, "anonymous pages are audited first");
      const result = await lighthouse(`${base}${where}`, {
        port,
        output: "json",
        logLevel: "error",
        onlyCategories: ["accessibility", "best-practices"],
        disableStorageReset: true,
      });
      // Lighthouse audited this very page (signed in where it must be), not a redirect.
      const audited = result.lhr.finalDisplayedUrl;
      check(audited === `${base}${where}`, `${name}: Lighthouse audited ${audited}`);
      const categories = result.lhr.categories;
      const accessibility = Math.round(categories.accessibility.score * 100);
      const practices = Math.round(categories["best-practices"].score * 100);
      const failed = Object.values(result.lhr.audits)
        .filter((audit) => audit.score !== null && audit.score < 1 && audit.scoreDisplayMode === "binary")
        .map((audit) => audit.id);
      check(accessibility >= 98 && practices === 100, `${name}: Lighthouse accessibility ${accessibility}, best practices ${practices}${failed.length ? `; failing audits: ${failed.join(", ")}` : ""}`);
    }

    // Page types reached by posting a form: a form with its errors, a new token's secret.
    const posted = [
      ["sign-up-errors", anonymous, "/account/sign-up", async (page) => {
        await page.getByRole("button", { name: "Create account" }).click();
        await page.getByText("There is a problem").waitFor();
      }],
      ["token-created", signedIn, "/account/tokens", async (page) => {
        await page.getByLabel("Label").fill("audit");
        await page.getByRole("button", { name: "Create token" }).click();
        await page.getByRole("heading", { name: "Token created" }).waitFor();
      }],
    ];
    for (const [name, context, where, act] of posted) {
      const page = await context.newPage();
      await page.goto(`${base}${where}`);
      await act(page);
      for (const width of [390, 1280]) {
        await page.setViewportSize({ width, height: 900 });
        await page.screenshot({ path: path.join(shots, `${name}-${width}.png`), fullPage: true });
      }
      const errors = vnuErrors(name, await page.content());
      check(errors.length === 0, `${name}: Nu HTML Checker ${errors.length} errors ${errors.map((e) => `line ${e.lastLine}: ${e.message}`).join("; ")}`);
      await page.close();
    }
  } finally {
    await browser.close();
  }
  assert.deepEqual(failures, [], "every page type passes every check");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
