"""A compiled kernel for BDT forests, JIT-compiled once per process by ROOT's interpreter.

It walks complete (padded) trees without branches: for a block of events (transposed, one row
per variable) and one tree at a time, every event descends one level per step
(``idx = 2 idx + 1 + goes_right``), and the leaf value is added to the event's output in tree
order, the order in which TMVA sums.
Used for large batches when ROOT is importable; the numpy traversal gives the same sums.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np

_SOURCE = r"""
#pragma cling optimize(3)
#include <vector>
namespace htt_tmva_forest {
// Trees of depth D; a block of B events is transposed (one row per variable) so that all
// events of the block descend one tree level per inner loop without branches.
template <int D>
void walk(const float* x, long n, int nvar, int ntrees, int depth, const int* feat,
          const float* cut, const double* leaf, const int* tree_out, int nout, double* out)
{
   const int d_ = D > 0 ? D : depth;
   const int ninner = (1 << d_) - 1;
   const int nleaf = 1 << d_;
   const long B = 256;
   std::vector<float> xt(nvar * B);
   int idx[256];
   for (long start = 0; start < n; start += B) {
      const long m = start + B < n ? B : n - start;
      const float* xb = x + start * nvar;
      double* ob = out + start * nout;
      for (long i = 0; i < m; ++i)
         for (int v = 0; v < nvar; ++v) xt[v * B + i] = xb[i * nvar + v];
      for (int t = 0; t < ntrees; ++t) {
         const int* f = feat + (long)t * ninner;
         const float* c = cut + (long)t * ninner;
         const double* l = leaf + (long)t * nleaf;
         const int o = tree_out[t];
         // right when x >= cut (cType=0 daughters are swapped beforehand); NaN goes left
         const float* root = &xt[f[0] * B];
         const float c0 = c[0];
         for (long i = 0; i < m; ++i) idx[i] = 1 + (root[i] >= c0);
         for (int d = 1; d < d_; ++d)
            for (long i = 0; i < m; ++i) {
               const int k = idx[i];
               idx[i] = 2 * k + 1 + (xt[f[k] * B + i] >= c[k]);
            }
         for (long i = 0; i < m; ++i) ob[i * nout + o] += l[idx[i] - ninner];
      }
   }
}
void sums(const float* x, long n, int nvar, int ntrees, int depth,
          const int* feat, const float* cut, const double* leaf,
          const int* tree_out, int nout, double* out)
{
   switch (depth) {
   case 1: walk<1>(x, n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out); break;
   case 2: walk<2>(x, n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out); break;
   case 3: walk<3>(x, n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out); break;
   case 4: walk<4>(x, n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out); break;
   case 5: walk<5>(x, n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out); break;
   case 6: walk<6>(x, n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out); break;
   default: walk<0>(x, n, nvar, ntrees, depth, feat, cut, leaf, tree_out, nout, out);
   }
}
}
"""

#: below this many events the numpy traversal is used until the kernel is compiled (compiling
#: costs a few seconds once per process)
MIN_EVENTS = 20000


def disabled() -> bool:
    """HTT_TMVA_NO_JIT=1 switches the compiled kernel off (numpy only)."""
    return os.environ.get("HTT_TMVA_NO_JIT", "") not in ("", "0")


@cache
def kernel():
    """The compiled function, or None when ROOT is not importable or compilation fails."""
    if disabled():
        return None
    try:
        from htt_tmva._root import root

        ROOT = root()
        if not ROOT.gInterpreter.Declare(_SOURCE):
            return None
        return ROOT.htt_tmva_forest.sums
    except Exception:  # noqa: BLE001 - no ROOT (or no working JIT): numpy does the work
        return None


def ready() -> bool:
    """Whether the kernel is compiled already in this process (then small batches use it too)."""
    return kernel.cache_info().currsize > 0 and kernel() is not None


def compiled_sums(x, depth, feat, cut, leaf, tree_out, n_out) -> np.ndarray | None:
    """Per-event sums of leaf values (n, n_out), or None when the kernel is unavailable."""
    function = kernel()
    if function is None:
        return None
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros((len(x), n_out), dtype=np.float64)
    if len(x) == 0:  # cppyy cannot pass an empty buffer
        return out
    function(x, len(x), x.shape[1], len(tree_out), depth, feat, cut, leaf, tree_out, n_out, out)
    return out
