"""The scoring pipeline of the one-pass application, in C++ compiled once per machine.

:class:`Pipeline` scores blocks of entries in threads of its own, ahead of the single-threaded
RDataFrame loop that writes them: each thread reads the variables' branches and the event
number of its blocks (its own ``TFile``), evaluates the variables, scores the block with the
models' batched function and fills a slot; the writing loop takes the slots in entry order
(``Next``), checks each entry's event number against the one that was scored, adds (entry,
event) to the order hash (as :func:`htt_tmva.application.stream.event_hash` computes it) and
frees a slot when it moves on. ``OrderHash`` reads the same hash back from a written tree
(the verification).

The implementation is compiled with the system's C++ compiler against ROOT's headers and
cached like the models (:mod:`htt_tmva.export.compile`): ROOT's interpreter then only
reads the declarations. Without a compiler the interpreter compiles all of it.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache

from htt_tmva._root import root
from htt_tmva.errors import ModelError

log = logging.getLogger(__name__)

DECLARATIONS = r"""
#include <array>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>
#include "RtypesCore.h"
namespace htt_tmva_onepass {
using BatchFunction = void (*)(const unsigned*, const double*, std::size_t, float*);
using InputsFunction = void (*)(const double*, std::size_t, double*);
using EventFunction = void (*)(unsigned, const double*, float*);

struct Settings {
  std::string file, tree, event;
  std::vector<std::string> branches;  // read as double, in this order, for `inputs`
  int event_kind = 0;                 // 0 signed, 1 unsigned 64-bit, 2 floating point
  double event_limit = 0.;            // floating point: exact integers up to this value
  unsigned nv = 0, nc = 0, folds = 2, threads = 1;
  Long64_t entries = 0, block = 8192;
  bool has_default = false;
  float default_value = 0.f;
  InputsFunction inputs = nullptr;
  BatchFunction batch = nullptr;
  EventFunction event_scores = nullptr;  // threads == 0: the loop scores each entry itself
};

struct Counts {
  std::vector<ULong64_t> nonfinite, per_fold;
  ULong64_t nonfinite_events = 0, nan_scores = 0, bad_events = 0;
};

/// The order hash of the Python path (htt_tmva.application.stream.event_hash) of one pair.
inline ULong64_t PairHash(ULong64_t entry, ULong64_t bits) {
  ULong64_t z = entry * 0x9E3779B97F4A7C15ULL + bits;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// Block b is read and scored by thread b % threads into slot b % slots; the writing loop
/// takes the slots in entry order and frees each when it moves on.
class Pipeline {
public:
  explicit Pipeline(const Settings& settings);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;
  void Start();
  /// The writing loop: the scores (n_classes, max_score, max_index) of `entry`.
  const float* Row(ULong64_t entry, ULong64_t event_bits);
  /// The same, adding (entry, event) to the order hash.
  const float* Next(ULong64_t entry, ULong64_t event_bits) {
    fHash += PairHash(entry, event_bits);
    return Row(entry, event_bits);
  }
  ULong64_t Hash() const { return fHash; }
  /// Without scoring threads (threads == 0): the writing loop scores `entry` itself from its
  /// inputs (one read of the input, one event at a time), adding it to the order hash.
  const float* Score(ULong64_t entry, ULong64_t event_bits, double event, const double* inputs) {
    fHash += PairHash(entry, event_bits);
    return ScoreOne(event_bits, event, inputs);
  }
  /// Stop the threads (when the loop ended early) and wait for them; the error, or "".
  std::string Finish();
  Counts Total() const;
  double ScoringSeconds() const;

private:
  const float* ScoreOne(ULong64_t event_bits, double event, const double* inputs);
  struct Impl;
  Impl* fImpl;
  ULong64_t fHash = 0;
};

/// The order hash of (entry, event) pairs of a tree; event numbers count by their 64 bits.
ULong64_t OrderHash(const std::string& file, const std::string& tree, const std::string& event);


}  // namespace htt_tmva_onepass
"""

IMPLEMENTATION = r"""
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include "TBranch.h"
#include "TFile.h"
#include "TLeaf.h"
#include "TTree.h"
namespace htt_tmva_onepass {
namespace {
struct Slot {
  std::vector<float> out;
  std::vector<ULong64_t> events;
  Long64_t block = -1;  // the block it holds, -1: free
};

TLeaf* FindLeaf(TTree* tree, const std::string& name) {
  TLeaf* leaf = tree->GetLeaf(name.c_str());
  if (!leaf) throw std::runtime_error("no leaf '" + name + "' in tree '" + tree->GetName() + "'");
  tree->AddBranchToCache(leaf->GetBranch());
  return leaf;
}

void Load(TLeaf* leaf, Long64_t entry) {
  if (leaf->GetBranch()->GetEntry(entry) < 0)
    throw std::runtime_error("cannot read entry " + std::to_string(entry) + " of branch '" +
                             leaf->GetBranch()->GetName() + "'");
}

struct Opened {
  std::unique_ptr<TFile> file;
  TTree* tree = nullptr;
};

Opened Open(const std::string& path, const std::string& name) {
  Opened o;
  o.file.reset(TFile::Open(path.c_str(), "READ"));
  if (!o.file || o.file->IsZombie()) throw std::runtime_error("cannot open '" + path + "'");
  o.tree = o.file->Get<TTree>(name.c_str());
  if (!o.tree) throw std::runtime_error("no tree '" + name + "' in '" + path + "'");
  return o;
}
}  // namespace

struct Pipeline::Impl {
  Settings s;
  std::vector<Slot> slots;
  std::vector<Counts> counts;
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::condition_variable changed;
  bool stop = false, failed = false;
  std::string error;
  double seconds = 0.;
  Long64_t current = -1;
  Slot* current_slot = nullptr;

