"""What the workflow plans from a validated config: which runs exist, in which prompt orders, what each method
needs, which layers the attention pass computes and what every job is keyed on. ``workflow/rules/common.smk``
builds one :class:`Plan` at parse time and only wires it into rules; everything here is testable without
Snakemake. Paths come from :mod:`attnrank.paths`.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

from . import codehash, config, paths, protocols
from .attention import methods
from .evaluation import grid
from .text import kinds
from .errors import InputError

ORDERS = ("retrieval", "reversed", "shuffle")
# model keys that do not change the prepared weights (prepare_model is keyed on the rest)
_RUN_ONLY_MODEL_KEYS = ("batch_size", "dtype", "core_temperature", "gpu_model", "mem_mb", "threads")


def one_of(names) -> str:
    """A wildcard regex matching exactly these names (or nothing)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def _orders(value, key: str) -> list[str]:
    vals = [value] if isinstance(value, str) else list(value or [])
    bad = [v for v in vals if v not in ORDERS]
    if not vals or bad:
        raise InputError(f"config key '{key}': orders must be a non-empty list of {list(ORDERS)} (got {value!r})")
    return sorted(set(vals), key=ORDERS.index)


class Plan:
    """The workflow's view of a config (validated, protocol presets expanded); ``scripts`` is the folder of the
    workflow scripts whose code keys the jobs (:mod:`attnrank.codehash`)."""

    def __init__(self, cfg: dict, scripts: str | Path | None = None, validated: bool = False):
        if not validated:
            cfg = config.validate(cfg)
        self.study_config = copy.deepcopy(cfg)  # as validated: written beside the results (paths.study_config)
        cfg["methods"] = protocols.expand(cfg["methods"])  # a method's `protocol` preset fills its unset keys
        # display names (tables, plots): <section>.<name>.label, default the key; taken out of the specs so that
        # editing a label reruns no computation
        self.labels = {n: spec.pop("label", n) for sec in ("datasets", "retrievers", "models", "methods")
                       for n, spec in cfg[sec].items()}
        self.cfg = cfg
        self.scripts = Path(scripts) if scripts is not None else None
        self.family = config.method_families(cfg)  # name -> "attention" | "text"
        self.attention_methods = [m for m, f in self.family.items() if f == "attention"]
        self.text_methods = [m for m, f in self.family.items() if f == "text"]
        self.grid_cells_by_method = grid.cells(cfg["methods"])  # method -> [framework, mechanism]
        self.all_orders = sorted({o for m in self.attention_methods for o in self.method_orders(m)}, key=ORDERS.index)

    # ------------------------------------------------------------------------------------------------ runs
    def eval_datasets(self) -> list[str]:
        return [d for d, spec in self.cfg["datasets"].items() if spec["evaluate"]]

    # ------------------------------------------------------------------------------------------------ candidate lists
    def candidate_lists(self) -> dict[str, dict]:
        """{list id: retriever, depth, max_doc_words}: the shared list of every first stage (id = the retriever, at
        ``candidates.depth``) and every ``candidates.lists`` entry (its own first stage, depth, cut)."""
        c = self.cfg["candidates"]
        # every retriever has its shared list (the tuning split and the latency sample may cut one not re-ranked)
        out = {r: {"retriever": r, "depth": c["depth"], "max_doc_words": c["max_doc_words"]} for r in self.cfg["retrievers"]}
        out.update({n: dict(spec) for n, spec in (c.get("lists") or {}).items()})
        return out

    def candidates_caption(self) -> dict:
        """What the tables' captions say about the candidates: the shared depth and first stages, and every
        further list used ({id: retriever, depth, max_doc_words})."""
        c = self.cfg["candidates"]
        lists = {n: s for n, s in self.candidate_lists().items() if n in self.used_lists() and n not in c["retrievers"]}
        return {"depth": c["depth"], "retrievers": c["retrievers"], **({"lists": lists} if lists else {})}

    def list_retriever(self, clist: str) -> str:
        """The first stage a candidate list cuts."""
        return self.candidate_lists()[clist]["retriever"]

    def method_lists(self, method: str) -> list[str]:
        """The candidate lists a method re-ranks: its ``candidates`` (a list id or ids), else the shared lists."""
        want = self.cfg["methods"][method].get("candidates")
        if want is None:
            return list(self.cfg["candidates"]["retrievers"])
        return [want] if isinstance(want, str) else list(want)

    def used_lists(self) -> list[str]:
        """Candidate lists some method re-ranks (the shared lists always: the first stages' own rows)."""
        used = set(self.cfg["candidates"]["retrievers"]) | {c for m in self.cfg["methods"] for c in self.method_lists(m)}
        return [c for c in self.candidate_lists() if c in used]

    def dataset_runs(self, dataset: str) -> dict[str, dict]:
        """Every run of a dataset that goes into the tables: {trec path: identifying columns}. A further candidate
        list has its own first-stage row (the first stage cut at its depth), the baseline of the runs on it."""
        cfg = self.cfg
        runs = {
            paths.first_stage_run(dataset, r): {"dataset": dataset, "retriever": r, "model": "-", "method": r}
            for r in cfg["retrievers"]
        }
        for c in self.used_lists():
            if c not in cfg["retrievers"]:
                runs[paths.candidates_run(dataset, c)] = {"dataset": dataset, "retriever": c, "model": "-", "method": c}
        for m in cfg["models"]:
            for meth in self.text_methods:
                for r in self.method_lists(meth):
                    runs[paths.rerank_run(m, dataset, r, meth)] = {"dataset": dataset, "retriever": r, "model": m, "method": meth}
            for meth in self.attention_methods:
                for r in self.method_lists(meth):
                    for o in self.method_orders(meth):
                        ids = {"dataset": dataset, "retriever": r, "model": m, "method": self.run_label(meth, o)}
                        runs[paths.rerank_run(m, dataset, r, meth, o)] = ids
        return runs

    def with_latency(self) -> bool:
        """The latency benchmark runs when configured and there is something to time (a first-stage-only run,
        ``methods: {}``, has nothing)."""
        return "latency" in self.cfg and bool(self.cfg["models"]) and bool(self.cfg["methods"])

    def all_outputs(self) -> list[str]:
        cfg = self.cfg
        out = [paths.study_config(), paths.table("results.csv"), paths.table("results.tex"), paths.table("results.html")]
        if self.attention_methods and cfg["models"]:
            out.append(paths.table("position_bias.png"))
        out += [paths.candidates(d, r) for d in self.eval_datasets() for r in self.used_lists()]
        out += self.plot_outputs()
        if self.with_latency():
            out += [paths.latency("latency.csv"), paths.latency("tradeoff.png")]
        if "published" in cfg:
            out.append(paths.table("published.html"))
        return out

    def run_sidecars(self) -> dict[str, dict]:
        """{.json sidecar of every evaluated re-ranked run: identifying columns} (the jobs' own seconds per query)."""
        return {
            paths.sidecar(trec): ids
            for d in self.eval_datasets() for trec, ids in self.dataset_runs(d).items() if ids["model"] != "-"
        }

    def grid_cells(self) -> dict[str, list[str]]:
        """Grid cells keyed on the method column of the runs (``icr@reversed`` with several prompt orders)."""
        return {**self.grid_cells_by_method,
                **{self.run_label(m, o): self.grid_cells_by_method[m]
                   for m in self.attention_methods for o in self.method_orders(m)}}

    def latency_csvs(self) -> list[str]:
        return [paths.latency_model(m) for m in self.cfg["models"]] if self.with_latency() else []

    def table_order(self) -> dict[str, list[str]]:
        """Rows and columns of tables and plots in config order."""
        return {"datasets": self.eval_datasets(),
                "retrievers": list(self.cfg["retrievers"]) + [c for c in self.used_lists() if c not in self.cfg["retrievers"]],
                "models": list(self.cfg["models"]), "methods": list(self.cfg["methods"])}

    # ------------------------------------------------------------------------------------------------ methods
    def attention_method_spec(self, method: str) -> dict | None:
        """The attention spec a method aggregates with: an attention method's own entry, or the nested `attention`
        of a text method that scores by attention; None for other text methods."""
        spec = self.cfg["methods"][method]
        if self.family[method] == "attention":
            return spec
        return kinds.text_attention_spec(spec["kind"], spec, method)

    def method_orders(self, method: str) -> list[str]:
        """Prompt orders an attention method runs in: its own ``order`` (str or list), else ``prompt.orders``, else
        ``prompt.order``. One attention pass per model x dataset x candidate list x order serves every method.
        A text method scored by attention has one run, so one order: its nested ``attention.order`` if set, else
        the first configured order (its windows / sets are prompted, and its heads / layers / weights built, in it)."""
        if self.family[method] == "attention":
            spec, key = self.cfg["methods"][method], f"methods.{method}.order"
        else:
            spec, key = self.attention_method_spec(method) or {}, f"methods.{method}.attention.order"
        if "order" in spec:
            orders = _orders(spec["order"], key)
        else:
            orders = _orders(self.cfg["prompt"].get("orders") or self.cfg["prompt"]["order"], "prompt.orders")
        return orders if self.family[method] == "attention" else orders[:1]

    def run_label(self, method: str, order: str) -> str:
        """The method column of a run: ``icr`` when the grid has one prompt order, ``icr@reversed`` when it has several."""
        return f"{method}@{order}" if len(self.all_orders) > 1 else method

    def prompt_cfg(self, order: str, model: str | None = None, dataset: str | None = None,
                   protocol: str | None = None, clist: str | None = None) -> dict:
        """The PromptConfig dict of the attention pass in ``order``; with a protocol (``protocol``, else
        ``pass_protocol(order)``), the keys that preset fixes for the model's family and the dataset
        (``protocols.prompt_config``) fill the keys ``prompt`` leaves unset."""
        base = {k: v for k, v in self.cfg["prompt"].items() if k not in ("orders", "protocol")}
        proto = protocol or self.pass_protocol(order, clist)
        if proto and model is not None and dataset is not None:
            fixed = protocols.prompt_config(proto, self.cfg["models"][model].get("id"),
                                            protocols.reference_dataset(dataset, self.cfg["datasets"].get(dataset)))
            base = {**fixed, **base}
        return {**base, "order": order}

    def pass_protocol(self, order: str, clist: str | None = None) -> str | None:
        """The preset whose prompt the attention passes in ``order`` (over candidate list ``clist``, if given) use:
        the one protocol every attention method run in that order (on that list) names (CoRe's own rows in paper.yaml: the retrieval-order pass is theirs alone), else
        ``prompt.protocol`` (None: the configured prompt as is). A method whose protocol's prompt differs from its
        pass's lists that in its run's ``protocol_deviations``."""
        users = {self.cfg["methods"][m].get("protocol") for m in self.attention_methods
                 if order in self.method_orders(m) and (clist is None or clist in self.method_lists(m))}
        if len(users) == 1 and None not in users:
            return users.pop()
        return self.cfg["prompt"].get("protocol")

    def latency_prompt(self) -> dict:
        """The prompt the latency benchmark times attention methods with (the first configured order)."""
        return self.prompt_cfg(self.all_orders[0] if self.all_orders else self.cfg["prompt"]["order"])

    def text_prompt(self, method: str) -> dict:
        """The attention prompt of a text method that scores by attention (its first order); {} otherwise."""
        return self.prompt_cfg(self.method_orders(method)[0]) if self.attention_method_spec(method) else {}

    def core_temperature(self, model: str, method: str | None = None) -> float:
        """The CoRe detection temperature: the method's ``temperature`` (a text method's: its nested attention
        spec's), else the model's ``core_temperature``, else 0.1."""
        spec = (self.attention_method_spec(method) or {}) if method in self.cfg["methods"] else {}
        return float(spec.get("temperature", self.cfg["models"][model].get("core_temperature", 0.1)))

    def engine_layers(self) -> int | None:
        """Layers the main attention pass computes (None = all): the ``engine.layers`` key, or for 'auto' the
        deepest layer any configured attention method needs (explicit cuts only; artifacts are not known yet)."""
        d = self.cfg["engine"]["layers"]
        if d == "full":
            return None
        if d == "auto":
            return methods.engine_layers({m: self.cfg["methods"][m] for m in self.attention_methods}, None, None)
        return int(d)

    def artifact_files(self, model: str, method: str, order: str | None = None) -> dict[str, str]:
        """Inputs an attention method (or a text method scored by attention) needs besides the score cache: head
        table, layer profile, HeadRank weights, keyed on the kind of its attention spec. Heads are detected, layers
        profiled and HeadRank trained with prompts in the order the method re-ranks in (default: its first order)."""
        spec = self.attention_method_spec(method)
        if spec is None:
            return {}
        order = order or self.method_orders(method)[0]
        needs = methods.needs(spec["kind"])
        files = {}
        if "heads" in needs:
            files["heads"] = paths.heads_table(model, order, self.core_temperature(model, method),
                                               self.detection_layout(method))
        if "window" in needs:
            files["profile"] = paths.layer_profile(model, order)
        if "weights" in needs:
            files["weights"] = paths.headrank_weights(model, order, method)
        return files

    def method_artifacts(self, w) -> dict[str, str]:
        """``artifact_files`` for a job's wildcards (``model``, ``method``, optional ``order``)."""
        return self.artifact_files(w.model, w.method, getattr(w, "order", None))

    def latency_inputs(self, model: str) -> dict[str, str]:
        """The latency job's inputs: candidates, the model, and every method's artifacts as ``<method>__<key>``
        (:func:`attnrank.evaluation.latency.method_inputs` decodes them)."""
        lat = self.cfg["latency"]
        files = {"candidates": paths.candidates(lat["dataset"], lat["retriever"]), "model": paths.model_dir(model)}
        for m in self.cfg["methods"]:
            for key, path in self.artifact_files(model, m).items():
                files[f"{m}__{key}"] = path
        return files

    def retrieve_inputs(self, dataset: str, retriever: str) -> dict[str, str]:
        files = {**paths.data_files(dataset), "meta": paths.dataset_meta(dataset)}
        if self.cfg["retrievers"][retriever]["kind"] == "bm25":
            files["index"] = paths.bm25_index(dataset)
        return files

    def tuning_scores(self, model: str, order: str) -> str:
        """The score cache of the tuning split (the held-out split layers are profiled and HeadRank trained on)."""
        t = self.cfg["tuning"]
        return paths.scores_manifest(model, t["dataset"], t["retriever"], order)

    def tuning_qrels(self) -> str:
        return paths.data_files(self.cfg["tuning"]["dataset"])["qrels"]

    def ranx_ready(self, which: str) -> list[str]:
        """The ``ranx_warmup`` marker as an input of a job that evaluates ``which`` (``metrics``: every configured
        metric, ``main``: the main one), or nothing when NumPy computes them all (``metrics.FAST_METRICS``)."""
        from .evaluation import metrics

        ev = self.cfg["evaluation"]
        wanted = ev["metrics"] if which == "metrics" else [ev["main_metric"]]
        return [paths.ranx_ready(self.cfg["cache_dir"])] if metrics.needs_ranx(wanted) else []

    def detection_layout(self, method: str) -> str:
        """The detection layout a head method's heads are detected on: ``detection.layout``, or for ``auto`` the
        layout of its kind's paper (QRHead and qr-mass: ``shuffle``, CoRe: ``spread``; :mod:`attnrank.selection.detection`)."""
        from .selection import detection

        spec = self.attention_method_spec(method) or {}
        return detection.layout_for(spec.get("kind", ""), self.cfg.get("detection", {}).get("layout", "auto"))

    def detection_candidates(self, layout: str) -> str:
        d = self.cfg["detection"]
        return paths.detection_set(d["dataset"], d["retriever"], layout)

    def drop_self_matches(self, dataset: str) -> bool:
        """Whether the dataset's first-stage runs drop documents whose id is the query id (``config.drop_self_matches``)."""
        return config.drop_self_matches(self.cfg, dataset)

    def model_source(self, model: str) -> dict:
        """The model keys that decide its prepared weights (editing batch size or dtype re-prepares nothing)."""
        return {k: v for k, v in self.cfg["models"][model].items() if k not in _RUN_ONLY_MODEL_KEYS}

    def protocol_grid(self, method: str, model: str | None = None, dataset: str | None = None,
                      clist: str | None = None) -> dict:
        """The grid settings a method's protocol preset is compared with ({} for methods without a preset): the
        config sections for the candidate list ``clist`` it re-ranks (its first stage under the list's id, the
        list's depth and cut), the model id and the dataset (its BEIR name and entry)."""
        if not self.cfg["methods"][method].get("protocol"):
            return {}
        out = {k: self.cfg.get(k, {}) for k in ("retrievers", "candidates", "prompt", "detection")}
        if clist is not None and clist not in self.cfg["retrievers"]:
            spec = self.candidate_lists()[clist]
            out["retrievers"] = {**out["retrievers"], clist: self.cfg["retrievers"][spec["retriever"]]}
            out["candidates"] = {**out["candidates"], "depth": spec["depth"], "max_doc_words": spec["max_doc_words"]}
        if model is not None:
            out["model_id"] = self.cfg["models"][model].get("id")
        if dataset is not None:
            out["dataset"] = self.cfg["datasets"][dataset]
            out["dataset_name"] = protocols.reference_dataset(dataset, self.cfg["datasets"][dataset])
        return out

    # ------------------------------------------------------------------------------------------------ figures
    def plot_outputs(self) -> list[str]:
        """Heat maps of every head table and the profile of every layer profile that a configured method uses."""
        out = set()
        for model in self.cfg["models"]:
            for m in self.cfg["methods"]:
                if self.attention_method_spec(m) is None:
                    continue
                for o in self.method_orders(m):
                    files = self.artifact_files(model, m, o)
                    if "heads" in files:
                        out.add(paths.heads_plot(model, o, self.core_temperature(model, m), self.detection_layout(m),
                                                 "qrhead"))
                    if "profile" in files:
                        out.add(paths.layer_plot(model, o))
        return sorted(out)

    def artifact_users(self, model: str, order: str, key: str, path: str) -> dict[str, str]:
        """{method: sidecar} of the model's attention methods whose artifact ``key`` (heads / profile / weights) in
        prompt ``order`` is ``path``, read on the first evaluated dataset and re-ranked first stage (heads, windows
        and weights are per model and order, not per dataset)."""
        if not self.eval_datasets():
            return {}
        d = self.eval_datasets()[0]
        return {
            m: paths.sidecar(paths.rerank_run(model, d, self.method_lists(m)[0], m, order))
            for m in self.attention_methods
            if order in self.method_orders(m) and self.artifact_files(model, m, order).get(key) == path
        }

    def heat_map_users(self, model: str, order: str, temperature, layout: str) -> dict[str, str]:
        """Sidecars of the methods whose heads a heat map marks: head methods using this head table, and HeadRank
        methods of the same model and order (their weighted heads)."""
        users = self.artifact_users(model, order, "heads", paths.heads_table(model, order, temperature, layout))
        for m in self.attention_methods:
            weights = self.artifact_files(model, m, order).get("weights")
            if weights:
                users.update(self.artifact_users(model, order, "weights", weights))
        return users

    def figure_labels(self, model: str) -> dict[str, str]:
        """Display names a figure shows (its model, the attention methods): other labels do not rerun it."""
        return {n: self.labels[n] for n in [model, *self.attention_methods]}

    # ------------------------------------------------------------------------------------------------ code keys
    @functools.lru_cache(maxsize=None)
    def script_code(self, script: str) -> str:
        """A hash of a workflow script and every attnrank module it imports, transitively (the ``code`` param)."""
        return codehash.script_code_hash(self.scripts / f"{script}.py")

    @functools.lru_cache(maxsize=None)
    def method_code(self, script: str, name: str) -> str:
        """script_code for a script that runs one attention method: without the other methods' own functions
        (editing one method's function reruns that method only; anything shared reruns all)."""
        kind = self.cfg["methods"][name]["kind"]
        if kind not in methods.METHODS:  # a text framework: scored by attention or not, its script's code
            return self.script_code(script)
        return codehash.registry_code_hash(self.scripts / f"{script}.py", methods.METHODS, kind)


def plan_or_exit(config_dict: dict, scripts: str | Path, configfiles=()) -> Plan:
    """The workflow's parse-time plan: a bad config prints ``Error: <one line>`` and exits 1, no traceback.

    ``configfiles``: the config files of the run (``workflow.overwrite_configfiles``; none = ``config.yaml``); an
    unset ``results_dir`` is derived from them, and every path of the workflow lies under it (:mod:`.paths`)."""
    cfg = config.validate_or_exit(config_dict, configfiles)
    paths.set_root(cfg["results_dir"])
    try:
        return Plan(cfg, scripts, validated=True)
    except InputError as e:
        import sys

        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
