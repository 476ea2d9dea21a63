"""The compiled event loop of the dataset step: copy the selected events of a process into
its fold trees, with the training weight, in one read pass.

The loop (C++, declared once per session through ROOT's interpreter) reads the event
number and the branches of the cut first, and the whole entry only for selected events of
the folds it writes; entries are filled in input order, so the output is the same for any
number of workers. The whole entry is the active branches of the input, exactly those of
the class tree; branches that only the cut or weight read (absent from some process of the
class) stay inactive and are read on their own (``TBranch::GetEntry(entry, 1)``). Cut and
weight are C++ expressions (the syntax RDataFrame's ``Filter`` and ``Define`` take),
compiled as two small functions per process, all processes in one declaration. Every
branch type that ``TTree::CloneTree`` handles is copied; expressions may use the scalar
branches.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from htt_tmva._root import captured_stderr, jit_errors, root
from htt_tmva.data.folds import fold_expression

_HELPER = r"""
#pragma cling optimize(3)
#include <TBranch.h>
#include <TChain.h>
#include <TLeaf.h>
#include <TMath.h>
#include <TTree.h>
#include <cmath>
#include <cstdint>
#include <vector>

namespace htt_tmva_dataset {

inline Long64_t fold_signed(Long64_t value, Long64_t folds) { return FOLD_SIGNED; }
inline Long64_t fold_unsigned(ULong64_t value, Long64_t folds) { return FOLD_UNSIGNED; }

struct Pass {
   TChain *chain = nullptr;
   std::vector<TTree *> outputs;           // one per fold; nullptr: written by another worker
   std::vector<std::string> first_reads;   // read before the cut (event, expression inputs)
   std::vector<void *> first_buffers;      // their buffers (8 bytes each)
   std::vector<void *> inputs;             // buffers of the expression inputs
   bool (*cut)(void *const *) = nullptr;
   double (*weight)(void *const *) = nullptr;
   void *event = nullptr;                  // buffer of the event number
   int event_kind = 0;                     // index of its type in EVENT_TYPES
   Float_t *weight_out = nullptr;          // the buffer of the training weight branch
   double exact_limit = 0;                 // > 0: a floating-point event branch
   Long64_t *done = nullptr;               // entries read so far, for progress displays
   Long64_t total = 0, selected = 0, nonfinite = 0, bad_event = 0;
   Long64_t read_errors = 0, write_errors = 0;
   std::vector<Long64_t> counts;
   std::vector<double> sums;
};

// EVENT_TYPES: Float_t, Double_t, Int_t, UInt_t, Long64_t, ULong64_t, Short_t, UShort_t,
// Long_t, ULong_t (in this order)
inline double floating_event(const Pass &p)
{
   return p.event_kind == 0 ? *static_cast<const Float_t *>(p.event)
                            : *static_cast<const Double_t *>(p.event);
}

inline Long64_t event_fold(const Pass &p, Long64_t folds)
{
   const void *e = p.event;
   switch (p.event_kind) {
   case 0:
   case 1: return fold_signed(static_cast<Long64_t>(floating_event(p)), folds);
   case 2: return fold_signed(*static_cast<const Int_t *>(e), folds);
   case 3: return fold_unsigned(*static_cast<const UInt_t *>(e), folds);
   case 4: return fold_signed(*static_cast<const Long64_t *>(e), folds);
   case 5: return fold_unsigned(*static_cast<const ULong64_t *>(e), folds);
   case 6: return fold_signed(*static_cast<const Short_t *>(e), folds);
   case 7: return fold_unsigned(*static_cast<const UShort_t *>(e), folds);
   case 8: return fold_signed(*static_cast<const Long_t *>(e), folds);
   default: return fold_unsigned(*static_cast<const ULong_t *>(e), folds);
   }
}

inline bool event_is_exact(const Pass &p)
{
   const double value = floating_event(p);
   return !(std::abs(value) > p.exact_limit || value != std::floor(value));
}

// Branch address without type check (the caller gives 8 bytes, room for any scalar), set
// on the branch itself (TTree::SetBranchAddress would look the name up in the tree's clones,
// the class trees, which need not have it) and also on an inactive branch (which
// TBranch::SetAddress ignores): the loop reads those on their own.
inline void connect(TBranch *branch, void *buffer)
{
   const bool inactive = branch->TestBit(kDoNotProcess);
   branch->ResetBit(kDoNotProcess);
   branch->SetAddress(buffer);
   if (inactive) branch->SetBit(kDoNotProcess);
}

void run(Pass &p)
{
   const int folds = p.outputs.size();
   p.counts.assign(folds, 0);
   p.sums.assign(folds, 0.);
   std::vector<TBranch *> first(p.first_reads.size());
   Int_t tree_number = -1;
   TTree *tree = nullptr;
   for (Long64_t entry = 0;; ++entry) {
      const Long64_t local = p.chain->LoadTree(entry);
      if (local < 0) break;
      if (p.chain->GetTreeNumber() != tree_number) {
         tree_number = p.chain->GetTreeNumber();
         tree = p.chain->GetTree();
         for (size_t i = 0; i < first.size(); ++i) {
            first[i] = tree->GetBranch(p.first_reads[i].c_str());
            connect(first[i], p.first_buffers[i]);
         }
         for (TTree *out : p.outputs)
            if (out) tree->CopyAddresses(out);
      }
      ++p.total;
      if ((entry & 0x3fff) == 0) __atomic_store_n(p.done, entry, __ATOMIC_RELAXED);
      for (TBranch *b : first)  // getall: also those inactive (not in the class tree)
         if (b->GetEntry(local, 1) < 0) ++p.read_errors;
      if (!p.cut(p.inputs.data())) continue;
      ++p.selected;
      if (p.exact_limit > 0 && !event_is_exact(p)) {
         ++p.bad_event;
         continue;
      }
      const Long64_t fold = event_fold(p, folds);
      TTree *out = p.outputs[fold];
      if (!out) continue;
      const double weight = p.weight(p.inputs.data());
      *p.weight_out = static_cast<Float_t>(weight);
      if (!std::isfinite(weight) || !std::isfinite(*p.weight_out)) ++p.nonfinite;
      if (tree->GetEntry(local) < 0) ++p.read_errors;
      if (out->Fill() < 0) ++p.write_errors;
      ++p.counts[fold];
      p.sums[fold] += *p.weight_out;
   }
   __atomic_store_n(p.done, p.total, __ATOMIC_RELAXED);
}

} // namespace htt_tmva_dataset
"""

EVENT_TYPES = (
    "Float_t",
    "Double_t",
    "Int_t",
    "UInt_t",
    "Long64_t",
    "ULong64_t",
    "Short_t",
    "UShort_t",
    "Long_t",
    "ULong_t",
)
UNDECLARED = re.compile(r"use of undeclared identifier '([A-Za-z_][A-Za-z0-9_]*)'")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_counter = itertools.count()


def declare_helper():
    """Declare the compiled loop once; return ROOT."""
    ROOT = root()
    if not hasattr(ROOT, "htt_tmva_dataset"):
        code = _HELPER.replace(
            "FOLD_SIGNED", fold_expression("value", "folds", "Long64_t")
        ).replace("FOLD_UNSIGNED", fold_expression("value", "folds", "ULong64_t"))
        if not ROOT.gInterpreter.Declare(code):  # pragma: no cover - a bug, not an input
            raise RuntimeError("the dataset loop does not compile")
        ROOT.htt_tmva_dataset.run.__release_gil__ = True
        ROOT.EnableThreadSafety()  # the workers run while Python calls ROOT
    return ROOT


@dataclass
class Expressions:
    """A process's cut and weight as C++ functions of the listed scalar branches."""

    cut: str
    weight: str
    inputs: list[str]
    namespace: str = ""


