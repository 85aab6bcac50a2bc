"""Hugging Face conventions: ``save_pretrained`` / ``from_pretrained`` with a folder or a Hub repository.

A saved model is a folder of three files, the layout the Hub and ``huggingface_hub`` expect::

    config.json         library_name, the model's registered name and builder kwargs, its
                        pretrained_cfg (preprocessing, class names) and the full model card
    model.safetensors   the state dict (tensors only: nothing to unpickle)
    README.md           the model card: the Hub's YAML metadata (license, datasets, metrics as a
                        model-index, tags, pipeline_tag, library_name) and a readable page

::

    spikevision.save_pretrained(model, "ms_resnet_mini-fmnist")
    model = spikevision.from_pretrained("ms_resnet_mini-fmnist")   # or "owner/repo" on the Hub

A repository id goes through :func:`huggingface_hub.snapshot_download`: with
``HF_HUB_OFFLINE=1`` it is resolved from the local cache only (``HF_HOME``), never
the network. Upload a saved folder with ``huggingface_hub.upload_folder``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from torch import nn

__all__ = ["save_pretrained", "from_pretrained", "render_readme", "CONFIG_FILE", "WEIGHTS_FILE", "README_FILE",
           "LIBRARY_NAME"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
README_FILE = "README.md"
LIBRARY_NAME = "spikevision"
_FILES = (CONFIG_FILE, WEIGHTS_FILE, README_FILE)


def _temp_beside(path: Path) -> str:
    """A new empty file next to ``path`` with the permissions of a plain new file (mkstemp makes it 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def _write_atomic(path: Path, data: str | bytes) -> None:
    tmp = _temp_beside(path)
    try:
        Path(tmp).write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_readme(card: Mapping[str, Any]) -> str:
    """The ``README.md`` of a saved model: Hub YAML metadata, then the card as a page.

    Args:
        card: a model card (:mod:`spikevision.weights`); the documentation fields of
            :func:`spikevision.analysis.card.card_documentation` are filled in when missing
            and the card names its data set.
    """
    import yaml

    from spikevision.models import get_model_info

    card = dict(card)
    if card.get("dataset") and "citation" not in card:
        from spikevision.analysis.card import card_documentation

        card.update(card_documentation(card))
    name = card["model"]
    info = get_model_info(name)
    ds = card.get("dataset_card") or {}
    meta: dict[str, Any] = {
        "license": card.get("license", "bsd-3-clause"), "library_name": LIBRARY_NAME,
        "pipeline_tag": "image-classification",
        "tags": ["spikevision", "spiking-neural-network", "snn", "image-classification", info.family],
    }
    if ds.get("hub_id"):
        meta["datasets"] = [ds["hub_id"]]
    if card.get("test_top1") is not None:
        meta["metrics"] = ["accuracy"]
        meta["model-index"] = [{"name": f"{name}.{card.get('tag')}", "results": [{
            "task": {"type": "image-classification", "name": "Image Classification"},
            "dataset": {"name": ds.get("title", card.get("dataset")), "type": ds.get("hub_id", card.get("dataset")),
                        "split": "test"},
            "metrics": [{"type": "accuracy", "value": card["test_top1"], "name": "Test top-1 (%)"}],
        }]}]
    prep = card.get("preprocessing") or {}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {name} ({card.get('tag')})", "",
             f"A spiking neural network ({info.family}) from {info.paper}, trained with "
             f"[spikevision](https://pypi.org/project/spikevision/)"
             + (f" on {ds.get('title', card.get('dataset'))}." if card.get("dataset") else "."), ""]
    if card.get("test_top1") is not None:
        lines += [f"Test top-1 **{card['test_top1']}%** on {card.get('test_samples')} test images at "
                  f"T = {card.get('T')} time steps; firing rate {card.get('firing_rate')}, "
                  f"{card.get('energy_uj')} uJ per image ({card.get('energy_convention', 'compute only')}).", ""]
    lines += ["## Use", "", "```python", "import spikevision", "from PIL import Image", "",
              'model = spikevision.from_pretrained("THIS_FOLDER_OR_REPO_ID").eval()',
              "transform = spikevision.create_transform(model)",
              'probs = model(transform(Image.open("image.png")).unsqueeze(0)).softmax(-1)',
              "print(model.pretrained_cfg.class_names[int(probs.argmax())])", "```", ""]
    if prep:
        lines += ["## Preprocessing", "", f"Input {prep.get('input_size')} (C, H, W): {prep.get('steps', '')}; "
                  f"mean {prep.get('mean')}, std {prep.get('std')}.", ""]
    if card.get("class_names"):
        lines += ["## Classes", "", ", ".join(f"{i} {c}" for i, c in enumerate(card["class_names"])), ""]
    for key, title in (("intended_use", "Intended use"), ("limitations", "Limitations")):
        if card.get(key):
            lines += [f"## {title}", "", card[key], ""]
    if card.get("recipe") or card.get("epochs"):
        lines += ["## Training", "", f"Recipe `{card.get('recipe')}`, {card.get('epochs')} epochs, "
                  f"{card.get('train_time_s')} s on {card.get('machine')}; commit {card.get('commit')}, "
                  f"{card.get('date')}. Builder arguments: `{json.dumps(card.get('model_kwargs'))}`."
                  + (f" Reported accuracy: {card['protocol']}." if card.get("protocol") else ""), ""]
    if ds:
        lines += ["## Data set", "", f"{ds.get('title')} ({ds.get('license')} license): {ds.get('content')}. "
                  f"{ds.get('citation')}.", ""]
    if card.get("citation"):
        lines += ["## Citation", "", "```bibtex", card["citation"], "```", ""]
    return "\n".join(lines)


