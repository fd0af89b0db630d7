"""Searched values in space files: a constant, ``{low, high[, log, step]}`` or ``{choices: [...]}``."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Union

from pydantic import AfterValidator, AllowInfNan, BaseModel, ConfigDict, Discriminator, Strict, Tag, model_validator


class StrictSection(BaseModel):
    """A part of a space file: unknown keys refused; strict, so that YAML's `true` is not the
    int 1 nor 'yes' a boolean; no nan or inf (a learning rate of nan passes every bound
    check, then fails each trial)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class IntRange(StrictSection):
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> "IntRange":
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} > high {self.high}")
        if self.log and self.low < 1:
            raise ValueError("a log range needs low >= 1")
        if self.step < 1:
            raise ValueError(f"step must be at least 1, got {self.step}")
        if self.log and self.step != 1:
            raise ValueError("a log range cannot have a step")
        _check_step(self.low, self.high, self.step)
        return self


class FloatRange(StrictSection):
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> "FloatRange":
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.step is not None:
            if self.step <= 0:
                raise ValueError(f"step must be more than 0, got {self.step:g}")
            if self.log:
                raise ValueError("a log range cannot have a step")
            _check_step(self.low, self.high, self.step)
        return self


def _check_step(low: float, high: float, step: float) -> None:
    """Refuse a step that does not divide high - low: Optuna would only warn and shrink the
    range (a step of 2 over [0.001, 0.01] left the constant 0.001). Decimal, as Optuna checks."""
    if (Decimal(str(high)) - Decimal(str(low))) % Decimal(str(step)) != 0:
        larger = " is larger than" if step > high - low else " does not divide"
        raise ValueError(f"step {step:g}{larger} the range {low:g} to {high:g} (high - low must be a multiple of step)")


class IntChoice(StrictSection):
    choices: list[int]

    @model_validator(mode="after")
    def _check(self) -> "IntChoice":
        if not self.choices:
            raise ValueError("empty choices")
        return self


class FloatChoice(StrictSection):
    choices: list[float]

    @model_validator(mode="after")
    def _check(self) -> "FloatChoice":
        if not self.choices:
            raise ValueError("empty choices")
        return self


class StrChoice(StrictSection):
    choices: list[str]

    @model_validator(mode="after")
    def _check(self) -> "StrChoice":
        if not self.choices:
            raise ValueError("empty choices")
        return self


class BoolChoice(StrictSection):
    choices: list[bool]

    @model_validator(mode="after")
    def _check(self) -> "BoolChoice":
        if not self.choices:
            raise ValueError("empty choices")
        return self


def _shape(value: Any) -> str:
    """Which form a value takes, so that errors speak of that form only."""
    if isinstance(value, dict):
        return "choice" if "choices" in value else "range"
    if isinstance(value, BaseModel):
        return "choice" if hasattr(value, "choices") else "range"
    return "constant"


def _param(constant: type, range_model: type | None, choice_model: type) -> Any:
    members = [Annotated[constant, Tag("constant")], Annotated[choice_model, Tag("choice")]]
    if range_model is not None:
        members.append(Annotated[range_model, Tag("range")])
    return Annotated[Union[tuple(members)], Discriminator(_shape)]


# constants strict as the models are (a family's own model is not): no bool for an int, no nan
IntParam = _param(Annotated[int, Strict()], IntRange, IntChoice)
FloatParam = _param(Annotated[float, Strict(), AllowInfNan(False)], FloatRange, FloatChoice)
StrParam = _param(Annotated[str, Strict()], None, StrChoice)
BoolParam = _param(Annotated[bool, Strict()], None, BoolChoice)


def extremes(param: Any) -> list[Any]:
    """The values that decide whether every value ``param`` can take is in bounds: a
    range's ends, every choice, or the constant."""
    if isinstance(param, (IntRange, FloatRange)):
        return [param.low, param.high]
    if isinstance(param, (IntChoice, FloatChoice)):
        return list(param.choices)
    return [param]


def _within(
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    maximum: float | None = None,
) -> AfterValidator:
    """A check, at load time, that every value a numeric parameter can take is in bounds:
    a width of 0 or a negative learning rate would otherwise train (or fail) trial after trial."""

    def check(param: Any) -> Any:
        for value in extremes(param):
            if minimum is not None and value < minimum:
                raise ValueError(f"must be at least {minimum:g}, got {value:g}")
            if above is not None and value <= above:
                raise ValueError(f"must be more than {above:g}, got {value:g}")
            if below is not None and value >= below:
                raise ValueError(f"must be less than {below:g}, got {value:g}")
            if maximum is not None and value > maximum:
                raise ValueError(f"must be at most {maximum:g}, got {value:g}")
        return param

    return AfterValidator(check)


# numeric parameters with bounds every value must keep (see _within)
Count = Annotated[IntParam, _within(minimum=1)]  # widths, experts, epochs, batch sizes, depths that need a layer
NonNegativeInt = Annotated[IntParam, _within(minimum=0)]  # depths where 0 means "none"
PositiveFloat = Annotated[FloatParam, _within(above=0)]  # learning rates
NonNegativeFloat = Annotated[FloatParam, _within(minimum=0)]  # weight decay, penalty weights
Probability = Annotated[FloatParam, _within(minimum=0, below=1)]  # dropout
Share = Annotated[FloatParam, _within(minimum=0, maximum=1)]  # mixing weights such as alpha_self
PositiveFloatRange = Annotated[FloatRange, _within(above=0)]  # static loss weights: a negative one trains by ascent
# members of a deep ensemble, up to architectures/ensemble.py's MAX_MEMBERS
EnsembleSize = Annotated[IntParam, _within(minimum=1, maximum=64)]


def one_of(allowed: Any, what: str) -> AfterValidator:
    """A check, at load time, that a string parameter (the constant or every choice) names one
    of ``allowed``: a bad name would otherwise fail only the trials that draw it."""

    def check(param: Any) -> Any:
        for name in getattr(param, "choices", [param]):
            if name not in allowed:
                raise ValueError(f"{name!r} is not {what} (expected one of {', '.join(allowed)})")
        return param

    return AfterValidator(check)


def suggest(trial: Any, name: str, param: Any) -> Any:
    """The value of ``param`` for this trial (constants are returned as they are)."""
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    if isinstance(param, FloatRange):
        return trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, (IntChoice, FloatChoice, StrChoice, BoolChoice)):
        if len(param.choices) == 1:
            return param.choices[0]
        return trial.suggest_categorical(name, list(param.choices))
    return param
