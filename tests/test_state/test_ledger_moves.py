"""Moving an order's reservation (a re-route): the new plan is taken while the old one still
stands, with the old one's units credited at a node both use, then the old one is released."""

from __future__ import annotations

from state.ledger import Ledger, ReserveRequest
from tests.test_state.ledger_helpers import DAY, stock_up


def test_a_move_to_the_same_node_needs_no_extra_stock(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=2)
    assert ledger.reserve([ReserveRequest("o", "N1", (("a", 2),))], DAY)[0].status == "reserved"
    plain = ledger.reserve([ReserveRequest("o#2", "N1", (("a", 2),))], DAY)[0]
    assert (plain.status, plain.short_atp) == ("short", 0)  # without the credit: no stock left
    moved = ledger.reserve([ReserveRequest("o#2", "N1", (("a", 2),), credit="o")], DAY)[0]
    assert moved.status == "reserved"
    assert ledger.stock("N1", "a") == (2, 4, 0)  # both held for a moment, never shown negative
    assert ledger.release({"N1": ["o"]}, DAY) == {("N1", "o"): "released"}
    assert ledger.stock("N1", "a") == (2, 2, 0)


def test_the_credit_covers_only_what_the_old_reservation_holds(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=3, b=5)
    ledger.reserve([ReserveRequest("o", "N1", (("a", 2),))], DAY)
    more = ledger.reserve([ReserveRequest("o#2", "N1", (("a", 4),), credit="o")], DAY)[0]
    assert (more.status, more.short_sku, more.short_atp) == ("short", "a", 3)  # 1 free + 2 held
    other = ledger.reserve([ReserveRequest("o#2", "N1", (("b", 5),), credit="o")], DAY)[0]
    assert other.status == "reserved"  # b was never held by "o": plain stock
    assert ledger.stock("N1", "a") == (3, 2, 1)  # the failed move changed nothing


def test_a_credit_from_nothing_is_no_credit_and_replays_are_idempotent(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=1)
    r = ReserveRequest("o#2", "N1", (("a", 1),), credit="never-reserved")
    assert ledger.reserve([r], DAY)[0].status == "reserved"
    assert ledger.reserve([r], DAY)[0].status == "already"
    assert ledger.stock("N1", "a") == (1, 1, 0)
