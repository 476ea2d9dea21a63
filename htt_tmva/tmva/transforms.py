"""TMVA's input transformations: Normalize, Decorrelation, PCA, Gauss (and Uniform).

The Reader applies them in the order of ``<Transformations>``, each with the block of the
class index it was booked for; a weight file read back by TMVA books every transformation for
"all classes", which is the block with the highest class index. TMVA events hold Float_t
values, so the output of every transformation is rounded to float32, as here.
"""

from __future__ import annotations

import numpy as np

from htt_tmva.tmva._xml import Header, attr, numbers

SUPPORTED = ("Normalize", "Decorrelation", "PCA", "Gauss", "Uniform")


def _selection(element, header: Header) -> np.ndarray:
    """Indices of the variables a transformation acts on (all when no <Selection>)."""
    n_var = len(header.variables)
    selection = element.find("Selection/Input")
    if selection is None:
        return np.arange(n_var)
    by_label = {}
    for index, variable in enumerate(header.variables):
        by_label.setdefault(variable.label, index)
        by_label.setdefault(variable.expression, index)
        by_label.setdefault(variable.internal, index)
    indices = []
    for item in selection.findall("Input"):
        kind = item.get("Type", "Variable")
        label = item.get("Label") or item.get("Expression") or ""
        if kind != "Variable":
            raise header.fail(
                f"transformation '{element.get('Name')}' acts on a {kind} "
                f"('{label}'); only variables are supported"
            )
        if label not in by_label:
            raise header.fail(
                f"transformation '{element.get('Name')}' names variable '{label}' "
                "that is not among the file's variables"
            )
        indices.append(by_label[label])
    return np.asarray(indices, dtype=np.intp)


class Normalize:
    """x -> 2 (x - min) / (max - min) - 1 in float arithmetic, as VariableNormalizeTransform."""

    def __init__(self, element, header: Header):
        self.columns = _selection(element, header)
        blocks = {}
        for cls in element.findall("Class"):
            ranges = cls.findall("Ranges/Range") or cls.findall("Variables/Variable")
            lo = np.zeros(len(ranges), dtype=np.float32)
            hi = np.zeros(len(ranges), dtype=np.float32)
            for position, item in enumerate(ranges):
                index = int(item.get("Index", item.get("VarIndex", position)))
                lo[index] = attr(item, "Min", header, float)
                hi[index] = attr(item, "Max", header, float)
            blocks[int(cls.get("ClassIndex", len(blocks)))] = (lo, hi)
        if not blocks:
            raise header.fail("Normalize transformation without <Class> ranges")
        self.class_block = max(blocks)
        self.low, high = blocks[self.class_block]
        self.scale = (1.0 / (high.astype(np.float64) - self.low)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        part = x[:, self.columns]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, self.columns] = (part - self.low) * self.scale * np.float32(2) - np.float32(1)
        return out


class Decorrelation:
    """x -> C^(-1/2) x with the matrix of the last class block (VariableDecorrTransform)."""

    def __init__(self, element, header: Header):
        self.columns = _selection(element, header)
        matrices = element.findall("Matrix")
        if not matrices:
            raise header.fail("Decorrelation transformation without <Matrix>")
        last = matrices[-1]
        self.class_block = int(last.get("ClassIndex", len(matrices) - 1))
        rows = attr(last, "Rows", header, int)
        cols = attr(last, "Columns", header, int)
        values = numbers(last.text)
        if values.size != rows * cols:
            raise header.fail(
                f"Decorrelation <Matrix> holds {values.size} numbers, expected {rows}x{cols}"
            )
        self.matrix = values.reshape(rows, cols)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[:, self.columns] = x[:, self.columns].astype(np.float64) @ self.matrix.T
        return out


