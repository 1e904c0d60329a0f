"""The Client ID Metadata Document rules that need no network: URLs, addresses, cache times, documents."""

from __future__ import annotations

import pytest

from web.oauth import client_metadata as cm

URL = "https://app.example/oauth/client.json"


@pytest.mark.parametrize("url", [URL, "https://app.example:8443/c.json?v=2", "https://app.example/a/b/c"])
def test_good_urls_pass(url):
    cm.check_url(url)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://app.example/c.json", "https://host/path"),
        ("https://app.example", "must have a path"),
        ("https://app.example/", "must have a path"),
        ("https://app.example/c.json#x", "fragment"),
        ("https://u@app.example/c.json", "user or password"),
        ("https://app.example/a/./c.json", "'.' or '..'"),
        ("https://app.example/a\\c.json", "backslash"),
        ("https://app.example/ä.json", "ASCII"),
        ("https://app.example/a b.json", "ASCII without spaces"),
        ("https://app.example:0x50/c.json", "port"),
        ("https://app.example/" + "a" * 2000, "at most 2000"),
    ],
)
def test_bad_urls_are_refused_saying_why(url, words):
    with pytest.raises(cm.MetadataError) as caught:
        cm.check_url(url)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False), ("10.0.0.1", False), ("172.16.0.1", False), ("192.168.1.1", False),
        ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
        ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False),
    ],
)
def test_only_public_addresses_are_fetched_from(address, allowed):
    assert cm._allowed(address, ()) is allowed


def test_a_listed_private_network_is_allowed():
    assert cm._allowed("10.1.2.3", ("10.0.0.0/8",)) and not cm._allowed("10.1.2.3", ("127.0.0.0/8",))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("", 3600), ("max-age=600", 600), ("public, max-age=120", 120), ("max-age=5", 60), ("max-age=9999999", 86400),
     ("no-store", 0), ("no-cache, max-age=600", 0), ("s-maxage=100", 3600), ('max-age="300"', 300)],
)
def test_cache_times_follow_cache_control_within_bounds(header, seconds):
    assert cm._cache_seconds(header) == seconds


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ([], "JSON object"),
        ({"client_id": URL + "x"}, "its own URL"),
        ({"client_id": URL, "client_secret": "s"}, "client_secret"),
        ({"client_id": URL, "token_endpoint_auth_method": "private_key_jwt"}, "not supported"),
    ],
)
def test_documents_are_checked(document, words):
    with pytest.raises(cm.MetadataError) as caught:
        cm._check_document(URL, document)
    assert words in str(caught.value)
