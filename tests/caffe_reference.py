"""Naive, loop-by-loop transcriptions of BVLC Caffe's CPU forward code, used as references by the converter
tests. Each function cites the Caffe file it transcribes; none shares code with models/."""
from __future__ import annotations

import math

import numpy as np

FLT_MAX = float(np.finfo(np.float32).max)


def pool_out(size, k, s, p, ceil, any_pad):
    """pooling_layer.cpp Reshape."""
    span = size + 2 * p - k
    o = (int(math.ceil(span / s)) if ceil else span // s) + 1
    if any_pad and (o - 1) * s >= size + p:
        o -= 1
    return o


def pool(x, kernel, stride, pad, method, ceil=True):
    """pooling_layer.cpp Forward_cpu (MAX and AVE), float64 accumulation."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    any_pad = ph > 0 or pw > 0
    oh, ow = pool_out(h, kh, sh, ph, ceil, any_pad), pool_out(w, kw, sw, pw, ceil, any_pad)
    top = np.empty((n, c, oh, ow), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if method == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                win = x[:, :, hs:he, ws:we]
                top[:, :, i, j] = win.max(axis=(2, 3)) if win.size else -FLT_MAX
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                s = x[:, :, hs:he, ws:we].astype(np.float64).sum(axis=(2, 3)) if he > hs and we > ws else 0.0
                with np.errstate(invalid="ignore", divide="ignore"):
                    top[:, :, i, j] = s / size if size else np.nan * np.ones((n, c))
    return top


def lrn_across(x, size, alpha, beta, k):
    """lrn_layer.cpp CrossChannelForward_cpu."""
    n, c = x.shape[:2]
    pre = (size - 1) // 2
    sq = np.zeros((n, c + size - 1) + x.shape[2:])
    sq[:, pre:pre + c] = x.astype(np.float64) ** 2
    scale = np.empty(x.shape)
    for ch in range(c):
        scale[:, ch] = k + alpha / size * sq[:, ch:ch + size].sum(axis=1)
    return x * scale ** -beta


def lrn_within(x, size, alpha, beta):
    """lrn_layer.cpp WithinChannelForward: Power(2) -> AVE pool(size, pad (size-1)/2) -> Power(-beta, alpha, 1)
    -> product."""
    pad = (size - 1) // 2
    mean = pool(x.astype(np.float64) ** 2, (size, size), (1, 1), (pad, pad), "AVE")
    return x * (1.0 + alpha * mean) ** -beta
