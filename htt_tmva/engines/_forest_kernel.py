"""A compiled kernel for BDT forests: the system's C++ compiler, else ROOT's interpreter.

Events are taken in blocks of 256, transposed (one row per variable), and every tree is applied
to the whole block before the next one, its leaf value added to the event's sum in tree order,
the order in which TMVA sums (a double per event and output, also transposed). A complete
(padded) tree of depth <= 4 is applied with contiguous loads only: every node is compared on
its own row of the block, the events' paths are picked from those comparisons and the leaf
value from the tree's leaves held in registers (AVX-512 masks and permutations, or portable
vector selects with AVX2). Deeper trees are walked: every event descends one level per step
through an indirect load.

The library is built once per machine with ``$CXX``/``c++`` at ``-O3 -march=native`` and
cached by content and CPU in the cache folder of :mod:`htt_tmva.export.compile`; it is
called through ctypes (ROOT is not needed). Without a compiler, ROOT's interpreter compiles
the same source (once per process; it walks every tree, slower). Without either, or with
``HTT_TMVA_NO_JIT=1``, the numpy traversal of :mod:`htt_tmva.engines.forest` does the work; all give
the same sums.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <cstring>
#include <vector>
#if defined(__AVX512F__) && !defined(HTT_FOREST_NO_AVX512)
#include <immintrin.h>
#define HTT_FOREST_AVX512 1
#endif
#if (defined(__AVX2__) || defined(HTT_FOREST_AVX512)) && !defined(__CLING__)
#define HTT_FOREST_SELECT 1
#endif
#ifndef HTT_FOREST_SELECT_DEPTH
#define HTT_FOREST_SELECT_DEPTH 4  // deeper trees are walked (measured on AVX2 and AVX-512)
#endif
namespace htt_tmva_forest {
const long B = 256;  // events per block

// Walk: every event descends one level per step through an indirect load (a gather).
// Right when x >= cut (cType=0 daughters are swapped beforehand); NaN goes left.
#if defined(__GNUC__) && !defined(__clang__)
// a scalar loop: vector gathers are slower than scalar loads on some CPUs (AMD Zen 4)
__attribute__((optimize("no-tree-vectorize"), noinline))
#endif
void descend(const float* xt, long m, const int* f, const float* c, int* idx)
{
#if defined(__clang__) && !defined(__CLING__)
#pragma clang loop vectorize(disable)
#endif
   for (long i = 0; i < m; ++i) {
      const int k = idx[i];
      idx[i] = 2 * k + 1 + (xt[f[k] * B + i] >= c[k]);
   }
}

template <int D>
void walk_tree(const float* xt, long m, int depth, const int* f, const float* c,
               const double* l, double* a)
{
   const int d_ = D > 0 ? D : depth;
   const int ninner = (1 << d_) - 1;
   int idx[B];
   const float* root = xt + (long)f[0] * B;
   const float c0 = c[0];
   for (long i = 0; i < m; ++i) idx[i] = 1 + (root[i] >= c0);
   for (int d = 1; d < d_; ++d) descend(xt, m, f, c, idx);
   for (long i = 0; i < m; ++i) a[i] += l[idx[i] - ninner];
}

#ifdef HTT_FOREST_AVX512
// Select, AVX-512 (depth <= 4): 16 events at a time; every node compared on its own contiguous
// row of the block (a bit mask per node, _CMP_GE_OQ: false for NaN as x >= cut is), the
// events' path bits picked from those masks, the leaf value by a permutation of the leaves.
template <int D>
void select_tree(const float* xt, long m, int, const int* f, const float* c, const double* l,
                 double* a)
{
   constexpr int NI = (1 << D) - 1, NL = 1 << D;
   const float* rows[NI];
   __m512 cuts[NI];
   for (int j = 0; j < NI; ++j) {
      rows[j] = xt + (long)f[j] * B;
      cuts[j] = _mm512_set1_ps(c[j]);
   }
   double low[8], high[8];
   for (int j = 0; j < 8; ++j) {
      low[j] = l[j % NL];
      high[j] = l[(8 + j) % NL];
   }
   const __m512d table_low = _mm512_loadu_pd(low), table_high = _mm512_loadu_pd(high);
   for (long i = 0; i < m; i += 16) {
      unsigned cond[NI];
#pragma GCC unroll 16
      for (int j = 0; j < NI; ++j)
         cond[j] = _mm512_cmp_ps_mask(_mm512_loadu_ps(rows[j] + i), cuts[j], _CMP_GE_OQ);
      unsigned at[NL];  // at[j]: the events at node j of the current level
      at[0] = 0xFFFF;
      __m512i index_low = _mm512_setzero_si512(), index_high = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int d = 0; d < D; ++d) {
         const int first = (1 << d) - 1;
         unsigned right = 0;
#pragma GCC unroll 16
         for (int j = 0; j < (1 << d); ++j) right |= at[j] & cond[first + j];
#pragma GCC unroll 16
         for (int j = (1 << d) - 1; j >= 0; --j) {
            at[2 * j + 1] = at[j] & right;
            at[2 * j] = at[j] & ~right;
         }
         const __m512i bit = _mm512_set1_epi64(1 << (D - 1 - d));
         index_low = _mm512_mask_add_epi64(index_low, (__mmask8)right, index_low, bit);
         index_high = _mm512_mask_add_epi64(index_high, (__mmask8)(right >> 8), index_high, bit);
      }
      __m512d value_low, value_high;
      if (NL <= 8) {
         value_low = _mm512_permutexvar_pd(index_low, table_low);
         value_high = _mm512_permutexvar_pd(index_high, table_low);
      } else {
         value_low = _mm512_permutex2var_pd(table_low, index_low, table_high);
         value_high = _mm512_permutex2var_pd(table_low, index_high, table_high);
      }
      _mm512_storeu_pd(a + i, _mm512_add_pd(_mm512_loadu_pd(a + i), value_low));
      _mm512_storeu_pd(a + i + 8, _mm512_add_pd(_mm512_loadu_pd(a + i + 8), value_high));
   }
}
const char* variant = "select (AVX-512) up to depth 4, walk deeper";
#elif defined(HTT_FOREST_SELECT)
// Select, portable vector code (depth <= 4): 4 events at a time; every node compared on its
// own contiguous row of the block, the events' paths picked by selects, then the leaf value.
const int W = 4;  // a vector of W doubles fills an AVX2 register
typedef float vf __attribute__((vector_size(4 * W)));
typedef int vi __attribute__((vector_size(4 * W)));
typedef double vd __attribute__((vector_size(8 * W)));
typedef long long vl __attribute__((vector_size(8 * W)));

template <int D>
void select_tree(const float* xt, long m, int, const int* f, const float* c, const double* l,
                 double* a)
{
   constexpr int NI = (1 << D) - 1, NL = 1 << D;
   const float* rows[NI];
   for (int j = 0; j < NI; ++j) rows[j] = xt + (long)f[j] * B;
   for (long i = 0; i < m; i += W) {
      vi cond[NI];
      for (int j = 0; j < NI; ++j) {
         vf x;
         std::memcpy(&x, rows[j] + i, sizeof x);
         cond[j] = x >= c[j];  // -1: right; 0: left (also NaN)
      }
      vi k = vi{};
      for (int d = 0; d < D; ++d) {
         const int first = (1 << d) - 1;
         vi right = cond[first];
         for (int j = 1; j < (1 << d); ++j) right = (k == j) ? cond[first + j] : right;
         k = 2 * k - right;
      }
      const vl leaf_index = __builtin_convertvector(k, vl);
      vd value = vd{} + l[0];
      for (int j = 1; j < NL; ++j) value = (leaf_index == j) ? vd{} + l[j] : value;
      vd sum;
      std::memcpy(&sum, a + i, sizeof sum);
      sum += value;
      std::memcpy(a + i, &sum, sizeof sum);
   }
}
const char* variant = "select (vector extensions) up to depth 4, walk deeper";
#else
const char* variant = "walk";
#endif

template <int D, bool SELECT>
void blocks(const float* x, long n, int nvar, int ntrees, int depth, const int* feat,
            const float* cut, const double* leaf, const int* tree_out, int nout, double* out)
{
   const int d_ = D > 0 ? D : depth;
   const long ninner = (1 << d_) - 1, nleaf = 1 << d_;
   std::vector<float> xt(nvar * B);    // the block, one row per variable
   std::vector<double> acc(nout * B);  // its sums, one row per output
   for (long start = 0; start < n; start += B) {
      const long m = start + B < n ? B : n - start;
      const float* xb = x + start * nvar;
      for (long i = 0; i < m; ++i)
         for (int v = 0; v < nvar; ++v) xt[v * B + i] = xb[i * nvar + v];
      std::memset(acc.data(), 0, sizeof(double) * acc.size());
      for (int t = 0; t < ntrees; ++t) {  // tree order: the order in which TMVA sums
         const int* f = feat + t * ninner;
         const float* c = cut + t * ninner;
         const double* l = leaf + t * nleaf;
         double* a = acc.data() + (long)tree_out[t] * B;
#ifdef HTT_FOREST_SELECT
         if (SELECT) {  // whole vectors: lanes past m (last block) are never written back
            select_tree<D>(xt.data(), B, depth, f, c, l, a);
            continue;
         }
#endif
         walk_tree<D>(xt.data(), m, depth, f, c, l, a);
      }
      double* ob = out + start * nout;
      for (int o = 0; o < nout; ++o)
         for (long i = 0; i < m; ++i) ob[i * nout + o] = acc[o * B + i];
   }
}
}  // namespace htt_tmva_forest

// Per-event sums (n, nout) of the leaf values of complete trees of depth `depth` in heap order
// (feat, cut: ntrees x (2^depth - 1); leaf: ntrees x 2^depth); tree t adds to output tree_out[t].
extern "C" void htt_tmva_forest_sums(const float* x, long long n, int nvar, int ntrees,
                                            int depth, const int* feat, const float* cut,
                                            const double* leaf, const int* tree_out, int nout,
                                            double* out)
{
   using namespace htt_tmva_forest;
#ifdef HTT_FOREST_SELECT
   const bool select = depth <= HTT_FOREST_SELECT_DEPTH;
#else
   const bool select = false;
#endif
#define HTT_FOREST_ARGS x, (long)n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out
   switch (depth) {
   case 1: (select ? blocks<1, true> : blocks<1, false>)(HTT_FOREST_ARGS); break;
   case 2: (select ? blocks<2, true> : blocks<2, false>)(HTT_FOREST_ARGS); break;
   case 3: (select ? blocks<3, true> : blocks<3, false>)(HTT_FOREST_ARGS); break;
   case 4: (select ? blocks<4, true> : blocks<4, false>)(HTT_FOREST_ARGS); break;
   case 5: blocks<5, false>(HTT_FOREST_ARGS); break;
   case 6: blocks<6, false>(HTT_FOREST_ARGS); break;
   default: blocks<0, false>(HTT_FOREST_ARGS);
   }
#undef HTT_FOREST_ARGS
}

extern "C" const char* htt_tmva_forest_variant() { return htt_tmva_forest::variant; }
"""