def used_columns(expressions: list[str], scalar_types: dict[str, str]) -> list[str]:
    """The scalar branches named in the expressions, in order of first use."""
    names = [m.group(0) for e in expressions for m in _IDENTIFIER.finditer(e)]
    return [n for n in dict.fromkeys(names) if n in scalar_types]


def function_code(expressions: Expressions, scalar_types: dict[str, str]) -> str:
    """C++ source of one process's cut and weight functions, in their own namespace."""
    bindings = "".join(
        f"   const {scalar_types[n]} &{n} = *static_cast<const {scalar_types[n]} *>"
        f"(htt_tmva_in[{i}]);\n"
        for i, n in enumerate(expressions.inputs)
    )
    return (
        f"namespace htt_tmva_expr_{expressions.namespace} {{\n"
        f"bool htt_tmva_cut(void *const *htt_tmva_in) {{\n{bindings}"
        f"   return static_cast<bool>({expressions.cut});\n}}\n"
        f"double htt_tmva_weight(void *const *htt_tmva_in) {{\n{bindings}"
        f"   return static_cast<double>({expressions.weight});\n}}\n"
        "void htt_tmva_bind(htt_tmva_dataset::Pass &p) "
        "{ p.cut = &htt_tmva_cut; p.weight = &htt_tmva_weight; }\n}\n"
    )


def compile_functions(code: str) -> list[str]:
    """Declare generated code; return cling's error lines (empty on success)."""
    ROOT = declare_helper()
    with captured_stderr() as out:
        ok = ROOT.gInterpreter.Declare(code)
    return [] if ok else (jit_errors(out[0]) or ["unknown error"])


def new_namespace() -> str:
    return f"p{next(_counter)}"
