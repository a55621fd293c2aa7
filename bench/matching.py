"""Linear-time matching (RE2, `policies.linear`) against Python's backtracking `re`, on the same patterns.

Measures, never asserts. Run: `python bench/matching.py`. Reports: the preset's old `no-rm-rf-root` pattern on
the attack string (`re` doubles every 4 characters; RE2 is linear), redaction throughput on ordinary text, and
a pattern that makes every match look to the end of the text.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import linear
from policies.redaction import DEFAULT_PATTERNS, Redactor

OLD_RM = r"rm(?<!\wrm)\s+(-{1,2}[a-zA-Z-]+\s+)+/\*?(\s|$|[;&|\"'])"
NEW_RM = r"\brm\s+(-{1,2}[a-zA-Z-]+\s+)+/\*?(\s|$|[;&|\"'])"


def timed(fn, repeat: int = 1) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def attack(dashes: int) -> str:
    return "rm " + "--- " * dashes + "x"


def main() -> None:
    old, new = re.compile(OLD_RM), linear.compile_pattern(NEW_RM)
    print("attack string `rm ` + `--- ` * n + `x` (no match)")
    for n in (16, 18, 20):
        print(f"  re   n={n:>6}: {timed(lambda n=n: old.search(attack(n))) * 1000:10.1f} ms")
    for n in (20, 1_000, 25_000):
        print(f"  RE2  n={n:>6}: {timed(lambda n=n: new.search(attack(n)), 20) * 1000:10.3f} ms")

    text = ("An ordinary tool result with words, paths /usr/lib and numbers 12345. " * 15_000)[:1_000_000]
    secret_text = text[:500_000] + " sk-ant-" + "k" * 40 + " " + text[500_000:]
    python = re.compile("|".join(f"(?:{p})" for p in DEFAULT_PATTERNS))
    ours = Redactor()
    for label, sample in (("no secret", text), ("one secret", secret_text)):
        t_re = timed(lambda sample=sample: python.sub("[redacted]", sample), 5)
        t_ours = timed(lambda sample=sample: ours.text(sample), 5)
        print(
            f"redaction of 1 MB, {label}: re {len(sample) / t_re / 1e6:.0f} MB/s, "
            f"RE2 {len(sample) / t_ours / 1e6:.0f} MB/s (ratio {t_ours / t_re:.2f})"
        )

    far = "a[^\n]*b|a"
    for n in (10_000, 40_000):
        sample = "a" * n
        t_re = timed(lambda sample=sample: re.sub(far, "", sample))
        t_ours = timed(lambda sample=sample: linear.compile_pattern(far).sub("", sample))
        print(f"{far!r} on {n:,} chars: re {t_re * 1000:.0f} ms, ours {t_ours * 1000:.1f} ms")


if __name__ == "__main__":
    main()
