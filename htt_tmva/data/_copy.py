"""The compiled event loop of the dataset step: one read pass over one input file (with its
friends) fills the fold trees of every process that selects from it, with the training weight.

The loop (C++, declared once per session through ROOT's interpreter) reads the event
number and the branches of the cuts first (and the friends' event numbers, which must
match), and the whole entry once, only when some process selects the event for a fold it
writes; each process's entries are filled in input order. The whole entry is the active
branches of the input (those some output keeps); branches that only a cut or weight read
stay inactive and are read on their own (``TBranch::GetEntry(entry, 1)``). Cut and
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
#include <TLeaf.h>
#include <TMath.h>
#include <TTree.h>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace htt_tmva_dataset {

inline Long64_t fold_signed(Long64_t value, Long64_t folds) { return FOLD_SIGNED; }
inline Long64_t fold_unsigned(ULong64_t value, Long64_t folds) { return FOLD_UNSIGNED; }

// One process reading an input file: its cut and weight, its outputs and its counts.
struct Selection {
   std::vector<TTree *> outputs;           // one per fold; nullptr: not written in this run
   std::vector<void *> inputs;             // buffers of its expression inputs
   bool (*cut)(void *const *) = nullptr;
   double (*weight)(void *const *) = nullptr;
   Float_t *weight_out = nullptr;          // the buffer of its training weight branch
   Long64_t selected = 0, nonfinite = 0, bad_event = 0, write_errors = 0;
   std::vector<Long64_t> counts;
   std::vector<double> sums;
};

// One input file (its tree and friends), read once for every process that selects from it.
struct Unit {
   TTree *tree = nullptr;
   std::vector<TBranch *> first;           // read before the cuts (event, expression inputs)
   std::vector<void *> first_buffers;      // their buffers (8 bytes each)
   std::vector<TBranch *> later;           // read only for selected events (weight inputs)
   std::vector<void *> later_buffers;
   std::vector<TBranch *> friend_events;   // event branches of the friends (8-byte buffers)
   std::vector<void *> friend_buffers;
   std::vector<int> friend_kinds;
   std::vector<Selection *> selections;
   int folds = 2;
   void *event = nullptr;                  // buffer of the event number
   int event_kind = 0;                     // index of its type in EVENT_TYPES
   double exact_limit = 0;                 // > 0: a floating-point event branch
   Long64_t *done = nullptr;               // entries read so far, for progress displays
   Long64_t total = 0, read_errors = 0, misaligned = 0, first_misaligned = -1;
   int misaligned_friend = -1;
};

// EVENT_TYPES: Float_t, Double_t, Int_t, UInt_t, Long64_t, ULong64_t, Short_t, UShort_t,
// Long_t, ULong_t (in this order)
inline long double event_value(const void *e, int kind)
{
   switch (kind) {
   case 0: return *static_cast<const Float_t *>(e);
   case 1: return *static_cast<const Double_t *>(e);
   case 2: return *static_cast<const Int_t *>(e);
   case 3: return *static_cast<const UInt_t *>(e);
   case 4: return *static_cast<const Long64_t *>(e);
   case 5: return *static_cast<const ULong64_t *>(e);
   case 6: return *static_cast<const Short_t *>(e);
   case 7: return *static_cast<const UShort_t *>(e);
   case 8: return *static_cast<const Long_t *>(e);
   default: return *static_cast<const ULong_t *>(e);
   }
}

inline Long64_t event_fold(const void *e, int kind, Long64_t folds)
{
   switch (kind) {
   case 0: return fold_signed(static_cast<Long64_t>(*static_cast<const Float_t *>(e)), folds);
   case 1: return fold_signed(static_cast<Long64_t>(*static_cast<const Double_t *>(e)), folds);
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

// Branch address without type check (the caller gives 8 bytes, room for any scalar), set
// on the branch itself (TTree::SetBranchAddress would look the name up in the tree's clones,
// which need not have it) and also on an inactive branch (which TBranch::SetAddress
// ignores): the loop reads those on their own.
inline void connect(TBranch *branch, void *buffer)
{
   const bool inactive = branch->TestBit(kDoNotProcess);
   branch->ResetBit(kDoNotProcess);
   branch->SetAddress(buffer);
   if (inactive) branch->SetBit(kDoNotProcess);
}

// Exactly the branches ``names`` active (in the tree and its friends).
void set_active(TTree *tree, const std::vector<std::string> &names)
{
   tree->SetBranchStatus("*", 0);
   for (const auto &name : names) tree->SetBranchStatus(name.c_str(), 1);
}

void connect_all(Unit &u)
{
   for (size_t i = 0; i < u.first.size(); ++i) connect(u.first[i], u.first_buffers[i]);
   for (size_t i = 0; i < u.later.size(); ++i) connect(u.later[i], u.later_buffers[i]);
   for (size_t i = 0; i < u.friend_events.size(); ++i)
      connect(u.friend_events[i], u.friend_buffers[i]);
}

void run(Unit &u)
{
   for (Selection *s : u.selections) {
      s->counts.assign(u.folds, 0);
      s->sums.assign(u.folds, 0.);
   }
   const Long64_t entries = u.tree->GetEntries();
   for (Long64_t entry = 0; entry < entries; ++entry) {
      ++u.total;
      if ((entry & 0x3fff) == 0) __atomic_store_n(u.done, entry, __ATOMIC_RELAXED);
      if (u.tree->LoadTree(entry) < 0) { ++u.read_errors; continue; }
      for (TBranch *b : u.first)  // getall: also those inactive (not in any output)
         if (b->GetEntry(entry, 1) < 0) ++u.read_errors;
      for (size_t i = 0; i < u.friend_events.size(); ++i) {
         if (u.friend_events[i]->GetEntry(entry, 1) < 0) ++u.read_errors;
         const long double main_event = event_value(u.event, u.event_kind);
         if (event_value(u.friend_buffers[i], u.friend_kinds[i]) != main_event) {
            if (u.misaligned++ == 0) { u.first_misaligned = entry; u.misaligned_friend = i; }
         }
      }
      bool exact = true;
      if (u.exact_limit > 0) {
         const long double value = event_value(u.event, u.event_kind);
         exact = !(std::abs(value) > u.exact_limit || value != std::floor(value));
      }
      const Long64_t fold = exact ? event_fold(u.event, u.event_kind, u.folds) : 0;
      bool loaded = false, later_read = false;
      for (Selection *s : u.selections) {
         if (!s->cut(s->inputs.data())) continue;
         ++s->selected;
         if (!exact) {
            ++s->bad_event;
            continue;
         }
         TTree *out = s->outputs[fold];
         if (!out) continue;
         if (!later_read) {
            for (TBranch *b : u.later)
               if (b->GetEntry(entry, 1) < 0) ++u.read_errors;
            later_read = true;
         }
         const double weight = s->weight(s->inputs.data());
         *s->weight_out = static_cast<Float_t>(weight);
         if (!std::isfinite(weight) || !std::isfinite(*s->weight_out)) ++s->nonfinite;
         if (!loaded) {
            if (u.tree->GetEntry(entry) < 0) ++u.read_errors;
            loaded = true;
         }
         if (out->Fill() < 0) ++s->write_errors;
         ++s->counts[fold];
         s->sums[fold] += *s->weight_out;
      }
   }
   __atomic_store_n(u.done, u.total, __ATOMIC_RELAXED);
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
        "void htt_tmva_bind(htt_tmva_dataset::Selection &s) "
        "{ s.cut = &htt_tmva_cut; s.weight = &htt_tmva_weight; }\n}\n"
    )


def compile_functions(code: str) -> list[str]:
    """Declare generated code; return cling's error lines (empty on success)."""
    ROOT = declare_helper()
    with captured_stderr() as out:
        ok = ROOT.gInterpreter.Declare(code)
    return [] if ok else (jit_errors(out[0]) or ["unknown error"])


def new_namespace() -> str:
    return f"p{next(_counter)}"
