"""A study's identity (the digest of its canonical spec) must not change when a new job kind is registered."""

from __future__ import annotations

from robustlab.bench.spec import spec_model

#: The digest of ``{models: [resnet8]}`` under commit 0d863de, before the ``autoattack`` kind existed: runs made
#: then must still resume (their folder is found by this digest).
BEFORE_AUTOATTACK = "5789b272e23a9ea9a028eae21dff4ca43d925b44b770daba28cc7c30f6a7bf65"


def test_an_unused_new_kind_leaves_the_digest_of_an_older_spec_unchanged() -> None:
    spec = spec_model()(models=["resnet8"])
    assert "autoattack" not in spec.canonical()
    assert spec.digest() == BEFORE_AUTOATTACK


def test_a_used_new_kind_is_part_of_the_identity() -> None:
    plain = spec_model()(models=["resnet8"])
    used = spec_model()(models=["resnet8"], autoattack=[{"norm": "linf", "eps": [8 / 255]}])
    assert "autoattack" in used.canonical() and used.digest() != plain.digest()
