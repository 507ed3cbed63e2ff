"""Loading and validating the workflow configuration: everything that can be checked before a job runs.

``validate`` checks the schema (``config.schema.yaml``: key names, types, ``models`` keys per source), then what
a schema cannot say: every method's parameters, names and values, with the same declarations the methods run
with (``attnrank.params``; attention kinds in ``attnrank.attention.methods``), the metrics ranx computes, ``main_metric``
and ``baseline``, cross-references between sections, and that local dataset folders and files exist. The
workflow calls it once at parse time (``workflow/rules/common.smk``), so a bad config fails before any job.

Errors are one line naming the offending key (``config key 'datasets.scifact.sorce': unknown key ...``); defaults
declared in the schema are filled in so that the rest of the code never guesses them.

What is not known at planning time is checked where it becomes known: a method's ``max_layer`` / ``prune``
against the model's layer count only for models whose count is readable now (``tiny``, ``local``); for hub and
GGUF models, in the job, with the same message.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import InputError


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("attnrank").joinpath("config.schema.yaml").read_text()


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml.load(_schema_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def schema() -> dict:
    """The config's JSON schema (a copy)."""
    return copy.deepcopy(_schema())


def _path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "<root>"


def _message(err: jsonschema.ValidationError) -> str:
    where = _path(err)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        key = f"{where}.{extra[0]}" if where != "<root>" else extra[0]
        src = err.instance.get("source") if isinstance(err.instance, dict) and where.startswith("models.") else None
        what = f"unknown key for source {src!r}" if src else "unknown key"
        return f"config key '{key}': {what} (allowed here: {allowed})"
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


# Config keys that were renamed (one word per concept: ``depth`` is a candidate list's length, ``layers`` a model's;
# document truncation is ``max_doc_words`` / ``max_doc_tokens`` everywhere): old key -> new key. An old key is an
# error naming the new one, never silently ignored or mapped.
RENAMED_KEYS = {
    "engine.depth": "engine.layers",
    "prompt.doc_max_tokens": "prompt.max_doc_tokens",
    "prompt.doc_max_words": "prompt.max_doc_words",
}


def _check_renamed(cfg: dict) -> None:
    for old, new in RENAMED_KEYS.items():
        section, key = old.split(".")
        if isinstance(cfg.get(section), dict) and key in cfg[section]:
            raise InputError(f"config key '{old}' was renamed: use '{new}'")


def default_results_dir(configfiles=()) -> str:
    """A study's results folder when ``results_dir`` is unset: ``results/<stem>`` of its config file, the stems
    joined by ``+`` for several (``config.yaml`` when none is given, as the Snakefile then reads it). So the demo
    (``results/demo``), ``config.yaml`` (``results/config``) and ``config/paper.yaml`` (``results/paper``) never
    write into each other's folders."""
    stems = [Path(f).stem for f in (configfiles or ["config.yaml"])]
    return "results/" + "+".join(stems)


def _results_dir(cfg: dict, configfiles) -> str:
    value = cfg.get("results_dir")
    if value is None:
        return default_results_dir(configfiles)
    norm = os.path.normpath(value)
    if not value.strip() or norm in (".", "..") or norm.startswith("../") or any(c in value for c in "{}"):
        raise InputError(f"config key 'results_dir': {value!r} is not a results folder (a folder below the "
                         "working directory or an absolute path, without '{' or '}')")
    return norm


def validate(config: dict, check_files: bool = True, configfiles=()) -> dict:
    """Return a validated copy of ``config`` with schema defaults filled in; InputError on the first problem.

    ``check_files``: also check that local dataset folders and files exist (paths relative to the working
    directory, as the workflow resolves them). ``configfiles``: the files the config came from (they name the
    default ``results_dir``, :func:`default_results_dir`)."""
    cfg = copy.deepcopy(dict(config))
    _check_renamed(cfg)
    sch = _schema()
    validator = jsonschema.Draft202012Validator(sch)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(list(e.absolute_path)), _path(e)))
    if errors:
        unknown = [e for e in errors if e.validator == "additionalProperties"]
        best = unknown[0] if unknown else jsonschema.exceptions.best_match(errors)
        raise InputError(_message(best))
    _fill_defaults(cfg, sch)
    cfg["results_dir"] = _results_dir(cfg, configfiles)
    _check_references(cfg)
    _check_evaluation(cfg)
    method_families(cfg)
    _check_method_layers(cfg)
    if check_files:
        _check_files(cfg)
    return _canonical(cfg)


