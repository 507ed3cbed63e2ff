# Figures marked with what the methods really used (read from the runs' sidecars): heads on the head-score heat
# maps, Selective-ICR windows on the layer profile. Heads and layers are detected / profiled per model and prompt
# order (attnrank.plan: artifact_files), so are the figures. PNG for the report, PDF beside it for papers.


rule head_plots:
    input:
        heads=paths.heads_table("{model}", "{order}", "{temperature}", "{layout}"),
        sidecars=lambda w: sorted(PLAN.heat_map_users(w.model, w.order, w.temperature, w.layout).values()),
    output:
        qr_mass=report(paths.heads_plot("{model}", "{order}", "{temperature}", "{layout}", "qr_mass"), caption="../report/heads.rst", category="Heads", subcategory="{model}"),
        qrhead=report(paths.heads_plot("{model}", "{order}", "{temperature}", "{layout}", "qrhead"), caption="../report/heads.rst", category="Heads", subcategory="{model}"),
        core=report(paths.heads_plot("{model}", "{order}", "{temperature}", "{layout}", "core"), caption="../report/heads.rst", category="Heads", subcategory="{model}"),
        qr_mass_pdf=paths.heads_plot("{model}", "{order}", "{temperature}", "{layout}", "qr_mass", "pdf"),
        qrhead_pdf=paths.heads_plot("{model}", "{order}", "{temperature}", "{layout}", "qrhead", "pdf"),
        core_pdf=paths.heads_plot("{model}", "{order}", "{temperature}", "{layout}", "core", "pdf"),
    params:
        sidecars=lambda w: PLAN.heat_map_users(w.model, w.order, w.temperature, w.layout),
        labels=lambda w: PLAN.figure_labels(w.model),
        code=script_code("head_plots"),
    log:
        log_path("head_plots", "{model}", "{order}", "{layout}", "t{temperature}"),
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
        profile=paths.layer_profile("{model}", "{order}"),
        sidecars=lambda w: sorted(PLAN.artifact_users(w.model, w.order, "profile", paths.layer_profile(w.model, w.order)).values()),
    output:
        plot=report(paths.layer_plot("{model}", "{order}"), caption="../report/layers.rst", category="Layers", subcategory="{model}"),
        pdf=paths.layer_plot("{model}", "{order}", "pdf"),
    params:
        sidecars=lambda w: PLAN.artifact_users(w.model, w.order, "profile", paths.layer_profile(w.model, w.order)),
        metric=CFG["evaluation"]["main_metric"],
        labels=lambda w: PLAN.figure_labels(w.model),
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
