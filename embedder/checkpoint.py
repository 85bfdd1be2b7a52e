"""What a model folder is checked for before anything in it is believed.

A checkpoint is untrusted input: its JSON files say how much memory the model and its
preprocessing take, and its weight files may be pickles that run code when loaded. Before
``transformers`` builds anything, :func:`check_checkpoint`

- reads ``config.json`` and ``preprocessor_config.json`` with :func:`read_json` (bounded
  size and nesting: a deeply nested file is an error, not a ``RecursionError``);
- refuses a model type ``transformers`` does not know, or one that is not an image
  backbone, naming the ones sporeprint embeds with;
- refuses pickled weights (``pytorch_model.bin``, ``*.pt``, ...): safetensors only, since
  unpickling a file can run any code it holds;
- refuses config sizes beyond any released vision backbone, and compares the config with
  the safetensors header (hidden size, depth, patch size, position embeddings), so a
  config that does not belong to its weights never allocates a model of its own size.

After the processor is loaded, :func:`check_processor` bounds its resize and crop sizes
(DINOv2 resizes to 256 and crops 224 = 16 patches of 14 pixels).
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from pathlib import Path
from typing import Any

from embedder.errors import ModelUnavailableError

MAX_JSON_BYTES = 4 << 20  # a config of a few KB; a processor config of one
MAX_JSON_DEPTH = 32
MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own limit on its JSON header
# Bounds on what a config may ask for: far above DINOv2-giant (1536 wide, 40 layers, patch
# 14, 518-pixel images), far below what would exhaust a machine.
CONFIG_BOUNDS = {
    "hidden_size": (1, 8192),
    "num_hidden_layers": (1, 128),
    "num_attention_heads": (1, 256),
    "intermediate_size": (1, 65536),
    "mlp_ratio": (0, 16),
    "patch_size": (1, 64),
    "image_size": (1, 2048),
    "num_register_tokens": (0, 64),
    "num_channels": (1, 4),
}
MAX_SIDE = 1024  # resize and crop sides, in pixels (DINOv2: 256 resize, 224 crop)
MAX_TOKENS = 74 * 74  # patches of a ViT input: a 1036-pixel crop at DINOv2's patch 14
PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
SUPPORTED = ("dinov2, dinov2_with_registers, vit, vit_msn, or another image backbone "
             "transformers has an image processor for (e.g. resnet, convnext)")
# Backbones whose token 0 is a CLS token, followed by `num_register_tokens` registers.
CLS_TOKEN_MODELS = frozenset({"dinov2", "dinov2_with_registers", "vit", "vit_msn"})
_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")  # ViT / DINOv2 block names


def read_json(path: str | Path, what: str) -> Any:
    """Parse a small JSON file of an untrusted checkpoint; ModelUnavailableError naming the
    file when it is too large, too deeply nested or not JSON."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ModelUnavailableError(
                f"{what} {str(path)!r} is {size} bytes; a model's JSON files are a few KB "
                f"(at most {MAX_JSON_BYTES} here). Fix: pass the folder save_pretrained wrote")
        value = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise ModelUnavailableError(
            f"{what} {str(path)!r} is not readable JSON ({one_line(exc)}). Fix: pass the "
            "folder save_pretrained wrote") from None
    except OSError as exc:
        raise ModelUnavailableError(f"cannot read {what} {str(path)!r}: {exc}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ModelUnavailableError(
            f"{what} {str(path)!r} nests deeper than {MAX_JSON_DEPTH} levels; a model's "
            "JSON files are flat. Fix: pass the folder save_pretrained wrote")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else (
            node if isinstance(node, list) else ())
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_checkpoint(model_id: str, files: dict[str, Path | None]) -> dict | None:
    """Check a checkpoint's files before anything is built from them; returns its config.

    ``files``: the local paths of ``config.json``, ``preprocessor_config.json`` and the
    weight files found (``None`` when not available locally: a hub checkpoint not yet
    downloaded is checked by ``transformers`` as it loads, with safetensors required)."""
    config_path = files.get("config.json")
    config = read_json(config_path, "model config") if config_path else None
    if config is not None and not isinstance(config, dict):
        raise ModelUnavailableError(f"model config {str(config_path)!r} is not a JSON object")
    processor_path = files.get("preprocessor_config.json")
    if processor_path:
        read_json(processor_path, "preprocessor config")
    if config is not None:
        check_model_type(config.get("model_type"), str(config_path))
        _check_bounds(config, str(config_path))
    folder = Path(model_id)
    if folder.is_dir():
        _refuse_pickles(folder)
    weights = files.get("weights") or []
    if config is not None and weights:
        _check_against_weights(config, str(config_path), weights)
    return config


