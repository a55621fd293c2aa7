"""Reading structured answers out of model text: JSON objects, possibly fenced or surrounded by prose."""

from __future__ import annotations

import json
from typing import Any

from policies import linear

# Linear time (RE2): with `re`, an unclosed fence followed by spaces took quadratic time on the event loop.
MAX_STARTS = 1000  # brackets tried per candidate: bounds the work on a hostile reply
_FENCE = linear.compile_pattern(r"(?s)```(?:json)?\s*(.*?)```")


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text` (inside a ```json fence or bare); `ValueError` if none parses."""
    candidates = [*_FENCE.findall(text), text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        tried = 0
        for start, char in enumerate(candidate):
            if char in "{[":
                tried += 1
                if tried > MAX_STARTS:
                    break
                try:
                    value, _ = decoder.raw_decode(candidate, start)
                except json.JSONDecodeError:
                    continue
                except RecursionError:  # a model's `[[[[…` nests past the limit: so does all that follows
                    break
                return value
    raise ValueError("no JSON object found in the reply")
