"""Loading and validating the workflow configuration against ``config.schema.yaml``.

Errors are one line naming the offending key (``datasets.scifact.sorce: unknown key``); defaults declared in
the schema are filled in so that the rest of the code never guesses them.
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import jsonschema
import yaml

from .errors import InputError


def schema() -> dict:
    return yaml.safe_load(resources.files("attnrank").joinpath("config.schema.yaml").read_text())


def _path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "<root>"


def _message(err: jsonschema.ValidationError) -> str:
    where = _path(err)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        key = f"{where}.{extra[0]}" if where != "<root>" else extra[0]
        return f"config key '{key}': unknown key (allowed here: {allowed})"
    if err.validator == "required":
        return f"config key '{where}': {err.message}"
    if err.validator == "enum":
        return f"config key '{where}': {err.instance!r} is not one of {err.validator_value}"
    if err.validator == "propertyNames" or "propertyNames" in err.schema_path:
        return f"config key '{where}': name {err.instance!r} may contain only letters, digits, '_', '.', '-'"
    return f"config key '{where}': {err.message}"


def _fill_defaults(node: Any, sch: dict) -> None:
    if not isinstance(node, dict):
        return
    for key, sub in sch.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            _fill_defaults(node[key], sub)
    extra = sch.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in node.items():
            if key not in sch.get("properties", {}):
                _fill_defaults(value, extra)


def validate(config: dict) -> dict:
    """Return a validated copy of ``config`` with schema defaults filled in; InputError on the first problem."""
    cfg = copy.deepcopy(dict(config))
    sch = schema()
    validator = jsonschema.Draft202012Validator(sch)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(list(e.absolute_path)), _path(e)))
    if errors:
        unknown = [e for e in errors if e.validator == "additionalProperties"]
        best = unknown[0] if unknown else jsonschema.exceptions.best_match(errors)
        raise InputError(_message(best))
    _fill_defaults(cfg, sch)
    _check_references(cfg)
    return cfg


def _check_references(cfg: dict) -> None:
    rer = cfg["candidates"].get("retrievers")
    if rer is None:
        cfg["candidates"]["retrievers"] = list(cfg["retrievers"])
    for r in cfg["candidates"]["retrievers"]:
        if r not in cfg["retrievers"]:
            raise InputError(f"config key 'candidates.retrievers': unknown retriever {r!r} (defined: {sorted(cfg['retrievers'])})")
    if "latency" in cfg:
        lat = cfg["latency"]
        if lat["dataset"] not in cfg["datasets"] or lat["retriever"] not in cfg["candidates"]["retrievers"]:
            raise InputError(
                f"config key 'latency': dataset {lat['dataset']!r} / retriever {lat['retriever']!r} must be a configured "
                f"dataset and one of candidates.retrievers {cfg['candidates']['retrievers']}"
            )
    for section in ("detection", "tuning"):
        if section in cfg:
            d, r = cfg[section]["dataset"], cfg[section]["retriever"]
            if d not in cfg["datasets"]:
                raise InputError(f"config key '{section}.dataset': unknown dataset {d!r} (defined: {sorted(cfg['datasets'])})")
            if r not in cfg["retrievers"]:
                raise InputError(f"config key '{section}.retriever': unknown retriever {r!r} (defined: {sorted(cfg['retrievers'])})")
            if cfg["datasets"][d]["evaluate"]:
                raise InputError(f"config key '{section}.dataset': {d!r} is an evaluation dataset; set datasets.{d}.evaluate: false (selection must never see evaluation queries)")
    if cfg["methods"] and not cfg["models"]:
        raise InputError("config key 'methods': methods are configured but 'models' is empty")


def load(path: str) -> dict:
    try:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return validate(raw)