def check_model_type(model_type: Any, where: str) -> None:
    """ModelUnavailableError naming the supported types when ``model_type`` is not one."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING_NAMES:
        raise ModelUnavailableError(
            f"model type {model_type!r} of {where} is not one transformers knows; sporeprint "
            f"embeds with {SUPPORTED}. Fix: pass a checkpoint of one of those")
    if model_type not in CLS_TOKEN_MODELS and model_type not in IMAGE_PROCESSOR_MAPPING_NAMES:
        raise ModelUnavailableError(
            f"model type {model_type!r} of {where} is not an image backbone; sporeprint "
            f"embeds with {SUPPORTED}. Fix: pass a checkpoint of one of those")


def _check_bounds(config: dict, where: str) -> None:
    for key, (low, high) in CONFIG_BOUNDS.items():
        if key not in config or config[key] is None:
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                low <= value <= high):
            raise ModelUnavailableError(
                f"{key}={value!r} in {where} is outside {low}..{high} (DINOv2-giant: hidden "
                "size 1536, 40 layers, patch 14); a model that size cannot be what the "
                "checkpoint holds. Fix: pass the config.json save_pretrained wrote with its "
                "weights")


def _refuse_pickles(folder: Path) -> None:
    safetensors = any(folder.glob("*.safetensors")) or (
        folder / "model.safetensors.index.json").exists()
    if safetensors:
        return
    pickled = sorted(p.name for pattern in PICKLED for p in folder.glob(pattern))
    if pickled:
        raise ModelUnavailableError(
            f"model folder {str(folder)!r} holds pickled weights ({', '.join(pickled[:3])}) and "
            "no .safetensors file; sporeprint loads safetensors only, because unpickling a "
            "file can run any code it holds. Fix: convert it once, where you trust the file "
            "(AutoModel.from_pretrained(folder).save_pretrained(folder)), or download the "
            "model's safetensors weights")


def read_safetensors_header(path: str | Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from a safetensors file's header (no tensor data is read)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = path.stat().st_size
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
                raise ModelUnavailableError(
                    f"weights {str(path)!r} are not a safetensors file (header of {n} bytes "
                    f"in a file of {size}). Fix: pass complete weight files save_pretrained "
                    "wrote")
            header = json.loads(fh.read(n))
    except (ValueError, RecursionError) as exc:
        raise ModelUnavailableError(f"weights {str(path)!r} have an unreadable safetensors "
                                    f"header ({one_line(exc)})") from None
    except OSError as exc:
        raise ModelUnavailableError(f"cannot read weights {str(path)!r}: {exc}") from None
    if not isinstance(header, dict):
        raise ModelUnavailableError(f"weights {str(path)!r} have an unreadable safetensors "
                                    "header (not a JSON object)")
    return {k: list(v.get("shape", [])) for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("shape"), list)}


def _check_against_weights(config: dict, where: str, weights: list[Path]) -> None:
    """Compare what the config says with the tensor shapes its weights hold."""
    shapes: dict[str, list[int]] = {}
    for path in weights:
        shapes.update(read_safetensors_header(path))
    said, held = {}, {}
    cls = next((s for k, s in shapes.items() if k.endswith("embeddings.cls_token")), None)
    proj = next((s for k, s in shapes.items()
                 if k.endswith("patch_embeddings.projection.weight") and len(s) == 4), None)
    layers = {int(m.group(1)) for k in shapes if (m := _LAYER.search(k))}
    width = cls[-1] if cls else (proj[0] if proj else None)
    if "hidden_size" in config and width is not None:
        said["hidden size"], held["hidden size"] = config["hidden_size"], width
    if "num_hidden_layers" in config and layers:
        said["layers"], held["layers"] = config["num_hidden_layers"], max(layers) + 1
    if "patch_size" in config and proj:
        patch = config["patch_size"]
        said["patch size"] = patch if isinstance(patch, int) else list(patch)
        held["patch size"] = proj[2] if proj[2] == proj[3] else proj[2:]
    position = next((s for k, s in shapes.items()
                     if k.endswith("embeddings.position_embeddings") and len(s) == 3), None)
    if position and isinstance(config.get("image_size"), int) and isinstance(
            config.get("patch_size"), int) and config["patch_size"] > 0:
        said["position embeddings"] = 1 + (config["image_size"] // config["patch_size"]) ** 2
        held["position embeddings"] = position[1]
    wrong = [k for k in said if said[k] != held[k]]
    if wrong:
        says = ", ".join(f"{k} {said[k]}" for k in wrong)
        holds = ", ".join(f"{k} {held[k]}" for k in wrong)
        raise ModelUnavailableError(
            f"{where} says {says}, but its weights ({Path(weights[0]).name}) hold {holds}: the "
            "config does not belong to these weights. Fix: pass the folder save_pretrained "
            "wrote, with the config.json saved together with the weights")


_SIDES = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")


def _as_dict(value: Any) -> Any:
    """A processor's size (a dict, or a SizeDict dataclass) as a plain dict without Nones."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not None}
    return value


def check_processor(processor: Any, config: Any, model_id: str) -> None:
    """Bound the resize and crop sizes a checkpoint's processor config asks for."""
    where = f"the preprocessor config of {model_id!r}"
    sides: list[tuple[str, Any]] = []
    size = getattr(processor, "size", None) if getattr(processor, "do_resize", True) else None
    crop = (getattr(processor, "crop_size", None)
            if getattr(processor, "do_center_crop", False) else None)
    size, crop = _as_dict(size), _as_dict(crop)
    for label, value in (("size", size), ("crop_size", crop)):
        if isinstance(value, dict):
            sides += [(f"{label}.{k}", v) for k, v in value.items()
                      if v is not None and k in _SIDES]
        elif value is not None:
            sides.append((label, value))
    for label, value in sides:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
            raise ModelUnavailableError(
                f"{label}={value!r} in {where} is outside 1..{MAX_SIDE} pixels (DINOv2 resizes "
                f"to 256 and crops 224 = 16 patches of 14); a side that large makes every "
                "image a huge array. Fix: pass the preprocessor_config.json the checkpoint "
                "was trained with")
    patch = getattr(config, "patch_size", None)
    shape = crop or size
    if isinstance(patch, int) and patch > 0 and isinstance(shape, dict):
        h = shape.get("height") or shape.get("shortest_edge")
        w = shape.get("width") or shape.get("shortest_edge")
        if h and w and (h // patch) * (w // patch) > MAX_TOKENS:
            raise ModelUnavailableError(
                f"{where} makes {h}x{w}-pixel inputs, {(h // patch) * (w // patch)} patches of "
                f"{patch} pixels, more than {MAX_TOKENS} (DINOv2: 256 patches at 224 pixels); "
                "attention over that many would exhaust memory. Fix: pass the "
                "preprocessor_config.json the checkpoint was trained with")
