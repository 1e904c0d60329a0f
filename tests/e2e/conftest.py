"""Fixtures shared by the end-to-end tests of proxies and certificates."""

from __future__ import annotations

import pytest

from tests.proxies import Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certificates:
    """A private CA and a server certificate for 127.0.0.1 that it signs."""
    return make_certificates(tmp_path_factory.mktemp("certs"))
