"""The distinct digest types: validated where a string enters, never re-checked inside."""

from __future__ import annotations

import pytest

from pipeline.digest import (
    as_cache_key,
    as_diff_id,
    as_digest,
    key_of,
    sha256_bytes,
    uncompressed_blob,
)

GOOD = "sha256:" + "ab" * 32


@pytest.mark.parametrize("make", [as_digest, as_cache_key, as_diff_id])
@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256:",
        "sha256:" + "AB" * 32,
        "sha512:" + "ab" * 32,
        GOOD + "0",
        GOOD[:-1],
        " " + GOOD,
    ],
)
def test_a_malformed_string_is_refused_naming_where_it_came_from(make, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"^manifest sha256:x: not a sha256 digest"):
        make(text, "manifest sha256:x")


def test_a_well_formed_string_passes_unchanged() -> None:
    assert as_digest(GOOD) == as_cache_key(GOOD) == as_diff_id(GOOD) == GOOD


def test_computed_values_are_well_formed() -> None:
    assert as_digest(sha256_bytes(b"x")) == sha256_bytes(b"x")
    assert as_cache_key(key_of({"a": 1})) == key_of({"a": 1})
    assert uncompressed_blob(as_diff_id(GOOD)) == GOOD


def test_a_stored_config_with_a_bad_diff_id_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``Store.manifest_layers`` reads diff_ids from a stored config: input like any other."""
    from pipeline.oci.config import ImageConfig
    from pipeline.oci.manifest import image_config_blob, manifest_blob
    from pipeline.store import Store

    store = Store(tmp_path / "store")
    try:
        config = image_config_blob(ImageConfig(), [as_diff_id(GOOD)], [])
        data = config.data.replace(GOOD.encode(), b"sha256:not-hex")
        from pipeline.oci.manifest import Blob, Descriptor

        bad = Blob(data, Descriptor(config.descriptor.media_type, sha256_bytes(data), len(data)))
        store.put_blob(bad)
        manifest = manifest_blob(bad.descriptor, [])
        digest = store.put_blob(manifest)
        with pytest.raises(ValueError, match=r"image config of .*not a sha256 digest"):
            store.manifest_layers(digest)
    finally:
        store.close()
