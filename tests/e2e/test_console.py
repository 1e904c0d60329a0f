"""The dashboard in real headless Chromium (Playwright, Debian's chromium) against the real server and
agent, with MCP calls made by the official client in a separate process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.harness import PYTHON, ROOT, Server
from tests.oauth_helpers import REDIRECT_URI, answer_consent, pkce_pair, redirect_params

AXE = ROOT / "tests" / "node" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = ["machines", "live", "history", "access", "connect"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
# Set to regenerate docs/console-*.png; normal runs leave the tree alone.
SCREENSHOTS = os.environ.get("CODE_REMOTE_SCREENSHOTS") == "1"

CLIENT = """
import json, sys
from tests.mcp_client import call_tool
result = call_tool("http", sys.argv[1], sys.argv[2], "run_shell_command", json.loads(sys.argv[3]), overall_timeout=90)
print(json.dumps({"is_error": result["is_error"], "text": result["text"]}))
"""


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def signed_in(browser, server: Server, **options):
    context = browser.new_context(**options)
    page = context.new_page()
    page.goto(server.url + "/dashboard/")
    assert "/dashboard/signin" in page.url
    page.fill("#owner_secret", server.token)
    page.click("#signin")
    expect(page.locator("h1")).to_have_text("Machines")
    return context, page


def client_process(server: Server, arguments: dict) -> subprocess.Popen:
    """The official MCP client in a process of its own, making one run_shell_command call."""
    return subprocess.Popen(
        [PYTHON, "-c", CLIENT, server.url + "/mcp", server.token, json.dumps(arguments)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_sign_in_shows_the_machines(browser, stack):
    server, agent = stack
    context, page = signed_in(browser, server)
    card = page.locator('li[data-machine="box"]')
    expect(card.locator(".badge")).to_have_text("online")
    expect(card).to_contain_text(str(agent.home))
    context.close()


@pytest.mark.parametrize("ticked", [True, False])
def test_approving_an_oauth_client_can_sign_the_owner_in_to_the_dashboard_too(browser, stack, ticked):
    server, _ = stack
    client_id = requests.post(server.url + "/register", json={"redirect_uris": [REDIRECT_URI]}, timeout=5).json()["client_id"]
    authorize = requests.Request("GET", server.url + "/authorize", params={
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "s",
        "code_challenge": pkce_pair()[1], "code_challenge_method": "S256",
    }).prepare().url
    context = browser.new_context()
    context.route(REDIRECT_URI + "*", lambda route: route.fulfill(status=200, body="back at the client"))
    page = context.new_page()
    page.goto(authorize)
    page.fill("#owner_secret", server.token)
    if ticked:
        page.check("#dashboard")
    page.click("#approve")
    expect(page.locator("body")).to_have_text("back at the client")
    assert "code=" in page.url
    page.goto(server.url + "/dashboard/machines")
    if ticked:
        expect(page.locator("h1")).to_have_text("Machines")
    else:
        assert "/dashboard/signin" in page.url, "approving a client alone does not sign the browser in"
    context.close()


def test_a_wrong_secret_is_refused(browser, stack):
    server, _ = stack
    page = browser.new_page()
    page.goto(server.url + "/dashboard/signin")
    page.fill("#owner_secret", "not-the-secret")
    page.click("#signin")
    expect(page.locator("#error")).to_contain_text("not the owner secret")
    page.goto(server.url + "/dashboard/machines")
    assert "/dashboard/signin" in page.url
    page.close()


def test_signed_out_every_page_redirects_to_sign_in(browser, stack):
    server, _ = stack
    page = browser.new_page()
    for name in PAGES:
        response = page.goto(f"{server.url}/dashboard/{name}")
        assert "/dashboard/signin" in page.url and response.status == 200
        assert "box" not in page.content()
    assert requests.get(server.url + "/dashboard/events", timeout=10).status_code == 401
    page.close()


def test_live_output_reaches_the_page_within_a_second_of_the_agent_sending_it(browser, stack):
    server, _ = stack
    context, page = signed_in(browser, server, viewport=DESKTOP)
    page.goto(server.url + "/dashboard/live")
    expect(page.locator("#live-status")).to_have_text("Live.")
    # Note when each line first shows on the page, by the browser's clock (the same host's clock).
    page.evaluate("""() => {
        window.seen = {};
        const note = () => { for (const m of document.getElementById('live').textContent.matchAll(/tick(\\d+)/g))
            if (!(m[1] in window.seen)) window.seen[m[1]] = Date.now() / 1000; };
        new MutationObserver(note).observe(document.getElementById('live'), {subtree: true, childList: true, characterData: true});
        // Every state the first card's badge shows, in order.
        window.states = [];
        new MutationObserver((records) => { for (const r of records) for (const n of r.addedNodes) {
            const badge = n.nodeType === 1 ? n.querySelector('.state') : (n.parentElement && n.parentElement.matches('.state') ? n.parentElement : null);
            if (badge && badge.closest('li.card') === document.querySelector('#live li.card')) window.states.push(badge.textContent);
        } }).observe(document.getElementById('live'), {subtree: true, childList: true});
    }""")
    lines = 15
    process = client_process(server, {"command": f"for i in $(seq 1 {lines}); do echo tick$i; sleep 0.2; done"})
    card = page.locator("#live li.card").first
    if SCREENSHOTS:  # the page as the owner sees it while the command runs
        expect(card.locator("pre.output")).to_contain_text("tick6", timeout=30000)
        page.screenshot(path=str(ROOT / "docs" / "console-desktop.png"))
    expect(card.locator(".state")).to_have_text("succeeded", timeout=30000)
    result = finish(process)
    assert not result["is_error"] and "tick15" in result["text"]
    shown = page.evaluate("window.states")
    states = [state for i, state in enumerate(shown) if i == 0 or shown[i - 1] != state]
    assert states == ["queued", "leased", "running", "succeeded"], f"the page showed the states {states}"
    seen = page.evaluate("window.seen")
    assert sorted(int(n) for n in seen) == list(range(1, lines + 1))
    # When the server received each line from the agent: the stored chunk that carried it.
    sent = chunk_times(server, card.get_attribute("data-command"))
    late = {n: round(seen[str(n)] - sent[n], 3) for n in range(1, lines + 1) if seen[str(n)] - sent[n] > 1.0}
    assert not late, f"lines shown more than 1 s after the agent sent them: {late}"
    context.close()


def chunk_times(server: Server, command_id: str) -> dict[int, float]:
    """Line number -> when the chunk holding it was stored, read from the server's database."""
    from web.models import CommandOutput, db, open_database

    open_database(server.database_url)
    times = {}
    with db.connection_context():
        for chunk in CommandOutput.select().where(CommandOutput.command_id == command_id).order_by(CommandOutput.offset):
            for word in bytes(chunk.data).decode().split():
                if word.startswith("tick"):
                    times[int(word[4:])] = chunk.created_at
    return times


