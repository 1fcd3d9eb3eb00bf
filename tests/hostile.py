"""Recipes of hostile submissions, shared by the tests and the benchmarks: code appended to,
or put into, the solution's modules (``grading_support.make_submission``)."""

# Patches that make every check's use of the student's code spin or sleep forever.
STALL = {
    "spin": "def _stall(*a, **k):\n    while True:\n        pass\n",
    "sleep": "def _stall(*a, **k):\n    import time\n    time.sleep(3600)\n",
}
PATCH_ALL = """
import torch as _torch
_torch.nn.Module.__call__ = _stall
for _owner, _name in [(_torch, "softmax"), (_torch, "argmax"), (_torch.Tensor, "softmax"),
                      (_torch.Tensor, "argmax"), (_torch.nn.functional, "softmax")]:
    setattr(_owner, _name, _stall)
"""


MEMORY_HOG = """
import os as _os, time as _time
_kids = []
for _ in range(12):  # 12 x 300 MiB: each under its own address-space limit, together 3.5 GiB
    _pid = _os.fork()
    if _pid == 0:
        try:
            _block = bytearray(300 << 20)  # zero-filled: every page touched
            _time.sleep(60)
        finally:
            _os._exit(0)
    _kids.append(_pid)
for _pid in _kids:
    _os.waitpid(_pid, 0)
"""


def stalling(kind: str) -> dict[str, str]:
    """``append`` for a submission that spins (``"spin"``) or sleeps (``"sleep"``) in every
    check that calls its code."""
    code = STALL[kind] + PATCH_ALL
    return {"hw2/cnn.py": code, "hw2/classifier.py": code}


# One-line misbehaviours at import: (module, code appended).
AT_IMPORT = {
    "hang_import": ("hw2/training.py", "while True:\n    pass"),
    "sysexit": ("hw2/cnn.py", "import sys\nsys.exit(3)"),
    "osexit": ("hw2/classifier.py", "import os\nos._exit(5)"),
    "segfault": ("hw2/cnn.py", "import ctypes\nctypes.string_at(0)"),
    "flood": ("hw2/cnn.py", "print('x' * 5_000_000)"),
    "forkbomb": ("hw2/answers.py", "import os\nwhile True:\n    os.fork()"),
    "memory_hog": ("hw2/cnn.py", MEMORY_HOG),
}