# Sections whose entries are named by the user: their order is the order of rows and columns in the tables.
_NAMED = ("datasets", "retrievers", "models", "methods")


def _sorted(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _sorted(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted(v) for v in node]
    return node


def _canonical(cfg: dict) -> dict:
    """Keys sorted inside every entry and section, so that rules' params (compared by their printed form) do not
    change when a config file lists the same keys in another order; named entries keep the user's order."""
    out = {}
    for key in cfg:
        value = cfg[key]
        if key in _NAMED and isinstance(value, dict):
            out[key] = {name: _sorted(entry) for name, entry in value.items()}
        else:
            out[key] = _sorted(value)
    return out


def validate_or_exit(config: dict, configfiles=()) -> dict:
    """``validate`` for the workflow's parse time: a bad config prints ``Error: <one line>`` and exits 1, with
    no traceback (Snakemake would print its own frames under an exception)."""
    import sys

    try:
        return validate(config, configfiles=configfiles)
    except InputError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


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
                raise InputError(f"config key '{section}.dataset': {d!r} is an evaluation dataset; set datasets.{d}.evaluate: false (held-out splits must never see evaluation queries)")
    if "published" in cfg:
        _check_published(cfg)
    _check_candidate_lists(cfg)
    if cfg["methods"] and not cfg["models"]:
        raise InputError("config key 'methods': methods are configured but 'models' is empty")


def _check_candidate_lists(cfg: dict) -> None:
    """``candidates.lists`` name configured retrievers and no retriever; a method's ``candidates`` names lists."""
    lists = cfg["candidates"].get("lists") or {}
    for name, spec in lists.items():
        if name in cfg["retrievers"]:
            raise InputError(f"config key 'candidates.lists.{name}': the name of a retriever (the shared list of a first stage has it)")
        if spec["retriever"] not in cfg["retrievers"]:
            raise InputError(f"config key 'candidates.lists.{name}.retriever': unknown retriever {spec['retriever']!r} (defined: {sorted(cfg['retrievers'])})")
        depth = cfg["retrievers"][spec["retriever"]].get("depth")
        if depth is not None and spec["depth"] > depth:
            raise InputError(f"config key 'candidates.lists.{name}.depth': {spec['depth']} exceeds retrievers.{spec['retriever']}.depth ({depth})")
    known = list(cfg["candidates"]["retrievers"]) + list(lists)
    for m, spec in cfg["methods"].items():
        wanted = spec.get("candidates")
        if wanted is None:
            continue
        wanted = [wanted] if isinstance(wanted, str) else wanted
        if not isinstance(wanted, list) or not wanted or any(w not in known for w in wanted):
            raise InputError(f"config key 'methods.{m}.candidates': must name candidate lists among {known} (got {spec['candidates']!r})")


def _check_published(cfg: dict) -> None:
    """The ``published`` maps name configured datasets, models, methods (or run labels ``method@order``) and retrievers."""
    pub = cfg["published"]
    for key, section in (("dataset", "datasets"), ("model", "models"), ("method", "methods"), ("first_stage", "retrievers")):
        for ours in pub.get(key) or {}:
            name = ours.partition("@")[0] if key == "method" else ours
            known = {**cfg[section], **(cfg["candidates"].get("lists") or {})} if key == "first_stage" else cfg[section]
            if name not in known:
                raise InputError(f"config key 'published.{key}.{ours}': unknown {section[:-1]} {name!r} (defined: {sorted(cfg[section])})")


# ------------------------------------------------------------------------------------------------ evaluation
# The metric names ranx evaluates (ranx.metrics.metric_switch; a test keeps this in sync with the installed
# ranx). Written ``name`` or ``name@k``; rbp (``rbp.95``) and relevance levels (``-l2``) are not offered.
RANX_METRICS = (
    "hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "dcg", "dcg_burges", "ndcg",
    "ndcg_burges", "bpref",
)
_METRIC = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*)(@(?P<k>[1-9][0-9]*))?$")