FLAGS = ("-std=c++17", "-O3", "-shared", "-fPIC")  # and -march=native where it is known

#: below this many events the numpy traversal is used until the kernel is loaded (building it
#: costs seconds once per machine, ROOT's interpreter seconds once per process)
MIN_EVENTS = 20000

#: a kernel: called with the arrays of :func:`compiled_sums`; ``name`` says which one it is
Kernel = Callable[..., None]


def disabled() -> bool:
    """HTT_TMVA_NO_JIT=1 switches the compiled kernel off (numpy only)."""
    return os.environ.get("HTT_TMVA_NO_JIT", "") not in ("", "0")


@cache
def kernel() -> Optional[Kernel]:
    """The kernel: the compiled library, else ROOT's interpreter, else None (numpy)."""
    if disabled():
        return None
    return native_kernel() or cling_kernel()


def ready() -> bool:
    """Whether the kernel is loaded already in this process (then small batches use it too)."""
    return kernel.cache_info().currsize > 0 and kernel() is not None


def native_kernel(extra_flags: Sequence[str] = ()) -> Optional[Kernel]:
    """The kernel built by the system's C++ compiler (cached), or None when it cannot be."""
    library = build_library(tuple(extra_flags))
    if library is None:
        return None
    try:
        lib = ctypes.CDLL(str(library))
    except OSError as exc:
        log.warning(
            "could not load the BDT kernel '%s' (%s); trying ROOT's interpreter", library, exc
        )
        return None
    function = lib.htt_tmva_forest_sums
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    function.argtypes = [pointer, ctypes.c_longlong, integer, integer, integer]
    function.argtypes += [pointer] * 4 + [integer, pointer]
    function.restype = None
    lib.htt_tmva_forest_variant.restype = ctypes.c_char_p

    def call(x, n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out):
        function(x.ctypes.data, n, nvar, ntrees, depth, feat.ctypes.data, cut.ctypes.data,
                 leaf.ctypes.data, tree_out.ctypes.data, nout, out.ctypes.data)  # fmt: skip

    call.name = f"{Path(library).name}: {lib.htt_tmva_forest_variant().decode()}"
    call.library = lib  # keeps the library loaded
    call.library_path = Path(library)
    return call


