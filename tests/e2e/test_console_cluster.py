"""The dashboard with several server processes on one PostgreSQL database: a page served by one
instance shows, live, a command that an MCP client sent through another, and cancels it (the client,
waiting on the other instance, is told). Two instances, no proxy between the browser or the client
and the instance each picks; the agent polls through nginx (tests/cluster.py)."""

from __future__ import annotations

import types

import pytest
from playwright.sync_api import expect

from tests import database
from tests.cluster import Cluster
from tests.e2e.test_console import browser, client_process, finish, signed_in  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster"), instances=2, agents=1, web_concurrency=1).start() as running:
        yield running


def at(cluster: Cluster, index: int) -> types.SimpleNamespace:
    """One instance, straight (not through nginx), as the helpers of test_console take a server."""
    return types.SimpleNamespace(url=cluster.instances[index].url, token=cluster.token)


def test_a_page_on_one_instance_follows_and_cancels_a_command_sent_through_another(browser, cluster):  # noqa: F811
    context, page = signed_in(browser, at(cluster, 0))
    page.goto(cluster.instances[0].url + "/dashboard/live")
    expect(page.locator("#live-status")).to_have_text("Live.")
    process = client_process(at(cluster, 1), {"command": "for i in 1 2 3; do echo line$i; sleep 0.3; done; echo waiting; sleep 60",
                                              "machine": "box-1"})
    card = page.locator("#live li.card", has_text="waiting; sleep 60")
    expect(card.locator("pre.output")).to_contain_text("line3", timeout=20000)
    expect(card.locator(".state")).to_have_text("running")
    card.locator("h2 a").click()
    page.click("#cancel")
    expect(page.locator("#state")).to_have_text("cancelled", timeout=15000)
    result = finish(process)
    assert result["is_error"] and "cancelled" in result["text"]
    context.close()
