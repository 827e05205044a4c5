"""The budgeted table under the FETCH lines and THREAD answers kept between sessions."""

from txmailhost.imap.budgeted import BudgetedLRU


def test_least_recently_used_goes_first_to_make_room() -> None:
    table: BudgetedLRU[str] = BudgetedLRU(budget=10)
    table.put("a", "A", 4)
    table.put("b", "B", 4)
    assert table.get("a") == "A"  # now "b" is the least recently used
    table.put("c", "C", 4)
    assert table.get("b") is None
    assert (table.get("a"), table.get("c")) == ("A", "C")
    assert table.used == 8


def test_a_value_put_again_replaces_its_cost() -> None:
    table: BudgetedLRU[str] = BudgetedLRU(budget=10)
    table.put("a", "A", 6)
    table.put("a", "A2", 9)
    assert table.get("a") == "A2"
    assert table.used == 9


def test_a_value_dearer_than_the_budget_is_not_kept_and_evicts_nothing() -> None:
    table: BudgetedLRU[str] = BudgetedLRU(budget=10)
    table.put("a", "A", 5)
    table.put("big", "B", 11)
    assert table.get("big") is None
    assert table.get("a") == "A"
    assert table.used == 5
