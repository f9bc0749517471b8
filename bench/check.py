"""Drift check: compare stored results with a committed baseline, metric by metric, within tolerances.

A baseline is a compact JSON file: per (method, dataset, split, seed, tag) the metric means and what makes
them comparable (schema version, dataset content hash, evaluation protocol, prediction scale and tiling)
plus a hash of the recipe and the result's id. The check fails when a metric moved by more than its
tolerance (either way: an unexpected gain is a change too), when an entry of the baseline has no current
result, when several current results could be it (other settings side by side, none with the baseline's
id: the line lists them), or when data, protocol or prediction changed under it. The baseline changes only
on purpose, with ``bench check --update-baseline``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.identity import result_id
from bench.store import iter_results, now, read_json, short_hash, write_json_atomic

BASELINE_FORMAT = 2  # 2: entries carry tag, result_id and prediction; format 1 files are still read
# Absolute tolerances (metric units); "*" applies to metrics not named. "1%" would be relative to the baseline.
DEFAULT_TOLERANCE = {"psnr": "0.05", "ssim": "0.002", "*": "0.5%"}

Key = tuple[str, str, str, int, str]  # method, dataset, split, seed, tag ("" when untagged)


class CheckError(Exception):
    """A baseline or option that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Tolerance:
    value: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str, where: str) -> "Tolerance":
        t = str(text).strip()
        try:
            tol = cls(float(t[:-1]) / 100, True) if t.endswith("%") else cls(float(t))
        except ValueError:
            raise CheckError(f"{where}: tolerance {text!r} is not a number (e.g. 0.05) or a percentage (e.g. 1%)") from None
        if not tol.value >= 0:
            raise CheckError(f"{where}: tolerance {text!r} must be >= 0")
        return tol

    def allowed(self, baseline: float) -> float:
        return self.value * abs(baseline) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


def parse_tolerances(texts: Iterable[str]) -> dict[str, str]:
    """``["psnr=0.05,ssim=0.002", "*=1%"]`` -> {"psnr": "0.05", ...} (validated)."""
    out: dict[str, str] = {}
    for text in texts:
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise CheckError(f"--tolerance {part!r}: expected METRIC=VALUE, e.g. psnr=0.05 or lpips=1%")
            Tolerance.parse(value, f"--tolerance {name.strip()}")
            out[name.strip()] = value.strip()
    return out


def tolerance_for(metric: str, tolerances: Mapping[str, str]) -> Tolerance:
    text = tolerances.get(metric, tolerances.get("*", DEFAULT_TOLERANCE["*"]))
    return Tolerance.parse(text, f"tolerance of {metric}")


# --------------------------------------------------------------------------------------------------
# Baseline entries