  std::vector<float> row;  // threads == 0: the current entry's scores
  unsigned Threads() const { return std::max(1u, s.threads); }

  // The scores of one event into out (n_classes + 2), counted in `count`.
  void Finish(const float* p, bool good, float* out, Counts& count) const {
    const unsigned nc = s.nc;
    if (!good) {
      std::fill(out, out + nc + 2, s.default_value);
      out[nc + 1] = -1.f;  // no class
      return;
    }
    unsigned best = 0;
    bool nan = false;
    for (unsigned c = 0; c < nc; ++c) {
      out[c] = p[c];
      if (std::isnan(p[c])) nan = true;
      if (p[c] > p[best]) best = c;
    }
    if (nan) ++count.nan_scores;
    out[nc] = p[best];
    out[nc + 1] = static_cast<float>(best);
  }

  unsigned FoldOf(ULong64_t bits) const {
    return s.event_kind == 1 ? static_cast<unsigned>(bits % s.folds)
                             : htt_tmva_export::fold_of(static_cast<Long64_t>(bits), s.folds);
  }

  void Fail(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!failed) error = message;
      failed = true;
    }
    changed.notify_all();
  }

  void Work(unsigned w) {
    try {
      Opened in = Open(s.file, s.tree);
      if (in.tree->GetEntries() != s.entries)
        throw std::runtime_error("tree '" + s.tree + "' of '" + s.file + "' has " +
                                 std::to_string(in.tree->GetEntries()) + " entries, expected " +
                                 std::to_string(s.entries));
      std::vector<TLeaf*> leaves;
      for (const auto& b : s.branches) leaves.push_back(FindLeaf(in.tree, b));
      TLeaf* event = FindLeaf(in.tree, s.event);
      const std::size_t nb = leaves.size(), nv = s.nv, nc = s.nc;
      std::vector<double> values(s.block * std::max<std::size_t>(nb, 1)), x(s.block * nv);
      std::vector<unsigned> folds(s.block);
      std::vector<float> scores(s.block * nc);
      std::vector<char> good(s.block);
      Counts& count = counts[w];
      for (Long64_t b = w; b * s.block < s.entries; b += Threads()) {
        Slot& slot = slots[b % slots.size()];
        {
          std::unique_lock<std::mutex> lock(mutex);
          changed.wait(lock, [&] { return stop || failed || slot.block == -1; });
          if (stop || failed) return;
        }
        const auto start = std::chrono::steady_clock::now();
        const Long64_t begin = b * s.block, end = std::min(s.entries, begin + s.block);
        const std::size_t n = end - begin;
        for (std::size_t i = 0; i < n; ++i) {
          const Long64_t entry = begin + i;
          for (std::size_t k = 0; k < nb; ++k) {
            Load(leaves[k], entry);
            values[i * nb + k] = leaves[k]->GetValue(0);
          }
          Load(event, entry);
          ULong64_t bits;
          if (s.event_kind == 2) {
            const double e = event->GetValue(0);
            if (!(std::isfinite(e) && e == std::trunc(e) && std::abs(e) <= s.event_limit))
              ++count.bad_events;
            bits = static_cast<ULong64_t>(static_cast<Long64_t>(e));
          } else {
            bits = static_cast<ULong64_t>(event->GetValueLong64(0));
          }
          slot.events[i] = bits;
          folds[i] = FoldOf(bits);
        }
        s.inputs(values.data(), n, x.data());
        for (std::size_t i = 0; i < n; ++i) {
          bool ok = true;
          for (std::size_t v = 0; v < nv; ++v)
            if (!std::isfinite(x[i * nv + v])) { ++count.nonfinite[v]; ok = false; }
          good[i] = ok;
          if (ok) {
            ++count.per_fold[folds[i]];
          } else {
            ++count.nonfinite_events;
            std::fill(x.begin() + i * nv, x.begin() + (i + 1) * nv, 0.);
          }
        }
        s.batch(folds.data(), x.data(), n, scores.data());
        for (std::size_t i = 0; i < n; ++i)
          Finish(scores.data() + i * nc, good[i], slot.out.data() + i * (nc + 2), count);
        const double busy =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        {
          std::lock_guard<std::mutex> lock(mutex);
          seconds += busy;
          slot.block = b;
        }
        changed.notify_all();
      }
    } catch (const std::exception& e) {
      Fail(e.what());
    } catch (...) {
      Fail("unknown C++ exception in a scoring thread");
    }
  }
};

