"""The canvas a lesion is painted on, in its own frame (shared by every capture of the lesion), and the pigments.

Pigments are Beer-Lambert transmittances (``T_*``, absorbing layers) and scattering colours (``C_*``,
layers that hide what is under them).
"""

from __future__ import annotations

import math

import numpy as np

from dermascan.data.synthetic.draw import Layer, smooth_noise, smoothstep

# Transmittance (what fraction of each channel a full layer lets through) of pigments, as in a
# Beer-Lambert absorption model: melanin absorbs blue most, haemoglobin green and blue.
T_LIGHT_BROWN = np.array([0.80, 0.60, 0.42], dtype=np.float32)
T_DARK_BROWN = np.array([0.42, 0.25, 0.15], dtype=np.float32)
T_BLACK = np.array([0.14, 0.11, 0.11], dtype=np.float32)
T_RED = np.array([0.88, 0.32, 0.38], dtype=np.float32)
T_PURPLE = np.array([0.50, 0.16, 0.38], dtype=np.float32)
T_DARK_RED = np.array([0.32, 0.07, 0.12], dtype=np.float32)
T_PINK = np.array([0.97, 0.72, 0.76], dtype=np.float32)
T_CRUST = np.array([0.50, 0.22, 0.12], dtype=np.float32)
T_WAXY = np.array([0.76, 0.61, 0.48], dtype=np.float32)
# Scattering colours (layers that hide what is under them): dermal melanin seen through collagen
# looks blue-grey (Tyndall effect), fibrosis looks white.
C_BLUE_GREY = np.array([0.42, 0.47, 0.58], dtype=np.float32)
C_VEIL = np.array([0.60, 0.65, 0.76], dtype=np.float32)
C_WHITE = np.array([0.95, 0.92, 0.91], dtype=np.float32)
C_SCALE = np.array([0.96, 0.93, 0.80], dtype=np.float32)
C_MILIA = np.array([0.97, 0.95, 0.84], dtype=np.float32)
C_TRANSLUCENT = np.array([0.94, 0.80, 0.80], dtype=np.float32)


