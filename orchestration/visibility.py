"""Who sees what: context scoping by the model of control, reusable by every pattern.

Under federated control an agent sees its own group's messages in full and, from other groups, only what the
author declared across the boundary: the text after a line starting with `SHARE:`. Everything else from another
group becomes a placeholder, so the reader knows something was said but not what. The orchestrator (an agent
outside every group, acting for the whole run) sees everything. Other models of control share all context.
"""

from __future__ import annotations

import re

SHARE_MARKER = "SHARE:"
# a line that starts (after indentation) with the marker; what follows it, to the end, crosses the boundary
_SHARE = re.compile(r"^[ \t]*SHARE:[ \t]?(.*)\Z", re.MULTILINE | re.DOTALL)


def shared_part(text: str) -> str | None:
    """What a message declares across group boundaries (the text after its first `SHARE:` line), or None."""
    match = _SHARE.search(text)
    if match is None:
        return None
    return match.group(1).strip() or None


def placeholder(author_group: str | None) -> str:
    """What a reader outside `author_group` sees of a message that shares nothing."""
    return f"[private message of group {author_group or 'none'}]"


def visible_text(
    text: str,
    author_group: str | None,
    reader_group: str | None,
    control: str,
    *,
    orchestrator: bool = False,
) -> str:
    """The part of a message written in `author_group` that a reader in `reader_group` may see.

    Outside federated control, for the orchestrator, and inside one group: the whole text. Across groups under
    federated control: only the shared part, or a placeholder naming the author's group. Agents without a group
    (None) form a group of their own, so they see each other but not other groups' private messages.
    """
    if control != "federated" or orchestrator or author_group == reader_group:
        return text
    shared = shared_part(text)
    return shared if shared is not None else placeholder(author_group)
