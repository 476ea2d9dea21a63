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
from htt_tmva.errors import InputFileError

_HELPER = r"""
#pragma cling optimize(3)
#include <TBranch.h>
#include <TTree.h>
#include <cmath>
#include <cstring>

namespace htt_tmva_dataset {

inline Long64_t fold_signed(Long64_t value, Long64_t folds) { return FOLD_SIGNED; }
inline Long64_t fold_unsigned(ULong64_t value, Long64_t folds) { return FOLD_UNSIGNED; }

// No std::vector or std::string here nor in what Python passes: instantiating them in the
// interpreter (and binding them for Python) costs about 15 MB of memory per process.

// A branch read into an 8-byte buffer; ``kind``: index of its type in EVENT_TYPES (events).
struct Input {
   TBranch *branch;
   void *buffer;
   int kind;
};

// A growable array of pointers, owning nothing.
struct List {
   void **items = nullptr;
   int size = 0, capacity = 0;
   List() {}
   List(const List &) = delete;
   List &operator=(const List &) = delete;
   ~List() { delete[] items; }
   void push(void *item)
   {
      if (size == capacity) {
         capacity = capacity ? 2 * capacity : 8;
         void **grown = new void *[capacity];
         if (size) std::memcpy(grown, items, size * sizeof(void *));
         delete[] items;
         items = grown;
      }
      items[size++] = item;
   }
};

// One process reading an input file: its cut and weight, its outputs and its counts.
struct Selection {
   TTree **outputs;                        // one per fold; nullptr: not written in this run
   List cut_inputs, weight_inputs;         // buffers of its cut's and weight's inputs
   bool (*cut)(void *const *) = nullptr;
   double (*weight)(void *const *) = nullptr;
   Float_t *weight_out;                    // the buffer of its training weight branch
   Long64_t selected = 0, nonfinite = 0, bad_event = 0, write_errors = 0;
   Long64_t *counts;
   double *sums;
   Selection(int folds, Float_t *weight_buffer)
      : outputs(new TTree *[folds]()), weight_out(weight_buffer), counts(new Long64_t[folds]()),
        sums(new double[folds]())
   {
   }
   Selection(const Selection &) = delete;
   Selection &operator=(const Selection &) = delete;
   ~Selection()
   {
      delete[] outputs;
      delete[] counts;
      delete[] sums;
   }
};

// One input file (its tree and friends), read once for every process that selects from it.
struct Unit {
   TTree *tree = nullptr;
   List first;                             // Inputs read before the cuts (event, cut inputs)
   List later;                             // Inputs read only for selected events (weights)
   List friend_events;                     // Inputs: the event branches of the friends
   List selections;
   int folds = 2;
   void *event = nullptr;                  // buffer of the event number
   int event_kind = 0;                     // index of its type in EVENT_TYPES
   double exact_limit = 0;                 // > 0: a floating-point event branch
   Long64_t *done = nullptr;               // entries read so far, for progress displays
   Long64_t total = 0, read_errors = 0, misaligned = 0, first_misaligned = -1;
   int misaligned_friend = -1;
   Unit() {}
   Unit(const Unit &) = delete;
   Unit &operator=(const Unit &) = delete;
   ~Unit()
   {
      List *inputs[] = {&first, &later, &friend_events};
      for (List *list : inputs)
         for (int i = 0; i < list->size; ++i) delete static_cast<Input *>(list->items[i]);
      for (int i = 0; i < selections.size; ++i)
         delete static_cast<Selection *>(selections.items[i]);
   }
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

// Exactly the branches ``names`` (separated by newlines) active, in the tree and its friends.
void set_active(TTree *tree, const char *names)
{
   tree->SetBranchStatus("*", 0);
   TString name;
   for (const char *p = names;; ++p) {
      if (*p == '\n' || *p == '\0') {
         if (name.Length()) tree->SetBranchStatus(name.Data(), 1);
         name = "";
         if (*p == '\0') break;
      } else {
         name.Append(*p);
      }
   }
}

// Read ``branch`` into ``buffer`` (8 bytes): before the cuts (``when`` 0), for selected
// events only (1), or as the event number of a friend of type ``kind`` (2).
void add_input(Unit &u, int when, TBranch *branch, void *buffer, int kind)
{
   List &list = when == 0 ? u.first : when == 1 ? u.later : u.friend_events;
   list.push(new Input{branch, buffer, kind});
   connect(branch, buffer);
}

Selection *add_selection(Unit &u, Float_t *weight_buffer)
{
   Selection *s = new Selection(u.folds, weight_buffer);
   u.selections.push(s);
   return s;
}

void add_expression_input(Selection &s, int weight, void *buffer)
{
   (weight ? s.weight_inputs : s.cut_inputs).push(buffer);
}

void set_output(Selection &s, int fold, TTree *tree) { s.outputs[fold] = tree; }
Long64_t count(const Selection &s, int fold) { return s.counts[fold]; }
double sum(const Selection &s, int fold) { return s.sums[fold]; }

inline void read(const List &inputs, Long64_t entry, Long64_t &errors)
{
   for (int i = 0; i < inputs.size; ++i)  // getall: also those inactive (not in any output)
      if (static_cast<Input *>(inputs.items[i])->branch->GetEntry(entry, 1) < 0) ++errors;
}

void run(Unit &u)
{
   const Long64_t entries = u.tree->GetEntries();
   for (Long64_t entry = 0; entry < entries; ++entry) {
      ++u.total;
      if ((entry & 0x3fff) == 0) __atomic_store_n(u.done, entry, __ATOMIC_RELAXED);
      if (u.tree->LoadTree(entry) < 0) { ++u.read_errors; continue; }
      read(u.first, entry, u.read_errors);
      for (int i = 0; i < u.friend_events.size; ++i) {
         const Input *f = static_cast<Input *>(u.friend_events.items[i]);
         if (f->branch->GetEntry(entry, 1) < 0) ++u.read_errors;
         if (event_value(f->buffer, f->kind) != event_value(u.event, u.event_kind)) {
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
      for (int i = 0; i < u.selections.size; ++i) {
         Selection *s = static_cast<Selection *>(u.selections.items[i]);
         if (!s->cut(s->cut_inputs.items)) continue;
         ++s->selected;
         if (!exact) {
            ++s->bad_event;
            continue;
         }
         TTree *out = s->outputs[fold];
         if (!out) continue;
         if (!later_read) {
            read(u.later, entry, u.read_errors);
            later_read = true;
         }
         const double weight = s->weight(s->weight_inputs.items);
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


def set_active(ROOT, tree, names) -> None:
    """Exactly the branches ``names`` active in ``tree`` and its friends."""
    names = list(names)
    bad = [n for n in names if "\n" in n]
    if bad:  # pragma: no cover - ROOT does not write such names
        raise InputFileError(f"branch name {bad[0]!r} holds a line break")
    ROOT.htt_tmva_dataset.set_active(tree, "\n".join(names))


@dataclass
class Function:
    """A compiled cut or weight: C++ of the scalar branches ``inputs`` (in this order)."""

    kind: str  # "cut" or "weight"
    cpp: str
    inputs: list[str]
    body: str = ""  # its C++ definition (without namespace): processes with the same share it
    namespace: str = ""


@dataclass
class Expressions:
    """A process's cut and weight."""

    cut: Function
    weight: Function