class PCA:
    """p_i = sum_j (x_j - mean_j) E_ji with the last class block (VariablePCATransform)."""

    def __init__(self, element, header: Header):
        self.columns = _selection(element, header)
        means, vectors = {}, {}
        for item in element.findall("Statistics"):
            means[int(item.get("ClassIndex", len(means)))] = numbers(item.text)
        for item in element.findall("Eigenvectors"):
            rows = attr(item, "NRows", header, int)
            cols = attr(item, "NCols", header, int)
            values = numbers(item.text)
            if values.size != rows * cols:
                raise header.fail("PCA <Eigenvectors> size does not match NRows x NCols")
            vectors[int(item.get("ClassIndex", len(vectors)))] = values.reshape(rows, cols)
        if not means or not vectors:
            raise header.fail("PCA transformation without <Statistics> or <Eigenvectors>")
        self.class_block = max(means)
        self.mean = means[max(means)]
        self.vectors = vectors[max(vectors)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[:, self.columns] = (x[:, self.columns].astype(np.float64) - self.mean) @ self.vectors
        return out


class _CumulativePdf:
    """TMVA::PDF of a Gauss transformation: the stored cumulative histogram, interpolated
    linearly between bin centres (TSpline1), sampled into a 10000-bin histogram at its bin
    centres (PDF::FillSplineToHist), and read back by linear interpolation between the
    centres of that fine histogram (PDF::GetVal). Bin contents are Float_t (TH1F)."""

    FINE_BINS = 10000
    EPSILON = 1.0e-12

    def __init__(self, pdf, header: Header):
        method = int(pdf.get("InterpolMethod", "1"))
        if method not in (0, 1):
            raise header.fail(
                f"Gauss transformation PDF with InterpolMethod={method}: only "
                "Spline0 (0) and Spline1 (1) are supported"
            )
        if int(pdf.get("MaxNSmooth", "0")) > 0:
            raise header.fail(
                "Gauss transformation PDF with smoothing (MaxNSmooth > 0) is not supported"
            )
        hist = pdf.find("Histogram")
        if hist is None:
            raise header.fail("Gauss transformation PDF without <Histogram>")
        n_bins = attr(hist, "NBins", header, int)
        contents = numbers(hist.text).astype(np.float32).astype(np.float64)
        if contents.size != n_bins:
            raise header.fail(
                f"Gauss histogram '{hist.get('Name')}' holds {contents.size} values, NBins={n_bins}"
            )
        if hist.get("HasEquidistantBins", "1") in ("0", "false", "False"):
            binning = pdf.find("HistogramBinning")
            edges = numbers(binning.text if binning is not None else "")
            if edges.size != n_bins + 1:
                raise header.fail(
                    f"Gauss histogram '{hist.get('Name')}' has {edges.size} "
                    f"bin edges, expected {n_bins + 1}"
                )
        else:
            lo = attr(hist, "XMin", header, float)
            hi = attr(hist, "XMax", header, float)
            edges = _fixed_edges(lo, hi, n_bins)
        self.use_histogram = method == 0
        self.edges = edges
        self.contents = contents
        if self.use_histogram:
            return
        centres = 0.5 * (edges[:-1] + edges[1:])
        self.x_min, self.x_max = edges[0], edges[-1]
        fine_centres = _fixed_centres(self.x_min, self.x_max, self.FINE_BINS)
        y = _spline1(centres, contents, fine_centres)
        low = y <= self.EPSILON
        if low.any():  # TMVA falls back on the original histogram's bin content
            y[low] = contents[np.clip(_find_bin(edges, fine_centres[low]), 1, n_bins) - 1]
        self.fine = np.maximum(y, self.EPSILON).astype(np.float32).astype(np.float64)
        self.fine_centres = fine_centres

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.use_histogram:
            n = self.contents.size
            return np.maximum(
                self.contents[np.clip(_find_bin(self.edges, x), 1, n) - 1], self.EPSILON
            )
        n = self.FINE_BINS
        width = (self.x_max - self.x_min) / n
        with np.errstate(invalid="ignore"):
            raw = np.floor(n * (x - self.x_min) / (self.x_max - self.x_min))
            bin_ = np.where(x < self.x_min, 0, np.where(x >= self.x_max, n + 1, 1 + raw))
        bin_ = np.clip(np.nan_to_num(bin_, nan=1), 1, n).astype(np.intp)
        centre = self.x_min + (bin_ - 1) * width + 0.5 * width
        up = ((x > centre) & (bin_ != n)) | (bin_ == 1)
        nxt = np.where(up, bin_ + 1, bin_ - 1)
        next_centre = self.x_min + (nxt - 1) * width + 0.5 * width
        y0 = self.fine[bin_ - 1]
        y1 = self.fine[nxt - 1]
        value = y0 + (x - centre) * (y0 - y1) / (centre - next_centre)
        return np.maximum(value, self.EPSILON)


def _fixed_edges(lo: float, hi: float, n: int) -> np.ndarray:
    width = (hi - lo) / n
    return lo + np.arange(n + 1) * width


def _fixed_centres(lo: float, hi: float, n: int) -> np.ndarray:
    """TAxis::GetBinCenter for fixed bins: xmin + (bin-1) w + w/2."""
    width = (hi - lo) / n
    return lo + np.arange(n) * width + 0.5 * width


def _find_bin(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """TAxis::FindBin for variable bins: 0 underflow, n+1 overflow."""
    return np.searchsorted(edges, x, side="right")


def _spline1(xs: np.ndarray, ys: np.ndarray, x: np.ndarray) -> np.ndarray:
    """TMVA::TSpline1::Eval: linear interpolation between graph points, extrapolated."""
    n = xs.size
    ibin = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, n - 1)
    up = ((x > xs[ibin]) & (ibin != n - 1)) | (ibin == 0)
    nxt = np.where(up, ibin + 1, ibin - 1)
    dx = xs[ibin] - xs[nxt]
    dy = ys[ibin] - ys[nxt]
    return ys[ibin] + (x - xs[ibin]) * dy / dx


class Gauss:
    """VariableGaussTransform: cumulative PDF, clamped to [1e-9, 1-1e-9], then
    sqrt(2) erfinv(2c-1) with the argument clipped to +-0.99999999 (or the cumulant itself
    for the Uniform/"Flat" variant)."""

    def __init__(self, element, header: Header):
        self.columns = _selection(element, header)
        self.flat = element.get("FlatOrGauss", "Gauss") == "Flat"
        self.pdfs = []
        self.class_blocks = []
        variables = element.findall("Variable")
        variables.sort(key=lambda v: int(v.get("VarIndex", "0")))
        for variable in variables:
            blocks = {}
            for child in variable:
                if child.tag.startswith("CumulativePDF_cls"):
                    blocks[int(child.tag[len("CumulativePDF_cls") :])] = child
            if not blocks:
                raise header.fail("Gauss transformation variable without CumulativePDF")
            self.class_blocks.append(max(blocks))
            pdf = blocks[max(blocks)].find("PDF")
            if pdf is None:
                raise header.fail("Gauss transformation CumulativePDF without <PDF>")
            self.pdfs.append(_CumulativePdf(pdf, header))
        if len(self.pdfs) != len(self.columns):
            raise header.fail(
                f"Gauss transformation has {len(self.pdfs)} variables, its "
                f"selection {len(self.columns)}"
            )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        for pdf, column in zip(self.pdfs, self.columns):
            cumulant = pdf(x[:, column].astype(np.float64))
            cumulant = np.clip(cumulant, 0.0 + 10e-10, 1.0 - 10e-10)
            if self.flat:
                out[:, column] = cumulant
            else:
                arg = np.clip(2.0 * cumulant - 1.0, -0.99999999, 0.99999999)
                out[:, column] = 1.414213562 * erfinv(arg)
        return out


def erfinv(y: np.ndarray) -> np.ndarray:
    """The inverse error function (TMath::ErfInverse) to double precision: scipy's when it is
    installed, else Giles' approximation refined by Newton steps on math.erf."""
    try:
        from scipy.special import erfinv as scipy_erfinv
    except ImportError:
        pass
    else:
        return scipy_erfinv(y)
    import math

    y = np.asarray(y, dtype=np.float64)
    w = -np.log((1.0 - y) * (1.0 + y))
    central = w < 5.0
    wc, wt = w - 2.5, np.sqrt(np.maximum(w, 5.0)) - 3.0
    pc = np.polyval(ERFINV_CENTRAL, wc)
    pt = np.polyval(ERFINV_TAIL, wt)
    x = np.where(central, pc, pt) * y
    erf = np.frompyfunc(math.erf, 1, 1)
    for _ in range(2):  # Newton: d erf / dx = 2/sqrt(pi) exp(-x^2)
        x = x - (erf(x).astype(np.float64) - y) / (2.0 / math.sqrt(math.pi) * np.exp(-x * x))
    return x


#: Giles' approximation of erfinv (central w < 5 and tail), highest power first; shared by
#: the numpy fallback here and the ONNX export (both refine it by Newton steps)
ERFINV_CENTRAL = (
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
)
ERFINV_TAIL = (
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
)


_KINDS = {
    "Normalize": Normalize,
    "Decorrelation": Decorrelation,
    "PCA": PCA,
    "Gauss": Gauss,
    "Uniform": Gauss,
}


def read_transformations(header: Header) -> list:
    """The transformation chain of a weight file, in TMVA's order of application."""
    section = header.transformations
    if section is None:
        return []
    chain = []
    for element in section.findall("Transform"):
        name = element.get("Name", "")
        if name == "None":
            continue
        if name not in _KINDS:
            raise header.fail(
                f"unknown variable transformation '{name}'; supported: " + ", ".join(SUPPORTED)
            )
        chain.append(_KINDS[name](element, header))
    return chain


def apply_chain(chain: list, x: np.ndarray) -> np.ndarray:
    """Apply the transformations in turn; values stay float32 as in TMVA's events."""
    for transform in chain:
        x = np.asarray(transform(x), dtype=np.float32)
    return x