def test_a_burst_of_output_shows_its_latest_lines_live(browser, stack):
    server, _ = stack
    context, page = signed_in(browser, server)
    page.goto(server.url + "/dashboard/live")
    expect(page.locator("#live-status")).to_have_text("Live.")
    # 200 KB at once, then a last line: the agent sends it in chunks far longer than a view is sent of each.
    process = client_process(server, {"command": "echo burst-start; head -c 200000 /dev/zero | tr '\\0' x; echo; echo burst-end-line",
                                      "machine": "box"})
    card = page.locator("#live li.card", has_text="burst-start")
    expect(card.locator(".state")).to_have_text("succeeded", timeout=30000)
    output = card.locator("pre.output")
    expect(output).to_contain_text("burst-end-line")
    expect(output).to_contain_text("[…]")  # what was left out is marked
    finish(process)
    context.close()


def test_cancel_from_the_page_ends_the_command_and_tells_the_client(browser, stack):
    server, _ = stack
    context, page = signed_in(browser, server)
    process = client_process(server, {"command": "echo started-for-cancel; sleep 30", "machine": "box"})
    page.goto(server.url + "/dashboard/live")
    card = page.locator("#live li.card", has_text="started-for-cancel")
    expect(card.locator(".state")).to_have_text("running", timeout=20000)
    card.locator("h2 a").click()
    expect(page.locator("#state")).to_have_text("running")
    page.click("#cancel")
    expect(page.locator("#state")).to_have_text("cancelled", timeout=15000)
    result = finish(process)
    assert result["is_error"] and "cancelled" in result["text"]
    expect(page.locator("#timeline")).to_contain_text("by owner")
    context.close()


