"""The agent's machine key on disk: made once, private, the same for every process of one agent."""

from __future__ import annotations

import os
import stat
import threading

from agent import machine_key


def test_the_key_is_made_once_with_mode_600_and_read_back(tmp_path):
    state = tmp_path / "state"
    key = machine_key.load_or_create(str(state))
    path = state / machine_key.KEY_FILE
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert machine_key.load_or_create(str(state)) == key
    assert os.listdir(state) == [machine_key.KEY_FILE], "no temporary file is left behind"


def test_a_key_restored_with_loose_rights_is_made_private(tmp_path):
    path = tmp_path / machine_key.KEY_FILE
    path.write_text("k" * 43 + "\n")
    path.chmod(0o644)
    assert machine_key.load_or_create(str(tmp_path)) == "k" * 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_processes_starting_together_end_with_one_key(tmp_path):
    keys: list[str] = []
    start = threading.Barrier(8)

    def load() -> None:
        start.wait(timeout=5)
        keys.append(machine_key.load_or_create(str(tmp_path / "state")))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(keys) == 8 and len(set(keys)) == 1
