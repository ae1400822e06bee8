"""Problems found in OpenAssistant files: one `Issue` each, a `ValidationReport`, and `DataError`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from alignlab.errors import DataError as _AlignlabDataError

# Issue kinds. Line-level kinds lose one line; every other kind skips the tree it is in.
MALFORMED_JSON = "malformed_json"  # the line is not JSON
BAD_RECORD = "bad_record"  # JSON, but neither a message nor a tree
BAD_FIELD = "bad_field"  # a field is missing or has the wrong type
DUPLICATE_ID = "duplicate_id"
UNKNOWN_PARENT = "unknown_parent"
PARENT_MISMATCH = (
    "parent_mismatch"  # a nested reply names another parent than the one it sits under
)
CYCLE = "cycle"
MULTIPLE_ROOTS = "multiple_roots"
BAD_ROLE = "bad_role"  # role is neither prompter nor assistant
ROLE_ORDER = "role_order"  # roles do not alternate along a branch, or the root is not a prompter
DUPLICATE_RANK = "duplicate_rank"
LABEL_RANGE = "label_range"
UNREADABLE = "unreadable"  # the file itself cannot be read (missing, corrupt gzip, ...)

LINE_KINDS = frozenset({MALFORMED_JSON, BAD_RECORD})


@dataclass(frozen=True)
class Issue:
    """One problem: what kind, a readable message, and where (file, 1-based line, message id)."""

    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    message_id: str | None = None

    def __str__(self) -> str:
        """Render as `file:line: [kind] message (message <id>)`, leaving out what is unknown."""
        where = self.file or "<data>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: [{self.kind}] {self.message}"
        if self.message_id is not None:
            text += f" (message {self.message_id})"
        return text


class DataError(_AlignlabDataError):
    """Bad OpenAssistant input in strict mode, or an unreadable file; names file, line and id.

    A `ValueError` and an `alignlab.errors.DataError`, so the `alignlab` command reports it
    with exit code 2 and no traceback.
    """

    def __init__(self, issue: Issue, more: int = 0) -> None:
        """Wrap `issue`; `more` counts further problems found in the same file."""
        self.issue = issue
        self.more = more
        suffix = f" (and {more} more problem{'s' * (more != 1)})" if more else ""
        super().__init__(f"{issue}{suffix}")


@dataclass
class ValidationReport:
    """What reading one file gave: counts of what was kept and skipped, and every issue."""

    file: str | None = None
    records: int = 0  # non-blank lines read
    messages: int = 0  # messages in kept trees
    trees: int = 0  # trees kept
    trees_skipped: int = 0  # trees skipped because of an issue
    messages_skipped: int = 0  # messages inside skipped trees
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped."""
        return not self.issues

    @property
    def counts(self) -> Counter[str]:
        """Number of issues of each kind."""
        return Counter(issue.kind for issue in self.issues)

    @property
    def lines_skipped(self) -> int:
        """Lines that could not be used at all (not JSON, or not a message/tree)."""
        return sum(1 for issue in self.issues if issue.kind in LINE_KINDS)

    def summary(self) -> str:
        """One line: trees and messages kept, what was skipped and why."""
        text = f"{self.trees} trees, {self.messages} messages"
        if self.ok:
            return text + ", no problems"
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.counts.items()))
        return (
            f"{text}; skipped {self.trees_skipped} trees ({self.messages_skipped} messages) "
            f"and {self.lines_skipped} lines; problems: {kinds}"
        )
