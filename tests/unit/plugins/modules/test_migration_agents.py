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
