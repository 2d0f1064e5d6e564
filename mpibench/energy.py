"""The energy and carbon estimate of what a project's splits used: the model of Green
Algorithms (Lannelongue, Grealey and Inouye, Advanced Science 2021), energy = (CPU
core-hours x watts per core + memory GB-hours x watts per GB + GPU-hours x watts per
GPU) x PUE, carbon = energy x the electricity's carbon intensity. Every number is a
parameter; the defaults are typical values, not any site's. (Light: the command line
builds its flags from it without loading numpy.)"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, fields

from .constraints import Rule, check, is_number, number


@dataclass(frozen=True)
class EnergyModel:
    """Parameters of the energy estimate.

    Attributes
    ----------
    watts_per_core : float, default=10.0
        Power of one busy core: its CPU's TDP over its cores (5-20 W for server
        CPUs).
    watts_per_gb : float, default=0.3725
        Power of memory per GB (Green Algorithms' value).
    watts_per_gpu : float, default=300.0
        Power of one GPU in use (its TDP: 250-700 W for data-centre GPUs).
    pue : float, default=1.67
        The data centre's power usage effectiveness (Green Algorithms' default, a
        world average).
    grams_co2_per_kwh : float, default=475.0
        Carbon intensity of the electricity (a world average; 20-800 by country).

    Examples
    --------
    >>> EnergyModel(pue=0.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mpibench.errors.MpibenchError: The 'pue' parameter of EnergyModel must be a ratio >= 1...
    """

    watts_per_core: float = 10.0
    watts_per_gb: float = 0.3725
    watts_per_gpu: float = 300.0
    pue: float = 1.67
    grams_co2_per_kwh: float = 475.0
    spelling: InitVar[str] = "python"

    def __post_init__(self, spelling: str) -> None:
        check("EnergyModel", {f.name: getattr(self, f.name) for f in fields(self)},
              ENERGY_RULES, spelling)

    def kwh(self, core_hours: float, gb_hours: float, gpu_hours: float) -> float:
        """Energy in kWh of that much use."""
        watt_hours = (core_hours * self.watts_per_core + gb_hours * self.watts_per_gb
                      + gpu_hours * self.watts_per_gpu)
        return watt_hours * self.pue / 1000.0

    def describe(self) -> str:
        """The model and its numbers, in one sentence."""
        return (f"(core-hours x {self.watts_per_core:g} W + GB-hours of peak memory x "
                f"{self.watts_per_gb:g} W + GPU-hours x {self.watts_per_gpu:g} W) x PUE "
                f"{self.pue:g}; {self.grams_co2_per_kwh:g} g CO2e per kWh (Green "
                "Algorithms' model; set these to your site's values)")


ENERGY_RULES: dict[str, Rule] = {
    "watts_per_core": number(0, unit="watts"), "watts_per_gb": number(0, unit="watts"),
    "watts_per_gpu": number(0, unit="watts"),
    "pue": Rule(lambda v: is_number(v) and v >= 1, "a ratio >= 1 (1.0: no overhead)"),
    "grams_co2_per_kwh": number(0, unit="grams"),
}


