"""Scale-out as a PaaS runs it: 3 instances from the Procfile's web line, each with WEB_CONCURRENCY=2, on
one PostgreSQL database, behind nginx doing round robin with no session affinity; 2 agents poll through
nginx (tests/cluster.py). One cluster serves the whole module; tests that kill or restart instances
leave every instance running again."""

from __future__ import annotations

import collections

import pytest
import requests

from tests import database
from tests.cluster import Cluster, procfile
from tests.harness import process_alive, wait_for

pytestmark = pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    with Cluster(tmp_path_factory.mktemp("cluster"), instances=3, agents=2, web_concurrency=2).start() as running:
        yield running


def _all_running(cluster: Cluster) -> None:
    for instance in cluster.instances:
        if not instance.alive():
            instance.start()


def test_each_instance_runs_the_procfile_web_line_with_two_workers(cluster):
    for instance in cluster.instances:
        assert instance.argv == ["/bin/sh", "-c", procfile()["web"]]
        assert instance.env["WEB_CONCURRENCY"] == "2" and instance.env["DATABASE_URL"].startswith("postgresql://")
        assert len(instance.worker_pids()) == 2
        assert "database already current" in instance.log(), "the release phase migrated before any instance started"
    assert len({instance.port for instance in cluster.instances}) == 3


def test_nginx_spreads_requests_over_every_instance_and_agents_poll_through_it(cluster):
    before = len(cluster.balancer.upstreams())
    for _ in range(30):
        assert requests.get(cluster.url + "/health", timeout=5).status_code == 200
    hits = collections.Counter(cluster.balancer.upstreams()[before:])
    assert set(hits) == {f"127.0.0.1:{instance.port}" for instance in cluster.instances}, hits
    assert max(hits.values()) - min(hits.values()) <= 3, f"round robin, no affinity: {hits}"
    for agent in cluster.agents:
        assert agent.env["RELAY_URL"] == cluster.url
    assert "POST /api/agent/register" in cluster.balancer.access_log.read_text()


def test_an_instance_killed_with_sigkill_leaves_nginx_serving_and_comes_back_on_its_port(cluster):
    victim = cluster.instances[0]
    pids = [victim.pid, *victim.worker_pids()]
    try:
        victim.kill()
        assert not any(process_alive(pid) for pid in pids), "kill -9 takes the master and its workers"
        answers = [requests.get(cluster.url + "/health", timeout=5).status_code for _ in range(12)]
        assert answers == [200] * 12, "nginx passes requests to the instances still up"
    finally:
        _all_running(cluster)
    assert victim.alive() and len(victim.worker_pids()) == 2 and victim.pid not in pids
    wait_for(lambda: f"127.0.0.1:{victim.port}" in _upstreams_of(cluster, 12), timeout=20, what="nginx to use the restarted instance")


def _upstreams_of(cluster: Cluster, requests_made: int) -> set[str]:
    before = len(cluster.balancer.upstreams())
    for _ in range(requests_made):
        requests.get(cluster.url + "/health", timeout=5)
    return set(cluster.balancer.upstreams()[before:])


def test_teardown_ends_every_process(tmp_path):
    small = Cluster(tmp_path, instances=1, agents=1, web_concurrency=2).start()
    pids = [small.instances[0].pid, *small.instances[0].worker_pids(), small.balancer.process.proc.pid,
            small.agents[0].process.proc.pid]
    small.stop()
    assert not any(process_alive(pid) for pid in pids)
