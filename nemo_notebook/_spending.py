"""What this kernel spends, and the budget that caps it (``%nemo budget N``).

A turn's cost is the account's total balance before it minus the total after it (the server
tells no cost per turn). The balance before is the last one read, so a turn usually costs one
extra request, after it ends. A turn or a batch that would start over the budget is refused
before anything is sent; estimates come from what recent turns on this backend spent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from statistics import mean

from nemo_notebook._errors import NemoError, NotebookError
from nemo_notebook._models import Credits
from nemo_notebook._notebook_words import say

__all__ = ["DEFAULT_ROW_ESTIMATE", "Spending", "estimate_per_turn"]

#: Credits a batch row is assumed to cost before any turn on the backend was measured (about
#: what a generated clip costs in the cloud).
DEFAULT_ROW_ESTIMATE = 100


class Spending:
    """Credits spent by this kernel and its budget (``None``: no cap)."""

    def __init__(
        self,
        read_balance: Callable[[], Credits],
        language: Callable[[], str],
        budget: Callable[[], int | None],
    ) -> None:
        self._read_balance = read_balance
        self._language = language
        self._budget = budget
        self._lock = threading.Lock()
        self.spent = 0
        self._last_total: int | None = None

    def forget_balance(self) -> None:
        """Another backend or account: the last balance read says nothing about it."""
        with self._lock:
            self._last_total = None

    @property
    def budget(self) -> int | None:
        return self._budget()

    @property
    def remaining(self) -> int | None:
        budget = self.budget
        return None if budget is None else budget - self.spent

    def check_turn(self) -> None:
        """Refuse a turn once the budget is used up (nothing is sent). A turn's own cost is
        not guessed: a small edit after a costly generation must still go through."""
        remaining = self.remaining
        if remaining is not None and remaining <= 0:
            raise NotebookError(
                say("budget_spent", self._language(), budget=self.budget, spent=self.spent)
            )

    def balance_before(self) -> int | None:
        """The account's total before a turn: the last one read, else read now."""
        with self._lock:
            known = self._last_total
        return known if known is not None else self._total_now()

    def balance_now(self) -> int | None:
        """The account's total read now (``None`` when it cannot be read)."""
        return self._total_now()

    def settle(self, before: int | None) -> int | None:
        """After a turn: read the total, count what went since ``before`` as spent by this
        kernel and return it (``None`` when the balance could not be read)."""
        after = self._total_now()
        if before is None or after is None:
            return None
        spent = max(0, before - after)
        self.add(spent)
        return spent

    def add(self, credits: int) -> None:
        with self._lock:
            self.spent += max(0, credits)

    def _total_now(self) -> int | None:
        try:
            total = self._read_balance().total
        except NemoError:
            return None
        with self._lock:
            self._last_total = total
        return total


def estimate_per_turn(recent_costs: list[int]) -> int | None:
    """What a turn costs, from the costs of recent ones (``None`` when none was measured)."""
    return round(mean(recent_costs)) if recent_costs else None
