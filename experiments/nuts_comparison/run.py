"""MAP vs SVI vs NUTS on small real-data models, under every prior: can SVI's posterior be trusted?

For each model and prior (one "cell") it fits the MAP (:func:`fit_map`; not for the horseshoe,
whose MAP is degenerate), mean-field SVI started at the MAP (:func:`fit_svi`, full batch), and
NUTS (:func:`run_nuts`, 2 chains, from the prior medians), then compares them entry by entry on
every weight and hyper-variable: means, sds, central 90% intervals, and for NUTS alone R-hat and
bulk ESS.  SVI is judged against NUTS by

* coverage: the fraction of entries whose NUTS mean lies inside SVI's 90% interval;
* sd ratio: SVI sd / NUTS sd (1 = calibrated, < 1 = overconfident);
* shift: |SVI mean - NUTS mean| / NUTS sd.

Writes ``results.csv`` (one row per entry and cell), ``results.md`` (tables), and the figures
``coefficients_diabetes.png``, ``sd_svi_vs_nuts.png`` and ``trace_diabetes_halo.png`` (NUTS trace of
four coefficients and their lambdas).

    python experiments/nuts_comparison/run.py --jobs 2
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from bayes_halo.atomic import save_figure, write_text
from bayes_halo.diagnostics import arviz_compat
from bayes_halo.diagnostics.arviz_export import mcmc_inference_data, site_dims
from bayes_halo.diagnostics.plots import METHOD_COLOURS, plot_coefficient_forest, plot_mcmc
from bayes_halo.inference.map import fit_map
from bayes_halo.inference.nuts import latent_dims, run_nuts
from bayes_halo.problems import Problem, breast_cancer_logistic, diabetes_regression, digits_mlp
from bayes_halo.inference.svi import fit_svi
from bayes_halo.priors import HALO, AdaptiveLaplace, Horseshoe, Laplace, Normal, Prior, SharedHALO

HERE = Path(__file__).parent
PRIORS = ("ridge", "laplace", "adaptive-laplace", "halo", "shared-halo", "horseshoe")


@dataclass(frozen=True)
class Setup:
    """Per-model settings: prior strengths (per example), which priors, and sampler budgets."""

    build: str
    priors: tuple[str, ...]
    xi: float  # ridge, Laplace, adaptive Laplace, HALO and shared HALO
    psi: float  # HALO and shared HALO
    tau0: float  # horseshoe: Piironen & Vehtari's p0 / (p - p0) * s / sqrt(N)
    full_mass: bool  # dense mass matrix for priors without hyper-variables (hierarchical ones: diagonal)
    max_tree_depth: int  # hierarchical priors; the others keep NUTS's default of 10
    warmup: int  # per chain; a dense mass matrix of d dims needs a last adaptation window well above d
    draws: int  # per chain
    map_lr: float


SETUPS = {
    # tau0: p0 = 5 relevant of p features, s = noise sd (0.70) or 2 for a logistic model.
    # Breast cancer runs two priors by default: its 30 nearly collinear features make NUTS under the
    # Laplace priors take minutes per cell (see the README; add them with --priors).
    "diabetes": Setup("diabetes_regression", PRIORS, 0.01, 0.01, 0.033, True, 6, 150, 200, 0.05),
    "breast-cancer": Setup("breast_cancer_logistic", ("ridge", "halo"), 0.01, 0.01, 0.017, True, 6, 300, 150, 0.05),
    "digits": Setup("digits_mlp", ("ridge", "halo"), 0.01, 0.01, 1.0, False, 5, 150, 100, 0.02),
}
BUILDERS = {"diabetes_regression": diabetes_regression, "breast_cancer_logistic": breast_cancer_logistic,
            "digits_mlp": digits_mlp}


def make_prior(name: str, setup: Setup, problem: Problem) -> Prior:
    """The prior ``name`` with the model's strengths (see :func:`adaptive_laplace` for its weights)."""
    factories = {"ridge": lambda: Normal(setup.xi), "laplace": lambda: Laplace(setup.xi),
                 "adaptive-laplace": lambda: adaptive_laplace(setup, problem),
                 "halo": lambda: HALO(setup.xi, setup.psi), "shared-halo": lambda: SharedHALO(setup.xi, setup.psi),
                 "horseshoe": lambda: Horseshoe(setup.tau0)}
    return factories[name]()


