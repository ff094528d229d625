"""What a method is: its declaration (`Method`), the loss of `tau h` it may carry (`PairLoss`), the kinds of
exact answer (`Exact`) and the protocol its family implements (`Family`).

A method is declared once, in its own module inside its family's package (`psipo_cli.methods.pairwise.dpo`,
...); the registry (`psipo_cli.methods.METHODS`) lists the declarations. Everything that depends on the
method — the exact solver, what it sees of a context, the lanes of the gradient engine, the run's loss and
status — goes through `method.family`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from psipo_cli.methods.solution import Solution

PairFn = Callable[[np.ndarray, Any], np.ndarray]  # f(h, tau), tau a float or an array broadcasting with h
MarginFn = Callable[[np.ndarray], np.ndarray]  # f(z) of the implied reward margin z = tau h


class Exact(Enum):
    """The kind of exact answer a method has."""

    #: The objective always attains its minimum (e.g. IPO: strictly convex in the compared differences).
    ATTAINED = "attained"
    #: Attained iff no comparison separates two strongly connected components of the comparison graph;
    #: otherwise the limit of the ridge path (status `diverged`; `psipo_cli.methods.pairwise._limit`).
    #: Needs a loss with logistic tails (DPO, RLHF's reward model without a ridge).
    SEPARATED_LIMIT = "separated-limit"
    #: Attained where `Psi(P)` is finite; otherwise the `eps -> 0` limit of the clipped problem (status
    #: `limit`; population ΨPO).
    EPS_LIMIT = "eps-limit"
    #: The iterates need not converge; the answer is the limit of their average (status `average`; SPPO,
    #: whose last iterate cycles on a non-transitive `P`).
    AVERAGE = "average"


@dataclass(frozen=True)
class PairLoss:
    """A loss of `tau h` on each comparison, `h = delta_w - delta_l` (paper Eqs. 4 and 17).

    The gradient engine minimises `mean_{(w,l)} pair_loss(delta_w - delta_l, tau)`. Its minimiser depends on
    tau only through the implied reward `z = tau delta`: `pair_loss(h, tau)` is a positive multiple (that
    may depend on tau) of `margin(tau h)`, so the exact solver finds `z* = argmin_z sum W margin(z_w - z_l)`
    once and reads `delta = z* / tau` for every tau.

    Attributes
    ----------
    pair_loss, pair_grad : callable `(h, tau) -> array`
        The per-comparison loss and its derivative in `h` (tau broadcasts, one value per lane).
    margin, margin_grad, margin_curv : callable `z -> array`
        `f(z)`, `f'(z)`, `f''(z)` of the implied margin: the generic exact solver's objective, gradient and
        curvature (its Hessian is the comparison graph's Laplacian weighted by `W f''`).
    exact : Exact
        `ATTAINED` or `SEPARATED_LIMIT`.
    implied_reward : callable `W -> z*`, optional
        A closed form for `z*` overriding the generic damped Newton solve (checked against it in tests).
    closed_form : callable `W -> (tau -> str)`, optional
        The sentence a solution carries when a closed form's preconditions hold on `W` (empty otherwise).
    """

    pair_loss: PairFn
    pair_grad: PairFn
    margin: MarginFn
    margin_grad: MarginFn
    margin_curv: MarginFn
    exact: Exact
    implied_reward: Callable[[np.ndarray], np.ndarray] | None = None
    closed_form: Callable[[np.ndarray], Callable[[float], str]] | None = None


class Family(Protocol):
    """What a family of methods does for each of its methods (one driver per family).

    Attributes
    ----------
    name : str
    on_comparisons : bool
        True: the method sees win counts `W` (recorded on data; `mu(w) mu(l) P[w, l]` on the population).
        False: it sees preferences `(P, mu)` (the model on the population; `(P_hat, mu_hat)` on data).
    reward_stage : bool
        The gradient engine fits a reward model first (phase 1 lanes, before every policy lane).
    mirror_descent : bool, optional
        The family defines `--optimizer md` (its methods' own mirror-descent update); absent means False.
    exact : Exact or None
        The kind of exact answer of the family's methods that have no pairwise loss to say it (population
        ΨPO); None where each method's `PairLoss.exact` says it.
    """

    name: str
    on_comparisons: bool
    reward_stage: bool
    exact: Exact | None

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        """The exact `Solution` for each tau on one context's `inputs` (`solvers.inputs.MethodInputs`).

        `options` holds the spec's method options (missing ones take their defaults); the family ignores
        those that do not change the exact answer (early stopping, clipping of the gradient engine).
        """
        ...

    def solve_dataset(self, method: Method, flat: Any, taus: Sequence[float], options: dict[str, Any]) -> Any:
        """The exact answer on every context of a dataset at once (`methods.flat.FlatInputs` ->
        `methods.flat.FlatAnswer`): per context, what `solve_exact` gives on its win counts."""
        ...

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> tuple[Any, Any]:
        """Add the lanes one run needs to the gradient engine's `plan` (`solvers.gradient.plan.LanePlan`:
        `pair_lane`, `kl_lane`, the run's `inputs`) and return `(policy lane, extra)`: the lane whose policy
        the run reports, and what `gradient_report` needs (as `run.extra`)."""
        ...

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:
        """Apply the status rules to the run's stages through `report` (`solvers.gradient.report.StageReport`:
        `stage`, `point`, `policy`, `note`) and return the method's own objective at the reported point."""
        ...


