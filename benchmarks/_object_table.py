"""The object-accuracy table of ``nuclei.py`` and ``he_nuclei.py`` records (the docs' rows)."""

from __future__ import annotations

from _record import device_of

HOW = {
    "2class": "2 classes + components",
    "3class": "3 classes + watershed",
    "distance": "distance levels + watershed",
    "contact": "distance levels, contact class + watershed",  # trials (git show 87631f6)
    "stardist": "StarDist 2D (peer, same budget)",
}


def epochs(r: dict) -> str:
    """``"18 epochs"``, ``"7 of 60 epochs"`` where a time limit stopped the training, and
    ``"101 + 7 of 60 epochs"`` where it continued a saved model (``--init``)."""
    before = r.get("epochs_before", 0)
    planned, ran = r["params"]["max_epochs"], r.get("epochs_run", r["params"]["max_epochs"])
    ran -= before
    text = f"{ran} epochs" if ran == planned else f"{ran} of {planned} epochs"
    return f"{before} + {text}" if before else text


def table(results: dict) -> str:
    lines = [
        "| configuration | instances | AP@0.5 | AP@0.75 | AP@0.9 | F1@0.5 | training | device |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, rec in results.items():
        for name, r in rec.get("variants", {}).items():  # a probe's record has none
            if "ap" not in r:  # trained on every image: nothing held out
                continue
            how, device = HOW[name], device_of(rec)
            lines.append(
                f"| {config} ({epochs(r)}) | {how} | {r['ap']['0.50']:.3f} "
                f"| {r['ap']['0.75']:.3f} | {r['ap']['0.90']:.3f} | {r['f1_50']:.3f} "
                f"| {r['fit_seconds'] / 60:.1f} min | {device} |"
            )
    return "\n".join(lines)