def adaptive_laplace(setup: Setup, problem: Problem) -> AdaptiveLaplace:
    """Weights ``omega_j = 1 / (|w_ridge_j| + 0.05)`` from the ridge MAP.

    The 0.05 (on standardised features) caps ``omega`` at 20, where Zou's ``eps -> 0`` would turn a
    near-zero pilot into a spike of width ``1 / (N xi omega_j)`` that NUTS can only crawl through.
    """
    pilot = problem.module(Normal(setup.xi))
    fit_map(pilot, problem.x, problem.y, steps=1000, lr=setup.map_lr)
    return AdaptiveLaplace.from_pilot(setup.xi, pilot.weights(), eps=0.05)


def stats(draws: torch.Tensor) -> dict[str, np.ndarray]:
    """Mean, sd and central 90% interval of flat draws ``(S, ...)``, flattened per entry."""
    flat = draws.reshape(len(draws), -1).double().numpy()
    q05, q95 = np.quantile(flat, [0.05, 0.95], axis=0)
    return {"mean": flat.mean(0), "sd": flat.std(0, ddof=1), "q05": q05, "q95": q95}


def run_cell(model: str, prior_name: str, seed: int) -> dict:
    """MAP, SVI and NUTS for one model and prior; per-entry rows plus what the figures need."""
    torch.set_num_threads(1)
    setup = SETUPS[model]
    problem = BUILDERS[setup.build]()
    prior = make_prior(prior_name, setup, problem)
    module = problem.module(prior, seed=seed)
    tic = time.perf_counter()
    map_values = None
    if not prior.map_is_degenerate:
        map_values = fit_map(module, problem.x, problem.y, steps=1000, lr=setup.map_lr, seed=seed).values
    map_seconds = time.perf_counter() - tic
    tic = time.perf_counter()
    svi = fit_svi(module, problem.x, problem.y, epochs=1500, batch_size=problem.n_data, lr=0.01,
                  init_scale=0.01, num_particles=2, seed=seed, progress=False)
    svi_draws = svi.sample(1000, seed=seed)
    svi_seconds = time.perf_counter() - tic
    hierarchical = bool(module.hyper_values())
    nuts = run_nuts(problem.module(prior, seed=seed), problem.x, problem.y, num_samples=setup.draws,
                    warmup=setup.warmup, num_chains=2, seed=seed, full_mass=setup.full_mass and not hierarchical,
                    max_tree_depth=setup.max_tree_depth if hierarchical else 10, progress=False)
    idata = mcmc_inference_data(nuts.draws, diverging=nuts.diverging, step_size=nuts.step_size, dims=site_dims(module),
                                coords={"in": list(problem.feature_names)})
    rhat, ess = arviz_compat.rhat(idata), arviz_compat.ess(idata, method="bulk")
    hyper = set(module.hyper_values())
    rows = []
    nuts_flat, svi_sd = nuts.flat(), svi.sd()
    for site in [*module.sites, *sorted(hyper)]:
        n, s = stats(nuts_flat[site]), stats(svi_draws[site])
        s["sd"] = svi_sd[site].reshape(-1).double().numpy()  # exact sd of q, not sampled
        m = map_values[site].reshape(-1).double().numpy() if map_values is not None else np.full(len(n["mean"]), np.nan)
        for j in range(len(n["mean"])):
            rows.append({
                "model": model, "prior": prior_name, "site": site, "kind": "hyper" if site in hyper else "weight",
                "index": j, "map": m[j],
                **{f"svi_{k}": v[j] for k, v in s.items()}, **{f"nuts_{k}": v[j] for k, v in n.items()},
                "rhat": float(rhat[site].values.reshape(-1)[j]), "ess_bulk": float(ess[site].values.reshape(-1)[j]),
            })
    cell = {"model": model, "prior": prior_name, "latent_dims": latent_dims(module),
            "divergences": nuts.num_divergences, "step_size": nuts.step_size.tolist(),
            "map_seconds": map_seconds, "svi_seconds": svi_seconds, "nuts_seconds": float(nuts.seconds.sum())}
    figure_data = {}
    if model == "diabetes":
        figure_data = {"svi": svi_draws["weight"].squeeze(1).numpy(), "nuts": nuts_flat["weight"].squeeze(1).numpy(),
                       "map": None if map_values is None else map_values["weight"].squeeze(0).numpy(),
                       "labels": list(problem.feature_names)}
        if prior_name == "halo":
            figure_data["idata"] = idata
    return {"rows": rows, "cell": cell, "figure": figure_data}


