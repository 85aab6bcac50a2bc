"""A run's configuration: one typed dataclass per YAML section (rule 7 of STYLE.md).

A recipe is a YAML file with up to six sections::

    model: {name: mlp_spe_mini, T: 4, dim: 24}      # name -> registered builder, other keys -> its kwargs
    data:  {name: fashion_mnist, batch_size: 128}   # spikevision.data.DataConfig
    optim: {name: adamw, lr: 0.002, weight_decay: 0.01}
    sched: {name: cosine, warmup_epochs: 1}
    train: {epochs: 10, loss: ce, seed: 0}
    run:   {name: quickstart, out_dir: runs}

plus ``key=value`` overrides from the command line (dotted keys, values parsed
as YAML: ``train.epochs=3``, ``model.neuron_params.v_th=0.5``,
``data.mean=[0.5]``). :func:`load_config` validates everything before anything
runs and raises one :class:`ConfigError` listing every problem, each unknown key
with the nearest valid one; numbers must be finite (``optim.lr=.nan`` is an error).
An empty recipe file is an error (``{}`` asks for all defaults explicitly).
:meth:`Config.to_dict` is what the run directory's ``config.yaml`` and every
checkpoint store.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from spikevision.data.config import DataConfig, DataConfigError
from spikevision.train.yaml_loader import YAMLLimitError, yaml_error_text, yaml_load
from spikevision.validation import check_values, did_you_mean

__all__ = [
    "Config", "ConfigError", "ModelConfig", "OptimConfig", "SchedConfig", "TrainConfig", "RunConfig",
    "load_config", "parse_overrides", "apply_overrides", "apply_settings", "config_from_dict", "read_recipe",
    "read_yaml_file",
]


class ConfigError(ValueError):
    """One or more problems in a configuration; the message lists all of them."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.errors))