def used_columns(expressions: list[str], scalar_types: dict[str, str]) -> list[str]:
    """The scalar branches named in the expressions, in order of first use."""
    names = [m.group(0) for e in expressions for m in _IDENTIFIER.finditer(e)]
    return [n for n in dict.fromkeys(names) if n in scalar_types]


def make_function(kind: str, cpp: str, scalar_types: dict[str, str]) -> Function:
    """The cut (``bool``) or weight (``double``) ``cpp`` as a function of its scalar branches."""
    inputs = used_columns([cpp], scalar_types)
    bindings = "".join(
        f"   const {scalar_types[n]} &{n} = *static_cast<const {scalar_types[n]} *>"
        f"(htt_tmva_in[{i}]);\n"
        for i, n in enumerate(inputs)
    )
    result = "bool" if kind == "cut" else "double"
    body = (
        f"{result} htt_tmva_f(void *const *htt_tmva_in) {{\n{bindings}"
        f"   return static_cast<{result}>({cpp});\n}}\n"
    )
    return Function(kind, cpp, inputs, body)


def function_code(function: Function) -> str:
    """C++ source of one function and its binding to a Selection, in their own namespace."""
    return (
        f"namespace htt_tmva_expr_{function.namespace} {{\n{function.body}"
        "void htt_tmva_bind(htt_tmva_dataset::Selection &s) "
        f"{{ s.{function.kind} = &htt_tmva_f; }}\n}}\n"
    )


def compile_functions(code: str) -> list[str]:
    """Declare generated code; return cling's error lines (empty on success)."""
    ROOT = declare_helper()
    with captured_stderr() as out:
        ok = ROOT.gInterpreter.Declare(code)
    return [] if ok else (jit_errors(out[0]) or ["unknown error"])


def new_namespace() -> str:
    return f"p{next(_counter)}"