def summarise(rows: list[dict], cell: dict) -> dict:
    """Per cell and kind of entry: MAP-in-NUTS, SVI coverage, sd ratio and shift, R-hat, ESS."""
    out = dict(cell)
    for kind in ("weight", "hyper"):
        part = [r for r in rows if r["kind"] == kind]
        if not part:
            continue
        get = lambda key: np.array([r[key] for r in part])  # noqa: E731
        nuts_mean, nuts_sd = get("nuts_mean"), get("nuts_sd")
        ratio = get("svi_sd") / nuts_sd
        shift = np.abs(get("svi_mean") - nuts_mean) / nuts_sd
        covered = (get("svi_q05") <= nuts_mean) & (nuts_mean <= get("svi_q95"))
        map_value = get("map")
        inside = (get("nuts_q05") <= map_value) & (map_value <= get("nuts_q95"))
        out.update({f"{kind}_n": len(part), f"{kind}_max_rhat": get("rhat").max(),
                    f"{kind}_min_ess": get("ess_bulk").min(),
                    f"{kind}_map_in_nuts90": inside.mean() if not np.isnan(map_value).all() else math.nan,
                    f"{kind}_svi_covers": covered.mean(), f"{kind}_sd_ratio_median": np.median(ratio),
                    f"{kind}_sd_ratio_min": ratio.min(), f"{kind}_sd_ratio_max": ratio.max(),
                    f"{kind}_shift_median": np.median(shift), f"{kind}_shift_max": shift.max()})
    return out


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:.{digits}f}"


