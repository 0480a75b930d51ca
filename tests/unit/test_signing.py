"""runner.signing: job signatures over the canonical config, checkpoint digests, the key settings."""
from __future__ import annotations

import pytest

from runner.errors import UserError
from runner.signing import file_digest, sign_config, signature_problem, signing_key

KEY = b"k" * 32


def test_a_signature_is_of_the_canonical_config_and_of_the_key():
    a, b = {"lr": 0.1, "seed": 1}, {"seed": 1, "lr": 0.1}
    assert sign_config(KEY, a) == sign_config(KEY, b)  # key order is no part of a config
    assert sign_config(KEY, a) != sign_config(b"j" * 32, a)
    assert signature_problem(KEY, b, sign_config(KEY, a)) is None
    assert "does not match" in signature_problem(KEY, dict(a, lr=0.2), sign_config(KEY, a))
    assert "not signed" in signature_problem(KEY, a, None)
    assert "does not match" in signature_problem(KEY, a, "hmac-sha256:" + "0" * 64)


def test_checkpoint_digests_are_hmacs_under_a_key_and_differ_from_job_signatures():
    assert file_digest(b"abc", None) == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    keyed = file_digest(b"abc", KEY)
    assert keyed.startswith("hmac-sha256:") and keyed != file_digest(b"abc", b"j" * 32)
    assert keyed != sign_config(KEY, {"abc": 1})


def test_the_key_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNNER_SIGNING_KEY", raising=False)
    monkeypatch.delenv("RUNNER_SIGNING_KEY_FILE", raising=False)
    assert signing_key() is None
    monkeypatch.setenv("RUNNER_SIGNING_KEY", "x" * 20)
    assert signing_key() == b"x" * 20
    monkeypatch.delenv("RUNNER_SIGNING_KEY")
    path = tmp_path / "key"
    path.write_text("y" * 24 + "\n")
    path.chmod(0o600)
    monkeypatch.setenv("RUNNER_SIGNING_KEY_FILE", str(path))
    assert signing_key() == b"y" * 24  # the trailing newline an editor adds is no part of it
    path.chmod(0o640)
    with pytest.raises(UserError, match="chmod 600"):
        signing_key()