def entry_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The compact baseline entry of one stored result."""
    ds = result.get("dataset") or {}
    metrics = {}
    for name, m in (result.get("metrics") or {}).items():
        if not isinstance(m, dict):
            continue
        mean = m.get("mean") if m.get("available", True) is not False else None
        metrics[name] = {"mean": mean, "higher_is_better": m.get("higher_is_better")}
    return {
        "method": result.get("method"),
        "dataset": ds.get("name"),
        "split": result.get("split"),
        "seed": result.get("seed"),
        "tag": result.get("tag"),
        "result_id": result_id(result),
        "schema_version": result.get("schema_version"),
        "content_hash": ds.get("content_hash"),
        "eval_protocol": ds.get("eval_protocol"),
        "prediction": result.get("prediction"),
        "n_images": result.get("n_images"),
        "recipe_hash": short_hash(result.get("recipe"), 16) if result.get("recipe") is not None else None,
        "cpu": (result.get("environment") or {}).get("cpu"),
        "metrics": metrics,
    }


NO_SEED = -1  # outputs made elsewhere (seed null): a key of their own, shown as "—"


def key_of(entry: Mapping[str, Any]) -> Key:
    seed = entry.get("seed")
    return (str(entry.get("method")), str(entry.get("dataset")), str(entry.get("split")), NO_SEED if seed is None else int(seed),
            str(entry.get("tag") or ""))


def seed_text(seed: int) -> str:
    return "—" if seed == NO_SEED else str(seed)


def key_text(key: Key) -> str:
    return "/".join([*key[:3], seed_text(key[3])]) + (f"@{key[4]}" if key[4] else "")


def current_results(root: Path, datasets: Iterable[str] | None = None) -> tuple[dict[Key, list[dict]], dict[Key, dict]]:
    """(entries of successful results, failed result files without a successful one) under ``root`` by key.
    A key holds several entries when one method was run with several untagged settings."""
    wanted = set(datasets or ())
    ok: dict[Key, list[dict]] = {}
    failed: dict[Key, dict] = {}
    try:
        for _, data in iter_results(root):
            name = (data.get("dataset") or {}).get("name")
            if wanted and name not in wanted:
                continue
            if data.get("status") == "ok":
                entry = entry_of(data)
                ok.setdefault(key_of(entry), []).append(entry)
            else:
                failed[key_of({"method": data.get("method"), "dataset": name, "split": data.get("split"),
                               "seed": data.get("seed"), "tag": data.get("tag")})] = data
    except ValueError as exc:
        raise CheckError(str(exc)) from None
    return ok, {k: v for k, v in failed.items() if k not in ok}


def single_results(current: Mapping[Key, list[dict]]) -> list[dict]:
    """One entry per key, or an error listing the candidates where a key has several (to write a baseline)."""
    ambiguous = {k: v for k, v in current.items() if len(v) > 1}
    if ambiguous:
        lines = [f"  {key_text(k)}: " + ", ".join(f"{e['method']}@{e['result_id']}" for e in v) for k, v in sorted(ambiguous.items())]
        raise CheckError("several results of one method, dataset, split and seed, so the baseline would not know which "
                         "to hold:\n" + "\n".join(lines) + "\nRe-run them with --tag NAME, or remove the results you do not mean")
    return [v[0] for v in current.values()]


def read_baseline(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise CheckError(f"{path}: no such baseline; create one on purpose with 'bench check --update-baseline --baseline {path}'") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckError(f"{path}: not a readable baseline ({exc})") from None
    if not isinstance(data, dict) or data.get("format") not in (1, BASELINE_FORMAT) or not isinstance(data.get("results"), list):
        raise CheckError(f"{path}: not a colorbench baseline (format 1 or {BASELINE_FORMAT} with a 'results' list)")
    for k, entry in enumerate(data["results"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict) or "method" not in entry:
            raise CheckError(f"{path}: results[{k}] is not a baseline entry (method, dataset, split, seed, metrics)")
    return data


def write_baseline(path: Path, entries: Iterable[dict], tolerances: Mapping[str, str], note: str | None = None) -> dict[str, Any]:
    from bench.store import git_commit

    data = {
        "format": BASELINE_FORMAT,
        "created": now(),
        "git_commit": git_commit(),
        "note": note or "written by 'bench check --update-baseline'; update it only on purpose",
        "tolerance": dict(tolerances),
        "results": sorted(entries, key=key_of),
    }
    write_json_atomic(path, data)
    return data


# --------------------------------------------------------------------------------------------------
# The comparison


@dataclass
class Line:
    key: Key
    metric: str
    baseline: float | None
    current: float | None
    tolerance: str
    status: str  # ok | DRIFT | MISSING | NOT COMPARABLE | UNAVAILABLE | new
    failed: bool
    detail: str = ""


@dataclass
class Comparison:
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(line.failed for line in self.lines)


def _pick(entry: Mapping[str, Any], candidates: list[dict]) -> tuple[dict | None, str]:
    """The current result a baseline entry is about: the only candidate, or the one with its id."""
    if len(candidates) == 1:
        return candidates[0], ""
    same = [c for c in candidates if c.get("result_id") == entry.get("result_id")]
    if len(same) == 1:
        return same[0], ""
    names = ", ".join(f"{c['method']}@{c['result_id']}" for c in candidates)
    return None, (f"{len(candidates)} current results ({names}) and none has the baseline's id "
                  f"{entry.get('result_id')}: tag the runs (--tag) or remove the ones you do not mean")


def compare(baseline: Mapping[str, Any], current: Mapping[Key, list[dict]], failed: Mapping[Key, dict],
            tolerances: Mapping[str, str], fail_on_new: bool = False) -> Comparison:
    """Every baseline metric against the current result of the same key; new results listed after."""
    out = Comparison()
    seen: set[Key] = set()
    unchecked: dict[tuple[str, ...], list[str]] = {}
    pairs: list[tuple[Mapping[str, Any], dict]] = []
    for entry in sorted(baseline["results"], key=key_of):
        key = key_of(entry)
        seen.add(key)
        if key not in current:
            why = f"the result failed: {failed[key].get('error', 'unknown error')}" if key in failed else "no current result"
            out.lines.append(Line(key, "*", None, None, "", "MISSING", True, why))
            continue
        cur, why = _pick(entry, current[key])
        if cur is None:
            out.lines.append(Line(key, "*", None, None, "", "AMBIGUOUS", True, why))
            continue
        pairs.append((entry, cur))
        changed = [label for field_, label in (("schema_version", "schema version"), ("content_hash", "dataset content hash"),
                                               ("eval_protocol", "evaluation protocol"), ("prediction", "prediction scale or tiling"))
                   if entry.get(field_) != cur.get(field_)]
        if changed:
            out.lines.append(Line(key, "*", None, None, "", "NOT COMPARABLE", True, f"{', '.join(changed)} changed since the baseline"))
            continue
        if entry.get("recipe_hash") and cur.get("recipe_hash") and entry["recipe_hash"] != cur["recipe_hash"]:
            out.notes.append(f"{key_text(key)}: the recipe changed since the baseline (metrics are still compared)")
        elif entry.get("result_id") and entry.get("result_id") != cur.get("result_id") and not entry.get("tag"):
            out.notes.append(f"{key_text(key)}: the result's identity changed since the baseline ({entry['result_id']} -> "
                             f"{cur.get('result_id')}: code or settings; metrics are still compared)")
        for metric, base in entry["metrics"].items():
            b = base.get("mean") if isinstance(base, dict) else base
            now_entry = cur["metrics"].get(metric)
            c = now_entry.get("mean") if now_entry else None
            tol = tolerance_for(metric, tolerances)
            if b is None and c is None:
                out.lines.append(Line(key, metric, None, None, str(tol), "ok", False, "unavailable in both"))
            elif now_entry is None:
                out.lines.append(Line(key, metric, b, None, str(tol), "MISSING", True, "metric not in the current result"))
            elif c is None or b is None:
                out.lines.append(Line(key, metric, b, c, str(tol), "UNAVAILABLE", True,
                                      "no current value" if c is None else "no value in the baseline"))
            else:
                drift = abs(c - b) > tol.allowed(b) + 1e-12
                hib = (now_entry or {}).get("higher_is_better")
                way = "" if c == b or hib is None else (" (better)" if (c > b) == hib else " (worse)")
                out.lines.append(Line(key, metric, b, c, str(tol), "DRIFT" if drift else "ok", drift, way.strip(" ()") if drift else ""))
        extra = tuple(m for m in cur["metrics"] if m not in entry["metrics"])
        if extra:
            unchecked.setdefault(extra, []).append(key_text(key))
    # One note per set of unchecked metrics, not one per result and metric (a baseline made before new
    # metrics existed would otherwise print a line for each).
    for extra, keys in unchecked.items():
        where = "every result" if len(keys) == len(baseline["results"]) else ", ".join(keys)
        out.notes.append(f"{where}: metric(s) {', '.join(extra)} not in the baseline (not checked)")
    moved = sorted({f"{e.get('cpu')} -> {c.get('cpu')}" for e, c in pairs if e.get("cpu") and c.get("cpu") and e.get("cpu") != c.get("cpu")})
    if moved:
        out.notes.append(
            f"the baseline was computed on another CPU model ({'; '.join(moved)}): a few training steps amplify "
            "float rounding differences between CPU models even with the kernels pinned to AVX2 (unchanged code "
            "moved the GANs by several dB between an AMD EPYC and an Intel Xeon), so drift here may be the machine, "
            "not the code; check on the baseline's kind of machine, or rewrite the baseline with 'make ci-baseline' "
            "from unchanged code first")
    for key in sorted(set(current) - seen):
        for cur in current[key]:
            out.lines.append(Line(key, "*", None, None, "", "new", fail_on_new,
                                  f"{cur['method']}@{cur['result_id']} is not in the baseline; add it with --update-baseline"))
    return out


def format_comparison(comp: Comparison) -> str:
    head = ["method", "dataset", "split", "seed", "metric", "baseline", "current", "change", "tolerance", "status"]
    rows = []
    for ln in comp.lines:
        change = "" if ln.baseline is None or ln.current is None else f"{ln.current - ln.baseline:+.6f}"
        status = ln.status + (f": {ln.detail}" if ln.detail else "")
        rows.append([ln.key[0] + (f"@{ln.key[4]}" if ln.key[4] else ""), ln.key[1], ln.key[2], seed_text(ln.key[3]), ln.metric, _num(ln.baseline), _num(ln.current), change,
                     ln.tolerance, status])
    text = text_table(head, rows, right={3, 5, 6, 7, 8})
    if comp.notes:
        text += "\n" + "\n".join(f"note: {n}" for n in comp.notes)
    return text


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6f}"


def text_table(head: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    if not rows:
        return "(nothing to compare)"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    last = len(head) - 1

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else (c if i == last else c.ljust(w)) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])
