// The account pages in a real headless Chromium, driven by Playwright, as a team lead and a
// teammate would use them, with the real `cairn` client beside them:
//
//   sign up -> create a team -> add a second account as editor -> the second account sees the
//   project and its history -> restores version 1 -> `cairn pull` in a working copy gets the
//   restored tree -> a token revoked on the tokens page makes `cairn push` exit 5
//   (not logged in / token refused, as documented) -> a cross-site form post is refused.
//
// Run by tests/tests/pages.rs with: CAIRN_URL (the server), CAIRN_CLIENT_BIN, CAIRN_WORK (an
// empty folder), CAIRN_CHROMIUM, CAIRN_BROWSER_TOOLS. Exits non-zero on the first failure.
"use strict";

const assert = require("node:assert/strict");
const { execFileSync, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");

const tools = process.env.CAIRN_BROWSER_TOOLS;
const { chromium } = require(path.join(tools, "node_modules", "playwright-core"));

const base = process.env.CAIRN_URL;
const cairnBin = process.env.CAIRN_CLIENT_BIN;
const work = process.env.CAIRN_WORK;
const password = "correct horse battery";

function step(text) {
  console.log(`journey: ${text}`);
}

/// Runs `cairn` as `user` (their own config file); returns the process result.
function cairn(user, cwd, args) {
  const home = path.join(work, `home-${user}`);
  fs.mkdirSync(home, { recursive: true });
  return spawnSync(cairnBin, args, {
    cwd,
    env: {
      ...process.env,
      CAIRN_CONFIG: path.join(home, "config.toml"),
      CAIRN_PASSWORD: password,
      HOSTNAME: `${user}-laptop`,
    },
    encoding: "utf8",
  });
}

function cairnOk(user, cwd, args) {
  const result = cairn(user, cwd, args);
  assert.equal(result.status, 0, `cairn ${args.join(" ")}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

async function signUp(page, name) {
  await page.goto(`${base}/`);
  await page.getByRole("link", { name: "Sign up" }).first().click();
  await page.getByLabel("Account name").fill(name);
  await page.getByLabel("Email").fill(`${name}@example.com`);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(`${base}/account/teams`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CAIRN_CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    const lead = await (await browser.newContext()).newPage();
    const mate = await (await browser.newContext()).newPage();

    step("ada signs up and creates the team apis");
    await signUp(lead, "ada");
    await lead.getByLabel("Team name").fill("apis");
    await lead.getByRole("button", { name: "Create team" }).click();
    await lead.waitForURL(/\/account\/teams\/[0-9a-f]{32}\?done=team-created$/);
    await lead.getByText("The team is created").waitFor();
    const teamUrl = lead.url().replace(/\?.*$/, "");

    step("ada creates the project petstore");
    await lead.getByLabel("Project name").fill("petstore");
    await lead.getByRole("button", { name: "Create project" }).click();
    await lead.waitForURL(/\/account\/projects\/[0-9a-f]{32}$/);
    const projectUrl = lead.url();
    const project = projectUrl.split("/").pop();
    const clone = (await lead.locator("#clone").textContent()).trim();
    assert.equal(clone, `cairn clone --server ${base} --project ${project}`);

    step("grace signs up; ada adds her to the team as an editor");
    await signUp(mate, "grace");
    await lead.goto(teamUrl);
    await lead.getByLabel("Account name or email").fill("grace@example.com");
    await lead.getByLabel("Role", { exact: true }).selectOption("editor");
    await lead.getByRole("button", { name: "Add member" }).click();
    await lead.getByText("The member is added").waitFor();
    const graceRow = lead.getByRole("row", { name: /grace/ });
    assert.match(await graceRow.textContent(), /editor/);

    step("ada pushes two versions with cairn");
    cairnOk("ada", work, ["login", "--server", base, "--user", "ada"]);
    cairnOk("ada", work, ["clone", "--server", base, "--project", project, "ada-copy"]);
    const copy = path.join(work, "ada-copy");
    fs.mkdirSync(path.join(copy, "requests"));
    const request = path.join(copy, "requests", "list-pets.json");
    fs.writeFileSync(request, '{"method": "GET", "url": "https://petstore.example/pets"}\n');
    cairnOk("ada", copy, ["push", "-m", "First requests"]);
    fs.writeFileSync(request, '{"method": "GET", "url": "https://petstore.example/pets?limit=10"}\n');
    cairnOk("ada", copy, ["push", "-m", "Limit to 10"]);

    step("grace sees the project and its history");
    await mate.getByRole("link", { name: "Projects" }).click();
    await mate.getByRole("link", { name: "petstore" }).click();
    await mate.waitForURL(projectUrl);
    const rows = mate.locator("tbody tr");
    assert.equal(await rows.count(), 3);
    assert.match(await rows.nth(0).textContent(), /2\s*ada[\s\S]*Limit to 10/);
    assert.match(await rows.nth(1).textContent(), /1\s*ada[\s\S]*First requests/);

    step("grace browses version 1 and reads the file");
    await mate.getByRole("link", { name: "1", exact: true }).click();
    await mate.getByRole("link", { name: "requests/" }).click();
    const download = mate.waitForEvent("download");
    await mate.getByRole("link", { name: "list-pets.json" }).click();
    const saved = path.join(work, "downloaded.json");
    await (await download).saveAs(saved);
    assert.equal(fs.readFileSync(saved, "utf8"), '{"method": "GET", "url": "https://petstore.example/pets"}\n');

    step("grace restores version 1, confirming first");
    await mate.goto(projectUrl);
    await mate.getByRole("link", { name: "Restore version 1" }).click();
    await mate.getByRole("heading", { name: /Restore version 1 of petstore/ }).waitFor();
    await mate.getByRole("button", { name: "Restore version 1" }).click();
    await mate.getByText("The version is restored as the new head").waitFor();
    assert.match(await mate.locator("tbody tr").first().textContent(), /3\s*grace[\s\S]*Restore version 1/);

    step("cairn pull in ada's copy gets the restored tree");
    cairnOk("ada", copy, ["pull"]);
    assert.equal(fs.readFileSync(request, "utf8"), '{"method": "GET", "url": "https://petstore.example/pets"}\n');

    step("ada revokes cairn's token on the tokens page; cairn push exits 5");
    await lead.getByRole("link", { name: "Tokens" }).click();
    await lead.getByRole("button", { name: "Revoke cairn on ada-laptop" }).click();
    await lead.getByText("The token is revoked").waitFor();
    fs.writeFileSync(request, '{"method": "GET", "url": "https://petstore.example/pets?limit=50"}\n');
    const refused = cairn("ada", copy, ["push", "-m", "After revoking"]);
    assert.equal(refused.status, 5, `exit ${refused.status}: ${refused.stderr}`);

    step("a cross-site form post without the CSRF token is refused");
    const evil = http.createServer((_, response) => {
      response.setHeader("content-type", "text/html");
      response.end(
        `<!DOCTYPE html><html lang="en"><title>evil</title><body>` +
          `<form id="f" method="post" action="${base}/account/teams">` +
          `<input name="name" value="stolen"></form>` +
          `<script>document.getElementById("f").submit()</script></body></html>`,
      );
    });
    await new Promise((resolve) => evil.listen(0, "127.0.0.1", resolve));
    // Another site: "localhost" is not the pages' host (127.0.0.1).
    const evilUrl = `http://localhost:${evil.address().port}/`;
    const [answer] = await Promise.all([
      lead.waitForResponse((response) => response.url() === `${base}/account/teams`),
      lead.goto(evilUrl),
    ]);
    assert.equal(answer.status(), 403);
    await lead.getByRole("heading", { name: "Form refused" }).waitFor();
    evil.close();
    await lead.goto(`${base}/account/teams`);
    assert.equal(await lead.getByRole("link", { name: "stolen" }).count(), 0);

    // For audit.cjs: where the team and project are, and ada's session.
    fs.writeFileSync(
      path.join(work, "state.json"),
      JSON.stringify({
        team: new URL(teamUrl).pathname,
        project: new URL(projectUrl).pathname,
        cookies: await lead.context().cookies(),
      }),
    );
    step("done");
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