def cling_kernel() -> Optional[Kernel]:
    """The kernel compiled by ROOT's interpreter (it walks every tree), or None without ROOT."""
    try:
        from htt_tmva._root import root

        ROOT = root()
        declared = hasattr(ROOT, "htt_tmva_forest_sums")
        if not declared and not ROOT.gInterpreter.Declare("#pragma cling optimize(3)\n" + _SOURCE):
            return None
        function = ROOT.htt_tmva_forest_sums
    except Exception:  # noqa: BLE001 - no ROOT (or no working JIT): numpy does the work
        return None

    def call(*args):
        function(*args)

    call.name = "ROOT's interpreter: walk"
    return call


def compiled_sums(x, depth, feat, cut, leaf, tree_out, n_out, function=None) -> np.ndarray | None:
    """Per-event sums of leaf values (n, n_out), or None when the kernel is unavailable."""
    function = function or kernel()
    if function is None:
        return None
    x = np.ascontiguousarray(x, dtype=np.float32)
    feat = np.ascontiguousarray(feat, dtype=np.int32)
    cut = np.ascontiguousarray(cut, dtype=np.float32)
    leaf = np.ascontiguousarray(leaf, dtype=np.float64)
    tree_out = np.ascontiguousarray(tree_out, dtype=np.int32)
    out = np.zeros((len(x), n_out), dtype=np.float64)
    if len(x) == 0:  # cppyy cannot pass an empty buffer
        return out
    function(x, len(x), x.shape[1], len(tree_out), depth, feat, cut, leaf, tree_out, n_out, out)
    return out


def build_library(extra_flags: tuple = ()) -> Optional[Path]:
    """The kernel's shared library, built once per source, flags and CPU; None without a
    compiler, when compiling fails or when the cache cannot be used (logged)."""
    from htt_tmva._cache import NATIVE, build, compiler, entry_folder
    from htt_tmva.errors import CacheError, ExportError

    cxx = compiler()
    if cxx is None:
        return None
    flags = [*FLAGS, *extra_flags]
    key = "\n".join([_SOURCE, " ".join([*flags, NATIVE]), cxx, _cpu_identity()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    try:
        folder = entry_folder(f"forest_{digest}")
        return build(_SOURCE, folder / f"htt_tmva_forest_{digest}.so", cxx, "the BDT kernel",
                     flags=flags)  # fmt: skip
    except (CacheError, ExportError) as exc:
        log.warning("%s; trying ROOT's interpreter", exc)
        return None


def _cpu_identity() -> str:
    """What -march=native depends on: the CPU's model and features (Linux), else the platform."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    found = sorted({line.strip() for line in lines if line.split(":")[0].strip() in wanted})
    return "\n".join(found) or f"{platform.machine()} {platform.processor()}"
