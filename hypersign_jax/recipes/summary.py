"""The recipe's summary table: one row per stage with its wall time and headline dev/test metrics."""
from __future__ import annotations

from typing import Any, Sequence

TRANSLATION_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l")


def _fmt(value: Any) -> str:
  return "–" if value is None else f"{float(value):.2f}"


def _metrics_line(results: Any) -> dict[str, str]:
  """Headline metrics of one stage's results (final_metrics.json of a training run, or dataset info)."""
  if not isinstance(results, dict):
    return {}
  if "splits" in results:  # a dataset directory
    return {"data": ", ".join(f"{k} {v}" for k, v in (results.get("splits") or {}).items())}
  row = {}
  for split in ("dev", "test"):
    m = results.get(split)
    if not isinstance(m, dict):
      continue
    if "wer" in m:
      row[split] = f"WER {_fmt(m['wer'])} (S {_fmt(m.get('sub'))} / D {_fmt(m.get('del'))} / I {_fmt(m.get('ins'))})"
    elif "bleu4" in m:
      row[split] = "BLEU-1..4 " + " / ".join(_fmt(m.get(k)) for k in TRANSLATION_KEYS[:4]) + \
                   f", ROUGE-L {_fmt(m.get('rouge_l'))}"
  return row


def summarise(records: Sequence[dict], wall_seconds: float | None = None) -> dict:
  """Stage records of ``stages.run_stages`` -> {'stages': [...], 'total_seconds': float, 'wall_seconds'}.

  ``total_seconds`` sums the stages' own times; ``wall_seconds`` (when given) is the recipe run's wall time,
  shorter when stages ran side by side (and short when finished stages were skipped). A low-priority stage's time
  is its wall time beside the others (mostly waiting for idle CPU), not what it costs alone."""
  rows = []
  for r in records:
    row = {"stage": r["name"], "description": r.get("description", ""), "status": r["status"],
           "seconds": float(r.get("seconds", 0.0)), **_metrics_line(r.get("results")), "results": r.get("results")}
    if r.get("started") is not None:
      row["started"], row["ended"] = float(r["started"]), float(r["ended"])
    if r.get("low_priority"):
      row["low_priority"] = True
    rows.append(row)
  out = {"stages": rows, "total_seconds": sum(r["seconds"] for r in rows)}
  if wall_seconds is not None:
    out["wall_seconds"] = float(wall_seconds)
  return out


def markdown(summary: dict, title: str = "Recipe summary") -> str:
  lines = [f"## {title}", "", "| stage | time (s) | dev | test |", "|---|---|---|---|"]
  for r in summary["stages"]:
    dev = r.get("dev") or r.get("data") or ""
    note = " (earlier run)" if r["status"] == "skipped" else ""
    if r.get("started") is not None:
      note += f" (at {r['started']:.0f}–{r['ended']:.0f})"
    if r.get("low_priority"):
      note += " (low priority, beside others)"
    lines.append(f"| {r['stage']} | {r['seconds']:.0f}{note} | {dev} | {r.get('test', '')} |")
  lines.append(f"| **sum of stages** | {summary['total_seconds']:.0f} | | |")
  if summary.get("wall_seconds") is not None:
    lines.append(f"| **wall time of this run** | {summary['wall_seconds']:.0f} | | |")
  return "\n".join(lines) + "\n"
