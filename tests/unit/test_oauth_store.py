"""The OAuth store in process, on a fresh SQLite file: hashes only, rotation, replay, purge."""

from __future__ import annotations

import pytest

from web.models import OAuthClient, OAuthGrant, db
from web.oauth.store import OAuthError, digest, pkce_matches

RESOURCE = "http://127.0.0.1:8000/"


@pytest.fixture
def store(app):
    return app.extensions["code_remote"].oauth


@pytest.fixture
def client(store):
    registered = store.register({"client_name": "unit", "redirect_uris": ["http://127.0.0.1:9/cb"]})
    return store.client(registered["client_id"])


VERIFIER = "v" * 43
CHALLENGE = "7w_YNF9DSfIdPf_pRjSq646_kPr-2-o9NAl16JGghdM"  # S256 of VERIFIER


def _tokens(store, client):
    code = store.issue_code(client, redirect_uri="http://127.0.0.1:9/cb", code_challenge=CHALLENGE, resource=RESOURCE, scope="mcp")
    return store.exchange_code(client, code, redirect_uri="http://127.0.0.1:9/cb", verifier=VERIFIER, resource=RESOURCE)


def test_pkce_s256():
    assert pkce_matches(VERIFIER, CHALLENGE) and not pkce_matches("w" * 43, CHALLENGE)


def test_only_hashes_are_stored(store, client):
    tokens = _tokens(store, client)
    with db.connection_context():
        stored = {g.token_hash for g in OAuthGrant.select()}
    assert digest(tokens["access_token"]) in stored and tokens["access_token"] not in stored
    assert not any(tokens["refresh_token"] in h for h in stored)


def test_access_tokens_are_bound_to_their_resource(store, client):
    tokens = _tokens(store, client)
    assert store.verify_access(tokens["access_token"], RESOURCE) is not None
    assert store.verify_access(tokens["access_token"], "https://elsewhere.example/") is None


def test_refresh_rotates_and_a_replay_revokes_the_family(store, client):
    first = _tokens(store, client)
    second = store.refresh(client, first["refresh_token"], resource=RESOURCE)
    assert second["refresh_token"] != first["refresh_token"]
    with pytest.raises(OAuthError) as caught:
        store.refresh(client, first["refresh_token"], resource=RESOURCE)
    assert caught.value.error == "invalid_grant"
    assert store.verify_access(second["access_token"], RESOURCE) is None


def test_a_consent_purges_grants_expired_over_a_day_ago(store, client):
    _tokens(store, client)
    with db.connection_context():
        OAuthGrant.update(expires_at=1.0).execute()
    _tokens(store, client)
    with db.connection_context():
        assert OAuthGrant.select().where(OAuthGrant.expires_at == 1.0).count() == 0
        assert OAuthGrant.select().count() == 3  # the new code, access and refresh tokens


def test_a_registration_purges_clients_never_used_a_day_after_registering(store, client):
    unused = store.register({"client_name": "never used", "redirect_uris": ["http://127.0.0.1:9/cb"]})["client_id"]
    _tokens(store, client)  # an approved consent: `client` is used
    day_and_a_bit = 24 * 3600 + 60
    with db.connection_context():
        OAuthClient.update(created_at=OAuthClient.created_at - day_and_a_bit).execute()
    store.register({"client_name": "newcomer", "redirect_uris": ["http://127.0.0.1:9/cb"]})
    with pytest.raises(OAuthError) as caught:
        store.client(unused)
    assert caught.value.error == "invalid_client"
    assert store.client(client.client_id).used_at is not None


def test_a_young_unused_client_is_kept(store):
    young = store.register({"client_name": "young", "redirect_uris": ["http://127.0.0.1:9/cb"]})["client_id"]
    with db.connection_context():
        OAuthClient.update(created_at=OAuthClient.created_at - 23 * 3600).execute()
    store.register({"client_name": "newcomer", "redirect_uris": ["http://127.0.0.1:9/cb"]})
    assert store.client(young).client_id == young
