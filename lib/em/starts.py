"""Start values and the search over starts that picks the run `fit_em` keeps.

Start values: alpha by pooled OLS or from within-subject variation only; class means from
quantiles of the subject means, from one tail, from uniform draws, or by k-means++ seeding
(Arthur and Vassilvitskii 2007); random starts also draw membership slopes, the variance split
and rho. The search screens the starts in two stages of short EM runs, as `lcmm`'s gridsearch
does (Proust-Lima, Philipps and Liquet 2017) but longer: all starts, then the better half and
the best of each alpha family, then the best few run to convergence (each stopped once it cannot
come within HOPELESS of the best converged one). Rounds of random starts are added while no
second converged start comes within ROUND_TOL of the best. On a large panel the short runs rank
the starts on a random subset of the subjects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .config import HOPELESS, ROUND_TOL, EMConfig, EmptyClassError
from .estep import EStep, design_u, e_step, residuals
from .iterate import objective_at, run_em
from .panel import Panel
from .params import Params, integer_times
from .polish import maximize_score


def within_alpha(panel: Panel) -> np.ndarray:
    """Fixed effects from within-subject variation (each subject's mean removed), pooled OLS for the rest.

    When the subject intercepts vary a lot and correlate with W (experience in a wage panel), the
    pooled fit's alpha is pulled by the between-subject differences; EM started there can settle
    on a mode where the AR(1) errors absorb the random intercept. Columns of W that do not vary
    within subjects are not identified by the within fit and come from pooled OLS given the others.
    """
    obs = panel.observed
    per = np.maximum(obs.sum(axis=1, keepdims=True), 1)
    y = np.where(obs, panel.y, 0.0)
    W = np.where(obs[:, :, None], panel.W, 0.0)
    yd = np.where(obs, y - y.sum(axis=1, keepdims=True) / per, 0.0)
    Wd = np.where(obs[:, :, None], W - W.sum(axis=1, keepdims=True) / per[:, :, None], 0.0)
    X, Xd = W[obs], Wd[obs]
    ss_within, ss_total = (Xd**2).sum(axis=0), ((X - X.mean(axis=0)) ** 2).sum(axis=0)
    inside = ss_within > 1e-8 * np.maximum(ss_total, 1e-300)
    alpha = np.zeros(panel.p)
    if inside.any():
        alpha[inside] = np.linalg.lstsq(Xd[:, inside], yd[obs], rcond=None)[0]
    if not inside.all():
        rest = y[obs] - X[:, inside] @ alpha[inside]
        Z = np.column_stack([X[:, ~inside], np.ones(len(rest))])
        alpha[~inside] = np.linalg.lstsq(Z, rest, rcond=None)[0][:-1]
    return alpha


def _spread_means(rbar: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """K class means drawn from the subject means by k-means++ seeding (each next one with
    probability proportional to its squared distance from those already drawn), so a small
    class in a tail, which uniform draws almost never seed, is seeded often."""
    mu = [float(rng.choice(rbar))]
    for _ in range(K - 1):
        d2 = np.min((rbar[:, None] - np.asarray(mu)[None, :]) ** 2, axis=1)
        mu.append(
            float(rng.choice(rbar, p=d2 / d2.sum())) if d2.sum() > 0 else float(rng.choice(rbar))
        )
    return np.asarray(mu)


def initial_params(
    panel: Panel,
    cfg: EMConfig,
    rng: np.random.Generator | None,
    within: bool = False,  # alpha from within-subject variation (within_alpha) instead of pooled OLS
    spread: bool = False,  # random class means by k-means++ seeding instead of uniform draws
    tail: str = "",  # "low" / "high": one class at the most extreme 1% of subject means (rng None)
) -> Params:
    """Start values: alpha by pooled OLS (or within-subject), class means from subject means
    (quantiles, or random draws with random membership slopes and variance split)."""
    obs = panel.observed
    N, p = panel.N, panel.p
    if within and p:
        alpha = within_alpha(panel)
    else:
        X = np.column_stack([panel.W[obs], np.ones(panel.n_obs)])
        alpha = np.linalg.lstsq(X, panel.y[obs], rcond=None)[0][:p]
    r = residuals(panel, alpha)
    per = obs.sum(axis=1)
    rbar = np.nanmean(r, axis=1)
    dof = max(panel.n_obs - N, 1)
    within_var = (
        float(np.nansum((r - rbar[:, None]) ** 2) / dof) if panel.n_obs > N else float(np.nanvar(r))
    )
    se2 = max(within_var, 1e-8 * max(float(np.nanvar(r)), 1e-12))
    K = cfg.K
    if rng is None and tail and K > 1:
        # a small class of extreme subjects is a common top that quantile and uniform starts miss
        order = np.sort(rbar) if tail == "low" else np.sort(rbar)[::-1]
        n_tail = max(2, N // 100)
        rest = order[n_tail:]
        mu = np.r_[order[:n_tail].mean(), np.quantile(rest, (np.arange(K - 1) + 0.5) / (K - 1))]
    elif rng is None:
        mu = np.quantile(rbar, (np.arange(K) + 0.5) / K)
    elif spread:
        mu = _spread_means(rbar, K, rng) + rng.normal(0, 0.05 * rbar.std() + 1e-12, K)
    else:
        mu = np.sort(rng.choice(rbar, size=K, replace=False)) + rng.normal(
            0, 0.05 * rbar.std() + 1e-12, K
        )
    mu = np.sort(mu)
    lab = np.abs(rbar[:, None] - mu[None, :]).argmin(axis=1)
    nk = np.bincount(lab, minlength=K) + 1.0
    within_b = float(((rbar - mu[lab]) ** 2).mean())
    sb2 = max(within_b - se2 * float(np.mean(1.0 / per)), 0.05 * float(rbar.var()) + 1e-8)
    gamma = np.zeros((K, panel.q + 1))
    gamma[:, 0] = np.log(nk / nk[0])
    if rng is not None:
        if panel.q:
            sd = panel.U.std(axis=0)
            gamma[1:, 1:] = rng.normal(0.0, 0.5, (K - 1, panel.q)) / np.where(sd > 0, sd, 1.0)
        share = rng.uniform(
            0.2, 0.8
        )  # how the subject-level variance splits between b and the errors
        sb2, se2 = sb2 * 2 * share, se2 * 2 * (1 - share)
    rho = float("nan")
    if cfg.structure == "ar1":
        lo = 0.0 if not integer_times(panel.times) else -0.5
        rho = 0.1 if rng is None else float(rng.uniform(max(lo, 0.0), 0.9))
    if cfg.structure == "unstructured":
        S = se2 * np.eye(panel.t) + sb2
        return Params(
            alpha, mu, gamma, 0.0, float(np.mean(np.diag(S))), panel.times, cfg.structure, rho, S
        )
    return Params(alpha, mu, gamma, sb2, se2, panel.times, cfg.structure, rho)


@dataclass(frozen=True)
class Screen:
    """The panel a fit runs on, and the one its starts are ranked on (a random subset of the
    subjects when there are more than cfg.screen_subjects, otherwise the panel itself)."""

    panel: Panel
    U1: np.ndarray  # design_u(panel)
    ranked: Panel
    ranked_U1: np.ndarray  # design_u(ranked)

    @property
    def is_subset(self) -> bool:
        return self.ranked is not self.panel


def screen_for(panel: Panel, U1: np.ndarray, cfg: EMConfig, rng: np.random.Generator) -> Screen:
    """On a large panel the starts are ranked on a random subset: the ranking needs far fewer subjects."""
    if panel.N <= cfg.screen_subjects:
        return Screen(panel, U1, panel, U1)
    ranked = panel.subset(np.sort(rng.choice(panel.N, cfg.screen_subjects, replace=False)))
    return Screen(panel, U1, ranked, design_u(ranked))


@dataclass(frozen=True)
class Candidate:
    """A start being screened by short EM runs."""

    objective: float  # its objective now (on the full panel when the ranking uses a subset)
    start: int  # number of the start, counted over all rounds
    params: Params
    path: list[float]  # objective path so far ([] when ranked on a subset: the final run starts it)
    converged: bool
    family: str  # "pooled" or "within" (how alpha started), or "init"


@dataclass(frozen=True)
class ConvergedRun:
    """A start run to convergence, or stopped (max_iter, or hopelessly below the best)."""

    path: list[float]  # objective at every iteration, the short runs' included
    params: Params
    estep: EStep  # at params
    converged: bool

    @property
    def objective(self) -> float:
        return self.path[-1]


@dataclass(frozen=True)
class StartSearch:
    """What one or more rounds of starts found."""

    runs: list[ConvergedRun]  # the starts run to convergence, in the order they ran
    short: list[tuple[int, float]]  # (start, objective after the short runs)
    lost: list[str]  # why starts were dropped, in the order they were
    n_started: int

    def __add__(self, other: StartSearch) -> StartSearch:
        return StartSearch(
            self.runs + other.runs,
            self.short + other.short,
            self.lost + other.lost,
            self.n_started + other.n_started,
        )

    @property
    def start_logliks(self) -> list[float]:
        """Objectives after the short runs, in start order."""
        return [f for _, f in sorted(self.short)]

    def reached_twice(self) -> bool:
        """Whether a second run came within ROUND_TOL of the best (else the best may be a lone mode)."""
        lls = [r.objective for r in self.runs]
        return bool(lls) and sum(v >= max(lls) - ROUND_TOL for v in lls) >= 2


def deterministic_starts(panel: Panel, cfg: EMConfig) -> list[tuple[Params, str]]:
    """Up to four starts without randomness: pooled and within alpha with quantile means, and
    within alpha with a class at either tail (only the first two for K = 1)."""
    kinds = (
        (False, "", "pooled"),
        (True, "", "within"),
        (True, "low", "within"),
        (True, "high", "within"),
    )
    n = cfg.n_starts if cfg.K > 1 else min(cfg.n_starts, 2)
    return [(initial_params(panel, cfg, None, within=w, tail=t), f) for w, t, f in kinds[:n]]


def random_starts(
    panel: Panel, cfg: EMConfig, rng: np.random.Generator, n: int
) -> list[tuple[Params, str]]:
    """`n` random starts, alternating pooled / within alpha and uniform / k-means++ means: each
    choice can be the only way to the top (a wage panel needs within alpha for K = 1, a small
    tail class k-means++)."""
    return [
        (
            initial_params(panel, cfg, rng, within=j % 2 == 1, spread=j % 4 >= 2),
            ("pooled", "within")[j % 2],
        )
        for j in range(n)
    ]


def advance(c: Candidate, iters: int, scr: Screen, cfg: EMConfig) -> Candidate:
    """Continue a candidate by `iters` EM iterations on the ranking panel."""
    if c.converged:
        return c
    th, _, more, conv = run_em(scr.ranked, c.params, cfg, iters, scr.ranked_U1)
    if scr.is_subset:  # ranked on the full panel; its path starts at the final run
        return replace(
            c,
            objective=objective_at(scr.panel, scr.U1, th, cfg)[1],
            params=th,
            path=[],
            converged=False,
        )
    return replace(c, objective=more[-1], params=th, path=c.path + more[1:], converged=conv)


def _short_runs(
    starts: list[tuple[Params, str]], first: int, scr: Screen, cfg: EMConfig
) -> tuple[list[Candidate], list[str]]:
    """Every start, numbered from `first`, after cfg.short_iter EM iterations."""
    cands, lost = [], []
    for s, (th0, fam) in enumerate(starts, first):
        try:
            f0 = objective_at(scr.ranked, scr.ranked_U1, th0, cfg)[1]
            cands.append(advance(Candidate(f0, s, th0, [f0], False, fam), cfg.short_iter, scr, cfg))
        except EmptyClassError as e:
            lost.append(f"start {s} abandoned: {e}")
    return cands, lost


def _screened(
    cands: list[Candidate], scr: Screen, cfg: EMConfig
) -> tuple[list[Candidate], list[str]]:
    """The better half and the best of each family after cfg.screen_iter more iterations, best first.

    After a few iterations a start bound for the top can still rank below starts bound for lower
    modes (a wage panel: within-subject alpha for K = 1, a tail class for K = 3).
    """
    cands = sorted(cands, key=lambda c: -c.objective)
    if len(cands) <= cfg.n_final:  # every start goes on to the final runs anyway
        return cands, []
    second = cands[: max(cfg.n_final + 1, (len(cands) + 1) // 2)]
    for fam in {c.family for c in cands} - {c.family for c in second}:
        second.append(next(c for c in cands if c.family == fam))
    kept, lost = [], []
    for c in second:
        try:
            kept.append(advance(c, cfg.screen_iter, scr, cfg))
        except EmptyClassError as e:
            lost.append(f"start {c.start} abandoned: {e}")
    return sorted(kept, key=lambda c: -c.objective), lost


def _finish(
    scr: Screen, th: Params, cfg: EMConfig, floor: float
) -> tuple[Params, EStep, list[float], bool]:
    """One final run: EM until its relative gain per iteration falls below cfg.handoff_tol, then
    BFGS on the analytic score (where EM would crawl for hundreds of iterations), then EM again
    to cfg.tol in case BFGS stopped short (it never ends lower than it began)."""
    quasi = cfg.handoff_tol > cfg.tol and th.structure != "unstructured" and cfg.gamma_ridge == 0.0
    if not quasi:
        return run_em(scr.panel, th, cfg, cfg.max_iter, scr.U1, floor=floor)
    loose = replace(cfg, tol=cfg.handoff_tol)
    th, es, path, conv = run_em(scr.panel, th, loose, cfg.max_iter, scr.U1, floor=floor)
    if not conv and path[-1] < floor:
        return th, es, path, False
    th, es, ok = maximize_score(scr.panel, scr.U1, th)
    path.append(es.loglik)
    if ok:
        return th, es, path, True
    th, es, more, conv = run_em(scr.panel, th, cfg, cfg.max_iter, scr.U1)
    return th, es, path + more[1:], conv


def _to_convergence(
    final: list[Candidate], scr: Screen, cfg: EMConfig, before: list[ConvergedRun]
) -> tuple[list[ConvergedRun], list[str]]:
    """The finalists run to convergence on the full panel, each stopped once it cannot come
    within HOPELESS of the best converged run so far (of earlier rounds, `before`, or this one)."""
    done, lost = [], []
    for c in final:
        best = max((r.objective for r in before + done if r.converged), default=-np.inf)
        try:
            if not c.converged:
                th, es, path, conv = _finish(scr, c.params, cfg, best - HOPELESS)
                path = c.path + path[1:] if c.path else path
            else:
                th, es, path, conv = c.params, e_step(scr.panel, scr.U1, c.params), c.path, True
        except EmptyClassError as e:
            lost.append(f"start {c.start} abandoned: {e}")
            continue
        done.append(ConvergedRun(path, th, es, conv))
    return done, lost


def one_round(
    starts: list[tuple[Params, str]],
    first: int,
    scr: Screen,
    cfg: EMConfig,
    before: list[ConvergedRun],
) -> StartSearch:
    """Starts screened in two stages, then the best n_final (and a given init) run to convergence."""
    cands, lost_short = _short_runs(starts, first, scr, cfg)
    short = [(c.start, c.objective) for c in cands]
    kept, lost_screen = _screened(cands, scr, cfg)
    final = kept[: cfg.n_final] + [c for c in kept[cfg.n_final :] if c.family == "init"]
    runs, lost_final = _to_convergence(final, scr, cfg, before)
    return StartSearch(runs, short, lost_short + lost_screen + lost_final, len(starts))


def search_starts(panel: Panel, U1: np.ndarray, cfg: EMConfig, init: Params | None) -> StartSearch:
    """Rounds of starts (the first with the deterministic ones and `init`) until the best
    objective has been reached twice, or cfg.max_rounds."""
    rng = np.random.default_rng(cfg.seed)
    scr = screen_for(panel, U1, cfg, rng)
    starts = deterministic_starts(panel, cfg)
    if cfg.K > 1:  # K = 1 draws random starts only if its two deterministic ones disagree
        starts += random_starts(panel, cfg, rng, cfg.n_starts - len(starts))
    if init is not None:
        starts.insert(0, (init, "init"))
    found = one_round(starts, 0, scr, cfg, [])
    for _ in range(cfg.max_rounds - 1 if cfg.n_starts else 0):
        if found.reached_twice():
            break
        more = random_starts(panel, cfg, rng, cfg.n_starts)
        found = found + one_round(more, found.n_started, scr, cfg, found.runs)
    return found
