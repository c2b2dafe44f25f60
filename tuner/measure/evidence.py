"""The wire between an evaluation process and its judge: tensors as plain data, never code.

Why plain data: the evaluation process runs candidate code, so whatever it sends may be written by a
candidate. A pickle can run code where it is loaded (any global it names is imported and called),
so the judge loads messages with `load`, an unpickler that admits no global at all: only dicts,
lists, tuples, strings, bytes, numbers. A tensor travels as a tuple of such values:

  ("host", dtype, shape, bytes)   a copy of its data (the CPU, and the GPU fallback)
  ("ipc", fields...)              a CUDA IPC handle into the evaluator's own GPU memory: the judge
                                  reads the buffers where they are, with no copy (torch's own
                                  sharing of CUDA tensors, torch.multiprocessing.reductions,
                                  with its classes sent by name and admitted from a fixed list)
  ("arena", generation, offset, dtype, shape, strides)
                                  a buffer inside the evaluator's arena (tuner/measure/arena.py),
                                  which the judge opened once and holds: no handle per message

The evaluator keeps every tensor it sent alive until the judge has answered (each message is
acknowledged), as CUDA IPC requires.
"""
from __future__ import annotations

import io
import os
import pickle
import time

import torch


class _DataOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"the judge admits plain data only, not {module}.{name}")


def load(data: bytes):
    return _DataOnly(io.BytesIO(data)).load()


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a torch dtype: {name!r}")
    return dtype


def encode(t: torch.Tensor, ipc: bool, arena=None):
    dtype = str(t.dtype).removeprefix("torch.")
    if ipc and arena is not None:
        where = arena.locate(t)
        if where is not None:
            return where
    if ipc and t.is_cuda:
        from torch.multiprocessing.reductions import reduce_tensor

        _, args = reduce_tensor(t)
        args = list(args)
        args[0] = "Tensor"
        args[1], args[2] = tuple(args[1]), tuple(args[2])
        args[4] = type(t._typed_storage()).__name__
        args[5] = dtype
        return ("ipc", tuple(args))
    flat = t.detach().contiguous().reshape(-1)
    raw = flat.view(torch.uint8) if flat.numel() else flat.new_empty(0, dtype=torch.uint8)
    return ("host", dtype, tuple(t.shape), raw.cpu().numpy().tobytes())


def decode(obj, device: torch.device | None = None, arenas: dict | None = None) -> torch.Tensor:
    kind = obj[0]
    if kind == "arena":
        from kernelevolve.tuner.measure.arena import view

        return view(arenas or {}, obj, _dtype(obj[3]))
    if kind == "host":
        _, dtype, shape, raw = obj
        dtype = _dtype(dtype)
        if not raw:
            return torch.empty(shape, dtype=dtype)
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
        return t.to(device) if device is not None else t
    if kind == "ipc":
        from torch.multiprocessing.reductions import rebuild_cuda_tensor

        args = list(obj[1])
        storages = {"TypedStorage": torch.storage.TypedStorage, "UntypedStorage": torch.UntypedStorage}
        if args[0] != "Tensor" or args[4] not in storages:
            raise ValueError("unexpected CUDA IPC tensor fields")
        args[0], args[4], args[5] = torch.Tensor, storages[args[4]], _dtype(args[5])
        args[1] = torch.Size(args[1])
        return rebuild_cuda_tensor(*args)
    raise ValueError(f"unknown tensor encoding {kind!r}")


def encode_all(obj, ipc: bool, arena=None):
    """Every tensor inside nested dicts, lists and tuples encoded; tuples become lists (a list is
    data; a tuple in the message marks an encoded tensor)."""
    if isinstance(obj, torch.Tensor):
        return encode(obj, ipc, arena)
    if isinstance(obj, dict):
        return {k: encode_all(v, ipc, arena) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_all(v, ipc, arena) for v in obj]
    return obj


def decode_all(obj, device=None, arenas: dict | None = None):
    """`arenas`: the judge's views of the evaluator's arenas, by generation."""
    if isinstance(obj, tuple):
        return decode(obj, device, arenas)
    if isinstance(obj, dict):
        return {k: decode_all(v, device, arenas) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_all(v, device, arenas) for v in obj]
    return obj


# The parts of a round trip to the judge: the whole of it; the evaluator encoding the message
# (CUDA IPC handles or host copies); the judge decoding it (opening the handles), checking, and
# releasing the buffers. What is left of the round trip is the pipe and the pickles.
SPENT = ("round_trip", "encode", "decode", "check", "release")


class JudgeLink:
    """The evaluator's end of the wire: `submit(message)` sends one piece of evidence and returns
    the judge's outcome of that check ({ok, reason, rel, max}). The channel's file descriptors come
    from the parent (KERNELEVOLVE_EVIDENCE_FDS = "write,read"); CUDA IPC is used once a probe
    shows that the judge reads this process's GPU memory, host copies otherwise."""

    def __init__(self, fds: str, cuda: bool):
        w, r = (int(x) for x in fds.split(","))
        self.out, self.inp = os.fdopen(w, "wb"), os.fdopen(r, "rb")
        self.cuda = cuda
        self.ipc: bool | None = None  # decided at the first submit (a compile-only process never asks)
        self.transport = "host"
        self.arena = None  # the evaluator's Arena, once the judge holds it (CUDA IPC only)
        self.spent = dict.fromkeys(SPENT, 0.0)  # where the round trips' time went (reset per request)

    def _send(self, msg: dict, ipc: bool) -> dict:
        from kernelevolve.tuner.execution.worker import _HEADER, recv

        t0 = time.perf_counter()
        data = pickle.dumps(encode_all(msg, ipc, self.arena))
        t_encoded = time.perf_counter()
        self.out.write(_HEADER.pack(len(data)) + data)
        self.out.flush()
        reply = recv(self.inp)  # the judge is trusted: its replies are ordinary pickles
        spent = self.spent
        spent["round_trip"] += time.perf_counter() - t0
        spent["encode"] += t_encoded - t0
        for part in ("decode", "check", "release"):
            spent[part] += float(reply.get("t_" + part, 0.0))
        return reply

    def _probe(self) -> None:
        self.ipc = False
        if not self.cuda:
            return
        try:
            t = torch.arange(1000, dtype=torch.float32, device="cuda")
            reply = self._send({"op": "probe", "tensor": t}, ipc=True)
            self.ipc = bool(reply.get("ok")) and reply.get("sum") == 499500.0
        except Exception:
            self.ipc = False
        self.transport = "cuda_ipc" if self.ipc else "host"

    def ready(self) -> bool:
        """Whether the judge reads this process's GPU memory in place (probed once)."""
        if self.ipc is None:
            self._probe()
        return bool(self.ipc)

    def submit(self, msg: dict) -> dict:
        self.ready()
        return self._send(msg, self.ipc)
