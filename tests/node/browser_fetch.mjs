// From a page in a real headless Chromium, talk MCP over Streamable HTTP to a Code Remote server on
// another origin, as a browser-based client (the Inspector's UI connecting directly) does.
// Usage: node browser_fetch.mjs <page-url> <server-url> <token>
// Prints one JSON line: {"initialize": ..., "sessionId": ..., "tools": [...], "deleted": status} or {"error": message}.
import { launchChromium } from "./chromium.mjs";

const [pageUrl, serverUrl, token] = process.argv.slice(2);
const context = await launchChromium();
try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(pageUrl);
  const outcome = await page.evaluate(async ({ serverUrl, token }) => {
    const headers = {
      Authorization: `Bearer ${token}`,
      "Content-Type": "application/json",
      Accept: "application/json, text/event-stream",
    };
    const rpc = (id, method, params) => JSON.stringify({ jsonrpc: "2.0", id, method, params });
    try {
      const init = await fetch(`${serverUrl}/mcp`, {
        method: "POST", headers,
        body: rpc(1, "initialize", { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "browser", version: "0" } }),
      });
      const sessionId = init.headers.get("Mcp-Session-Id");
      const initialize = await init.json();
      const session = { ...headers, "Mcp-Session-Id": sessionId, "MCP-Protocol-Version": "2025-11-25" };
      await fetch(`${serverUrl}/mcp`, { method: "POST", headers: session, body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) });
      const listed = await (await fetch(`${serverUrl}/mcp`, { method: "POST", headers: session, body: rpc(2, "tools/list", {}) })).json();
      const deleted = (await fetch(`${serverUrl}/mcp`, { method: "DELETE", headers: session })).status;
      return { initialize: initialize.result?.protocolVersion, sessionId, tools: listed.result.tools.map((t) => t.name), deleted };
    } catch (error) {
      return { error: String(error) };
    }
  }, { serverUrl, token });
  console.log(JSON.stringify(outcome));
} finally {
  await context.close();
}
