"""Who sees what: context scoping by the model of control.

Under federated control an agent sees its own group's messages in full and, from other groups, only what the
author declared across the boundary: the text after a line starting with `SHARE:`. Everything else from
another group is shown as a placeholder, so the reader knows something was said but not what.
"""

from __future__ import annotations

import re

SHARE = re.compile(r"^\s*SHARE:\s?(.*)$", re.MULTILINE | re.DOTALL)


def shared_part(text: str) -> str | None:
    """What a message declares across group boundaries (after `SHARE:`), or None."""
    match = SHARE.search(text)
    return match.group(1).strip() if match else None


def visible_text(text: str, *, author_group: str | None, reader_group: str | None, control: str) -> str:
    """The part of a message written in `author_group` that a reader in `reader_group` may see."""
    if control != "federated" or author_group == reader_group:
        return text
    shared = shared_part(text)
    if shared:
        return shared
    return f"[private message of group {author_group or 'none'}]"