def test_cancel_from_a_live_card_with_the_keyboard(browser, stack):
    server, _ = stack
    context, page = signed_in(browser, server)
    page.goto(server.url + "/dashboard/live")
    expect(page.locator("#live-status")).to_have_text("Live.")
    process = client_process(server, {"command": "echo card-cancel; sleep 30", "machine": "box"})
    card = page.locator("#live li.card", has_text="card-cancel")  # added by the page as the client sent it
    expect(card.locator(".state")).to_have_text("running", timeout=20000)
    card.get_by_role("button", name="Cancel").focus()
    page.keyboard.press("Enter")
    card = page.locator("#live li.card", has_text="card-cancel")
    expect(card.locator(".state")).to_have_text("cancelled", timeout=15000)
    expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    result = finish(process)
    assert result["is_error"] and "cancelled" in result["text"]
    context.close()


def test_revoking_an_agent_from_the_page_refuses_its_next_poll(browser, stack):
    server, _ = stack
    registered = requests.post(server.url + "/api/agent/register", json={"machine": "spare"}, headers=server.headers(), timeout=10).json()
    token = {"Authorization": f"Bearer {registered['token']}"}
    assert requests.get(server.url + "/api/agent/poll?wait=0", headers=token, timeout=10).status_code == 204
    context, page = signed_in(browser, server)
    page.click("#revoke-spare")
    expect(page.locator("h1")).to_have_text("Revoke spare?")
    page.click("#confirm-revoke")
    expect(page.locator("[role=status]")).to_contain_text("Revoked spare")
    # The very next poll is refused (a poll reaching another server process: within a second).
    poll = requests.get(server.url + "/api/agent/poll?wait=0", headers=token, timeout=10)
    assert poll.status_code == 401, poll.text
    context.close()


def test_a_reinstalled_machine_is_handed_its_name_from_the_page(browser, stack):
    server, _ = stack
    old_key, new_key = "old-key-" + "a" * 40, "new-key-" + "b" * 40

    def register(key: str) -> requests.Response:
        return requests.post(server.url + "/api/agent/register", json={"machine": "moved", "key": key}, headers=server.headers(), timeout=10)

    first = register(old_key)
    assert first.status_code == 200, first.text
    old_token = {"Authorization": f"Bearer {first.json()['token']}"}
    refused = register(new_key)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "machine_key_mismatch"
    new_hash = hashlib.sha256(new_key.encode()).hexdigest()
    context, page = signed_in(browser, server)
    card = page.locator('li[data-machine="moved"]')
    expect(card).to_contain_text(new_hash[:12])
    # A key that is not a SHA-256 is refused with a reason, and nothing changes.
    page.goto(server.url + "/dashboard/machines/moved/approve")
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    bad = page.request.post(server.url + "/dashboard/machines/moved/approve", form={"csrf_token": csrf, "key_sha256": "not-a-hash"})
    assert bad.status == 400 and "64 hexadecimal digits" in bad.text()
    assert register(new_key).status_code == 403
    page.goto(server.url + "/dashboard/machines")
    card.locator("#approve-moved").click()
    expect(page.locator("h1")).to_have_text("Hand moved to another agent?")
    expect(page.locator("#key_sha256")).to_have_value(new_hash)
    page.click("#confirm-approve")
    expect(page.locator("[role=status]")).to_contain_text("Handed moved")
    expect(card).not_to_contain_text(new_hash[:12])
    # The new agent registers; the old one's token and key are refused.
    assert register(new_key).status_code == 200
    assert requests.get(server.url + "/api/agent/poll?wait=0", headers=old_token, timeout=10).status_code == 401
    assert register(old_key).status_code == 403
    context.close()


