"""The ``caffe`` tool's brew functions (tools/caffe.cpp): ``train``, ``test`` and ``time``, with its log lines.

The CLI (:mod:`models.train_cli`) only parses arguments and calls these.
"""
from __future__ import annotations

import time as _time

import numpy as np
import torch

from models.errors import CaffeError
from models.train.glog import CaffeLog, fmt
from models.train.runtime import RuntimeNet


def _device_lines(device, log) -> None:
    if str(device).startswith("cuda"):
        log(f"Use GPU with device ID {torch.device(device).index or 0}", "caffe.cpp:285")
    else:
        log("Use CPU.", "caffe.cpp:291")


def train(solver_path, *, weights: str | None = None, snapshot: str | None = None, iterations: int | None = None,
          device: str = "cpu", precision: str = "fp32", log: CaffeLog | None = None, log_rate: bool = False,
          sigint_effect: str = "stop", sighup_effect: str = "snapshot"):
    """``caffe train``: build the solver, fine-tune from ``weights`` ("a.caffemodel,b.caffemodel") or resume
    from ``snapshot`` (not both), ``Solve``; SIGINT/SIGHUP act as ``--sigint_effect`` / ``--sighup_effect``.
    ``iterations`` replaces the solver's ``max_iter``. Returns the :class:`models.train.solver.Solver`."""
    from models.solver import read_solver
    from models.train.solver import SignalHandler, Solver

    log = log if log is not None else CaffeLog()
    if snapshot and weights:
        raise CaffeError("Give a snapshot to resume training or weights to finetune but not both.")
    sp = read_solver(str(solver_path))
    if iterations is not None:
        if iterations < 0:
            raise CaffeError(f"--iterations must be >= 0, got {iterations}")
        sp.max_iter = int(iterations)
    files = [w.strip() for w in weights.split(",")] if weights else []
    with log.held():
        _device_lines(device, log)
        solver = Solver(sp, solver_path=str(solver_path), device=device, precision=precision, log=log,
                        weights=files, log_rate=log_rate)
        if snapshot:
            log(f"Resuming from {snapshot}", "caffe.cpp:248")
            try:
                solver.restore(snapshot)
            except BaseException:
                solver.close()
                raise
    try:
        with SignalHandler(sigint_effect, sighup_effect) as handler:
            solver.action = handler.action
            log("Starting Optimization", "caffe.cpp:252")
            solver.solve()
        log("Optimization Done.", "caffe.cpp:263")
    finally:
        solver.close()
    return solver


