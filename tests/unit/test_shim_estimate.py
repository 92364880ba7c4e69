"""Prompt-size estimates."""

from __future__ import annotations

from proxy_shim import estimate
from proxy_shim.fake_upstream import fake_prompt_tokens


def test_chat_estimate_counts_text_and_framing() -> None:
    messages = [
        {"role": "system", "content": "abcdef"},  # 2 tokens + 4
        {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url"}]},
    ]
    assert estimate.chat_prompt_tokens(messages) == 3 + (4 + 2) + (4 + 1)


def test_estimate_is_never_below_the_fake_upstreams_count() -> None:
    for length in range(0, 200, 7):
        body = {"messages": [{"role": "user", "content": "x" * length}]}
        assert estimate.prompt_tokens("chat", body) >= fake_prompt_tokens("chat", body)


def test_garbage_messages_do_not_crash() -> None:
    assert estimate.chat_prompt_tokens("nope") == 3
    assert estimate.chat_prompt_tokens([1, None, {"content": 5}]) == 3 + 4


def test_completions_and_embeddings_inputs() -> None:
    assert estimate.prompt_tokens("completions", {"prompt": "abcdef"}) == 2
    assert estimate.prompt_tokens("embeddings", {"input": ["abc", "abcd"]}) == 1 + 2
    assert estimate.prompt_tokens("embeddings", {"input": [[1, 2, 3], [4]]}) == 4
    assert estimate.prompt_tokens("embeddings", {}) == 0
