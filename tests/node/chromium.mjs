// Debian's Chromium, headless, in a throwaway profile, with the flags this closed network needs (no
// background fetches, no QUIC): the browser the end-to-end tests drive through playwright-core.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export function launchChromium(options = {}) {
  return chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "code-remote-chromium-")), {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ],
    timeout: 30000,
    ...options,
  });
}
