"""Image-quality figures people already know, as pure functions of `[H, W, 3] uint8 RGB` arrays.

Paired (an output against the input it was made from):
- `psnr`, `ssim`: scikit-image's definitions on RGB with data range 255 (SSIM: 7x7 uniform window,
  channel_axis=-1, scikit-image's defaults), so figures compare with every paper that uses them.
- `ms_ssim`: torchmetrics' multi-scale SSIM on RGB in [0, 1] (the reference-based colorization protocol,
  FACTS 7b), defined for images of at least 161 px on the short side (five scales, 11x11 Gaussian window).
- `edge_corr`: how well an output keeps the input's edges. Pearson correlation of the Sobel gradient
  magnitudes of the two grayscale images, at a common size (1 = the same edges with any contrast or
  colour; 0 = unrelated). Stylization flattens regions and recolours but keeps outlines, so this stays
  high for a good stylizer while PSNR and SSIM fall; a blur or a structure change lowers it.
- `color_shift`: mean CIEDE2000 colour difference in CIELAB (scikit-image's `deltaE_ciede2000`), after a
  5x5 Gaussian blur of both so that texture and edge detail count less than the overall colour. About 2
  is barely visible; above 10 is a clear colour cast.

Unpaired (a set of outputs against a style set):
- `color_histogram`: a normalized 8x8x8 RGB histogram; `histogram_distance` is the Bhattacharyya distance
  (OpenCV's `HISTCMP_BHATTACHARYYA`, 0 = same palette, 1 = disjoint).
"""

from __future__ import annotations

import cv2
import numpy as np

#: sides smaller than this cannot be measured with 5-scale MS-SSIM (11-px window after 4 halvings)
MS_SSIM_MIN_SIDE = 161
HIST_BINS = 8


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}")


def psnr(reference: np.ndarray, output: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    from skimage.metrics import peak_signal_noise_ratio

    _check_pair(reference, output)
    if np.array_equal(reference, output):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, output, data_range=255))


SSIM_WINDOW = 11  # Wang et al. (2004): an 11x11 Gaussian window of sigma 1.5, population covariances
SSIM_SIGMA = 1.5


def ssim(reference: np.ndarray, output: np.ndarray) -> float:
    """Structural similarity on RGB (mean over channels) in Wang et al.'s form, the one torchmetrics and MS-SSIM
    use: 11x11 Gaussian window of sigma 1.5, population (not sample) covariances, data range 255. Images under
    11 px a side use the largest odd window that fits."""
    from skimage.metrics import structural_similarity

    _check_pair(reference, output)
    side = min(reference.shape[:2])
    win = SSIM_WINDOW if side >= SSIM_WINDOW else max(3, side if side % 2 else side - 1)
    return float(structural_similarity(reference, output, data_range=255, channel_axis=-1, gaussian_weights=True,
                                       sigma=SSIM_SIGMA, use_sample_covariance=False, win_size=win))


def ms_ssim(reference: np.ndarray, output: np.ndarray) -> float | None:
    """Multi-scale SSIM (torchmetrics, RGB in [0, 1]); None when the image is too small for five scales."""
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as msssim

    _check_pair(reference, output)
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    # float32, not float64: the 11x11 Gaussian convolutions then run on oneDNN, 18-23x faster on the CPU (1.5 s ->
    # 0.08 s for a 512x341 pair), and the figure moves by about 5e-6 (docs/benchmarks.md, nineteenth session).
    a = torch.from_numpy(np.array(reference)).permute(2, 0, 1)[None].float() / 255  # [1, 3, H, W] in [0, 1]
    b = torch.from_numpy(np.array(output)).permute(2, 0, 1)[None].float() / 255
    return float(msssim(b, a, data_range=1.0))


def _gradient_magnitude(rgb: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def edge_corr(reference: np.ndarray, output: np.ndarray) -> float:
    """Correlation of the Sobel gradient magnitudes of the two images (grayscale); in [-1, 1]."""
    _check_pair(reference, output)
    a = _gradient_magnitude(reference).ravel().astype(np.float64)
    b = _gradient_magnitude(output).ravel().astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    if denom == 0:  # one of them has no edges at all: nothing of the input's structure is kept
        return 1.0 if np.array_equal(reference, output) else 0.0
    return float((a * b).sum() / denom)


def color_shift(reference: np.ndarray, output: np.ndarray) -> float:
    """Mean CIEDE2000 difference between the two images after a 5x5 Gaussian blur of each."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    _check_pair(reference, output)
    blur = [cv2.GaussianBlur(x, (5, 5), 0) for x in (reference, output)]
    lab = [rgb2lab(x) for x in blur]
    return float(deltaE_ciede2000(lab[0], lab[1]).mean())


def color_histogram(rgb: np.ndarray) -> np.ndarray:
    """Normalized `HIST_BINS`^3 RGB histogram (float32, sums to 1)."""
    hist = cv2.calcHist([np.ascontiguousarray(rgb)], [0, 1, 2], None, [HIST_BINS] * 3, [0, 256] * 3)
    return (hist / max(1.0, float(hist.sum()))).astype(np.float32)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance between two normalized histograms: 0 same palette, 1 disjoint."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


PAIRED_METRICS = {"psnr": psnr, "ssim": ssim, "edge_corr": edge_corr, "color_shift": color_shift}
