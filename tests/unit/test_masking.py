"""The agent masks its secrets in everything it sends, and takes them out of its own environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent import shell
from agent.config import AgentConfig, ConfigError, strip_password
from agent.masking import Secrets, StreamMasker, scrub_environment

SECRET = "s3cr3t-enrolment-value"


def _stream(secrets: Secrets, chunks: list[bytes]) -> tuple[bytes, int]:
    masker = StreamMasker(secrets)
    out = b"".join(masker.feed(c) for c in chunks) + masker.finish()
    return out, masker.count


@pytest.mark.parametrize("cut", [1, 5, len(SECRET) - 1])
def test_a_secret_split_across_two_chunks_is_still_masked(cut):
    data = f"AUTH_TOKEN={SECRET}\n".encode()
    at = len("AUTH_TOKEN=") + cut
    out, count = _stream(Secrets([SECRET]), [data[:at], data[at:]])
    assert out == b"AUTH_TOKEN=***\n" and count == 1


def test_a_secret_fed_one_byte_at_a_time_is_masked_and_nothing_else_is_lost():
    data = f"x{SECRET}y{SECRET[:-1]}z{SECRET}".encode()
    out, count = _stream(Secrets([SECRET]), [bytes([b]) for b in data])
    assert out == f"x***y{SECRET[:-1]}z***".encode() and count == 2


def test_a_prefix_at_the_very_end_is_released_when_the_stream_ends():
    out, count = _stream(Secrets([SECRET]), [b"tail " + SECRET[:6].encode()])
    assert out == b"tail " + SECRET[:6].encode() and count == 0


def test_the_longer_of_two_overlapping_secrets_is_masked_whole():
    secrets = Secrets(["abcd", "abcdefgh"])
    assert secrets.mask_bytes(b"-abcdefgh-abcd-") == (b"-***-***-", 2)


def test_a_token_added_later_is_masked_from_then_on():
    secrets = Secrets([SECRET])
    masker = StreamMasker(secrets)
    assert masker.feed(b"tok=agent.token.v1 ") == b"tok=agent.token.v1 "
    secrets.add("agent.token.v1")
    assert masker.feed(b"tok=agent.token.v1 ") == b"tok=*** "


def test_objects_are_masked_in_every_string_and_counted():
    masked, count = Secrets([SECRET]).mask_object({"a": [SECRET, {"b": f"x{SECRET}x"}], "n": 3, "c": "clean"})
    assert masked == {"a": ["***", {"b": "x***x"}], "n": 3, "c": "clean"} and count == 2


def test_shell_output_is_masked_as_it_is_read_and_the_result_counts_it(tmp_path):
    secrets = Secrets([SECRET])
    # printf in two writes with a pause between: the secret reaches the agent in two reads.
    command = f"printf '%s' '{SECRET[:7]}'; sleep 0.2; printf '%s\\n' '{SECRET[7:]}'; echo {SECRET} >&2"
    result = shell.run(command, shell="/bin/sh", cwd=str(tmp_path), timeout_seconds=10, max_output_bytes=1 << 20, secrets=secrets)
    assert result["stdout"] == "***\n" and result["stderr"] == "***\n" and result["masked"] == 2
    spool = shell.OutputSpool({"stdout": str(tmp_path / "o"), "stderr": str(tmp_path / "e")}, memory_bytes=4)
    result = shell.run(command, shell="/bin/sh", cwd=str(tmp_path), timeout_seconds=10, max_output_bytes=1 << 20, spool=spool, secrets=secrets)
    assert (tmp_path / "o").read_bytes() == b"***\n" and (tmp_path / "e").read_bytes() == b"***\n" and result["masked"] == 2


def test_config_collects_enrolment_secrets_proxy_passwords_and_mask_values():
    env = {
        "RELAY_URL": "https://relay.example", "AUTH_TOKEN": SECRET, "AGENT_ENROLMENT_SECRET": "enrol-2",
        "HTTPS_PROXY": "http://me:p%40ssw0rd@proxy:3128", "http_proxy": "other:pw2x@proxy:1",
        "MASK_VALUES": "db-password-1, ghp_abcdef", "CODE_REMOTE_ENV_FILE": "/nonexistent/.env",
    }
    config = AgentConfig.from_env(env)
    assert set(config.credential_values) == {SECRET, "enrol-2", "p%40ssw0rd", "p@ssw0rd", "pw2x"}
    assert set(config.secret_values) == set(config.credential_values) | {"db-password-1", "ghp_abcdef"}


def test_a_mask_value_too_short_to_mask_safely_is_refused_by_name():
    env = {"RELAY_URL": "https://relay.example", "AUTH_TOKEN": SECRET, "MASK_VALUES": "ok-long-value,ab", "CODE_REMOTE_ENV_FILE": "/nonexistent/.env"}
    with pytest.raises(ConfigError, match="MASK_VALUES"):
        AgentConfig.from_env(env)


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("http://me:pw@proxy:3128", "http://me@proxy:3128"),
        ("me:p@ss@proxy:3128", "me@proxy:3128"),
        ("http://proxy:3128", "http://proxy:3128"),
        ("https://me:pw@proxy/path", "https://me@proxy/path"),
    ],
)
def test_proxy_urls_lose_only_their_password(url, stripped):
    assert strip_password(url) == stripped


def test_scrubbing_removes_credentials_and_rewrites_proxies_in_a_real_process(tmp_path):
    """In a child process (its own environment block): env and /proc/self/environ lose the secrets."""
    script = f"""
import os, sys, subprocess
sys.path.insert(0, {os.getcwd()!r})
from agent.masking import Secrets, scrub_environment
changed = scrub_environment(os.environ, ["{SECRET}", "pr0xy-pass"], ("AUTH_TOKEN", "MASK_VALUES"))
print(sorted(changed))
print(subprocess.run(["env"], capture_output=True, text=True).stdout)
print(open("/proc/self/environ", "rb").read().decode())
"""
    env = {"PATH": os.environ["PATH"], "AUTH_TOKEN": SECRET, "HTTPS_PROXY": "http://me:pr0xy-pass@proxy:3128",
           "COPY_OF_IT": f"x{SECRET}x", "KEEP": "plain"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert "['AUTH_TOKEN', 'COPY_OF_IT', 'HTTPS_PROXY']" in out
    assert SECRET not in out and "pr0xy-pass" not in out
    assert "HTTPS_PROXY=http://me@proxy:3128" in out and "KEEP=plain" in out


def test_scrubbing_an_environment_mapping_keeps_everything_else():
    environ = {"AUTH_TOKEN": SECRET, "PATH": "/bin", "all_proxy": "socks5://u:pw-long@h:1"}
    assert sorted(scrub_environment(environ, [SECRET, "pw-long"], ("AUTH_TOKEN",))) == ["AUTH_TOKEN", "all_proxy"]
    assert environ == {"PATH": "/bin", "all_proxy": "socks5://u@h:1"}
