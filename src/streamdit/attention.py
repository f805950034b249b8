"""Self-attention inside 3D windows (frames x patch-rows x patch-cols) of a frame buffer.

Tokens are ordered `f h w`. Along each axis the windows are staggered Swin-style by padding `stagger`
positions in
front and cutting the padded axis into windows of `window` tokens. Unlike Swin there is no cyclic roll: the
buffer runs oldest -> newest, and a roll would let the oldest and the newest frames attend to each other.
A window at least as large as the grid on an axis covers that axis whole: it is clipped to the grid and its
stagger is dropped, so one window covering everything is exactly global attention.

Chunk-causal attention (``chunk``: frames per chunk) further restricts every token to the tokens of its own
chunk and of earlier chunks (a block-causal mask over frames), inside the same windows: the attention of
the autoregressive paradigm (CausVid, Self-Forcing), where a chunk's clean past never sees its future.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

Grid = tuple[int, int, int]


def effective_window(grid: Grid, window: Grid, stagger: Grid) -> tuple[Grid, Grid]:
    """The (window, stagger) actually used on a grid: validated, and clipped where a window covers an axis."""
    if len(grid) != 3 or len(window) != 3 or len(stagger) != 3:
        raise ValueError(
            f"grid {grid}, window {window}, stagger {stagger}: each needs 3 entries (frames, rows, cols)"
        )
    if min(grid) < 1:
        raise ValueError(f"grid {grid}: every axis needs at least 1 token")
    if min(window) < 1:
        raise ValueError(f"window {window}: entries must be >= 1")
    if any(not 0 <= s < w for s, w in zip(stagger, window, strict=True)):
        raise ValueError(f"stagger {stagger}: each entry must lie in [0, window) for window {window}")
    covers = [w >= g for g, w in zip(grid, window, strict=True)]
    clipped = tuple(g if c else w for g, w, c in zip(grid, window, covers, strict=True))
    return clipped, tuple(0 if c else s for s, c in zip(stagger, covers, strict=True))


def window_mask(grid: Grid, window: Grid, stagger: Grid) -> torch.Tensor:
    """Reference predicate [n, n] bool (n = F*H*W tokens, `f h w` order): True where i, j share a window."""
    window, stagger = effective_window(grid, window, stagger)
    axes = torch.meshgrid(*(torch.arange(g) for g in grid), indexing="ij")
    coords = rearrange(torch.stack(axes, dim=-1), "f h w coord -> (f h w) coord")
    index = (coords + torch.tensor(stagger)) // torch.tensor(
        window
    )  # window index along each axis, no wrap-around
    return (index[:, None, :] == index[None, :, :]).all(dim=-1)


def chunk_causal_mask(grid: Grid, chunk: int) -> torch.Tensor:
    """Reference predicate [n, n] bool (`f h w` order): True where token j's frame lies in the chunk of token
    i's frame or in an earlier one (chunks of ``chunk`` frames from frame 0)."""
    if chunk < 1:
        raise ValueError(f"chunk={chunk}: must be >= 1 frames")
    frame = torch.arange(grid[0]).repeat_interleave(grid[1] * grid[2])
    index = frame // chunk
    return index[None, :] <= index[:, None]


def attention_mask(grid: Grid, window: Grid | None, stagger: Grid, chunk: int | None = None) -> torch.Tensor:
    """What a token may attend to, [n, n] bool: its window (all tokens for ``window`` None), and with
    ``chunk`` only its own and earlier chunks. The dense reference of ``windowed_attention``."""
    n = math.prod(grid)
    mask = torch.ones(n, n, dtype=torch.bool) if window is None else window_mask(grid, window, stagger)
    return mask if chunk is None else mask & chunk_causal_mask(grid, chunk)


def windowed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: Grid,
    window: Grid,
    stagger: Grid,
    chunk: int | None = None,
) -> torch.Tensor:
    """Each token attends to the tokens of its (staggered) window, and with ``chunk`` only to those of its
    own and earlier chunks; q, k, v, output: [b, heads, n, head_dim].

    Equals dense attention with `attention_mask(grid, window, stagger, chunk)` as mask, at a cost linear in n.
    """
    if q.shape[-2] != math.prod(grid):
        raise ValueError(f"grid {grid} holds {math.prod(grid)} tokens but q has {q.shape[-2]}")
    window, stagger = effective_window(grid, window, stagger)
    # Pad `stagger` in front of each axis and up to a multiple of the window behind: (front, back) per
    # f, h, w.
    pads = [(s, -(g + s) % w) for g, w, s in zip(grid, window, stagger, strict=True)]
    padded = [g + front + back for g, (front, back) in zip(grid, pads, strict=True)]
    real_tokens = tuple(slice(front, front + g) for g, (front, _) in zip(grid, pads, strict=True))
    windows = {"wf": window[0], "wh": window[1], "ww": window[2]}
    counts = {"nf": padded[0] // window[0], "nh": padded[1] // window[1], "nw": padded[2] // window[2]}

    def partition(x: torch.Tensor) -> torch.Tensor:
        # [b, heads, n, d] -> [(b windows), heads, window volume, d]
        x = rearrange(x, "b heads (f h w) d -> b heads f h w d", f=grid[0], h=grid[1], w=grid[2])
        x = F.pad(x, (0, 0, *pads[2], *pads[1], *pads[0]))  # F.pad lists the last axis first: d, w, h, f
        return rearrange(x, "b heads (nf wf) (nh wh) (nw ww) d -> (b nf nh nw) heads (wf wh ww) d", **windows)

    # Key-padding mask: padded keys are never attended to. Every window holds at least one real token on
    # each axis (front padding < window, back padding < window), so no row of the mask is empty.
    mask = None
    if padded != list(grid) or chunk is not None:
        real = torch.zeros(padded, dtype=torch.bool, device=q.device)
        real[real_tokens] = True
        real = rearrange(real, "(nf wf) (nh wh) (nw ww) -> (nf nh nw) (wf wh ww)", **windows)
        mask = real[:, None, :]  # [windows, query, key]
        if chunk is not None:
            # The chunk of every padded position's frame (front padding: negative frames). A padded query
            # keeps every real key, so that no row is empty (its output is cut away below).
            frame = torch.arange(padded[0], device=q.device) - pads[0][0]
            index = repeat(
                torch.div(frame, chunk, rounding_mode="floor"), "f -> f h w", h=padded[1], w=padded[2]
            )
            index = rearrange(index, "(nf wf) (nh wh) (nw ww) -> (nf nh nw) (wf wh ww)", **windows)
            mask = mask & ((index[:, None, :] <= index[:, :, None]) | ~real[:, :, None])
        mask = repeat(mask, "windows query key -> (b windows) 1 query key", b=q.shape[0])

    out = F.scaled_dot_product_attention(partition(q), partition(k), partition(v), attn_mask=mask)
    out = rearrange(
        out, "(b nf nh nw) heads (wf wh ww) d -> b heads (nf wf) (nh wh) (nw ww) d", **windows, **counts
    )
    out = out[(..., *real_tokens, slice(None))]
    return rearrange(out, "b heads f h w d -> b heads (f h w) d")