@dataclass(frozen=True)
class Method:
    """One method, declared once in its own module.

    Attributes
    ----------
    name : str
    summary : str
        One line for `--help` and reports.
    family : Family
        Its family's driver: exact solver, inputs, gradient lanes and report.
    options : tuple of str
        Names of the method options it accepts (their values are checked by `solvers.runs.check_options`).
    defaults : tuple of (str, value) pairs
        This method's own default of an option, where it differs from the option's declared default
        (`label_smoothing` is 0.1 for cDPO and 1e-3 for EXO); `option_values` applies them.
    trl : str
        TRL's `DPOTrainer(loss_type=...)` for the same loss (`sigmoid` for DPO, `ipo` for IPO); "" if none.
    twin : str
        Pairwise losses only: the population ΨPO this method equals on the expected counts when
        `supp mu = supp pi_ref` (how to run it, and the result that says so); "" if none.
    loss : PairLoss or None
        The loss of `tau h` (for RLHF, its reward model's loss at `tau = 1`); None for population ΨPO.
    loss_of : callable `(**options) -> PairLoss`, optional
        For a loss that depends on the method's options (cDPO's `label_smoothing`): the loss at those options,
        called with every option of `options` (`option_values`). It must return the same object for the same
        options (decorate it with `functools.cache`): lanes with one loss share one kernel call.
    settings : tuple of str
        Gradient settings the exact answer depends on (Nash-MD's stationary point depends on the step:
        `lr`, `lr_schedule`, `lr_final`); both solvers pass them to the family with the options.
    """

    name: str
    summary: str
    family: Family
    options: tuple[str, ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()
    trl: str = ""
    twin: str = ""
    loss: PairLoss | None = None
    loss_of: Callable[..., PairLoss] | None = None
    settings: tuple[str, ...] = ()

    def loss_at(self, options: dict[str, Any]) -> PairLoss | None:
        """The pairwise loss at the method's `options` (missing ones take their defaults): `loss_of` applied
        to them, else `loss`."""
        if self.loss_of is None:
            return self.loss
        return self.loss_of(**self.option_values(options))

    @property
    def exact(self) -> Exact:
        """The kind of exact answer: its pairwise loss's (at the default options), else its family's."""
        loss = self.loss_at({})
        kind = loss.exact if loss is not None else self.family.exact
        assert kind is not None, f"{self.name}: neither its loss nor its family says its kind of exact answer"
        return kind

    def option_values(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every option of the method: the value `given` (a spec's options; None counts as not given), else
        the method's own default (`defaults`), else the option's declared default."""
        from psipo_cli.config.settings import setting

        own = dict(self.defaults)
        values = {}
        for name in self.options:
            value = given.get(name)
            values[name] = value if value is not None else own.get(name, setting(name).default)
        return values

    @property
    def pair_loss(self) -> PairFn | None:
        """`loss.pair_loss` (None without a pairwise loss)."""
        return None if self.loss is None else self.loss.pair_loss

    @property
    def pair_grad(self) -> PairFn | None:
        """`loss.pair_grad` (None without a pairwise loss)."""
        return None if self.loss is None else self.loss.pair_grad

    def solve_exact(self, inputs: Any, taus: Sequence[float], **options: Any) -> list[Solution]:
        """The exact solution for each tau (`Family.solve_exact`)."""
        return self.family.solve_exact(self, inputs, taus, options)