@dataclass
class ModelConfig:
    """``model:``: ``name`` picks a registered builder; every other key is passed to it.

    Args:
        name: registered model name (``spikevision models`` lists them).
        pretrained: start from the shipped weights with this tag (``fashion_mnist``; ``spikevision models
            --weights`` lists them) instead of a random initialisation: fine-tuning. The builder's arguments
            are then the weights' card's, and ``kwargs`` may only repeat them, or change ``T`` where the
            weights allow it. None (default): a fresh model.
        kwargs: the builder's keyword arguments (``T``, ``num_classes``, ...).
            ``num_classes`` defaults to the data set's when the builder takes it.
    """

    name: str = "mlp_spe_mini"
    pretrained: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """``optim:``: the optimiser.

    Args:
        name: ``"sgd"`` or ``"adamw"``.
        lr: peak learning rate (after warm-up).
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        betas: AdamW betas.
        eps: AdamW epsilon.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        no_decay_1d: no weight decay on parameters with at most one dimension
            (biases, norm scales/shifts, PLIF time constants).
        no_decay_names: no weight decay on parameters whose name contains one of these.
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    no_decay_1d: bool = True
    no_decay_names: list[str] = field(default_factory=list)


@dataclass
class SchedConfig:
    """``sched:``: the learning-rate schedule, stepped every optimiser step.

    Args:
        name: ``"cosine"`` (to ``min_lr`` at the end), ``"step"`` (times ``gamma``
            at each of ``milestones``) or ``"constant"``.
        warmup_epochs: linear warm-up length in epochs (may be fractional; 0 = none).
        warmup_start: learning-rate factor at the start of the warm-up.
        min_lr: final learning rate of ``cosine``.
        milestones: epochs at which ``step`` multiplies the rate by ``gamma``.
        gamma: factor of ``step``.
    """

    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    warmup_start: float = 0.01
    min_lr: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """``train:``: the loop.

    Args:
        epochs: training epochs.
        loss: ``"ce"`` (cross-entropy on time-averaged logits) or ``"tet"``
            (Deng et al., ICLR 2022: cross-entropy of every time step's logits).
        label_smoothing: label smoothing of ``ce``/``tet`` with hard labels (with
            Mixup/CutMix the smoothing is ``data.label_smoothing``).
        tet_lambda: weight of TET's MSE regulariser pulling logits towards ``tet_phi`` (0 = off).
        tet_phi: target of that regulariser.
        amp: mixed precision: ``True`` (bf16 autocast on CPU; fp16 with a gradient scaler on CUDA),
            ``False``, or ``"auto"``: on CUDA fp16, on a CPU bf16 only where it has bf16 instructions
            (AVX512-BF16 or AMX; elsewhere bf16 is emulated and several times slower than float32).
        clip_grad: clip the global gradient norm to this value (None = off).
        seed: seed of Python, NumPy and torch.
        deterministic: deterministic algorithms only (exact resume, slower).
        sync_bn: in distributed runs, normalise with the statistics of the global batch
            (every BatchNorm becomes a synchronised one, CPU/gloo and CUDA alike), so N
            processes train like one process on the same global batch; false keeps
            per-rank statistics (the spiking MLP's released code).
        dist_timeout_s: seconds a collective may wait for the other ranks before the
            run stops with an error naming this setting (a frozen or dead rank).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        threads: intra-op CPU threads (None = torch's default).
        ckpt_every_steps: also write ``last.pt`` every N optimiser steps (0 = only at epoch ends).
        eval_every: evaluate every N epochs (and always after the last).
        log_every_steps: TensorBoard scalar interval in steps.
        flush_denormal: flush denormal floats to zero on CPU. Surrogate gradients
            of far-from-threshold membranes underflow into denormals, which
            x86 CPUs process up to 10x slower; flushing them changes values
            below 1e-38 only.
        keep_freed_memory: keep freed memory in the process heap (glibc;
            :mod:`spikevision.train.allocator`): no page faults per step, ~13% less CPU
            time on one thread, the same peak memory.
        memory_saving: recompute residual blocks in the backward pass
            (:mod:`spikevision.train.memory_saving`; cuts activation memory, costs time).
        channels_last: train with every feature map in channels-last memory format
            (:func:`spikevision.layers.memory_format.to_channels_last`): the same values to float32
            round-off; on CPU 1.07-1.31x faster steps for MS-ResNet, S-ResNet, GAC and the spiking CNN,
            slower for the spiking MLP (``bench/channels_last.md``), so off unless a recipe sets it.
    """

    epochs: int = 10
    loss: Literal["ce", "tet"] = "ce"
    label_smoothing: float = 0.0
    tet_lambda: float = 0.0
    tet_phi: float = 1.0
    amp: bool | Literal["auto"] = False
    clip_grad: float | None = None
    seed: int = 0
    deterministic: bool = False
    sync_bn: bool = True
    dist_timeout_s: float = 600.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    ckpt_every_steps: int = 0
    eval_every: int = 1
    log_every_steps: int = 50
    flush_denormal: bool = True
    keep_freed_memory: bool = True
    memory_saving: bool = False
    channels_last: bool = False


@dataclass
class RunConfig:
    """``run:``: where results go.

    Args:
        name: run name; the run directory is ``out_dir/name``.
        out_dir: parent folder of run directories.
        tensorboard: write TensorBoard event files.
        progress: rank 0's training progress: ``"auto"`` (a tqdm bar on a terminal; without one, e.g.
            into a log file, a plain line every ``progress_every_s`` seconds), ``"on"``/true (always the
            bar), ``"off"``/false (YAML reads a bare ``on``/``off`` as a boolean; both spellings work).
        progress_every_s: seconds between the plain progress lines.
    """

    name: str = "run"
    out_dir: str = "runs"
    tensorboard: bool = True
    progress: Literal["auto", "on", "off"] | bool = "auto"
    progress_every_s: float = 30.0

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


@dataclass
class Config:
    """A whole run: one dataclass per section."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and ``weights_only``-safe): the resolved config."""
        pretrained = {} if self.model.pretrained is None else {"pretrained": self.model.pretrained}
        out: dict[str, Any] = {"model": {"name": self.model.name, **pretrained, **_plain(self.model.kwargs)},
                               "data": self.data.to_dict()}
        for sec in ("optim", "sched", "train", "run"):
            out[sec] = _plain(dataclasses.asdict(getattr(self, sec)))
        return out


_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
                              "sched": SchedConfig, "train": TrainConfig, "run": RunConfig}


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _section(cls: type, name: str, raw: Any, errors: list[str], everything: Mapping[str, Sequence[str]]) -> Any:
    """Build one dataclass section, appending every problem to ``errors``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        errors.append(f"section {name!r} must be a mapping of keys to values, got {type(raw).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    kwargs, problems = check_values(raw, hints, name)
    for problem in problems:
        key = problem.removeprefix(f"unknown key {name}.")
        if key != problem and "(did you mean" not in key:  # maybe it lives in another section
            other = [s for s, keys in everything.items() if s != name and key in keys]
            problem += f" (did you mean {other[0]}.{key}?)" if other else ""
        errors.append(problem)
    kwargs = {k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in kwargs.items()}
    return cls(**kwargs)


def _check_values(cfg: Config, errors: list[str]) -> None:
    o, s, t = cfg.optim, cfg.sched, cfg.train
    if o.lr <= 0:
        errors.append(f"optim.lr must be > 0, got {o.lr}")
    if o.weight_decay < 0:
        errors.append(f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    if not 0 <= o.momentum < 1:
        errors.append(f"optim.momentum must be in [0, 1), got {o.momentum}")
    if s.warmup_epochs < 0 or s.warmup_epochs > t.epochs:
        errors.append(f"sched.warmup_epochs must be in [0, train.epochs={t.epochs}], got {s.warmup_epochs}")
    if not 0 < s.warmup_start <= 1:
        errors.append(f"sched.warmup_start must be in (0, 1], got {s.warmup_start}")
    if s.min_lr < 0 or (o.lr > 0 and s.min_lr > o.lr):
        errors.append(f"sched.min_lr must be in [0, optim.lr={o.lr}], got {s.min_lr}")
    if s.name == "step" and not s.milestones:
        errors.append("sched.name='step' needs sched.milestones (epochs), e.g. sched.milestones=[30,60]")
    if any(m < 1 for m in s.milestones):
        errors.append(f"sched.milestones are epochs >= 1, got {s.milestones}")
    if list(s.milestones) != sorted(s.milestones):
        errors.append(f"sched.milestones must be increasing, got {s.milestones}")
    if t.epochs < 1:
        errors.append(f"train.epochs must be >= 1, got {t.epochs}")
    if not 0 <= t.label_smoothing < 1:
        errors.append(f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    if t.tet_lambda < 0 or t.tet_lambda >= 1:
        errors.append(f"train.tet_lambda must be in [0, 1), got {t.tet_lambda}")
    if t.tet_lambda > 0 and t.loss != "tet":
        errors.append("train.tet_lambda applies to loss='tet' only; set train.loss=tet or tet_lambda=0")
    if t.clip_grad is not None and t.clip_grad <= 0:
        errors.append(f"train.clip_grad must be > 0 or null (off), got {t.clip_grad}")
    for key in ("ckpt_every_steps",):
        if getattr(t, key) < 0:
            errors.append(f"train.{key} must be >= 0, got {getattr(t, key)}")
    for key in ("eval_every", "log_every_steps"):
        if getattr(t, key) < 1:
            errors.append(f"train.{key} must be >= 1, got {getattr(t, key)}")
    if t.threads is not None and t.threads < 1:
        errors.append(f"train.threads must be >= 1 or null, got {t.threads}")
    if not t.dist_timeout_s > 0:
        errors.append(f"train.dist_timeout_s must be > 0 seconds, got {t.dist_timeout_s}")
    if not cfg.run.progress_every_s > 0:
        errors.append(f"run.progress_every_s must be > 0, got {cfg.run.progress_every_s}")
    if not cfg.run.name or "/" in cfg.run.name or cfg.run.name in (".", ".."):
        errors.append(f"run.name must be a plain folder name, got {cfg.run.name!r}")


def _check_model(cfg: Config, errors: list[str]) -> None:
    """The builder's arguments against its signature, types and ranges, a meta build and a memory estimate;
    with ``model.pretrained``, against the weights' card too."""
    from spikevision.models.arguments import check_model_kwargs

    kwargs = cfg.model.kwargs
    if cfg.model.pretrained is not None:
        trained = _pretrained_kwargs(cfg, errors)
        if trained is None:
            return
        kwargs = {**trained, **kwargs}
    errors.extend(check_model_kwargs(cfg.model.name, kwargs, batch_size=cfg.data.batch_size))


def _pretrained_kwargs(cfg: Config, errors: list[str]) -> dict[str, Any] | None:
    """The card's builder arguments for ``model.pretrained``, or None after recording why they cannot be used."""
    from spikevision.data import get_dataset_info
    from spikevision.models.factory import PRETRAINED_FREE_KWARGS
    from spikevision.models.registry import UnknownModelError
    from spikevision.weights import PretrainedNotFoundError, read_card

    name, tag = cfg.model.name, cfg.model.pretrained
    try:
        trained = dict(read_card(name, tag)["model_kwargs"])
    except (PretrainedNotFoundError, UnknownModelError) as e:
        errors.append(f"model.pretrained={tag!r}: {e}")
        return None
    except ValueError as e:  # a damaged card
        errors.append(f"model.pretrained={tag!r}: {e}")
        return None
    for key, value in cfg.model.kwargs.items():
        if key in trained and value != trained[key] and key not in PRETRAINED_FREE_KWARGS:
            errors.append(f"model.{key}={value!r} contradicts model.pretrained={tag!r} (trained with "
                          f"{trained[key]!r}); drop it, or train without pretrained")
    classes = trained.get("num_classes")
    if "num_classes" not in cfg.model.kwargs and classes is not None:
        try:
            wanted = get_dataset_info(cfg.data.name).num_classes
        except KeyError:
            wanted = classes  # an unknown data set is reported by the data section
        if wanted != classes:
            errors.append(f"model.pretrained={tag!r} classifies {classes} classes, data set {cfg.data.name!r} "
                          f"has {wanted}; a new head is not supported: train without pretrained")
    return trained


def _mapping(raw: Mapping[str, Any], section: str, errors: list[str]) -> dict[str, Any]:
    """A copy of ``raw[section]`` ({} when absent), or {} and an error when it is not a mapping."""
    value = raw.get(section)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(f"section {section!r} must be a mapping of keys to values, got {type(value).__name__}")
        return {}
    return {str(k): v for k, v in value.items()}


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Typed, validated :class:`Config` from a nested mapping (a parsed recipe).

    Raises:
        ConfigError: every problem found (unknown sections/keys with the nearest
            valid one, wrong types, out-of-range values, unknown model/data set).
    """
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        raise ConfigError([f"a config must be a mapping of sections, got {type(raw).__name__}"])
    for sec in raw:
        if sec not in _SECTIONS:
            errors.append(f"unknown section {sec!r}{did_you_mean(str(sec), list(_SECTIONS))}; "
                          f"sections are {', '.join(_SECTIONS)}")
    everything = {s: [f.name for f in dataclasses.fields(c)] for s, c in _SECTIONS.items()}
    model_raw = _mapping(raw, "model", errors)
    model = ModelConfig()
    if "name" in model_raw:
        if isinstance(model_raw["name"], str):
            model.name = model_raw.pop("name")
        else:
            errors.append(f"model.name must be a registered model name, got {model_raw.pop('name')!r}")
    if "pretrained" in model_raw:
        tag = model_raw.pop("pretrained")
        if tag is None or (isinstance(tag, str) and tag):
            model.pretrained = tag
        else:
            errors.append(f"model.pretrained must be the tag of shipped weights (e.g. fashion_mnist) or null, "
                          f"got {tag!r}")
    model.kwargs = model_raw
    data_raw = _mapping(raw, "data", errors)
    try:
        data = DataConfig.from_dict(data_raw)
    except DataConfigError as e:
        errors.extend(line.strip(" -") for line in str(e).splitlines() if line.strip(" -") and
                      not line.startswith("invalid data config"))
        data = DataConfig()
    except TypeError as e:
        errors.append(f"data: {e}")
        data = DataConfig()
    sections = {s: _section(c, s, raw.get(s), errors, everything) for s, c in _SECTIONS.items()
                if s not in ("model", "data")}
    cfg = Config(model=model, data=data, **sections)
    _check_model(cfg, errors)
    _check_values(cfg, errors)
    if errors:
        raise ConfigError(errors)
    return cfg


def parse_overrides(items: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``["train.epochs=3", ...]`` to ``[(["train", "epochs"], 3), ...]`` (values parsed as YAML).

    Raises:
        ConfigError: an item without ``=`` or without a section prefix.
    """
    out, errors = [], []
    for item in items:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            errors.append(f"override {item!r} must look like section.key=value (e.g. train.epochs=3)")
            continue
        if not value.strip():
            errors.append(f"override {item!r} has no value; write {key.strip()}=null to ask for none")
            continue
        try:
            parsed = yaml_load(value)
        except YAMLLimitError as e:
            errors.append(f"override {key.strip()}=...: the value is refused ({e.problem})")
            continue
        except yaml.YAMLError as e:
            errors.append(f"override {item!r}: the value is not valid YAML ({e.__class__.__name__}); quote it")
            continue
        out.append((parts, parsed))
    if errors:
        raise ConfigError(errors)
    return out


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with the ``key=value`` overrides set (nested keys created as needed)."""
    return apply_settings(raw, [(".".join(parts), value) for parts, value in parse_overrides(overrides)])


def apply_settings(raw: Mapping[str, Any], settings: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """A copy of ``raw`` with already-parsed dotted settings (``{"train.epochs": 3}``) set, in order.

    Raises:
        ConfigError: a key without a section prefix (``epochs`` instead of ``train.epochs``).
    """
    items = list(settings.items()) if isinstance(settings, Mapping) else list(settings)
    bad = [f"setting {k!r} must look like section.key (e.g. train.epochs)" for k, _ in items
           if not isinstance(k, str) or len(k.split(".")) < 2 or not all(k.split("."))]
    if bad:
        raise ConfigError(bad)
    out = _plain(raw or {})
    for key, value in items:
        parts, node = key.split("."), out
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = _plain(value)
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML recipe, apply overrides, validate; raise one :class:`ConfigError` for everything.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: malformed YAML or any invalid key or value.
    """
    return config_from_dict(apply_overrides(read_recipe(path), overrides))


def read_recipe(path: str | Path | None) -> dict[str, Any]:
    """The raw (unvalidated) mapping of a YAML recipe; ``{}`` for None.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: malformed YAML, an empty file (write ``{}`` for all defaults), or a file whose top
            level is not a mapping of sections; the message names the file.
    """
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found; pass a YAML recipe, e.g. configs/quickstart.yaml")
    raw = read_yaml_file(path)
    if raw is None:
        raise ConfigError([f"{path} is empty: a recipe needs at least one section (model, data, optim, sched, "
                           "train, run); write {} to train on all defaults"])
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{path}: a recipe must be a mapping of sections (model:, data:, ...), got "
                           f"{type(raw).__name__}"])
    return raw


def read_yaml_file(path: Path) -> Any:
    """The parsed YAML of a file (recipes, studies), under the loader's size and depth limits.

    Raises:
        ConfigError: malformed YAML or a file that is not text, naming the file (and the line).
    """
    try:
        return yaml_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}{yaml_error_text(e)}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not a text file ({e.reason} at byte {e.start})"]) from None
