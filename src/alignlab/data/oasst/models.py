"""In-memory OpenAssistant data: a message, its quality labels, and a conversation tree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

PROMPTER = "prompter"
ASSISTANT = "assistant"
ROLES = (PROMPTER, ASSISTANT)
READY_FOR_EXPORT = "ready_for_export"

# The quality labels OpenAssistant collected (SPEC §1); other names are kept as read.
LABEL_NAMES = (
    "spam",
    "fails_task",
    "lang_mismatch",
    "pii",
    "not_appropriate",
    "hate_speech",
    "sexual_content",
    "quality",
    "toxicity",
    "humor",
    "helpfulness",
    "creativity",
    "violence",
)


@dataclass(frozen=True)
class Label:
    """One quality label: mean annotator value in [0, 1] and how many annotators gave it."""

    value: float
    count: int | None = None


@dataclass(kw_only=True)
class Message:
    """One message with every SPEC field; `replies` is filled only inside a `Tree`."""

    message_id: str
    parent_id: str | None = None
    user_id: str | None = None
    created_date: str | None = None
    text: str
    role: str
    lang: str | None = None
    review_count: int | None = None
    review_result: bool | None = None
    deleted: bool = False
    rank: int | None = None
    synthetic: bool = False
    model_name: str | None = None
    emojis: dict[str, int] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    detoxify: dict[str, Any] | None = None
    message_tree_id: str | None = None
    tree_state: str | None = None
    replies: list[Message] = field(default_factory=list)
    # Keys found in the file that SPEC does not name, kept so writing back loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)
    # 1-based line of the file the message came from (for error reports); not data.
    line: int | None = field(default=None, compare=False, repr=False)

    def walk(self) -> Iterator[Message]:
        """Yield this message and all its descendants, depth-first in reply order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.replies))


@dataclass
class Tree:
    """One conversation tree: its id, its export state and the root (prompter) message."""

    message_tree_id: str
    prompt: Message
    tree_state: str | None = None

    def messages(self) -> Iterator[Message]:
        """Yield every message of the tree, depth-first from the root."""
        return self.prompt.walk()

    def __len__(self) -> int:
        """Number of messages in the tree."""
        return sum(1 for _ in self.messages())
