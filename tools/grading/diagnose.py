"""Why a visible numeric check failed: the student's module against the solution's.

When a visible spec check (``cnn_*``, ``resblock*``, ``resnet_*``) fails, the grader runs the
sandbox task ``structure:<check>`` (``harness.describe_module``), which returns the student's
module as plain text and one array: its modules, its parameters' names and shapes, their
values right after construction and the order they were created in. Here, in the trusted
parent, the solution's module is built from the same spec and described by the same
function, and ``diagnose`` names the first difference in a line or two:

1. the layers: per container, how many convolutions, linear layers, poolings and blocks, then
   which layer sits where, then each layer's configuration (its ``extra_repr``);
2. the parameters' shapes, in order;
3. their initial values: when the structure matches but the numbers do not, whether random
   numbers were drawn before some layer was built (a tensor created and not kept, a
   feature-count probe that does not restore the RNG state) or the layers were created in
   another order;
4. otherwise, that the difference comes from ``forward``.

Nothing is diagnosed for hidden checks: their structure would reveal their configuration.
Nothing the sandbox returns is trusted: it is parsed with caps, and a return that cannot be
read gives no hint at all (the check's own message stays).
"""

import re
import threading
from dataclasses import dataclass, field

import numpy as np

from tools.asset_specs import ALL_SPECS, AssetSpec
from tools.checks import CHECKS_BY_NAME
from tools.grading import harness

# The checks that get a hint when they fail: the visible spec checks, never a hidden one.
DIAGNOSED = tuple(
    name
    for name in harness.SPEC_CHECKS
    if name in CHECKS_BY_NAME and not CHECKS_BY_NAME[name].hidden
)
HINT_CAP = 400
TEXT_CAP = 1 << 20  # bytes of a returned text read
NAME_CAP = 80  # characters of a student's name or class shown in a hint
DEPTH_CAP = 32  # modules nested deeper are not compared (the comparison recurses)
CONTAINERS = ("Sequential", "ModuleList")
ACTIVATIONS = set(
    "ReLU LeakyReLU Tanh Sigmoid Softmax LogSoftmax ELU GELU SELU SiLU PReLU ReLU6 Hardtanh "
    "Softplus Mish".split()
)
# Layers whose count in a container is compared before their order.
COUNTED = ("block", "conv", "linear", "pool")
NOUNS = {"block": "block", "conv": "Conv2d", "linear": "Linear", "pool": "pooling"}


class Unreadable(ValueError):
    """The sandbox's description cannot be read; no hint is given."""


# ----------------------------------------------------------------------------- the description


@dataclass
class Node:
    """One module: its qualified name, class, ``extra_repr``, object number and children."""

    name: str
    cls: str
    extra: str
    obj: int
    children: list["Node"] = field(default_factory=list)

    @property
    def custom(self) -> bool:
        """A module of its own class with submodules (a block, the MLP), not a container."""
        return bool(self.children) and self.cls not in CONTAINERS


@dataclass
class Param:
    name: str
    shape: tuple[int, ...]
    created: int  # rank among the parameters registered during construction (-1: unknown)


@dataclass
class Structure:
    """A module as ``harness.describe_module`` describes it."""

    root: Node
    params: list[Param]
    discarded: list[tuple[int, ...]]
    init: np.ndarray  # (len(params), STRUCTURE_HEAD + 2)
    partial: str = ""  # what building raised, when only part of the module was built


def _shape(text: str) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    dims = tuple(int(d) for d in text.split(","))
    if any(d < 0 for d in dims) or len(dims) > 8:
        raise Unreadable(f"bad shape {text[:40]!r}")
    return dims


