# Figures marked with what the methods really used (read from the runs' sidecars): heads on the head-score heat
# maps, Selective-ICR windows on the layer profile. Heads and layers are detected / profiled per model and prompt
# order (common.smk: artifact_files), so are the figures. PNG for the report, PDF beside it for papers.
def artifact_users(model, order, key, path):
    """{method: sidecar} of the model's attention methods whose artifact ``key`` (heads / profile / weights) in
    prompt ``order`` is ``path``, read on the first evaluated dataset and re-ranked first stage (heads, windows
    and weights are per model and order, not per dataset)."""
    if not eval_datasets():
        return {}
    d, r = eval_datasets()[0], CFG["candidates"]["retrievers"][0]
    return {
        m: attention_run(model, d, r, m, order).replace(".trec", ".json")
        for m in ATTENTION_METHODS
        if order in method_orders(m) and artifact_files(model, m, order).get(key) == path
    }


def heat_map_users(w):
    """Sidecars of the methods whose heads a heat map marks: head methods using this head table, and HeadRank
    methods of the same model and order (their weighted heads)."""
    users = artifact_users(w.model, w.order, "heads", heads_table(w.model, w.order, w.temperature))
    for m in ATTENTION_METHODS:
        weights = artifact_files(w.model, m, w.order).get("weights")
        if weights:
            users.update(artifact_users(w.model, w.order, "weights", weights))
    return users


def figure_labels(w):
    """Display names a figure shows (its model, the attention methods): other labels do not rerun it."""
    return {n: LABELS[n] for n in [w.model, *ATTENTION_METHODS]}


def plot_outputs():
    """Heat maps of every head table and the profile of every layer profile that a configured method uses."""
    out = set()
    for model in CFG["models"]:
        for m in CFG["methods"]:
            if attention_method_spec(m) is None:
                continue
            for o in method_orders(m):
                files = artifact_files(model, m, o)
                if "heads" in files:
                    out.add(files["heads"].replace("heads.parquet", "qrhead.png"))
                if "profile" in files:
                    out.add(files["profile"].replace(".parquet", ".png"))
    return sorted(out)


rule head_plots:
    input:
        heads=f"{R}/heads/{{model}}/{{order}}/t{{temperature}}/heads.parquet",
        sidecars=lambda w: sorted(heat_map_users(w).values()),
    output:
        qr_mass=report(f"{R}/heads/{{model}}/{{order}}/t{{temperature}}/qr_mass.png", caption="../report/heads.rst", category="Heads", subcategory="{model}"),
        qrhead=report(f"{R}/heads/{{model}}/{{order}}/t{{temperature}}/qrhead.png", caption="../report/heads.rst", category="Heads", subcategory="{model}"),
        core=report(f"{R}/heads/{{model}}/{{order}}/t{{temperature}}/core.png", caption="../report/heads.rst", category="Heads", subcategory="{model}"),
        qr_mass_pdf=f"{R}/heads/{{model}}/{{order}}/t{{temperature}}/qr_mass.pdf",
        qrhead_pdf=f"{R}/heads/{{model}}/{{order}}/t{{temperature}}/qrhead.pdf",
        core_pdf=f"{R}/heads/{{model}}/{{order}}/t{{temperature}}/core.pdf",
    params:
        sidecars=heat_map_users,
        labels=figure_labels,
        code=script_code("head_plots"),
    log:
        log_path("head_plots", "{model}", "{order}", "t{temperature}"),
    threads: 1
    resources:
        mem_mb=capped_mem(2000),
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/head_plots.py"


rule layer_plot:
    input:
        profile=f"{R}/layers/{{model}}/{{order}}/profile.parquet",
        sidecars=lambda w: sorted(artifact_users(w.model, w.order, "profile", f"{R}/layers/{w.model}/{w.order}/profile.parquet").values()),
    output:
        plot=report(f"{R}/layers/{{model}}/{{order}}/profile.png", caption="../report/layers.rst", category="Layers", subcategory="{model}"),
        pdf=f"{R}/layers/{{model}}/{{order}}/profile.pdf",
    params:
        sidecars=lambda w: artifact_users(w.model, w.order, "profile", f"{R}/layers/{w.model}/{w.order}/profile.parquet"),
        metric=CFG["evaluation"]["main_metric"],
        labels=figure_labels,
        code=script_code("layer_plot"),
    log:
        log_path("layer_plot", "{model}", "{order}"),
    threads: 1
    resources:
        mem_mb=capped_mem(2000),
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/layer_plot.py"
