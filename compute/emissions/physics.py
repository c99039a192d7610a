"""Road-load power and the Willans-line fuel model shared by tiers T2 and T3.

Wheel power follows the MOVES road-load form with the rolling term proportional to mass::

    P [kW] = r * m * v + B * v^2 + C * v^3 + m * (f_rot * a + g * sin(theta)) * v

with m in tonnes, v in m/s, a in m/s^2, r the rolling coefficient in kW per (m/s) per tonne and
theta the road angle from the grade. Fuel per interval is::

    fuel = idle_rate * dt + k * (max(P, 0) - regen_share * max(-P, 0)) * dt

``k`` (fuel units per kJ of wheel work) is fitted per vehicle so that the model reproduces the
catalog fuel economy on the vehicle's certification cycle (``solve_fuel_per_kj``).
"""

from __future__ import annotations

import numpy as np

GRAVITY_M_S2 = 9.81


def wheel_power_kw(
    speed_m_s: np.ndarray,
    accel_m_s2: np.ndarray,
    grade_pct: np.ndarray | float,
    mass_kg: np.ndarray | float,
    rolling_kw_s_per_m_per_t: np.ndarray | float,
    road_load_b_kw_s2_per_m2: np.ndarray | float,
    aero_kw_s3_per_m3: np.ndarray | float,
    inertia_factor: np.ndarray | float,
    positive_inertia_scale: np.ndarray | float = 1.0,
    inertia_speed_m_s: np.ndarray | None = None,
) -> np.ndarray:
    """Compute the power at the wheels (kW) of each interval; arguments broadcast together.

    ``positive_inertia_scale`` multiplies only the positive part of the inertia term; tier T3
    uses it to restore the acceleration work that sparse vertices smooth away.
    ``inertia_speed_m_s`` replaces the speed in the inertia term (default: ``speed_m_s``).
    """
    mass_t = np.asarray(mass_kg, dtype="float64") / 1000.0
    speed = np.asarray(speed_m_s, dtype="float64")
    slope = np.asarray(grade_pct, dtype="float64") / 100.0
    sin_theta = slope / np.sqrt(1.0 + slope * slope)

    inertia_speed = speed if inertia_speed_m_s is None else np.asarray(inertia_speed_m_s, dtype="float64")
    inertia = mass_t * inertia_factor * accel_m_s2 * inertia_speed
    inertia = np.where(inertia > 0, inertia * positive_inertia_scale, inertia)
    resistance = rolling_kw_s_per_m_per_t * mass_t * speed + road_load_b_kw_s2_per_m2 * speed**2 + aero_kw_s3_per_m3 * speed**3
    climbing = mass_t * GRAVITY_M_S2 * sin_theta * speed
    return resistance + inertia + climbing


def effective_work_kj(power_kw: np.ndarray, duration_s: np.ndarray, regen_share: np.ndarray | float) -> np.ndarray:
    """Compute wheel work (kJ) the energy source supplies, net of recovered braking work."""
    positive = np.maximum(power_kw, 0.0)
    negative = np.maximum(-power_kw, 0.0)
    return (positive - regen_share * negative) * duration_s


def solve_fuel_per_kj(
    target_fuel_per_km: np.ndarray,
    idle_rate_per_s: np.ndarray,
    time_s_per_km: np.ndarray,
    work_kj_per_km: np.ndarray,
    min_variable_share: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``k`` so that the cycle fuel per km equals the target; vectorised over vehicles.

    The idle intercept is kept from the ECCJ table, as the calibration procedure requires. When
    the idle part alone reaches the target (a very efficient catalog value with a high idle
    rate), ``k`` is set so that the variable part is ``min_variable_share`` of the target and the
    vehicle is reported as clamped.

    Returns
    -------
    fuel_per_kj, clamped
    """
    variable = target_fuel_per_km - idle_rate_per_s * time_s_per_km
    floor = min_variable_share * target_fuel_per_km
    clamped = variable < floor
    with np.errstate(divide="ignore", invalid="ignore"):
        fuel_per_kj = np.where(clamped, floor, variable) / work_kj_per_km
    return fuel_per_kj, clamped