def build_structure(
    modules: str, params: str, discarded: str, init: np.ndarray, partial: str = ""
) -> Structure:
    """A ``Structure`` from ``describe_module``'s texts and array; ``Unreadable`` when they do
    not describe a module tree."""
    nodes: dict[str, Node] = {}
    root = None
    for line in modules.split("\n")[: harness.STRUCTURE_CAP]:
        parts = line.split("\t")
        if len(parts) != 4:
            raise Unreadable("a module line does not have 4 fields")
        name, cls, extra, obj = parts
        if name.count(".") >= DEPTH_CAP:
            raise Unreadable(f"modules nested more than {DEPTH_CAP} deep")
        node = Node(name, cls, extra, int(obj))
        if root is None:
            if name != "":
                raise Unreadable("the first module is not the root")
            root = node
        elif name in nodes or not name:
            continue  # a name seen twice: keep the first (torch names each place once)
        else:
            parent = nodes.get(name.rsplit(".", 1)[0] if "." in name else "")
            if parent is None:
                raise Unreadable(f"module {name[:NAME_CAP]!r} comes before its parent")
            parent.children.append(node)
        nodes[name] = node
    if root is None:
        raise Unreadable("no module described")
    plist = []
    for line in params.split("\n") if params else []:
        parts = line.split("\t")
        if len(parts) != 3:
            raise Unreadable("a parameter line does not have 3 fields")
        plist.append(Param(parts[0], _shape(parts[1]), int(parts[2])))
    if init.ndim != 2 or init.shape != (len(plist), harness.STRUCTURE_HEAD + 2):
        raise Unreadable(f"initial values of shape {init.shape} for {len(plist)} parameters")
    dropped = [_shape(s) for s in discarded.split("\n") if s.strip()]
    return Structure(root, plist, dropped, init.astype(np.float64), partial.strip())


def parse(outputs: dict[str, bytes]) -> Structure:
    """The student's ``Structure`` from the files of a ``structure:<check>`` task."""
    from tools.grading.compare import Invalid, load_array

    texts = {}
    for key in ("modules", "params", "discarded", "partial"):
        data = outputs.get(f"{key}.txt")
        if data is None:
            raise Unreadable(f"no {key} returned")
        texts[key] = data[:TEXT_CAP].decode("utf-8", "replace")
    try:
        init = load_array(outputs, "init")
    except Invalid as e:
        raise Unreadable(str(e)) from e
    try:
        return build_structure(
            texts["modules"], texts["params"], texts["discarded"], init, texts["partial"]
        )
    except (ValueError, IndexError) as e:
        raise Unreadable(str(e)) from e


def spec_of(check: str) -> AssetSpec:
    return next(s for s in ALL_SPECS if s.file == harness.SPEC_CHECKS[check])


_lock = threading.Lock()
_references: dict[str, Structure] = {}


def reference(check: str) -> Structure:
    """The solution's module of ``check``, described as the student's is; built once per
    process. Built twice under a lock and kept only when both agree, since another thread of
    the grader may draw random numbers from torch's global generator meanwhile."""
    import torch

    from hw2 import cnn

    with _lock:
        if check not in _references:
            spec = spec_of(check)
            cls = getattr(cnn, spec.kind)
            built = []
            for _ in range(4):
                with torch.random.fork_rng(devices=[]):
                    d = harness.describe_module(lambda: cls(**spec.params))
                built.append(build_structure(d["modules"], d["params"], d["discarded"], d["init"]))
                if len(built) > 1 and np.array_equal(built[-1].init, built[-2].init):
                    break
            _references[check] = built[-1]
        return _references[check]


# ----------------------------------------------------------------------------- wording


def path(name: str) -> str:
    """``feature_extractor.0.main_path.1`` as ``feature_extractor[0].main_path[1]``."""
    if not name:
        return "the module"
    out = ""
    for part in name.split("."):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return _safe(out)


def _safe(text: str, cap: int = NAME_CAP) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return text if len(text) <= cap else text[: cap - 1] + "…"


