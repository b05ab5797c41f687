"""Train the sequential route's model: SASRec (a causal self-attention encoder of a user's ordered
history) with a sampled softmax cross-entropy (each position's next item against negatives shared
by the batch), on CPU with torch. Deterministic for a seed and a thread count.

The trained arrays are exported to ``recsys_runtime.sequential.SequentialModel``, whose numpy
forward pass is the one the service and the evaluation run.
"""

from __future__ import annotations

import time

import numpy as np

from recsys_runtime.components import Histories
from recsys_runtime.sequential import BLOCK_ARRAYS, LAYER_NORM_EPS, SequentialModel

SEQUENTIAL_DEFAULTS = {
    "dimension": 64,
    "blocks": 1,
    "max_length": 50,
    "dropout": 0.2,
    "epochs": 20,
    "batch_size": 128,
    "learning_rate": 0.005,
    "negatives": 256,  # uniformly sampled items per batch, shared by its positions
    "max_sequences": 50_000,  # training windows; more are sampled down (large logs)
    "max_steps": 600,  # optimiser steps at most, so large logs train for fewer epochs, not longer
    "sparse_items": True,  # the item table's gradient and Adam moments only on the rows a batch touches
    "seed": 0,
}


def training_windows(histories: Histories, length: int, max_sequences: int, seed: int) -> np.ndarray:
    """(windows, length + 1) item rows (item index + 1, 0 = padding): each history cut into
    consecutive windows of ``length + 1`` items from its end, the first one left-padded; windows
    of one item teach nothing and are dropped. Above ``max_sequences`` a seeded sample is kept."""
    width = length + 1
    starts, indptr = [], histories.indptr
    for user in range(len(indptr) - 1):
        lo, hi = int(indptr[user]), int(indptr[user + 1])
        end = hi
        while end - lo >= 2:
            starts.append((max(lo, end - width), end))
            end -= length
    if len(starts) > max_sequences:
        chosen = np.random.default_rng(seed).choice(len(starts), max_sequences, replace=False)
        starts = [starts[i] for i in np.sort(chosen)]
    windows = np.zeros((len(starts), width), dtype=np.int64)
    for r, (lo, hi) in enumerate(starts):
        windows[r, width - (hi - lo):] = histories.items[lo:hi].astype(np.int64) + 1
    return windows


