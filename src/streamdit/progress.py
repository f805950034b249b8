"""Progress bars for the long loops (training, distillation, evaluators, evaluation streams).

Always tqdm's plain text bar on stderr, never a notebook widget: the pipeline's stages run in
papermill kernels whose stderr ``streamdit.pipeline`` forwards to the terminal, so the same bar shows
in a terminal, in a log file and under a notebook cell. Redraws are rate-limited (``mininterval``) so
a 2000-step run writes a few hundred updates, not one per step, into the executed notebook.
"""

from __future__ import annotations

import sys

from tqdm.std import tqdm


def progress_bar(
    total: int | None, desc: str, enabled: bool, *, initial: int = 0, unit: str = "step", iterable=None
) -> tqdm:
    """A text bar over ``total`` units (None: open-ended) starting at ``initial`` (resumed runs); a no-op
    if not ``enabled``.

    Wraps ``iterable`` when given (``for _ in progress_bar(n, ..., iterable=range(n))``), else the
    loop calls ``update``. The bar shows count, rate, elapsed time and ETA; loops add their own
    fields with ``show``.
    """
    return tqdm(
        iterable,
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not enabled,
        file=sys.stderr,
        mininterval=2.0,
        dynamic_ncols=True,
    )


def show(bar: tqdm, **fields: str) -> None:
    """Set the bar's extra fields (e.g. loss) without a redraw: the next rate-limited one shows them."""
    bar.set_postfix(fields, refresh=False)


def rate(bar: tqdm) -> float | None:
    """Units per second since the bar started (resumed units not counted); None if disabled or at 0 s."""
    if bar.disable:
        return None
    elapsed = bar.format_dict["elapsed"]
    return (bar.n - bar.initial) / elapsed if elapsed > 0 else None
