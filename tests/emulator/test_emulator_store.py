"""The emulator's SQLite store: tokens, limits, credits, drafts, renders, persistence."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nemo_notebook.emulator.store import (
    DAY_S,
    InsufficientCredits,
    RateLimited,
    Store,
    TokenExpired,
    TokenInvalid,
    default_state,
)


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    db = Store(tmp_path / "emulator.sqlite3", tokens_per_ip=3, clock=clock)
    yield db
    db.close()


def test_anonymous_token_format_and_only_its_hash_is_stored(store: Store, tmp_path: Path) -> None:
    issued = store.issue_anonymous_token("client-1", "127.0.0.1")
    assert re.fullmatch(r"nmv_usr_[A-Za-z0-9_\-]{43}", issued.token)
    assert issued.user_id.startswith("anon_")
    assert issued.credits == 100
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert issued.token.encode() not in raw
    assert issued.token[len("nmv_usr_") :].encode() not in raw


def test_authenticate_grants_scopes_until_expiry(store: Store, clock: FakeClock) -> None:
    issued = store.issue_anonymous_token("client-1", "127.0.0.1")
    info = store.authenticate(issued.token)
    assert info.user_id == issued.user_id
    assert info.scopes == {"read", "write", "upload"}
    clock.advance(7 * DAY_S - 1)
    store.authenticate(issued.token)
    clock.advance(2)
    with pytest.raises(TokenExpired):
        store.authenticate(issued.token)
    with pytest.raises(TokenInvalid):
        store.authenticate(issued.token + "x")


def test_one_token_per_client_id_while_valid_then_same_user(store: Store, clock: FakeClock) -> None:
    first = store.issue_anonymous_token("client-1", "10.0.0.1")
    with pytest.raises(RateLimited):
        store.issue_anonymous_token("client-1", "10.0.0.2")
    clock.advance(7 * DAY_S + 1)
    second = store.issue_anonymous_token("client-1", "10.0.0.1")
    assert second.user_id == first.user_id
    assert second.token != first.token


def test_expire_all_tokens_allows_a_new_token_for_the_client(store: Store) -> None:
    first = store.issue_anonymous_token("client-1", "127.0.0.1")
    assert store.authenticate(first.token).user_id == first.user_id  # now remembered in memory
    assert store.expire_all_tokens() == 1
    with pytest.raises(TokenExpired):
        store.authenticate(first.token)
    assert store.issue_anonymous_token("client-1", "127.0.0.1").user_id == first.user_id


def test_per_ip_limit_counts_seven_days(store: Store, clock: FakeClock) -> None:
    for n in range(3):
        store.issue_anonymous_token(f"client-{n}", "10.0.0.9")
    with pytest.raises(RateLimited, match="3 per 7 days"):
        store.issue_anonymous_token("client-x", "10.0.0.9")
    store.issue_anonymous_token("client-y", "10.0.0.8")  # another address is fine
    clock.advance(7 * DAY_S + 1)
    store.issue_anonymous_token("client-x", "10.0.0.9")


def test_reserve_settle_release_exactly_once(store: Store) -> None:
    user = store.issue_anonymous_token("client-1", "127.0.0.1").user_id
    spend = store.reserve(user, "generate_image", 30, "s1")
    refund = store.reserve(user, "generate_video", 50, "s1")
    assert (store.balance(user).available, store.balance(user).frozen) == (20, 80)
    assert store.balance(user).total == 100
    assert store.settle(spend) and not store.settle(spend) and not store.release(spend)
    assert store.release(refund) and not store.release(refund) and not store.settle(refund)
    balance = store.balance(user)
    assert (balance.available, balance.frozen, balance.spent) == (70, 0, 30)
    kinds = [(row["kind"], row["amount"]) for row in store.ledger(user)]
    assert kinds == [("grant", 100), ("reserve", 30), ("reserve", 50), ("settle", 30),
                     ("release", 50)]  # fmt: skip


def test_reserve_refuses_more_than_available(store: Store) -> None:
    user = store.issue_anonymous_token("client-1", "127.0.0.1").user_id
    with pytest.raises(InsufficientCredits, match="needs 101"):
        store.reserve(user, "generate_video", 101)
    assert store.balance(user).available == 100


def test_concurrent_reservations_never_overspend(store: Store) -> None:
    user = store.issue_anonymous_token("client-1", "127.0.0.1").user_id
    outcomes: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            try:
                rid = store.reserve(user, "edit", 3)
            except InsufficientCredits:
                ok = False
            else:
                ok = store.settle(rid)
            with lock:
                outcomes.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    balance = store.balance(user)
    assert outcomes.count(True) == 33  # 100 // 3
    assert (balance.available, balance.frozen, balance.spent) == (1, 0, 99)


def test_stale_reservations_are_released_on_restart(tmp_path: Path, clock: FakeClock) -> None:
    store = Store(tmp_path / "db.sqlite3", clock=clock)
    user = store.issue_anonymous_token("client-1", "127.0.0.1").user_id
    rid = store.reserve(user, "generate_video", 60)
    store.close()
    reopened = Store(tmp_path / "db.sqlite3", clock=clock)
    assert reopened.release_stale_reservations() == 1
    assert reopened.reservation_status(rid) == "released"
    assert reopened.balance(user).available == 100
    reopened.close()


def test_state_versions_are_all_kept(store: Store) -> None:
    user = store.issue_anonymous_token("client-1", "127.0.0.1").user_id
    session = store.create_session(user, "project", "en")
    assert re.fullmatch(r"[1-9]\d{18}", session.session_id)
    assert session.task_id.startswith("task_")
    assert store.latest_state(session.session_id) == default_state()
    state = store.latest_state(session.session_id)
    state["draft"]["m"]["title"] = "One"
    assert store.save_state(session.session_id, state, "title") == 2
    state["draft"]["m"]["title"] = "Two"
    store.save_state(session.session_id, state, "retitle")
    versions = store.state_versions(session.session_id)
    assert [v["reason"] for v in versions] == ["created", "title", "retitle"]
    assert versions[1]["state"]["draft"]["m"]["title"] == "One"
    assert store.latest_state(session.session_id)["draft"]["m"]["title"] == "Two"


def test_everything_survives_reopening(tmp_path: Path, clock: FakeClock) -> None:
    store = Store(tmp_path / "db.sqlite3", clock=clock)
    issued = store.issue_anonymous_token("client-1", "127.0.0.1")
    session = store.create_session(issued.user_id, "project", "zh")
    store.settle(store.reserve(issued.user_id, "edit", 7))
    store.add_message(session.session_id, "e-1", "user", "你好")
    store.close()
    store = Store(tmp_path / "db.sqlite3", clock=clock)
    assert store.authenticate(issued.token).user_id == issued.user_id
    assert store.get_session(session.session_id) == session
    assert store.balance(issued.user_id).available == 93
    assert store.history(session.session_id)[0]["text"] == "你好"
    store.close()


def test_unfinished_renders_are_requeued(store: Store) -> None:
    user = store.issue_anonymous_token("client-1", "127.0.0.1").user_id
    session = store.create_session(user, "project", "en")
    for render_id in ("r1", "r2", "r3"):
        store.create_render(render_id, user, session.session_id, {"t": []}, "high")
    store.update_render("r2", status="processing", progress=0.4)
    store.update_render("r3", status="completed", progress=1.0)
    assert store.requeue_unfinished_renders() == ["r1", "r2"]
    r2 = store.get_render("r2")
    assert r2 is not None and (r2["status"], r2["progress"]) == ("pending", 0)


def test_claim_tokens_are_random_and_stored_hashed(store: Store) -> None:
    user = store.issue_anonymous_token("client-1", "127.0.0.1").user_id
    session = store.create_session(user, "project", "en")
    claim, expires_in = store.create_claim(user, session.session_id, session.task_id)
    other, _ = store.create_claim(user, session.session_id, session.task_id)
    assert claim.startswith("clm_") and claim != other and expires_in == 604800
    assert store.claim_exists(claim) and not store.claim_exists("clm_nope")


def test_reads_do_not_wait_for_a_write_in_progress(store: Store) -> None:
    """Request checks (token, session, balance) answer while a turn holds a write transaction,
    and see only what was committed."""
    issued = store.issue_anonymous_token("client-1", "127.0.0.1")
    session = store.create_session(issued.user_id, "project", "en")
    writing, finish = threading.Event(), threading.Event()

    def hold_a_write() -> None:
        with store._transaction() as db:
            db.execute("UPDATE accounts SET available = 7 WHERE user_id = ?", (issued.user_id,))
            writing.set()
            finish.wait(10)

    writer = threading.Thread(target=hold_a_write)
    writer.start()
    try:
        assert writing.wait(5)
        started = time.monotonic()
        assert store.authenticate(issued.token).user_id == issued.user_id
        assert store.get_session(session.session_id) == session
        assert store.balance(issued.user_id).available == 100
        assert time.monotonic() - started < 2.0
    finally:
        finish.set()
        writer.join()
    assert store.balance(issued.user_id).available == 7


def test_reads_after_close_fail_clearly(store: Store) -> None:
    issued = store.issue_anonymous_token("client-1", "127.0.0.1")
    store.balance(issued.user_id)  # leaves an idle reader connection behind
    store.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.balance(issued.user_id)
