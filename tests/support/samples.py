"""Sample inputs: ids, chat asks and tickets to classify."""

from __future__ import annotations

import uuid
from typing import Any

from shared.chat.models import ChatRequest

LABELS = ["billing", "shipping", "technical"]
# The simulator picks the label sharing a word with the text: these go billing, shipping,
# technical, billing, shipping.
TICKET_TEXTS = [
    "my invoice shows a double billing charge",
    "the parcel shipping is late",
    "a technical error when I log in",
    "billing address wrong on the invoice",
    "shipping box damaged in shipping",
]


def new_id(prefix: str = "req") -> str:
    """A fresh id that says which test made it: `<prefix>-<12 hex digits>`."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    """A `/chat` body of one user message: `{"messages": [{"role": "user", ...}], **extra}`."""
    return {"messages": [{"role": "user", "content": text}], **extra}


def ask(text: str, **extra: Any) -> ChatRequest:
    """`chat_body` as the chat service takes it."""
    return ChatRequest.model_validate(chat_body(text, **extra))


def tickets(n: int = 5, *, first: int = 0) -> list[dict[str, str]]:
    """`n` items to classify, ids `t<first>`, `t<first + 1>`, ..., texts from TICKET_TEXTS in
    turn."""
    return [{"id": f"t{first + i}", "text": TICKET_TEXTS[i % len(TICKET_TEXTS)]} for i in range(n)]
