"""The paper-trading ledger: append-only JSONL with a hash chain, and its mark to market.

# HOST ONLY (standard library + NumPy; no JAX)
One decision per line (``hrl-sarp decide --ledger FILE``). Each line is the canonical JSON of
its record (keys sorted, no spaces) and carries two hashes:
- ``prev``: the sha256 of the previous line's text (``GENESIS`` on the first line), so
  editing, removing or inserting a line breaks the chain at the line after it;
- ``sha256``: the sha256 of the record itself without this field, so an edit of the last line
  (which no later line covers) is detected too.
``read_ledger`` checks both on every line and raises a one-line ``DataError`` naming the first
bad line; ``append_entry`` verifies the whole file first, then appends one line with a single
``write`` under an exclusive lock and fsyncs it; a failed write is cut back to the old size,
so existing lines are never lost and no half line is left.

A decision record holds (``decide.decision_record`` writes it): ``date`` (ISO, the decision
day D), ``book`` ({"cash", "holdings": {ticker: shares}}: the book before trading at D's
close), ``orders`` ([{"ticker", "shares"}], signed integers, + buys), ``cost_config`` (the
run's ``env.cost`` as a dict) and descriptive fields (run, target, estimated costs, risk,
regime, goal) that ``mark_to_market`` does not need.

``mark_to_market`` replays the ledger on realised prices: every decision's orders fill at its
day's close (the backtest's convention), costs come from a cost function (the project's cost
model, wired in by ``decide.paper``), and the book is valued at the last close of the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrl_sarp_jax.errors import DataError
from hrl_sarp_jax.utils.atomic import fsync_dir, to_json_safe

GENESIS = "0" * 64
"""``prev`` of the first line."""
VERSION = 1

try:  # POSIX advisory lock against two appenders at once; elsewhere appends are unlocked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def canonical(record: Mapping[str, Any]) -> str:
    """The record's canonical JSON text (sorted keys, no spaces, strict JSON)."""
    return json.dumps(to_json_safe(dict(record)), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 of the record without its own ``sha256`` field."""
    return sha256_text(canonical({k: v for k, v in record.items() if k != "sha256"}))


def _bad(path: Path, k: int, what: str) -> DataError:
    return DataError(f"ledger {path} line {k}: {what}; the ledger was changed after it was "
                     f"written: restore it from a backup, or start a new ledger file "
                     f"(nothing was appended)")


def _check(path: Path, data: bytes) -> tuple[list[dict[str, Any]], str]:
    """(records, sha256 of the last line) of a ledger's bytes; DataError naming the first bad
    line."""
    if not data:
        return [], GENESIS
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise _bad(path, len(lines), "the last line has no newline (an interrupted write or an "
                                     "edit)")
    records: list[dict[str, Any]] = []
    prev = GENESIS
    for k, raw in enumerate(lines[:-1], start=1):
        try:
            text = raw.decode("utf-8")
            rec = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise _bad(path, k, "not a JSON record") from None
        if not isinstance(rec, dict):
            raise _bad(path, k, "not a JSON object")
        if rec.get("sha256") != record_hash(rec):
            raise _bad(path, k, "its content does not match its sha256 (the line was edited)")
        if rec.get("prev") != prev:
            what = ("the first line does not start the chain" if k == 1 else
                    f"its prev hash is not the sha256 of line {k - 1} (line {k - 1} was edited, "
                    f"or a line was removed or inserted)")
            raise _bad(path, k, what)
        records.append(rec)
        prev = sha256_text(text)
    return records, prev


def read_ledger(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of the ledger at ``path``, after checking the hash chain (module
    docstring). DataError when the file is missing or a line fails the check."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"ledger {path}: no such file; write one with `hrl-sarp decide ... "
                        f"--ledger {path}`") from None
    except OSError as exc:
        raise DataError(f"ledger {path}: unreadable ({exc})") from None
    return _check(path, data)[0]


def append_entry(path: str | os.PathLike, record: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``record`` to the ledger at ``path`` (created when missing) and return it as
    stored, with ``version``, ``prev`` and ``sha256`` set. The existing lines are verified
    first (DataError, nothing written, when they fail); the line is written with one ``write``
    under an exclusive lock and fsynced; on a failed write the file is cut back to its old
    size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read(size)
        _, prev = _check(path, data)
        rec = {**{k: v for k, v in record.items() if k not in ("prev", "sha256")},
               "version": VERSION, "prev": prev}
        rec = json.loads(canonical(rec))  # what a reader will see (JSON types)
        rec["sha256"] = record_hash(rec)
        line = (canonical(rec) + "\n").encode("utf-8")
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                os.fsync(fd)
            raise
    finally:
        os.close(fd)  # also releases the lock
    if size == 0:
        fsync_dir(path.parent)
    return rec


# --------------------------------------------------------------------------- mark to market

CostFn = Callable[[np.ndarray, np.ndarray, np.ndarray, Mapping[str, Any]], dict[str, float]]
"""(buy_value [A], sell_value [A], adv_value [A], cost_config) -> {"total": c, item: c, ...}
in currency (``decide.paper`` passes the project's cost model)."""


def _decision(rec: Mapping[str, Any]) -> tuple[np.datetime64, dict[str, int], float,
                                                list[tuple[str, int]]]:
    """(date, holdings, cash, orders [(ticker, shares)]) of a decision record; KeyError,
    TypeError or ValueError when it is not one."""
    book = rec["book"]
    return (np.datetime64(str(rec["date"]), "D"),
            {str(k): int(v) for k, v in dict(book["holdings"]).items()}, float(book["cash"]),
            [(str(o["ticker"]), int(o["shares"])) for o in rec["orders"]])


def mark_to_market(records: Sequence[Mapping[str, Any]], dates: np.ndarray,
                   tickers: Sequence[str], close: np.ndarray, open_: np.ndarray,
                   open_valid: np.ndarray, adv_value: np.ndarray, cost_fn: CostFn,
                   *, path: str = "ledger") -> dict[str, Any]:
    """Replay the decisions of a ledger on realised prices.

    Args:
      records: the ledger's records, in order (``read_ledger``).
      dates: [T] the market's trading days; tickers: [N] names ('' = padding).
      close, open_: [T, N] prices; open_valid: [T, N] bool (a real open that day).
      adv_value: [T, N] trailing average traded value (cost impact); cost_fn: see ``CostFn``.
    The book starts as the first record's ``book`` (holdings and cash before its trades). Each
    decision's orders fill at the close of its date; costs are paid from cash; the book is
    carried to the next decision (``book_matches``: it holds the shares the record started
    from). ``gap_to_next_open`` = Σ shares x (open[D+1] - close[D]) over the orders with a real
    next open (what filling at the next open would have cost more, in currency; None where no
    order has one). ``pnl`` of a row: the book's value at the next decision's close (the last
    close for the last row), before that decision trades, minus its value at D's close before
    trading. The book is valued at the last close of the data.
    Returns {"start_value", "value", "pnl", "return", "costs_paid", "start_date", "mark_date",
    "holdings", "cash", "decisions", "fill", "rows": [per decision: line, date, traded {buy,
    sell}, costs {total, items}, costs_estimated, value_before, value_after, next_date,
    value_next, pnl, gap_to_next_open, gap_fraction, book_matches]}.
    """
    if not records:
        raise DataError(f"ledger {path}: no decisions to mark; add one with `hrl-sarp decide "
                        f"... --ledger {path}`")
    d = np.asarray(dates).astype("datetime64[D]")
    col = {t: j for j, t in enumerate(tickers) if t}
    close = np.asarray(close, np.float64)
    open_ = np.asarray(open_, np.float64)
    n = close.shape[1]
    parsed = []
    for k, rec in enumerate(records, start=1):
        try:
            day, holdings, cash_k, orders = _decision(rec)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"ledger {path} line {k}: not a decision record (date, book, orders); "
                            f"only `hrl-sarp decide --ledger` writes this file") from None
        t = int(np.searchsorted(d, day))
        if t >= d.size or d[t] != day:
            raise DataError(f"ledger {path} line {k}: decision date {day} is not a trading day "
                            f"of the market ({d[0]} .. {d[-1]}); mark it with the market it was "
                            f"decided on (--data)")
        unknown = sorted({name for name in [*holdings, *(o[0] for o in orders)]
                          if name not in col})
        if unknown:
            raise DataError(f"ledger {path} line {k}: tickers {unknown} are not in the market; "
                            f"mark it with the market it was decided on (--data)")
        if parsed and t < parsed[-1][0]:
            raise DataError(f"ledger {path} line {k}: decision date {day} is before the previous "
                            f"decision's; a ledger runs forward in time")
        held = np.zeros(n, np.float64)
        for name, q in holdings.items():
            held[col[name]] = q
        order = np.zeros(n, np.float64)
        for name, q in orders:
            order[col[name]] += q
        parsed.append((t, held, cash_k, order))

    days = [p[0] for p in parsed]
    shares, cash = parsed[0][1].copy(), parsed[0][2]
    t_last = d.size - 1
    start_value = float(shares @ close[days[0]] + cash)
    rows, costs_paid = [], 0.0
    for k, (t, recorded, _cash_k, order) in enumerate(parsed):
        rec = records[k]
        matches = bool(np.array_equal(recorded, shares))
        px = close[t]
        value_before = float(shares @ px + cash)
        buy, sell = np.maximum(order, 0.0) * px, np.maximum(-order, 0.0) * px
        cost = cost_fn(buy, sell, np.asarray(adv_value[t], np.float64),
                       rec.get("cost_config") or {})
        total = float(cost["total"])
        cash += float(sell.sum() - buy.sum()) - total
        shares = shares + order
        costs_paid += total
        value_after = float(shares @ px + cash)
        t_next = days[k + 1] if k + 1 < len(days) else t_last
        value_next = float(shares @ close[t_next] + cash)
        gap = frac = None
        if t + 1 <= t_last:
            ok = (order != 0) & np.asarray(open_valid[t + 1], bool) & (open_[t + 1] > 0)
            if ok.any():
                gap = float(np.sum(order[ok] * (open_[t + 1, ok] - px[ok])))
                frac = gap / float(np.sum(np.abs(order[ok]) * px[ok]))
        rows.append({
            "line": k + 1, "date": str(d[t]),
            "traded": {"buy": float(buy.sum()), "sell": float(sell.sum())},
            "costs": {kk: float(v) for kk, v in cost.items()},
            "costs_estimated": (rec.get("estimated_costs") or {}).get("total"),
            "value_before": value_before, "value_after": value_after,
            "next_date": str(d[t_next]), "value_next": value_next,
            "pnl": value_next - value_before,
            "gap_to_next_open": gap, "gap_fraction": frac, "book_matches": matches,
        })
    value = float(shares @ close[t_last] + cash)
    return {
        "start_value": start_value, "value": value, "pnl": value - start_value,
        "return": value / start_value - 1.0 if start_value > 0 else None,
        "costs_paid": costs_paid, "start_date": str(d[days[0]]), "mark_date": str(d[t_last]),
        "holdings": {t: round(float(shares[j])) for t, j in col.items() if shares[j] != 0},
        "cash": cash, "decisions": len(records), "rows": rows,
        "fill": "each decision's close (the backtest's convention)",
    }
