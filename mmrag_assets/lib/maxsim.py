"""Late-interaction (ColBERT MaxSim) scoring: pure torch/numpy, no model needed.

``score(q, d) = sum_t max_n <q_t, d_n>`` over the query's token vectors ``q_t`` and the
document's ``d_n``. Documents are scored in padded batches with an explicit token mask, so a
padding row never wins the max. (colpali-engine's reference scorer pads with zero vectors
instead, which clamps a negative best similarity to 0; both agree whenever every query
token's best match is >= 0, which is the case for trained models.) Stored float16 vectors are
upcast to float32 for the arithmetic. A document with no vectors scores ``-inf``: it can never
rank above a real one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

ArrayLike = Any  # np.ndarray | torch.Tensor
Docs = Sequence[ArrayLike] | ArrayLike  # list of (n_i, d), or padded (B, N, d) with a (B, N) mask


def nonfinite_rows(arrays: Sequence[ArrayLike]) -> list[int]:
    """Indices of the items holding any NaN or inf (a broken model or a 0/0 normalisation)."""
    return [i for i, a in enumerate(arrays) if not np.isfinite(_np(a)).all()]


def _np(a: ArrayLike) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
        return a.numpy()
    return np.asarray(a)


def _tensor(a: ArrayLike) -> torch.Tensor:
    import torch

    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


def _device(device: str | None) -> str:
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _doc_batches(
    docs: Docs, mask: ArrayLike | None, batch_size: int, device: str
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yields ``(start, D, M)``: D (b, N, d) float32 on ``device``, M (b, N) bool, True for real tokens."""
    import torch

    if isinstance(docs, (list, tuple)):
        for s in range(0, len(docs), batch_size):
            chunk = [_tensor(x) for x in docs[s : s + batch_size]]
            lengths = torch.tensor([x.shape[0] for x in chunk])  # (b,)
            padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)  # (b, N, d), storage dtype
            n = padded.shape[1]
            m = torch.arange(n)[None, :] < lengths[:, None]  # (b, N)
            yield s, padded.to(device).float(), m.to(device)
        return
    d_all = _tensor(docs)  # (B, N, d)
    if d_all.dim() != 3:
        raise ValueError(f"padded docs must be (B, N, d), got shape {tuple(d_all.shape)}")
    m_all = (
        torch.ones(d_all.shape[:2], dtype=torch.bool) if mask is None else _tensor(mask).to(torch.bool)
    )  # (B, N)
    if tuple(m_all.shape) != tuple(d_all.shape[:2]):
        raise ValueError(f"mask shape {tuple(m_all.shape)} does not match docs {tuple(d_all.shape[:2])}")
    for s in range(0, d_all.shape[0], batch_size):
        yield s, d_all[s : s + batch_size].to(device).float(), m_all[s : s + batch_size].to(device)


def _n_docs(docs: Docs) -> int:
    return len(docs) if isinstance(docs, (list, tuple)) else int(_tensor(docs).shape[0])


def _score_batch(q: torch.Tensor, d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """q (Tq, dim), d (b, N, dim), m (b, N) -> (b,) MaxSim scores."""
    import torch

    if d.shape[1] == 0:  # every document of the batch is empty
        return torch.full((d.shape[0],), float("-inf") if q.shape[0] else 0.0, device=d.device)
    sim = torch.einsum("td,bnd->btn", q, d)  # (b, Tq, N)
    sim = sim.masked_fill(~m[:, None, :], float("-inf"))
    return sim.amax(dim=2).sum(dim=1)  # (b,)


def maxsim(
    q: ArrayLike,
    docs: Docs,
    *,
    mask: ArrayLike | None = None,
    device: str | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """MaxSim of one query ``q`` (Tq, d) against each document -> float32 array (B,).

    ``docs`` is a list of (n_i, d) arrays or tensors (any float dtype, ragged), or a padded
    (B, N, d) array with ``mask`` (B, N) marking real tokens (no mask: every row is real).
    Documents are padded and scored ``batch_size`` at a time on ``device`` (default: CUDA if
    available, else CPU).
    """
    return maxsim_many([q], docs, mask=mask, device=device, batch_size=batch_size)[0]


def maxsim_many(
    queries: Sequence[ArrayLike],
    docs: Docs,
    *,
    mask: ArrayLike | None = None,
    device: str | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """MaxSim of each query (Tq_i, d) against each document -> float32 array (Q, B).

    Each batch of documents is padded and moved to the device once and scored against every
    query, so memory stays at (batch_size, Tq, N) floats whatever the number of queries.
    """
    import torch

    dev = _device(device)
    qs = [_tensor(q).to(dev).float() for q in queries]  # each (Tq_i, d)
    out = np.empty((len(qs), _n_docs(docs)), dtype=np.float32)
    if out.size == 0:
        return out
    with torch.inference_mode():
        for s, d, m in _doc_batches(docs, mask, max(1, int(batch_size)), dev):
            for i, q in enumerate(qs):
                if q.shape[-1] != d.shape[-1]:
                    raise ValueError(f"query dim {q.shape[-1]} != document dim {d.shape[-1]}")
                out[i, s : s + d.shape[0]] = _score_batch(q, d, m).cpu().numpy()
    return out