Pipeline::Pipeline(const Settings& settings) : fImpl(new Impl) {
  Impl& d = *fImpl;
  d.s = settings;
  d.row.assign(d.s.nc + 2, 0.f);
  const bool functions = d.s.threads == 0 ? d.s.event_scores != nullptr
                                          : d.s.inputs != nullptr && d.s.batch != nullptr;
  if (!functions || d.s.block < 1 || d.s.folds < 1 || d.s.nc < 1) {
    delete fImpl;
    throw std::invalid_argument("htt_tmva_onepass::Pipeline: incomplete settings");
  }
  d.slots.resize(2 * d.Threads());
  for (auto& slot : d.slots) {
    slot.out.resize(d.s.block * (d.s.nc + 2));
    slot.events.resize(d.s.block);
  }
  d.counts.resize(d.Threads());
  for (auto& c : d.counts) {
    c.nonfinite.assign(d.s.nv, 0);
    c.per_fold.assign(d.s.folds, 0);
  }
}

Pipeline::~Pipeline() {
  Finish();
  delete fImpl;
}

const float* Pipeline::ScoreOne(ULong64_t bits, double event, const double* inputs) {
  Impl& d = *fImpl;
  Counts& count = d.counts[0];
  if (d.s.event_kind == 2 &&
      !(std::isfinite(event) && event == std::trunc(event) && std::abs(event) <= d.s.event_limit))
    ++count.bad_events;
  bool good = true;
  for (unsigned v = 0; v < d.s.nv; ++v)
    if (!std::isfinite(inputs[v])) { ++count.nonfinite[v]; good = false; }
  std::vector<float>& row = d.row;
  if (good) {
    const unsigned fold = d.FoldOf(bits);
    ++count.per_fold[fold];
    d.s.event_scores(fold, inputs, row.data());
  } else {
    ++count.nonfinite_events;
  }
  d.Finish(row.data(), good, row.data(), count);  // in place: out[c] = p[c] first
  return row.data();
}

void Pipeline::Start() {
  if (fImpl->s.threads == 0) return;  // the loop scores each entry itself
  for (unsigned w = 0; w < fImpl->Threads(); ++w)
    fImpl->threads.emplace_back([this, w] { fImpl->Work(w); });
}

