"""The engine's test oracle: the slow, obvious implementation (eager attention, ``output_attentions=True``, two
full passes, direct loops) that the engine's scores are compared against."""

import numpy as np
import torch

from attnrank.attention.capture import attn_implementation
from attnrank.attention.engine import QueryInput
from attnrank.attention.prompts import Prompt, PromptBuilder, PromptConfig, model_max_length
from attnrank.attention.scores import QueryScores


@torch.inference_mode()
def reference_scores(
    model, tokenizer, item: QueryInput, prompt_cfg: PromptConfig | dict | None = None, layers: int | None = None,
    prompt: Prompt | None = None,
) -> QueryScores:
    """Slow reference: eager attention, ``output_attentions=True``, two full passes, direct loops. Tests only.

    ``prompt``: score this prompt instead of building one (tests of hand-made spans)."""
    p = prompt or PromptBuilder(tokenizer, prompt_cfg, model_max_length(model)).build(item.query, list(item.texts), item.qid)
    device = next(model.parameters()).device
    n = model.config.num_hidden_layers if layers is None else min(layers, model.config.num_hidden_layers)
    pl = len(p.prefix_ids)
    tokens = {}
    with attn_implementation(model, "eager"):
        for which in ("query", "na"):
            ids = torch.tensor([p.full_ids(calibration=(which == "na"))], device=device)
            out = model(input_ids=ids, output_attentions=True, use_cache=False)
            # [L, H, T]: attention of the query-span rows, averaged over those rows, fp32
            tokens[which] = torch.stack([a[0, :, pl:, :].float().mean(1) for a in out.attentions[:n]]).cpu()
    k = len(p.doc_spans)
    h = tokens["query"].shape[1]
    raw = np.zeros((n, h, k), np.float32)
    na = np.zeros((n, h, k), np.float32)
    mp = np.zeros((n, k), np.float32)
    mh = np.zeros((n, h, k), np.float32)
    ml = np.zeros((n, k), np.float32)

    def masked(c: torch.Tensor) -> float:
        keep = c > c.mean() - 2 * torch.std(c) if c.numel() >= 2 else torch.ones_like(c, dtype=torch.bool)
        return float((c * keep).sum())

    cal_tok = tokens["query"][..., :pl].double() - tokens["na"][..., :pl].double()
    for j, (s, e) in enumerate(p.doc_spans):
        for l in range(n):
            ml[l, j] = masked(cal_tok[l, :, s:e].sum(0)) if e > s else 0.0
            for hh in range(h):
                mh[l, hh, j] = masked(cal_tok[l, hh, s:e]) if e > s else 0.0
        raw[:, :, j] = tokens["query"][:, :, s:e].sum(-1).numpy()
        na[:, :, j] = tokens["na"][:, :, s:e].sum(-1).numpy()
        for l in range(n):
            q = tokens["query"][: l + 1, :, s:e].sum((0, 1))
            c = q - tokens["na"][: l + 1, :, s:e].sum((0, 1))
            if e - s >= 2:
                keep = c > c.mean() - 2 * torch.std(c)
            else:
                keep = torch.ones_like(c, dtype=torch.bool)
            mp[l, j] = float((c * keep).sum())
    idx = [t for s, e in p.doc_spans for t in range(s, e)]
    return QueryScores(item.qid, list(item.docids), raw, na, mp, np.asarray(p.positions, np.int32),
                       np.asarray(p.n_tokens, np.int32), masked_head=mh, masked_layer=ml,
                       tokens=cal_tok[:, :, idx].float().numpy())