def save_pretrained(model: "nn.Module", save_directory: str | Path, *, card: Mapping[str, Any] | None = None,
                    model_name: str | None = None, model_kwargs: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as a Hugging Face style folder (``config.json``, ``model.safetensors``, ``README.md``).

    Args:
        model: a spikevision model.
        save_directory: the folder (created; the three files in it are replaced, each atomically).
        card: its model card; default: ``model.pretrained_cfg.card`` (a model built with ``pretrained=``).
            ``spikevision.analysis.card.build_card(run_dir, tag)`` measures one for a training run.
        model_name, model_kwargs: registered name and builder arguments, for a model without a card.

    Returns:
        the folder.

    Raises:
        ValueError: neither a card nor ``model_name`` (the folder could not be loaded back).
    """
    from spikevision.deploy.weights import STORAGE_DTYPES, save_weights

    cfg = getattr(model, "pretrained_cfg", None)
    card = dict(card if card is not None else (cfg.card if cfg is not None else {}))
    if model_name is not None:
        card["model"] = model_name
    if model_kwargs is not None:
        card["model_kwargs"] = dict(model_kwargs)
    if not card.get("model"):
        raise ValueError("save_pretrained needs the model's registered name: pass model_name= and model_kwargs= "
                         "(or a card=), or build the model with create_model(name, pretrained=tag)")
    card.setdefault("model_kwargs", {})
    if card.get("dataset") and "citation" not in card:
        from spikevision.analysis.card import card_documentation

        card.update(card_documentation(card))
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    from spikevision import __version__
    from spikevision.pretrained import pretrained_cfg_from_card

    config = {"library_name": LIBRARY_NAME, "spikevision_version": __version__, "model_name": card["model"],
              "model_kwargs": card["model_kwargs"],
              "pretrained_cfg": pretrained_cfg_from_card(card).to_dict() if card.get("dataset") else None,
              "card": card}
    dtype = STORAGE_DTYPES.get(str(card.get("weights_dtype") or "float32"), STORAGE_DTYPES["float32"])
    tmp = _temp_beside(out / WEIGHTS_FILE)
    try:
        save_weights(model, tmp, model_name=card["model"], model_kwargs=card["model_kwargs"], dtype=dtype)
        os.replace(tmp, out / WEIGHTS_FILE)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _write_atomic(out / CONFIG_FILE, json.dumps(config, indent=1) + "\n")
    _write_atomic(out / README_FILE, render_readme(card))
    return out


def _resolve(source: str | Path, revision: str | None, cache_dir: str | Path | None) -> Path:
    """A local folder, else a Hub repository id through ``huggingface_hub`` (its cache only when offline)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    text = str(source)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source} is neither a folder written by save_pretrained nor a Hugging Face repo "
                                "id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from spikevision import __version__

    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache_dir, allow_patterns=list(_FILES),
                                      library_name=LIBRARY_NAME, library_version=__version__))
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(f"{text} is not in the Hugging Face cache and the Hub cannot be reached (offline: "
                                f"HF_HUB_OFFLINE=1?); download it once online, or pass a local folder ({e})") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise FileNotFoundError(f"cannot get {text} from the Hugging Face Hub: {str(e).splitlines()[0]}") from None


def from_pretrained(source: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                    **kwargs: Any) -> "nn.Module":
    """Load a model written by :func:`save_pretrained`, from a folder or a Hugging Face repo id.

    Args:
        source: a folder, or a repository id ``"owner/name"`` (resolved by ``huggingface_hub``: from
            its cache when ``HF_HUB_OFFLINE=1``).
        revision: a Hub branch, tag or commit.
        cache_dir: the Hub cache (default: ``huggingface_hub``'s, under ``HF_HOME``).
        kwargs: builder arguments; they must agree with the saved ones except ``T``.

    Returns:
        the model, in train mode as built (call ``.eval()``), with ``pretrained_cfg`` when its card
        names a data set.

    Raises:
        FileNotFoundError: no such folder, or a repo that is neither cached nor reachable.
        ValueError: a folder that is not a spikevision model (missing or foreign ``config.json``),
            damaged weights, or kwargs that contradict the saved ones.
    """
    from spikevision.models.factory import build_with_weights
    from spikevision.weights import read_state_dict

    folder = _resolve(source, revision, cache_dir)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / f).is_file()]
    if missing:
        raise ValueError(f"{folder} lacks {', '.join(missing)}; it was not written by spikevision.save_pretrained")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{folder / CONFIG_FILE} is damaged ({'nested too deeply' if isinstance(e, RecursionError) else e})"
                         ) from None
    if not isinstance(config, dict) or config.get("library_name") != LIBRARY_NAME or "model_name" not in config:
        lib = config.get("library_name") if isinstance(config, dict) else None
        raise ValueError(f"{folder / CONFIG_FILE} describes no spikevision model (library_name={lib!r}); load it "
                         "with the library that wrote it")
    card = dict(config.get("card") or {})
    card.setdefault("model", config["model_name"])
    card["model_kwargs"] = dict(config.get("model_kwargs") or {})
    state = read_state_dict(folder / WEIGHTS_FILE, fix=f"download or save {source} again")
    return build_with_weights(config["model_name"], state, card, f"from {source}", **kwargs)