def test_revoking_an_oauth_client_from_the_page_refuses_its_token_at_once(browser, stack):
    server, _ = stack
    client_id = requests.post(server.url + "/register", json={"client_name": "Revoke-me", "redirect_uris": [REDIRECT_URI]}, timeout=5).json()["client_id"]
    verifier, challenge = pkce_pair()
    url = requests.Request("GET", server.url + "/authorize", params={
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256",
    }).prepare().url
    code = redirect_params(answer_consent(url, server.token))["code"]
    access = requests.post(server.url + "/token", data={"grant_type": "authorization_code", "client_id": client_id, "code": code,
                                                        "redirect_uri": REDIRECT_URI, "code_verifier": verifier}, timeout=5).json()["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    assert requests.get(server.url + "/api/machines", headers=bearer, timeout=10).status_code == 200
    context, page = signed_in(browser, server)
    page.goto(server.url + "/dashboard/access")
    card = page.locator(f'li[data-client="{client_id}"]')
    expect(card).to_contain_text("access (until")
    card.get_by_role("link", name="Revoke this client…").click()
    expect(page.locator("h1")).to_have_text("Revoke Revoke-me?")
    assert requests.get(server.url + "/api/machines", headers=bearer, timeout=10).status_code == 200, "nothing is done before the confirmation"
    page.click("#confirm-revoke-client")
    expect(page.locator("[role=status]")).to_contain_text("Revoked the OAuth client")
    expect(card).to_have_count(0)
    assert requests.get(server.url + "/api/machines", headers=bearer, timeout=10).status_code == 401
    context.close()


def test_the_history_filters(browser, stack):
    server, _ = stack
    for word in ("alpha-marker", "beta-marker"):
        assert not finish(client_process(server, {"command": f"echo {word}", "machine": "box"}))["is_error"]
    context, page = signed_in(browser, server)
    page.goto(server.url + "/dashboard/history")
    page.fill("#f-text", "alpha-marker")
    page.click("#apply-filters")
    rows = page.locator("#commands tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("echo alpha-marker")
    page.fill("#f-text", "-marker")
    page.select_option("#f-state", "succeeded")
    page.select_option("#f-machine", "box")
    page.click("#apply-filters")
    expect(rows).to_have_count(2)
    page.select_option("#f-state", "cancelled")
    page.click("#apply-filters")
    expect(page.locator("#no-results")).to_be_visible()
    context.close()


def test_a_form_without_the_right_csrf_token_is_refused(browser, stack):
    server, _ = stack
    context, page = signed_in(browser, server)
    for data in ({}, {"csrf_token": "wrong"}):
        response = page.request.post(server.url + "/dashboard/machines/box/revoke", form=data)
        assert response.status == 403
    assert server.machines()["box"]["online"]
    context.close()


def all_pages(server: Server) -> list[str]:
    if not any(row["command_id"] for row in server.audit(limit=20)):  # a test run alone: make one
        assert not finish(client_process(server, {"command": "echo a-command-page", "machine": "box"}))["is_error"]
    command_id = next(row["command_id"] for row in server.audit(limit=20) if row["command_id"])
    client_id = requests.post(server.url + "/register", json={"client_name": "Page-check", "redirect_uris": [REDIRECT_URI]}, timeout=5).json()["client_id"]
    return [f"/dashboard/{name}" for name in PAGES] + [
        f"/dashboard/commands/{command_id}", "/dashboard/machines/box/revoke", "/dashboard/machines/moved/approve",
        f"/dashboard/access/clients/{client_id}/revoke"]


def test_no_page_scrolls_sideways_on_a_phone(browser, stack):
    server, _ = stack
    context, page = signed_in(browser, server, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    for path in all_pages(server) + ["/dashboard/signin"]:
        page.goto(server.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide on a {PHONE['width']} px phone"
    # On a phone the history's filters fold away until asked for, so the commands come first.
    page.goto(server.url + "/dashboard/history")
    expect(page.locator("#f-text")).to_be_hidden()
    page.click("#filter-box summary")
    page.fill("#f-text", "echo")
    page.click("#apply-filters")
    expect(page.locator("#commands tbody tr").first).to_contain_text("echo")
    expect(page.locator("#f-text")).to_be_visible()  # a filter is set: it stays open
    if SCREENSHOTS:
        page.goto(server.url + "/dashboard/live")
        page.screenshot(path=str(ROOT / "docs" / "console-phone.png"))
    context.close()


def test_every_control_on_every_page_is_reached_with_the_tab_key(browser, stack):
    server, _ = stack
    context, page = signed_in(browser, server)
    for path in all_pages(server):
        page.goto(server.url + path)
        count = page.evaluate("""() => {
            const controls = [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, summary, [tabindex="0"]')]
                .filter(e => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden');
            controls.forEach((e, i) => e.dataset.k = i);
            window.reached = new Set();
            document.addEventListener('focusin', (event) => { if (event.target.dataset.k) window.reached.add(event.target.dataset.k); });
            return controls.length;
        }""")
        for _ in range(count * 4):  # a date and time field takes a Tab per part
            page.keyboard.press("Tab")
        reached = page.evaluate("window.reached.size")
        assert reached == count, f"{path}: {count - reached} of {count} controls are not reached with Tab"
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_accessibility_violation_on_any_page(browser, stack, scheme):
    server, _ = stack
    # axe is injected as a script of the test's own: the page's CSP would rightly refuse it.
    context, page = signed_in(browser, server, bypass_csp=True, color_scheme=scheme)
    problems = {}
    for path in all_pages(server) + ["/dashboard/signin"]:
        page.goto(server.url + path)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in result["violations"] if v["impact"] in ("serious", "critical")]
        if bad:
            problems[path] = bad
    assert not problems, problems
    context.close()
