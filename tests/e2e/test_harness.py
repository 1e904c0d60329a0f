"""The test harness itself: a server that dies while it is waited for fails the wait at once."""

from __future__ import annotations

import pytest

from tests.harness import ProcessExited, Server


def test_a_server_that_exits_at_start_fails_the_wait_at_once_with_its_exit_code_and_log(tmp_path):
    # A setting gunicorn.conf.py refuses: gunicorn exits before serving anything.
    server = Server(tmp_path / "server", env={"WORKER_CONNECTIONS": "not-a-number"})
    with pytest.raises(ProcessExited) as failure:
        server.start()
    message = str(failure.value)
    assert "server exited (exit code " in message
    assert "WORKER_CONNECTIONS must be a whole number above 0, got 'not-a-number'" in message, "the log's tail names the cause"
    server.stop()