def sasrec_encoder(n_items: int, p: dict):
    """The torch SASRec module for ``n_items`` items (row 0 of its item table is padding) with
    the settings ``p`` (``SEQUENTIAL_DEFAULTS``' keys): called on (batch, max_length) item rows, it
    returns every position's output."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, d: int, dropout: float) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=LAYER_NORM_EPS), nn.LayerNorm(d, eps=LAYER_NORM_EPS)
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.w1, self.w2 = nn.Linear(d, d), nn.Linear(d, d)
            self.drop = nn.Dropout(dropout)

        def forward(self, x, blocked, present):
            a = self.ln1(x)
            scores = (self.q(a) @ self.k(a).transpose(1, 2)) / np.sqrt(x.shape[-1])
            scores = scores.masked_fill(blocked, -1e9)
            x = x + self.drop(self.o(self.drop(torch.softmax(scores, dim=-1)) @ self.v(a)))
            f = self.ln2(x)
            return (x + self.drop(self.w2(self.drop(torch.relu(self.w1(f)))))) * present

    class SASRec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d, length = p["dimension"], p["max_length"]
            self.items = nn.Embedding(n_items + 1, d, padding_idx=0, sparse=bool(p.get("sparse_items")))
            self.positions = nn.Parameter(torch.zeros(length, d))
            nn.init.normal_(self.items.weight, std=d ** -0.5)
            nn.init.normal_(self.positions, std=d ** -0.5)
            with torch.no_grad():
                self.items.weight[0].zero_()
            self.blocks = nn.ModuleList(Block(d, p["dropout"]) for _ in range(p["blocks"]))
            self.final = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
            self.drop = nn.Dropout(p["dropout"])
            self.register_buffer("causal", torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1))

        def forward(self, rows):
            present = (rows > 0).unsqueeze(-1)
            x = self.drop((self.items(rows) * np.sqrt(self.items.embedding_dim) + self.positions) * present)
            blocked = self.causal.unsqueeze(0) | ~present.transpose(1, 2)
            for block in self.blocks:
                x = block(x, blocked, present)
            return self.final(x)

    return SASRec()


def export_encoder(model, params: dict) -> SequentialModel:
    """The numpy ``SequentialModel`` with the torch module's weights."""
    def array(tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().astype(np.float32)

    blocks = []
    for block in model.blocks:
        linear = {"q": block.q, "k": block.k, "v": block.v, "o": block.o, "1": block.w1, "2": block.w2}
        arrays = {"ln1_w": array(block.ln1.weight), "ln1_b": array(block.ln1.bias),
                  "ln2_w": array(block.ln2.weight), "ln2_b": array(block.ln2.bias)}
        for key, layer in linear.items():
            arrays[f"w{key}"] = np.ascontiguousarray(array(layer.weight).T)
            arrays[f"b{key}"] = array(layer.bias)
        blocks.append({name: arrays[name] for name in BLOCK_ARRAYS})
    return SequentialModel(array(model.items.weight), array(model.positions), blocks,
                           array(model.final.weight), array(model.final.bias), params)


def train_sequential(histories: Histories, n_items: int, params: dict | None = None) -> SequentialModel:
    """SASRec on every history of ``histories`` (item indices in ``0..n_items-1``, oldest first).
    ``params`` override ``SEQUENTIAL_DEFAULTS``; the model's ``params`` record them with the
    training's windows, loss and seconds."""
    import torch

    p = {**SEQUENTIAL_DEFAULTS, **(params or {})}
    started = time.perf_counter()
    torch.manual_seed(p["seed"])
    rng = np.random.default_rng(p["seed"])
    windows = training_windows(histories, p["max_length"], p["max_sequences"], p["seed"])
    model = sasrec_encoder(n_items, p)
    if p["sparse_items"]:
        others = [param for name, param in model.named_parameters() if name != "items.weight"]
        optimisers = [torch.optim.Adam(others, lr=p["learning_rate"], betas=(0.9, 0.98)),
                      torch.optim.SparseAdam([model.items.weight], lr=p["learning_rate"], betas=(0.9, 0.98))]
    else:
        optimisers = [torch.optim.Adam(model.parameters(), lr=p["learning_rate"], betas=(0.9, 0.98))]
    data = torch.from_numpy(windows)
    last_loss = float("nan")
    steps = 0
    for _ in range(p["epochs"]):
        if steps >= p["max_steps"]:
            break
        model.train()
        order = torch.from_numpy(rng.permutation(len(windows)))
        total, count = 0.0, 0
        for start in range(0, len(windows), p["batch_size"]):
            if steps >= p["max_steps"]:
                break
            steps += 1
            batch = data[order[start:start + p["batch_size"]]]
            inputs, targets = batch[:, :-1], batch[:, 1:]
            valid = (inputs > 0) & (targets > 0)
            out = model(inputs)[valid]
            wanted = targets[valid]
            negatives = torch.from_numpy(rng.integers(1, n_items + 1, p["negatives"]))
            positive = (out * model.items(wanted)).sum(-1, keepdim=True)
            sampled = (out @ model.items(negatives).T).masked_fill(negatives[None, :] == wanted[:, None], -1e9)
            loss = torch.nn.functional.cross_entropy(torch.cat([positive, sampled], dim=1),
                                                     torch.zeros(len(wanted), dtype=torch.long))
            for optimiser in optimisers:
                optimiser.zero_grad()
            loss.backward()
            for optimiser in optimisers:
                optimiser.step()
            total, count = total + loss.item() * len(wanted), count + len(wanted)
        last_loss = total / max(count, 1)
    model.eval()
    recorded = {**p, "windows": int(len(windows)), "steps": steps, "loss": "sampled_softmax",
                "final_train_loss": round(last_loss, 4), "seconds": round(time.perf_counter() - started, 1)}
    return export_encoder(model, recorded)