def check_metric(metric: str, where: str) -> None:
    """InputError naming ``where`` unless ranx computes ``metric`` (``ndcg@10``, ``map``, ``recall@100``)."""
    m = _METRIC.match(metric) if isinstance(metric, str) else None
    if not m or m["name"] not in RANX_METRICS:
        raise InputError(
            f"config key '{where}': {metric!r} is not a metric ranx computes (write name or name@k with name one of "
            f"{', '.join(RANX_METRICS)})"
        )


def _check_evaluation(cfg: dict) -> None:
    ev = cfg["evaluation"]
    for i, m in enumerate(ev["metrics"]):
        check_metric(m, f"evaluation.metrics[{i}]")
    if ev["main_metric"] not in ev["metrics"]:
        raise InputError(f"config key 'evaluation.main_metric': {ev['main_metric']!r} is not one of evaluation.metrics {ev['metrics']}")
    base = ev["baseline"]
    method, at, order = base.partition("@")
    orders = ["retrieval", "reversed", "shuffle"]
    if base != "first_stage" and base not in cfg["retrievers"] and (method not in cfg["methods"] or (at and order not in orders)):
        raise InputError(
            f"config key 'evaluation.baseline': {base!r} names no run (first_stage, a retriever: {sorted(cfg['retrievers'])}, "
            f"a method: {sorted(cfg['methods'])}, or method@order with an order of {orders})"
        )


# ------------------------------------------------------------------------------------------------ methods
def _config_error(e: InputError) -> InputError:
    from .params import ParamError

    if isinstance(e, ParamError):
        return InputError(f"config key '{e.key}': {e.why}")
    return e


def method_families(cfg: dict) -> dict[str, str]:
    """{method name: "attention" | "text"} after checking each method's kind, parameters (names and values) and
    the sections its artifacts need; InputError naming ``methods.<name>.<key>``."""
    from .attention import methods
    from .text.kinds import TEXT_KINDS, resolve_text, text_attention_spec

    out = {}
    for name, spec in cfg["methods"].items():
        kind = spec["kind"]
        try:
            if kind in methods.METHODS or kind in methods.RENAMED:  # a renamed kind: validate names the new ones
                methods.validate(kind, dict(spec), name)
                out[name] = "attention"
            elif kind in TEXT_KINDS:
                resolve_text(kind, dict(spec), name)
                out[name] = "text"
            else:
                raise InputError(
                    f"config key 'methods.{name}.kind': unknown kind {kind!r} (attention: {sorted(methods.METHODS)}; text: {list(TEXT_KINDS)})"
                )
        except InputError as e:
            raise _config_error(e) from None
        # the attention kind whose artifacts the method needs: its own, or a text framework's nested `attention`
        att = kind if out[name] == "attention" else (text_attention_spec(kind, spec, name) or {}).get("kind")
        if att is not None:
            for need, section in (("heads", "detection"), ("window", "tuning"), ("weights", "tuning")):
                if need in methods.needs(att) and section not in cfg:
                    raise InputError(f"config key 'methods.{name}': kind {att!r} needs the '{section}' section")
    return out


# build_tiny_model's default layer count (a test keeps it in sync; models.py imports torch)
TINY_DEFAULT_LAYERS = 3


def planned_layers(spec: dict) -> int | None:
    """A model's layer count if it can be known before the model is prepared: ``tiny`` (its ``n_layers``) and
    ``local`` folders (their config.json); None for hub and GGUF models."""
    if spec.get("source") == "tiny":
        return int(spec.get("n_layers", TINY_DEFAULT_LAYERS))
    if spec.get("source") == "local":
        try:
            c = json.loads((Path(spec["path"]) / "config.json").read_text())
        except (OSError, ValueError, KeyError):
            return None
        n = c.get("num_hidden_layers", (c.get("text_config") or {}).get("num_hidden_layers"))
        return n if isinstance(n, int) else None
    return None