def fmt_list(values) -> str:
    """``[32, 32, 32, 32]`` as ``[32]*4``, ``[6, 4, 6, 4]`` as ``[6, 4]*2``."""
    values = list(values)
    n = len(values)
    for p in range(1, n // 2 + 1):
        if n % p == 0 and values == values[:p] * (n // p):
            return f"{values[:p]}*{n // p}"
    return str(values)


def layer(node: Node) -> str:
    """``Conv2d(3, 32, kernel_size=(3, 3), ...)``: a layer as torch prints it."""
    return _safe(f"{node.cls}({node.extra})" if node.extra else node.cls, 120)


def plural(n: int, noun: str) -> str:
    return f"{'no' if n == 0 else n} {noun}{'' if n == 1 else ' layers'}"


# ----------------------------------------------------------------------------- comparing layers


def category(node: Node) -> str:
    cls = node.cls
    if is_neutral(node):
        return "neutral"
    if node.custom:
        return "block"
    if cls.startswith("Conv"):
        return "conv"
    if cls in ("Linear", "LazyLinear"):
        return "linear"
    if "Pool" in cls:
        return "pool"
    if cls.startswith("BatchNorm"):
        return "norm"
    if cls.startswith("Dropout"):
        return "dropout"
    if cls in ACTIVATIONS:
        return "act"
    return "other"


def is_identity(node: Node) -> bool:
    return node.cls == "Identity" or (node.cls in CONTAINERS and not flatten(node))


def is_neutral(node: Node) -> bool:
    """A layer that changes no number: the identity, a flatten, dropout with p = 0."""
    if is_identity(node) or node.cls in ("Flatten", "Unflatten"):
        return True
    return node.cls.startswith("Dropout") and re.match(r"p=0(\.0*)?(,|$)", node.extra) is not None


def flatten(node: Node) -> list[Node]:
    """The layers of a container, nested containers opened; a block counts as one layer."""
    if node.cls not in CONTAINERS:
        return [node]
    return [leaf for child in node.children for leaf in flatten(child)]


def significant(node: Node) -> bool:
    """Whether a subtree holds a layer that matters (anything but identities and
    parameter-free activations)."""
    return any(category(n) not in ("neutral", "act") for n in _walk(node))


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _extra(text: str) -> str:
    return re.sub(r",?\s*inplace=(True|False)", "", text).strip(", ")


@dataclass
class Context:
    """What the hint may say about the configuration: the visible spec's parameters."""

    kind: str
    params: dict
    partial: bool = False  # the student's module was only partly built

    @property
    def activation(self) -> str:
        return self.params.get("activation_type", "relu")


def compare_nodes(ref: Node, stu: Node, ctx: Context) -> str | None:
    """The first difference between two modules, or ``None``."""
    if ref.custom and stu.custom:
        return _compare_named(ref, stu, ctx)
    return _compare_layers(stu.name, flatten(ref), flatten(stu), ctx)


def _compare_named(ref: Node, stu: Node, ctx: Context) -> str | None:
    """Two blocks: their submodules matched by name; a block laid out with other names is
    compared layer by layer."""
    own = {c.name.rsplit(".", 1)[-1]: c for c in stu.children}
    names = [c.name.rsplit(".", 1)[-1] for c in ref.children]
    missing = [n not in own and significant(c) for n, c in zip(names, ref.children, strict=True)]
    if any(missing) and not ctx.partial:
        return _compare_layers(stu.name, _leaves(ref), _leaves(stu), ctx)
    for name, child in zip(names, ref.children, strict=True):
        if name not in own:
            continue
        found = compare_nodes(child, own[name], ctx)
        if found:
            return found
    for name, child in own.items():
        if name not in names and significant(child):
            inside = {id(n) for n in _walk(child)}
            elsewhere = {n.obj for n in _walk(stu) if id(n) not in inside}
            # a second name for layers already placed elsewhere changes nothing
            if any(n.obj not in elsewhere for n in _walk(child) if not n.children):
                return f"{path(child.name)} ({_safe(child.cls)}) is not in the reference's module"
    return None


def _leaves(node: Node) -> list[Node]:
    return [n for n in _walk(node) if not n.children and n is not node] or [node]


def _count_hint(where: str, cat: str, n_ref: int, n_stu: int, ref: list[Node], ctx: Context):
    kinds = [n.cls for n in ref if category(n) == cat]
    noun = max(set(kinds), key=kinds.count) if kinds else NOUNS[cat]
    text = f"{where or 'the module'} has {plural(n_stu, noun)}, expected {n_ref}"
    why = _count_reason(where, cat, n_ref, n_stu, ctx)
    return f"{text}: {why}" if why else text


def _count_reason(where: str, cat: str, n_ref: int, n_stu: int, ctx: Context) -> str:
    p, kind = ctx.params, ctx.kind
    in_fe = where.startswith("feature_extractor")
    if kind in ("CNN", "ResNet") and where == "feature_extractor":
        n, every = len(p["channels"]), p["pool_every"]
        if cat == "conv" and kind == "CNN":
            return f"one per entry of channels={fmt_list(p['channels'])}"
        if cat == "block":
            return f"one residual block per group of pool_every={every} of the {n} channels"
        if cat == "pool":
            why = f"one after every pool_every={every} convs"
            if n % every:
                why += f"; the last {n} mod {every} = {n % every} convs have no pooling after them"
            return why
    if cat == "linear" and where.startswith("mlp"):
        return f"one per entry of hidden_dims={fmt_list(p['hidden_dims'])}, then the output layer"
    if cat == "conv" and "shortcut" in where:
        if n_ref > n_stu:
            return (
                "when in_channels differs from channels[-1] the shortcut is a 1x1 Conv2d "
                "without bias, a projection to the output channels"
            )
        return "when in_channels equals channels[-1] the shortcut is the identity"
    if cat == "conv" and "main_path" in where:
        if kind == "ResidualBlock":
            return f"one per entry of channels={fmt_list(p['channels'])}"
        if kind == "ResidualBottleneckBlock" or (in_fe and kind == "ResNet" and n_ref != n_stu):
            return "a bottleneck is a 1x1 conv down, one conv per inner channel, a 1x1 conv up"
    return ""


def _order_reason(r: Node, s: Node, where: str, ctx: Context) -> str:
    pair = {category(r), category(s)}
    if pair == {"norm", "dropout"}:
        return "between convolutions the order is CONV -> DROPOUT -> BN -> ACT"
    if category(r) == category(s) == "act":
        return f"activation_type={ctx.activation!r}"
    if category(r) == category(s) == "pool":
        return f"pooling_type={ctx.params.get('pooling_type', 'max')!r}"
    if {r.cls, s.cls} == {"ResidualBlock", "ResidualBottleneckBlock"}:
        return (
            "bottleneck=True makes a group of 3 or more convs whose input and output "
            "channels match a bottleneck block, and any other group a plain block"
        )
    if r.cls == "Identity" and category(s) == "act" and where.startswith("mlp"):
        return "the output layer has no activation"
    return ""


def _missing_reason(missing: Node, ctx: Context) -> str:
    p = ctx.params
    if category(missing) == "dropout":
        return f"dropout={p.get('dropout')} puts a Dropout2d after each conv but the last"
    if category(missing) == "norm":
        return f"batchnorm={p.get('batchnorm')} puts a BatchNorm2d after each conv but the last"
    if category(missing) == "act":
        return f"activation_type={ctx.activation!r} after each conv but the last"
    return ""


def _compare_layers(where: str, ref: list[Node], stu: list[Node], ctx: Context) -> str | None:
    """Two lists of layers: how many of each kind, then which where, then each one."""
    where = path(where) if where else ""
    r = [n for n in ref if not is_neutral(n)]
    s = [n for n in stu if not is_neutral(n)]
    for cat in COUNTED:
        n_ref = sum(category(n) == cat for n in r)
        n_stu = sum(category(n) == cat for n in s)
        if n_ref != n_stu:
            return _count_hint(where, cat, n_ref, n_stu, r, ctx)
    # the same length with the identities in place: compare place by place as printed
    if len(ref) == len(stu) and any(a.cls != b.cls for a, b in zip(ref, stu, strict=True)):
        r, s = ref, stu
    for a, b in zip(r, s, strict=False):
        if a.cls != b.cls and not (is_identity(a) and is_identity(b)):
            why = _order_reason(a, b, where, ctx)
            text = f"{path(b.name)} is {_safe(b.cls)}, expected {_safe(a.cls)}"
            return f"{text}: {why}" if why else text
    if len(s) > len(r):
        extra = s[len(r)]
        why = (
            "the output layer has no activation"
            if (
                category(extra) == "act"
                and where.startswith("mlp")
                and r
                and category(r[-1]) == "linear"
            )
            else ""
        )
        text = f"{path(extra.name)} is {_safe(extra.cls)}, expected " + (
            "Identity" if why else f"nothing after {path(s[len(r) - 1].name) if r else 'it'}"
        )
        return f"{text}: {why}" if why else text
    if len(r) > len(s):
        missing = r[len(s)]
        after = f" after {path(s[-1].name)}" if s else ""
        text = (
            f"{where or 'the module'} has no {_safe(missing.cls)}{after}, expected {layer(missing)}"
        )
        why = _missing_reason(missing, ctx)
        return f"{text}: {why}" if why else text
    for a, b in zip(r, s, strict=True):
        if a.custom or b.custom:
            found = compare_nodes(a, b, ctx)
        elif _extra(a.extra) != _extra(b.extra):
            found = f"{path(b.name)} is {layer(b)}, expected {layer(a)}"
            if category(a) == "linear" and where.startswith("mlp") and a is r[0]:
                found += ": in_features is the number of features the feature extractor outputs"
            elif category(a) == "act":
                found += f": activation_params={ctx.params.get('activation_params', {})}"
        else:
            found = None
        if found:
            return found
    return None


# ----------------------------------------------------------------------------- parameters


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    head = harness.STRUCTURE_HEAD
    return bool(
        np.allclose(a[:head], b[:head], rtol=1e-5, atol=1e-7)
        and np.allclose(a[head:], b[head:], rtol=1e-4, atol=1e-5)
    )


def compare_params(ref: Structure, stu: Structure) -> str | None:
    """Shapes in order, then the initial values: which of the usual causes explains them."""
    for i, (a, b) in enumerate(zip(ref.params, stu.params, strict=False)):
        if a.shape != b.shape:
            return (
                f"parameter {i} ({_safe(b.name)}) has shape {b.shape}, "
                f"expected {a.shape} ({_safe(a.name)})"
            )
    if len(ref.params) != len(stu.params):
        more = stu.params[len(ref.params)] if len(stu.params) > len(ref.params) else None
        text = f"the module has {len(stu.params)} parameter tensors, expected {len(ref.params)}"
        return text + (f"; the first extra one is {_safe(more.name)} {more.shape}" if more else "")
    same = [_same_values(a, b) for a, b in zip(ref.init, stu.init, strict=True)]
    if all(same):
        return None
    return "the layers and shapes match, the initial values do not: " + _initial_values_cause(
        ref, stu, same
    )


def _creation_order(s: Structure) -> list[int]:
    """Parameter positions in the order they were created (unknown ones last, in place)."""
    return sorted(
        range(len(s.params)), key=lambda i: (s.params[i].created < 0, s.params[i].created, i)
    )


def _initial_values_cause(ref: Structure, stu: Structure, same: list[bool]) -> str:
    order = _creation_order(stu)
    first = next(i for i in order if not same[i])
    name = _safe(stu.params[first].name)
    extra = len(stu.discarded) - len(ref.discarded)
    if extra > 0:
        shapes = ", ".join(str(s) for s in stu.discarded[:3]) + (", ..." if extra > 3 else "")
        return (
            f"{extra} parameter tensor(s) ({shapes}) are created while building and not "
            f"kept; creating a layer draws random numbers even when it is not used, so "
            f"{_owner(name)} and the layers after it start from other values"
        )
    ref_order = _creation_order(ref)
    if order != ref_order and all(p.created >= 0 for p in stu.params):
        k = next(k for k, (i, j) in enumerate(zip(order, ref_order, strict=True)) if i != j)
        early, late = _owner(stu.params[order[k]].name), _owner(stu.params[ref_order[k]].name)
        return (
            f"the layers are created in another order: {early} is created before {late}, "
            "which the reference creates first; each layer's initial values depend on the "
            "random numbers drawn before it"
        )
    moved = _permutation(ref, stu)
    if moved:
        i, j = moved
        return (
            f"{_safe(stu.params[i].name)} holds the initial values of the reference's "
            f"{_safe(ref.params[j].name)}: the layers are created in another order than "
            "they are placed"
        )
    before = [i for i in order[: order.index(first)]]
    if not before:
        return (
            "none of them matches, from the first layer on: random numbers were drawn "
            "before the first layer was created, or the layers are initialized another way"
        )
    mlp_starts = name.startswith("mlp") and all(
        not stu.params[i].name.startswith("mlp") for i in before
    )
    if mlp_starts:
        return (
            f"the feature extractor's match, the MLP's differ from {_owner(name)} on: the "
            "feature-count probe drew random numbers (torch.randn, or a forward pass in train "
            "mode through dropout); save and restore the RNG state around it"
        )
    return (
        f"they match up to {_owner(stu.params[before[-1]].name)} and differ from "
        f"{_owner(name)} on: random numbers were drawn between creating the two (save and "
        "restore the RNG state around anything random done while building)"
    )


def _owner(param_name: str) -> str:
    """The layer that holds a parameter: ``mlp.layers.0.weight`` -> ``mlp.layers[0]``."""
    return path(param_name.rsplit(".", 1)[0] if "." in param_name else param_name)


def _permutation(ref: Structure, stu: Structure) -> tuple[int, int] | None:
    """``(i, j)`` when every student parameter holds some reference parameter's initial
    values, and parameter ``i`` holds those of another position ``j``."""
    mapping = []
    for i, b in enumerate(stu.params):
        js = [
            j
            for j, a in enumerate(ref.params)
            if a.shape == b.shape and _same_values(ref.init[j], stu.init[i])
        ]
        if not js:
            return None
        mapping.append(i if i in js else js[0])
    moved = [(i, j) for i, j in enumerate(mapping) if i != j]
    return moved[0] if moved else None


# ----------------------------------------------------------------------------- the hint


FORWARD = {
    "CNN": "the difference is in forward: the features must be flattened per image and go "
    "through the feature extractor, then the MLP",
    "ResidualBlock": "the difference is in forward: relu(main_path(x) + shortcut_path(x))",
    "ResidualBottleneckBlock": "the difference is in forward: relu(main_path(x) + x)",
    "ResNet": "the difference is in forward (the order the layers are applied in, the "
    "shortcut, the final ReLU of each block)",
}


def diagnose_structures(check: str, ref: Structure, stu: Structure) -> str:
    """The hint for ``check`` from the two descriptions; "" when nothing differs."""
    spec = spec_of(check)
    ctx = Context(spec.kind, spec.params, partial=bool(stu.partial))
    found = compare_nodes(ref.root, stu.root, ctx)
    if found is None and stu.partial:
        return ""  # the part that was built is right; the error message says the rest
    found = found or compare_params(ref, stu)
    if found is None:
        found = (
            "the layers, their order and their initial parameters match the reference; "
            + FORWARD[spec.kind]
        )
    text = " ".join(found.split())
    return text if len(text) <= HINT_CAP else text[: HINT_CAP - 1] + "…"


def hint_kind(hint: str) -> str:
    """What a hint says without where and with which numbers: the same mistake in another
    check, block or configuration has the same kind (the report counts hints by kind)."""
    return re.sub(r"\d+", "#", re.sub(r"feature_extractor\[\d+\]\.", "", hint))


def diagnose(check: str, outputs: dict[str, bytes]) -> str:
    """The hint for a failed visible check from its ``structure:<check>`` task's files; ""
    for a hidden check or a description that cannot be read."""
    if check not in DIAGNOSED:
        return ""
    try:
        stu = parse(outputs)
    except Unreadable:
        return ""
    try:
        return diagnose_structures(check, reference(check), stu)
    except Exception:  # noqa: BLE001 - a hint must never cost a grade: the check's message stays
        return ""
