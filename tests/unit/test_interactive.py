"""An interactive command on the agent, in process: input written to a real process's stdin, and
the quiet marks that answer the waiting tool call."""

from __future__ import annotations

import threading

from agent import shell
from agent.interactive import Interaction
from tests.harness import wait_for


def run_in_background(command: str, interaction: Interaction, tmp_path) -> dict:
    done: dict = {}

    def run() -> None:
        done["result"] = shell.run(
            command, shell="/bin/sh", cwd=str(tmp_path), timeout_seconds=20, max_output_bytes=10_000, stdin=interaction,
            cancel=threading.Event(),
        )

    threading.Thread(target=run, daemon=True).start()
    return done


def test_cat_gets_its_input_and_ends_at_the_end_of_file(tmp_path):
    interaction = Interaction(quiet_seconds=0.05, silent_seconds=0.05)
    done = run_in_background("cat", interaction, tmp_path)
    interaction.write(b"one\ntwo\n", close=False)
    interaction.write(b"three\n", close=True)
    result = wait_for(lambda: done.get("result"), what="cat to end")
    assert result["stdout"] == "one\ntwo\nthree\n" and result["exit_code"] == 0
    assert interaction.written == len(b"one\ntwo\nthree\n") and interaction.closed


def test_a_quiet_mark_comes_once_per_quiet_period_and_names_the_input_written(tmp_path):
    interaction = Interaction(quiet_seconds=0.05, silent_seconds=0.05)
    done = run_in_background('printf "? "; read a; printf "%s!\\n? " "$a"; read b', interaction, tmp_path)
    assert wait_for(interaction.quiet, what="quiet at the first prompt") == {"stdin": 0, "closed": False}
    assert interaction.quiet() is None  # reported already
    interaction.write(b"hi\n", close=False)
    assert wait_for(interaction.quiet, what="quiet at the second prompt") == {"stdin": 3, "closed": False}
    interaction.write(b"", close=True)
    assert wait_for(lambda: done.get("result"), what="the script to end")["stdout"] == "? hi!\n? "


def test_silence_without_output_waits_longer_than_a_pause_after_output():
    interaction = Interaction(quiet_seconds=0.0, silent_seconds=3600)
    interaction.attach(open("/dev/null", "wb"))
    assert interaction.quiet() is None  # nothing printed yet: not a prompt
    interaction.touch()
    assert interaction.quiet() == {"stdin": 0, "closed": False}
    interaction.end()


def test_input_to_a_process_that_closed_its_stdin_is_dropped_and_counts_as_closed(tmp_path):
    interaction = Interaction(quiet_seconds=0.05, silent_seconds=0.05)
    cancel = threading.Event()
    done: dict = {}

    def run() -> None:
        done["result"] = shell.run(
            "exec 0<&-; echo ready; sleep 30", shell="/bin/sh", cwd=str(tmp_path), timeout_seconds=20,
            max_output_bytes=10_000, stdin=interaction, cancel=cancel,
        )

    threading.Thread(target=run, daemon=True).start()
    wait_for(interaction.quiet, what="the command to close its stdin and go quiet")
    interaction.write(b"x" * 100, close=False)  # no reader left: no error, no hang
    assert interaction.closed
    cancel.set()
    assert wait_for(lambda: done.get("result"), what="the command to end")["cancelled"]