def test(model, weights, *, iterations: int = 50, device: str = "cpu", precision: str = "fp32",
         log: CaffeLog | None = None, level: int = 0, stages=()):
    """``caffe test``: the TEST net of ``model`` with ``weights``, ``iterations`` forward passes; logs
    ``Batch i, NAME = V`` per output element, ``Loss: L`` and ``NAME = MEAN (* W = L loss)``.
    Returns ``{output name: [means]}`` and the mean loss."""
    log = log if log is not None else CaffeLog()
    if iterations < 1:
        raise CaffeError(f"--iterations must be >= 1, got {iterations}")
    with log.held():
        _device_lines(device, log)
        net = RuntimeNet(str(model), "TEST", level=level, stages=stages, device=device, precision=precision,
                         prefetch=True, source_name=str(model))
        try:
            net.copy_from(weights, log)
        except BaseException:
            net.close()
            raise
    try:
        log(f"Running for {iterations} iterations.", "caffe.cpp:304")
        scores, ids, loss = [], [], np.float32(0.0)
        for i in range(iterations):
            with torch.no_grad():
                loss = np.float32(loss + np.float32(float(net.forward())))
            idx = 0
            for j, (blob, vec, _) in enumerate(net.output_values()):
                for v in vec:
                    v = np.float32(v)
                    if i == 0:
                        scores.append(v)
                        ids.append((blob, j))
                    else:
                        scores[idx] = np.float32(scores[idx] + v)
                    log(f"Batch {i}, {blob} = {fmt(v)}", "caffe.cpp:331")
                    idx += 1
        loss = np.float32(loss / np.float32(iterations))
        log(f"Loss: {fmt(loss)}", "caffe.cpp:336")
        out: dict = {}
        for s, (blob, _) in zip(scores, ids):
            w = float(net.loss_weights.get(blob, 0.0))
            mean = np.float32(s / np.float32(iterations))
            suffix = f" (* {fmt(w)} = {fmt(np.float32(w) * mean)} loss)" if w else ""
            log(f"{blob} = {fmt(mean)}{suffix}", "caffe.cpp:349")
            out.setdefault(blob, []).append(float(mean))
        return out, float(loss)
    finally:
        net.close()


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_net(model, *, weights=None, iterations: int = 50, device: str = "cpu", precision: str = "fp32",
             phase: str = "TRAIN", log: CaffeLog | None = None, level: int = 0, stages=()):
    """``caffe time``: one warm-up forward/backward, then ``iterations`` timed forward-backward passes; logs
    each iteration's time, the average forward and backward time of each layer, and the averages in ms.

    Per-layer forward times come from module hooks around each layer; per-layer backward times from gradient
    hooks on the layer's tops (start) and bottoms (end), which attributes autograd's work to layers
    approximately. As caffe.cpp, every layer is listed in prototxt order, data layers (forward: fetching their
    next batch) and Input layers included; on CPU the per-iteration and total times are whole milliseconds
    (Caffe's CPU ``Timer::MilliSeconds``). Returns ``{"forward_ms", "backward_ms", "forward_backward_ms",
    "layers": {name: (fwd, bwd)}}``.
    """
    log = log if log is not None else CaffeLog()
    if iterations < 1:
        raise CaffeError(f"--iterations must be >= 1, got {iterations}")
    with log.held():
        _device_lines(device, log)
        net = RuntimeNet(str(model), phase, level=level, stages=stages, device=device, precision=precision,
                         prefetch=True, source_name=str(model))
        try:
            if weights:
                net.copy_from(weights, log)
        except BaseException:
            net.close()
            raise
    from models.torch_builder import _key

    def whole_ms(ms: float) -> float:
        # Caffe's CPU Timer::MilliSeconds is boost's total_milliseconds(): whole ms; CUDA events are fractional
        return float(int(ms)) if torch.device(device).type == "cpu" else ms

    try:
        layers = net.net.layers
        # Caffe times every layer of the net, data and Input layers included, in prototxt order
        names = [lp.name for lp in net.net.proto.layer]
        fwd = {n: 0.0 for n in names}
        bwd = {n: 0.0 for n in names}
        starts: dict = {}
        bstart: dict = {}
        handles = []

        def pre(name):
            def hook(mod, args):
                _sync(device)
                starts[name] = _time.perf_counter()
            return hook

        def post(name):
            def hook(mod, args, out):
                _sync(device)
                fwd[name] += (_time.perf_counter() - starts[name]) * 1e3
                if torch.is_grad_enabled():
                    for t in out:
                        if isinstance(t, torch.Tensor) and t.requires_grad:
                            t.register_hook(lambda g, n=name: bstart.setdefault(n, _time.perf_counter()) and None)
                    for t in args:
                        if isinstance(t, torch.Tensor) and t.requires_grad:
                            t.register_hook(lambda g, n=name: _end(n) and None)
            return hook

        def _end(name):
            if name in bstart:
                _sync(device)
                bwd[name] += (_time.perf_counter() - bstart.pop(name)) * 1e3
            return None

        log("Performing Forward", "caffe.cpp:368")
        loss = net.forward(grad=True)
        log(f"Initial loss: {fmt(float(loss.detach()))}", "caffe.cpp:373")
        log("Performing Backward", "caffe.cpp:374")
        net.backward()
        for l in layers:
            mod = net.module.layer_modules[_key(l.name)]
            handles += [mod.register_forward_pre_hook(pre(l.name)), mod.register_forward_hook(post(l.name))]
            for p in mod.blobs:  # a layer whose bottoms need no gradient ends its backward with its params'
                if p.requires_grad:
                    handles.append(p.register_hook(lambda g, n=l.name: _end(n)))
        for name, src in net.sources.items():  # a data layer's Forward: its next batch
            def timed(fetch=src.next_batch, name=name):
                t = _time.perf_counter()
                out = fetch()
                fwd[name] += (_time.perf_counter() - t) * 1e3
                return out
            src.next_batch = timed
        log("*** Benchmark begins ***", "caffe.cpp:384")
        log(f"Testing for {iterations} iterations.", "caffe.cpp:385")
        f_total = b_total = 0.0
        t0 = _time.perf_counter()
        for j in range(iterations):
            it0 = _time.perf_counter()
            loss = net.forward(grad=True, load=True)
            _sync(device)
            it1 = _time.perf_counter()
            net.backward()
            bstart.clear()
            _sync(device)
            it2 = _time.perf_counter()
            f_total += (it1 - it0) * 1e3
            b_total += (it2 - it1) * 1e3
            log(f"Iteration: {j + 1} forward-backward time: {fmt(whole_ms((it2 - it0) * 1e3))} ms.",
                "caffe.cpp:413")
        elapsed = (_time.perf_counter() - t0) * 1e3
        total = whole_ms(elapsed)
        for h in handles:
            h.remove()
        log("Average time per layer: ", "caffe.cpp:416")
        for n in names:
            log(f"{n:>10}\tforward: {fmt(fwd[n] / iterations)} ms.", "caffe.cpp:419")
            log(f"{n:>10}\tbackward: {fmt(bwd[n] / iterations)} ms.", "caffe.cpp:422")
        log(f"Average Forward pass: {fmt(f_total / iterations)} ms.", "caffe.cpp:427")
        log(f"Average Backward pass: {fmt(b_total / iterations)} ms.", "caffe.cpp:429")
        log(f"Average Forward-Backward: {fmt(total / iterations)} ms.", "caffe.cpp:431")
        log(f"Total Time: {fmt(total)} ms.", "caffe.cpp:432")
        log("*** Benchmark ends ***", "caffe.cpp:433")
        return {"forward_ms": f_total / iterations, "backward_ms": b_total / iterations,
                "forward_backward_ms": elapsed / iterations,
                "layers": {n: (fwd[n] / iterations, bwd[n] / iterations) for n in fwd}}
    finally:
        net.close()
