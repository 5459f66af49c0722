"""Continuation tokens sealed to their job (pure logic)."""

from __future__ import annotations

import pytest

from shared.jobs.page_tokens import BadToken, page_key, seal, unseal

KEY = page_key("s" * 32)
COSMOS = '{"token":"+RID:gAABAIAAAAIDAAAAAAAAAA==#RT:1#TRC:2","range":{"min":"","max":"FF"}}'


def test_a_sealed_token_opens_for_its_job_only() -> None:
    sealed = seal(COSMOS, "job-a", KEY)
    assert sealed is not None
    assert unseal(sealed, "job-a", KEY) == COSMOS
    with pytest.raises(BadToken):
        unseal(sealed, "job-b", KEY)
    with pytest.raises(BadToken):
        unseal(sealed, "job-a", page_key("t" * 32))  # the secret was rotated
    assert seal(None, "job-a", KEY) is None
    assert unseal(None, "job-a", KEY) is None


@pytest.mark.parametrize("bad", ["", "garbage", "{}", "a.b", "é.é", COSMOS, "...."])
def test_anything_not_sealed_here_is_refused(bad: str) -> None:
    with pytest.raises(BadToken):
        unseal(bad, "job-a", KEY)
