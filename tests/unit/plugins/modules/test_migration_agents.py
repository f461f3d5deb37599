"""migration_sender and migration_receiver through their main(): what they refuse before starting anything."""

from __future__ import annotations

import platform

from ansible_collections.ferry.runc.plugins.modules import migration_sender

SENDER = {"migration_id": "m1", "container": "c1", "image_dir": "/srv/ferry-runc/images/m1", "secret": "a-migration-secret-0123",
          "strategy": "stop-and-copy", "receiver_address": "10.99.0.2", "agent_code": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}


def test_a_page_stream_without_tls_is_refused_unless_plaintext_is_asked_for(run_module):
    result = run_module(migration_sender, dict(SENDER, transport="page-server"))
    assert result["failed"] is True
    assert result["msg"] == (
        f"starting the sender refused on {platform.node()}: CRIU's page stream needs TLS (tls_cacert, tls_cert, tls_key); to"
        " send memory pages unencrypted and unauthenticated anyway, set page_stream_plaintext"
    )


def test_post_copy_streams_pages_too(run_module):
    result = run_module(migration_sender, dict(SENDER, strategy="post-copy", lazy_address="10.99.0.1"))
    assert result["failed"] is True and "page_stream_plaintext" in result["msg"]


def test_the_sender_needs_its_code_from_the_action_plugin(run_module):
    result = run_module(migration_sender, dict(SENDER, agent_code=None))
    assert result["failed"] is True
    assert "agent_code is missing" in result["msg"]


def test_hybrid_over_the_page_server_is_refused(run_module):
    result = run_module(migration_sender, dict(SENDER, strategy="hybrid", transport="page-server", lazy_address="10.99.0.1",
                                               page_stream_plaintext=True))
    assert result["failed"] is True
    assert result["msg"] == (
        f"starting the sender refused on {platform.node()}: hybrid needs the nfs transport: CRIU's lazy final dump reads"
        " its parent images from the shared directory"
    )


def test_a_lazy_candidate_streams_pages_and_needs_the_lazy_address(run_module):
    auto = dict(SENDER, strategy="pre-copy", candidates=["pre-copy", "hybrid"])
    assert "page_stream_plaintext" in run_module(migration_sender, dict(auto, lazy_address="10.99.0.1"))["msg"]
    assert "lazy_address is needed" in run_module(migration_sender, dict(auto, page_stream_plaintext=True))["msg"]


def test_candidates_start_from_pre_copy(run_module):
    result = run_module(migration_sender, dict(SENDER, candidates=["stop-and-copy", "pre-copy"]))
    assert result["failed"] is True
    assert "candidates need strategy pre-copy" in result["msg"]


def test_post_copy_without_the_lazy_address_is_refused(run_module):
    result = run_module(migration_sender, dict(SENDER, strategy="post-copy", page_stream_plaintext=True))
    assert result["failed"] is True
    assert "lazy_address is needed" in result["msg"]
