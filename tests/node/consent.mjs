// Drive Code Remote's OAuth consent page in a real headless Chromium, as the owner would.
// Usage: node consent.mjs <authorization-url> <owner-secret> <screenshot-dir> [wrong-secret]
// Prints one JSON line: {"redirect": <the URL the page sent the browser to>, "wrongSecretError": ...}.
import { join } from "node:path";
import { launchChromium } from "./chromium.mjs";

const [authorizationUrl, secret, shotDir, wrongSecret] = process.argv.slice(2);
const redirectTarget = new URL(new URL(authorizationUrl).searchParams.get("redirect_uri"));

const context = await launchChromium({ viewport: { width: 900, height: 900 } });
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15000);
  await page.goto(authorizationUrl);
  const clientName = await page.textContent("#client-name");
  await page.screenshot({ path: join(shotDir, "consent.png"), fullPage: true });
  let wrongSecretError = null;
  if (wrongSecret) {
    await page.fill("#owner_secret", wrongSecret);
    await Promise.all([page.waitForLoadState("load"), page.click("#approve")]);
    wrongSecretError = await page.textContent("#error");
    await page.screenshot({ path: join(shotDir, "consent-wrong-secret.png"), fullPage: true });
  }
  await page.fill("#owner_secret", secret);
  await Promise.all([page.waitForURL(`${redirectTarget.origin}/**`), page.click("#approve")]);
  await page.screenshot({ path: join(shotDir, "after-approve.png") });
  console.log(JSON.stringify({ redirect: page.url(), clientName, wrongSecretError }));
} finally {
  await context.close();
}
