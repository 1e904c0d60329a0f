"""The dashboard shows a machine's output with its control characters and bidi controls written
visibly, both in the page as served and in what the live view appends: real headless Chromium, the
real server and agent, the official MCP client in a process of its own."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.test_console import CHROMIUM_ARGS, DESKTOP, client_process, finish, signed_in

RAW = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\r(?!\n)")
# The command itself holds a real U+202E, and prints ESC, OSC, BEL, a C1 CSI and U+202E.
COMMAND = "echo 'name\u202etxt.exe'; sleep 1; printf 'out \\033[2J\\033]0;title\\007 \\302\\2332J cod\\342\\200\\256gpj.exe\\n'"
SHOWN = "out \\x1b[2J\\x1b]0;title\\x07 \\x9b2J cod\\u202egpj.exe"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_live_and_command_pages_show_control_characters_visibly(browser, stack):
    server, _ = stack
    context, page = signed_in(browser, server, viewport=DESKTOP)
    page.goto(server.url + "/dashboard/live")
    expect(page.locator("#live-status")).to_have_text("Live.")
    process = client_process(server, {"command": COMMAND})
    card = page.locator("#live li.card").first
    expect(card.locator(".state")).to_have_text("succeeded", timeout=30000)
    assert "\\x1b" in finish(process)["text"]
    pushed = card.locator("pre.output").text_content()
    assert SHOWN in pushed and not RAW.search(pushed), pushed
    command_id = card.get_attribute("data-command")

    page.goto(server.url + f"/dashboard/commands/{command_id}")
    served = page.locator("#output").text_content()
    assert SHOWN in served and not RAW.search(served), served
    what = page.locator("code.what").first.text_content()
    assert "name\\u202etxt.exe" in what and not RAW.search(what), what
    page.goto(server.url + f"/dashboard/commands/{command_id}?offset=0#page")
    paged = page.locator("pre.output").nth(1).text_content()
    assert SHOWN in paged and not RAW.search(paged), paged
    context.close()
