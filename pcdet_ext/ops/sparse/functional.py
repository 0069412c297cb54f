"""Gather-GEMM-scatter over a rulebook, with a hand-written backward (no autograd graph per offset)."""
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from .rulebook import Rulebook


def _weight_per_offset(weight: torch.Tensor, K: int) -> torch.Tensor:
    """[out, *kernel, in] -> (K, in, out), contiguous, so each offset's matrix is one slice."""
    cout, cin = weight.shape[0], weight.shape[-1]
    return weight.reshape(cout, K, cin).permute(1, 2, 0).contiguous()


class SparseConvFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, features, weight, bias, rulebook: Rulebook):
        K = rulebook.num_offsets
        w = _weight_per_offset(weight, K)
        out = features.new_zeros((rulebook.n_out, weight.shape[0]))
        for k, rows_in, rows_out in rulebook.offset_pairs():
            if rows_in is None:  # SubM centre: every site maps to itself
                out.addmm_(features, w[k])
            else:
                out.index_add_(0, rows_out, torch.mm(features.index_select(0, rows_in), w[k]))
        if bias is not None:
            out += bias
        ctx.rulebook = rulebook
        ctx.has_bias = bias is not None
        ctx.save_for_backward(features, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        features, weight = ctx.saved_tensors
        rulebook: Rulebook = ctx.rulebook
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_out = grad_out.contiguous()
        K = rulebook.num_offsets
        w = _weight_per_offset(weight, K)
        grad_x = torch.zeros_like(features) if need_x else None
        grad_w = features.new_zeros(w.shape) if need_w else None
        for k, rows_in, rows_out in rulebook.offset_pairs():
            if rows_in is None:
                g, x = grad_out, features
            else:
                g = grad_out.index_select(0, rows_out)
            if need_x:
                gx = torch.mm(g, w[k].t())
                if rows_in is None:
                    grad_x += gx
                else:
                    grad_x.index_add_(0, rows_in, gx)
            if need_w:
                if rows_in is not None:
                    x = features.index_select(0, rows_in)
                torch.mm(x.t(), g, out=grad_w[k])
        grad_weight = None
        if need_w:
            grad_weight = grad_w.permute(2, 0, 1).reshape(weight.shape)
        grad_bias = grad_out.sum(0) if (need_b and ctx.has_bias) else None
        return grad_x, grad_weight, grad_bias, None


def sparse_conv_features(features: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         rulebook: Rulebook) -> torch.Tensor:
    """Output features (rulebook.n_out, out_channels) of a conv with `weight` [out, *kernel, in]."""
    if features.shape[0] != rulebook.n_in:
        raise ValueError(f'sparse conv: features have {features.shape[0]} rows, rulebook expects {rulebook.n_in}')
    if features.dtype != weight.dtype:
        raise ValueError(f'sparse conv: features dtype {features.dtype} != weight dtype {weight.dtype}')
    return SparseConvFunction.apply(features.contiguous(), weight, bias, rulebook)