class Canvas:
    """A lesion drawn in its own frame: ``out = skin * mul + add`` per pixel, built in paint order.

    Absorbing layers multiply both terms; scattering layers are composited over both. The d-field
    (normalised distance to the border: < 1 inside) becomes the segmentation mask.
    """

    def __init__(self, rng: np.random.Generator, radius_px: float, ppm: float, half: int) -> None:
        self.rng = rng
        self.ppm = ppm  # pixels per millimetre
        self.radius = radius_px
        self.side = 2 * half + 1
        self.half = half
        coords = np.arange(-half, half + 1, dtype=np.float32)
        self.x = coords[None, :].repeat(self.side, 0)
        self.y = coords[:, None].repeat(self.side, 1)
        self.mul = np.ones((self.side, self.side, 3), dtype=np.float32)
        self.add = np.zeros((self.side, self.side, 3), dtype=np.float32)
        self.d = np.full((self.side, self.side), 10.0, dtype=np.float32)
        self.alpha = np.zeros((self.side, self.side), dtype=np.float32)  # soft lesion coverage, 0..1
        self.softness = 0.1

    # -- geometry --------------------------------------------------------------------------------

    def shape(self, elongation: float, low: float, high: float, lumpy: float, softness: float) -> None:
        """Set the outline: an ellipse with random Fourier harmonics on its radius plus lumpy 2-D noise.

        Args:
            elongation: axis ratio (>= 1); asymmetry of shape.
            low: amplitude of harmonics 1-3 (lopsided outlines); asymmetry.
            high: amplitude of harmonics 4-16 (notched, scalloped borders); border irregularity.
            lumpy: amplitude of smooth 2-D noise on the distance field (non star-shaped borders).
            softness: width of the edge fade, in units of the radius (0.03 sharp ... 0.3 fuzzy).
        """
        rng = self.rng
        theta_table = np.linspace(0.0, 2.0 * np.pi, 720, endpoint=False)
        radius = np.ones_like(theta_table)
        for k in range(1, 17):
            amp = low / k if k <= 3 else high * 4.0 / k
            radius += amp * rng.normal(0.0, 1.0) * np.cos(k * theta_table + rng.uniform(0, 2 * np.pi))
        radius = np.clip(radius, 0.45, None)
        radius /= np.sqrt(np.mean(radius**2))  # keep the area (and so the diameter) as drawn
        sq = math.sqrt(elongation)
        axis_angle = rng.uniform(0, np.pi)
        ca, sa = math.cos(axis_angle), math.sin(axis_angle)
        u = (self.x * ca + self.y * sa) / sq
        v = (-self.x * sa + self.y * ca) * sq
        rho = np.hypot(u, v)
        idx = ((np.arctan2(v, u) + np.pi) * (720 / (2 * np.pi))).astype(np.int32) % 720
        d = rho / (self.radius * radius[idx].astype(np.float32))
        d += lumpy * smooth_noise(rng, self.side, self.side, self.radius * 0.45)
        self.d = d.astype(np.float32)
        self.softness = softness
        self.alpha = smoothstep(1.0 + softness * 0.5, 1.0 - softness, self.d)

    def noise(self, cell_mm: float) -> np.ndarray:
        """Smooth noise over the canvas with blobs ``cell_mm`` wide."""
        return smooth_noise(self.rng, self.side, self.side, cell_mm * self.ppm)

    def region(
        self,
        coverage: float,
        cell_mm: float,
        centre: tuple[float, float] | None = None,
        spread: float = 0.6,
        edge: float = 0.7,
    ) -> np.ndarray:
        """A soft random patch inside the lesion covering about ``coverage`` of it.

        Args:
            coverage: rough share of the lesion covered.
            cell_mm: size of the patch's lobes.
            centre: optional focus (in radius units) the patch prefers, for eccentric structures.
            spread: how far from ``centre`` the patch reaches (radius units).
            edge: softness of the patch border in noise units.
        """
        n = self.noise(cell_mm)
        if centre is not None:
            dist = np.hypot(self.x / self.radius - centre[0], self.y / self.radius - centre[1])
            n = n - 2.0 * np.square(dist / spread) + 1.0
        thr = float(np.quantile(n[self.d < 1.0], 1.0 - coverage)) if np.any(self.d < 1.0) else 0.0
        return smoothstep(thr - edge, thr + edge, n) * self.alpha

    def points_inside(self, count: int, dmin: float = 0.0, dmax: float = 0.9) -> np.ndarray:
        """``count`` random canvas points (x, y) with normalised border distance in [dmin, dmax]."""
        inside = np.flatnonzero(((self.d >= dmin) & (self.d <= dmax)).ravel())
        if inside.size == 0 or count <= 0:
            return np.zeros((0, 2))
        pick = self.rng.choice(inside, size=count)
        jitter = self.rng.uniform(-0.5, 0.5, size=(count, 2))
        return np.stack([pick % self.side, pick // self.side], axis=1) + jitter

    def layer(self) -> Layer:
        """An empty rasterisation layer the size of the canvas."""
        return Layer(self.side, self.side)

    # -- paint -----------------------------------------------------------------------------------

    def absorb(self, weight: np.ndarray | float, transmittance: np.ndarray) -> None:
        """Add an absorbing pigment layer; ``weight`` 1 lets ``transmittance`` through, 2 its square."""
        w = np.asarray(weight, dtype=np.float32)
        factor = np.exp(w[..., None] * np.log(transmittance))  # (H, W, 3)
        self.mul *= factor
        self.add *= factor

    def scatter(self, weight: np.ndarray | float, colour: np.ndarray) -> None:
        """Composite an opaque-ish layer of ``colour`` with opacity ``weight`` over what is there."""
        w = np.clip(np.asarray(weight, dtype=np.float32), 0.0, 1.0)[..., None]
        self.mul *= 1.0 - w
        self.add *= 1.0 - w
        self.add += w * colour

    def pixels(self, mm: float) -> float:
        """Millimetres to canvas pixels."""
        return mm * self.ppm