def markdown(summaries: list[dict], rows: list[dict], seconds: float, args: argparse.Namespace) -> str:
    """results.md: settings, the per-cell tables and the diabetes coefficients."""
    load = ", ".join(f"{v:.1f}" for v in args.load)
    lines = [
        "# MAP vs SVI vs NUTS on small real-data models",
        "",
        f"Command: `python experiments/nuts_comparison/run.py --jobs {args.jobs} --seed {args.seed}"
        + (f" --models {' '.join(args.models)}" if args.models != list(SETUPS) else "")
        + (f" --priors {' '.join(args.priors)}" if args.priors else "") + "`.",
        f"Wall time {seconds / 60:.1f} min with {args.jobs} worker processes "
        f"of one torch thread each; load average at start {load} on {os.cpu_count()} cores.",
        "",
        "MAP: `fit_map`, 1000 Adam steps (none for the horseshoe: its MAP is degenerate).  "
        "NUTS: 2 chains from the prior medians, non-centred weights under hierarchical priors, target acceptance "
        "0.9; warmup, draws per chain, tree-depth cap and dense mass matrix per model in `run.py` (`SETUPS`).  "
        "SVI: mean-field Gaussian (fast engine) started at the MAP, full batch, 1500 steps, lr 0.01, "
        "2 particles; 1000 draws for its intervals, its exact sds.  R-hat and ESS are NUTS-only: SVI draws are "
        "independent draws from an approximation, so ESS/R-hat would say nothing about its error.",
        "",
        "## Per model and prior",
        "",
        "`cover` = fraction of entries whose NUTS mean is inside SVI's 90% interval (0.9+ is what a calibrated "
        "SVI would give); `sd ratio` = SVI sd / NUTS sd, median [min, max]; `shift` = |SVI mean - NUTS mean| / "
        "NUTS sd, median / max; `MAP in` = fraction of MAP values inside NUTS's 90% interval.",
        "",
    ]
    for kind, title in (("weight", "Weights"), ("hyper", "Hyper-variables (lambda, tau)")):
        lines += [f"### {title}", "",
                  "| model | prior | entries | NUTS s | div. | max R-hat | min ESS | MAP in | cover | sd ratio "
                  "| shift |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in summaries:
            if f"{kind}_n" not in s:
                continue
            lines.append(
                f"| {s['model']} | {s['prior']} | {s[f'{kind}_n']} | {s['nuts_seconds']:.0f} | {s['divergences']} | "
                f"{_fmt(s[f'{kind}_max_rhat'], 3)} | {s[f'{kind}_min_ess']:.0f} | {_fmt(s[f'{kind}_map_in_nuts90'])} | "
                f"{_fmt(s[f'{kind}_svi_covers'])} | {_fmt(s[f'{kind}_sd_ratio_median'])} "
                f"[{_fmt(s[f'{kind}_sd_ratio_min'])}, {_fmt(s[f'{kind}_sd_ratio_max'])}] | "
                f"{_fmt(s[f'{kind}_shift_median'])} / {_fmt(s[f'{kind}_shift_max'])} |")
        lines.append("")
    coefficient_rows = [r for r in rows if r["model"] == "diabetes" and r["kind"] == "weight"]
    if coefficient_rows:
        labels = diabetes_regression().feature_names
        lines += ["## Diabetes coefficients (standardised)", "",
                  "| prior | feature | MAP | SVI mean [90%] | NUTS mean [90%] | R-hat | ESS |",
                  "|---|---|---|---|---|---|---|"]
        for r in coefficient_rows:
            lines.append(f"| {r['prior']} | {labels[r['index']]} | {_fmt(r['map'], 3)} | "
                         f"{r['svi_mean']:.3f} [{r['svi_q05']:.3f}, {r['svi_q95']:.3f}] | "
                         f"{r['nuts_mean']:.3f} [{r['nuts_q05']:.3f}, {r['nuts_q95']:.3f}] | {r['rhat']:.3f} | "
                         f"{r['ess_bulk']:.0f} |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return buffer.getvalue()


def coefficient_figure(figures: dict[str, dict], path: Path) -> None:
    """Diabetes coefficients, one panel per prior: SVI and NUTS 90% intervals, MAP crosses."""
    fig = Figure(figsize=(15, 9), layout="constrained")
    axes = fig.subplots(2, math.ceil(len(figures) / 2), squeeze=False).ravel()
    for ax, (prior, data) in zip(axes, figures.items()):
        plot_coefficient_forest({"SVI": data["svi"], "NUTS": data["nuts"]}, data["labels"], map_value=data["map"],
                                title=f"diabetes, {prior}", ax=ax)
    for ax in axes[len(figures):]:
        ax.set_visible(False)
    fig.suptitle("Diabetes regression: posterior 90% intervals of the coefficients, SVI vs NUTS")
    save_figure(path, fig)


def sd_figure(rows: list[dict], path: Path) -> None:
    """SVI sd against NUTS sd for every weight, per prior and model (log-log, diagonal = agreement)."""
    models = sorted({r["model"] for r in rows})
    fig = Figure(figsize=(5 * len(models), 4.8), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False).ravel()
    for ax, model in zip(axes, models):
        part = [r for r in rows if r["model"] == model and r["kind"] == "weight"]
        for i, prior in enumerate(PRIORS):
            sel = [r for r in part if r["prior"] == prior]
            if sel:
                ax.scatter([r["nuts_sd"] for r in sel], [r["svi_sd"] for r in sel], s=8, alpha=0.6,
                           color=f"C{i}", label=prior)
        values = [v for r in part for v in (r["nuts_sd"], r["svi_sd"])]
        lo, hi = min(values) / 1.5, max(values) * 1.5
        ax.plot([lo, hi], [lo, hi], color=METHOD_COLOURS["MAP"], lw=0.8, ls="--", label="SVI sd = NUTS sd")
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="NUTS posterior sd of w_j",
               ylabel="SVI (mean-field) sd of w_j", title=model)
        ax.legend(fontsize="small")
    fig.suptitle("Posterior sd of every weight: SVI against NUTS (below the diagonal = SVI overconfident)")
    save_figure(path, fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--priors", nargs="+", choices=PRIORS,
                        help="priors to run on every chosen model (default: each model's list in SETUPS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="cells run in parallel processes")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.load = os.getloadavg()
    cells = [(m, p) for m in args.models for p in (args.priors or SETUPS[m].priors)]
    slow_first = ("halo", "horseshoe", "shared-halo")  # hierarchical posteriors take the longest: start them first
    order = sorted(cells, key=lambda c: c[1] not in slow_first)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {cell: pool.submit(run_cell, *cell, args.seed) for cell in order}
        for cell, future in futures.items():
            done = future.result()["cell"]
            print(f"{cell[0]:14s} {cell[1]:17s} NUTS {done['nuts_seconds']:6.0f} s, {done['divergences']} divergences",
                  flush=True)
    results = [futures[cell].result() for cell in cells]
    seconds = time.perf_counter() - start
    rows = [r for res in results for r in res["rows"]]
    summaries = [summarise(res["rows"], res["cell"]) for res in results]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "results.csv", csv_text(rows))
    write_text(args.out / "results.md", markdown(summaries, rows, seconds, args))
    diabetes = {res["cell"]["prior"]: res["figure"] for res in results if res["cell"]["model"] == "diabetes"}
    if diabetes:
        coefficient_figure(diabetes, args.out / "coefficients_diabetes.png")
        if "halo" in diabetes:
            plot_mcmc(diabetes["halo"]["idata"], ["weight", "weight_lambda"], coords={"in": ["bmi", "s1", "s2", "s5"]},
                      path=args.out / "trace_diabetes_halo.png")
    sd_figure(rows, args.out / "sd_svi_vs_nuts.png")
    print(f"done in {seconds / 60:.1f} min; wrote {args.out}/results.md")


if __name__ == "__main__":
    main()