const float* Pipeline::Row(ULong64_t entry, ULong64_t event_bits) {
  Impl& d = *fImpl;
  const Long64_t b = static_cast<Long64_t>(entry) / d.s.block;
  if (b != d.current) {
    std::unique_lock<std::mutex> lock(d.mutex);
    if (d.current_slot) {
      d.current_slot->block = -1;
      d.changed.notify_all();
    }
    d.current_slot = nullptr;
    Slot& slot = d.slots[b % d.slots.size()];
    d.changed.wait(lock, [&] { return d.failed || slot.block == b; });
    if (d.failed) throw std::runtime_error(d.error);
    d.current_slot = &slot;
    d.current = b;
  }
  const std::size_t i = entry - b * d.s.block;
  if (d.current_slot->events[i] != event_bits)
    throw std::runtime_error("entry " + std::to_string(entry) + ": the event loop read event " +
                             std::to_string(event_bits) + ", the scoring thread read " +
                             std::to_string(d.current_slot->events[i]));
  return d.current_slot->out.data() + i * (d.s.nc + 2);
}

std::string Pipeline::Finish() {
  Impl& d = *fImpl;
  {
    std::lock_guard<std::mutex> lock(d.mutex);
    d.stop = true;
  }
  d.changed.notify_all();
  for (auto& t : d.threads)
    if (t.joinable()) t.join();
  d.threads.clear();
  return d.failed ? d.error : std::string();
}

Counts Pipeline::Total() const {
  const Impl& d = *fImpl;
  Counts total = d.counts[0];
  for (std::size_t w = 1; w < d.counts.size(); ++w) {
    const Counts& c = d.counts[w];
    for (unsigned v = 0; v < d.s.nv; ++v) total.nonfinite[v] += c.nonfinite[v];
    for (unsigned f = 0; f < d.s.folds; ++f) total.per_fold[f] += c.per_fold[f];
    total.nonfinite_events += c.nonfinite_events;
    total.nan_scores += c.nan_scores;
    total.bad_events += c.bad_events;
  }
  return total;
}

double Pipeline::ScoringSeconds() const { return fImpl->seconds; }

ULong64_t OrderHash(const std::string& file, const std::string& tree, const std::string& event) {
  Opened in = Open(file, tree);
  TLeaf* leaf = FindLeaf(in.tree, event);
  const Long64_t n = in.tree->GetEntries();
  ULong64_t hash = 0;
  for (Long64_t entry = 0; entry < n; ++entry) {
    Load(leaf, entry);
    hash += PairHash(entry, static_cast<ULong64_t>(leaf->GetValueLong64(0)));
  }
  return hash;
}
}  // namespace htt_tmva_onepass
"""


@cache
def declare() -> object:
    """The ``htt_tmva_onepass`` namespace: the library compiled (once per machine, cached)
    and loaded, its declarations read by ROOT's interpreter."""
    from htt_tmva.export.compile import build, cache_folder, compiler, cpu_signature
    from htt_tmva.export.cpp import HELPERS, INCLUDES

    ROOT = root()
    ROOT.EnableThreadSafety()  # the scoring threads read a file while the loop writes one
    helpers = "\n".join(INCLUDES) + HELPERS
    source = helpers + DECLARATIONS + IMPLEMENTATION
    cxx = compiler()
    if cxx is None:
        if not ROOT.gInterpreter.Declare(source):  # pragma: no cover - broken C++ only
            raise ModelError("could not compile the one-pass scorer")
        return ROOT.htt_tmva_onepass
    include, libraries = str(ROOT.gROOT.GetIncludeDir()), str(ROOT.gROOT.GetLibDir())
    key = source + cpu_signature() + str(ROOT.gROOT.GetVersion()) + include
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    library = cache_folder() / digest / f"htt_tmva_onepass_{digest}.so"
    build(
        source,
        library,
        cxx,
        "the scoring pipeline",
        extra=[f"-I{include}", f"-L{libraries}", "-lCore", "-lRIO", "-lTree"],
    )
    if ROOT.gSystem.Load(str(library)) < 0:
        raise ModelError(f"ROOT could not load the scoring pipeline '{library}'")
    if not ROOT.gInterpreter.Declare(helpers + DECLARATIONS):  # pragma: no cover
        raise ModelError("could not read the declarations of the one-pass scorer")
    return ROOT.htt_tmva_onepass


def loaded() -> bool:
    """Whether the pipeline is compiled and loaded in this process already."""
    return declare.cache_info().currsize > 0


def order_hash(path: str, tree_path: str, event_branch: str) -> int:
    """The order hash of (entry, event) pairs of a written tree, in C++."""
    return int(declare().OrderHash(path, tree_path, event_branch))