def _check_method_layers(cfg: dict) -> None:
    from .attention import methods

    for model, mspec in cfg["models"].items():
        n = planned_layers(mspec)
        if n is None:
            continue
        for name, spec in cfg["methods"].items():
            if spec["kind"] in methods.METHODS and (spec.get("max_layer") is not None or spec.get("prune") is not None):
                try:
                    methods.validate(spec["kind"], dict(spec), name, n_layers=n)
                except InputError as e:
                    e = _config_error(e)
                    raise InputError(f"{e} (model '{model}')") from None


# ------------------------------------------------------------------------------------------------ files
def _check_files(cfg: dict) -> None:
    for key, spec in cfg["datasets"].items():
        where = f"config key 'datasets.{key}.path'"
        if spec["source"] == "beir":
            root = Path(spec["path"])
            if not root.is_dir():
                raise InputError(f"{where}: folder '{root}' not found (relative paths start at {Path.cwd()})")
            for f in ("corpus.jsonl", "queries.jsonl", f"qrels/{spec['split']}.tsv"):
                if not (root / f).is_file():
                    have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if f.startswith("qrels/") else None
                    extra = f" (qrels splits there: {have or 'none'})" if have is not None else ""
                    raise InputError(f"{where}: '{root / f}' not found{extra}")
        elif spec["source"] == "bright" and spec.get("path") and not Path(spec["path"]).exists():
            raise InputError(f"{where}: '{spec['path']}' not found (relative paths start at {Path.cwd()})")
    if "published" in cfg and not Path(cfg["published"]["file"]).is_file():
        raise InputError(f"config key 'published.file': '{cfg['published']['file']}' not found (relative paths start at {Path.cwd()})")
    for model, spec in cfg["models"].items():
        if spec["source"] == "local" and not (Path(spec["path"]) / "config.json").is_file():
            raise InputError(f"config key 'models.{model}.path': '{spec['path']}' is not a model folder (no config.json)")
        if spec["source"] == "gguf" and not Path(spec["path"]).is_file():
            raise InputError(f"config key 'models.{model}.path': GGUF file '{spec['path']}' not found")


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON, a subset) file; InputError ``<file>:<line>:<column>: <problem>`` when it is not valid."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None and mark is not None and cmark.line != mark.line:
            context += f" started on line {cmark.line + 1}"
        problem = "; ".join(x for x in (context, getattr(e, "problem", None)) if x) or str(e).splitlines()[0]
        kind = "JSON" if str(path).endswith(".json") else "YAML"
        raise InputError(f"{where}: not valid {kind} ({problem})") from None


def read_yaml_or_exit(path: str | Path) -> Any:
    """``read_yaml`` for the workflow's parse time: ``Error: <file>:<line>:<column>: ...`` and exit 1."""
    import sys

    try:
        return read_yaml(path)
    except InputError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def load(path: str, check_files: bool = True) -> dict:
    """Read and validate a config file (see ``validate``)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: config file not found")
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a config file must be a mapping of keys at the top level")
    return validate(raw, check_files, configfiles=[path])


def write(cfg: dict, path: str | Path) -> None:
    """Write a config as YAML (the study's own record, ``attnrank.paths.study_config``), keys in their order."""
    from .io import write_text

    write_text(path, "# validated config of this study (defaults filled in)\n"
               + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=False))


def main(argv: list[str] | None = None) -> int:
    """``python -m attnrank.config FILE...``: check config files (YAML syntax with file:line, then everything
    ``validate`` checks), as the workflow would before any job. Snakemake's own message for a broken
    ``--configfile`` names neither file nor line; this does."""
    import sys

    files = sys.argv[1:] if argv is None else argv
    if not files:
        print("usage: python -m attnrank.config CONFIG.yaml [...]", file=sys.stderr)
        return 2
    rc = 0
    for f in files:
        try:
            load(f)
            print(f"{f}: ok")
        except InputError as e:
            print(f"{f}: error: {e}" if not str(e).startswith(str(f)) else f"error: {e}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    raise SystemExit(main())


def drop_self_matches(cfg: dict, dataset: str) -> bool:
    """Whether ``dataset``'s first-stage runs drop documents whose id is the query id: the dataset's own
    ``drop_self_matches``, else ``candidates.drop_self_matches``."""
    return bool(cfg["datasets"][dataset].get("drop_self_matches", cfg["candidates"].get("drop_self_matches", True)))
