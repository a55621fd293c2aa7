"""The price table: data (prices.toml), not code. Cost is `None` for a model it does not list."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from orchestration.errors import ConfigError
from orchestration.models.base import Usage

PACKAGED = Path(__file__).with_name("prices.toml")
KEYS = ("input", "output", "cache_write", "cache_read")


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


class PriceTable:
    """Prices by model id prefix; the longest matching prefix wins."""

    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = dict(sorted(prices.items(), key=lambda kv: -len(kv[0])))

    def price(self, model: str) -> Price | None:
        """The row of the longest prefix of `model`, or None when no row matches."""
        return next((p for prefix, p in self.prices.items() if model.startswith(prefix)), None)

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for one call, or None when the model's price or the call's tokens are unknown."""
        price = self.price(model)
        if price is None or usage.input_tokens is None or usage.output_tokens is None:
            return None
        total = (
            usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + (usage.cache_write_tokens or 0) * price.cache_write
            + (usage.cache_read_tokens or 0) * price.cache_read
        ) / 1_000_000
        return round(total, 8)


def _read(path: Path) -> dict[str, Price]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return {model: Price(**{k: float(row[k]) for k in KEYS}) for model, row in data.items()}
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, RecursionError) as exc:
        detail = " ".join(str(exc).split())[:200]  # one line, whatever the parser said
        raise ConfigError(
            f"price table {path} is invalid ({type(exc).__name__}: {detail}); each [model] needs {', '.join(KEYS)}"
        ) from None


def load_prices(path: Path | None = None) -> PriceTable:
    """The table at `path` (default: the packaged prices.toml), with `CONCERTMASTER_PRICES`' rows over it.

    The override file has the same format; its rows replace or add to the base table's, so a user can fix
    one price or add a model without copying the whole table.
    """
    prices = _read(path or PACKAGED)
    override = os.environ.get("CONCERTMASTER_PRICES")
    if override:
        prices.update(_read(Path(override)))
    return PriceTable(prices)
