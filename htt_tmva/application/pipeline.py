"""The C++ of the application, compiled once per machine.

* ``Filler`` adds the score branches to a tree copied raw (``TTree::CloneTree(-1, "fast")``)
  and fills them entry by entry (``TBranch::Fill``), checking each entry's event number in
  the copied tree's source against the one that was scored. Its scores come from a scoring
  back-end: the compiled ``Pipeline`` (``FillAll``) or Python chunks (``FillChunk``).
* ``Pipeline`` scores blocks of entries with the models compiled to C++, in threads of its
  own ahead of the filling loop (or, without threads, in the loop itself): each block's
  variables' branches and event numbers are read (its own ``TFile``), the variables
  evaluated, the block scored with the models' batched function into a slot; the loop takes
  the slots in entry order (``Next``), adding (entry, event) to the order hash (as
  :func:`htt_tmva.application.scores.event_hash` computes it).
* ``LeafReader`` reads chunks of numeric leaves for the Python back-end; ``OrderHash``
  reads the order hash back from a written tree (the verification).

The implementation is compiled with the system's C++ compiler against ROOT's headers and
cached like the models (:mod:`htt_tmva.export.compile`): ROOT's interpreter then only
reads the declarations. Without a compiler the interpreter compiles all of it.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache

from htt_tmva._root import root
from htt_tmva.errors import CacheError, ModelError

log = logging.getLogger(__name__)

DECLARATIONS = r"""
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>
#include "RtypesCore.h"
class TBranch;
class TFile;
class TLeaf;
class TTree;
namespace htt_tmva_onepass {
using BatchFunction = void (*)(const unsigned*, const double*, std::size_t, float*);
using InputsFunction = void (*)(const double*, std::size_t, double*);

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
};

struct Counts {
  std::vector<ULong64_t> nonfinite, per_fold;
  ULong64_t nonfinite_events = 0, nan_scores = 0, bad_events = 0;
};

/// The order hash of the Python path (htt_tmva.application.scores.event_hash) of one pair.
inline ULong64_t PairHash(ULong64_t entry, ULong64_t bits) {
  ULong64_t z = entry * 0x9E3779B97F4A7C15ULL + bits;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// Block b is read and scored by thread b % threads into slot b % slots; the writing loop
/// takes the slots in entry order and frees each when it moves on. Without threads
/// (threads == 0) the loop scores each block itself when it reaches it.
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
  /// Stop the threads (when the loop ended early) and wait for them; the error, or "".
  std::string Finish();
  Counts Total() const;
  double ScoringSeconds() const;

private:
  struct Impl;
  Impl* fImpl;
  ULong64_t fHash = 0;
};

/// The order hash of (entry, event) pairs of a tree; event numbers count by their 64 bits.
ULong64_t OrderHash(const std::string& file, const std::string& tree, const std::string& event);

/// Adds Float_t branches `names` to `out` (a raw copy of `source`, or of its event branch)
/// and fills them, entry by entry in order, checking that `source`'s event number of each
/// entry is the one that was scored.
class Filler {
public:
  Filler(TTree* out, TTree* source, const std::vector<std::string>& names,
         const std::string& event, int event_kind);
  /// Entries [next, next + n) from row-major scores (n rows of names.size()); `events`: the
  /// event numbers' 64 bits that the scorer read.
  void FillChunk(Long64_t n, const std::int64_t* events, const float* scores);
  /// Every entry from the compiled pipeline.
  void FillAll(Pipeline& pipeline, Long64_t entries);
  Long64_t Filled() const { return fNext; }

private:
  ULong64_t ReadEvent(Long64_t entry);
  void FillRow(const float* row);
  TLeaf* fEvent = nullptr;
  int fKind = 0;
  std::vector<TBranch*> fBranches;
  std::vector<float> fRow;
  Long64_t fNext = 0;
};

/// Put the branches (and their leaves) of `tree` in `order` (names); others keep theirs, last.
void Reorder(TTree* tree, const std::vector<std::string>& order);

/// Entries of some numeric leaves as doubles and the event number's 64 bits, read with a
/// compiled TTree loop (the Python back-end's input).
class LeafReader {
public:
  LeafReader(const std::string& file, const std::string& tree,
             const std::vector<std::string>& columns, const std::string& event);
  ~LeafReader();
  /// Fill `values` (row-major, end - begin rows) and `events` with entries [begin, end).
  void Read(Long64_t begin, Long64_t end, double* values, std::int64_t* events);

private:
  TFile* fFile = nullptr;
  TTree* fTree = nullptr;
  std::vector<TLeaf*> fLeaves;
  TLeaf* fEvent = nullptr;
};



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
#include "TObjArray.h"
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

/// What one reader of the input needs: its own file, the leaves and the block's buffers.
struct BlockReader {
  Opened in;
  std::vector<TLeaf*> leaves;
  TLeaf* event = nullptr;
  std::vector<double> values, x;
  std::vector<unsigned> folds;
  std::vector<float> scores;
  std::vector<char> good;
};

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
  std::unique_ptr<BlockReader> own;  // threads == 0: the loop's reader

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

  std::unique_ptr<BlockReader> OpenReader() const {
    auto r = std::make_unique<BlockReader>();
    r->in = Open(s.file, s.tree);
    if (r->in.tree->GetEntries() != s.entries)
      throw std::runtime_error("tree '" + s.tree + "' of '" + s.file + "' has " +
                               std::to_string(r->in.tree->GetEntries()) + " entries, expected " +
                               std::to_string(s.entries));
    for (const auto& b : s.branches) r->leaves.push_back(FindLeaf(r->in.tree, b));
    r->event = FindLeaf(r->in.tree, s.event);
    r->values.resize(s.block * std::max<std::size_t>(r->leaves.size(), 1));
    r->x.resize(s.block * s.nv);
    r->folds.resize(s.block);
    r->scores.resize(s.block * s.nc);
    r->good.resize(s.block);
    return r;
  }

  /// Read and score block b into `slot`.
  void ScoreBlock(BlockReader& r, Long64_t b, Slot& slot, Counts& count) const {
    const std::size_t nb = r.leaves.size(), nv = s.nv, nc = s.nc;
    const Long64_t begin = b * s.block, end = std::min(s.entries, begin + s.block);
    const std::size_t n = end - begin;
    for (std::size_t i = 0; i < n; ++i) {
      const Long64_t entry = begin + i;
      for (std::size_t k = 0; k < nb; ++k) {
        Load(r.leaves[k], entry);
        r.values[i * nb + k] = r.leaves[k]->GetValue(0);
      }
      Load(r.event, entry);
      ULong64_t bits;
      if (s.event_kind == 2) {
        const double e = r.event->GetValue(0);
        if (!(std::isfinite(e) && e == std::trunc(e) && std::abs(e) <= s.event_limit))
          ++count.bad_events;
        bits = static_cast<ULong64_t>(static_cast<Long64_t>(e));
      } else {
        bits = static_cast<ULong64_t>(r.event->GetValueLong64(0));
      }
      slot.events[i] = bits;
      r.folds[i] = FoldOf(bits);
    }
    s.inputs(r.values.data(), n, r.x.data());
    for (std::size_t i = 0; i < n; ++i) {
      bool ok = true;
      for (std::size_t v = 0; v < nv; ++v)
        if (!std::isfinite(r.x[i * nv + v])) { ++count.nonfinite[v]; ok = false; }
      r.good[i] = ok;
      if (ok) {
        ++count.per_fold[r.folds[i]];
      } else {
        ++count.nonfinite_events;
        std::fill(r.x.begin() + i * nv, r.x.begin() + (i + 1) * nv, 0.);
      }
    }
    s.batch(r.folds.data(), r.x.data(), n, r.scores.data());
    for (std::size_t i = 0; i < n; ++i)
      Finish(r.scores.data() + i * nc, r.good[i], slot.out.data() + i * (nc + 2), count);
  }

  void Work(unsigned w) {
    try {
      auto reader = OpenReader();
      Counts& count = counts[w];
      for (Long64_t b = w; b * s.block < s.entries; b += Threads()) {
        Slot& slot = slots[b % slots.size()];
        {
          std::unique_lock<std::mutex> lock(mutex);
          changed.wait(lock, [&] { return stop || failed || slot.block == -1; });
          if (stop || failed) return;
        }
        const auto start = std::chrono::steady_clock::now();
        ScoreBlock(*reader, b, slot, count);
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
  if (!d.s.inputs || !d.s.batch || d.s.block < 1 || d.s.folds < 1 || d.s.nc < 1) {
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

void Pipeline::Start() {
  if (fImpl->s.threads == 0) return;  // the loop scores each block itself
  for (unsigned w = 0; w < fImpl->Threads(); ++w)
    fImpl->threads.emplace_back([this, w] { fImpl->Work(w); });
}

const float* Pipeline::Row(ULong64_t entry, ULong64_t event_bits) {
  Impl& d = *fImpl;
  const Long64_t b = static_cast<Long64_t>(entry) / d.s.block;
  if (b != d.current && d.s.threads == 0) {
    if (d.failed) throw std::runtime_error(d.error);
    try {
      if (!d.own) d.own = d.OpenReader();
      const auto start = std::chrono::steady_clock::now();
      d.ScoreBlock(*d.own, b, d.slots[0], d.counts[0]);
      d.seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } catch (const std::exception& e) {
      d.failed = true;
      d.error = e.what();
      throw;
    }
    d.current_slot = &d.slots[0];
    d.current = b;
  } else if (b != d.current) {
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

Filler::Filler(TTree* out, TTree* source, const std::vector<std::string>& names,
               const std::string& event, int event_kind)
    : fKind(event_kind), fRow(names.size(), 0.f) {
  if (!out || !source) throw std::invalid_argument("htt_tmva_onepass::Filler: no tree");
  fEvent = source->GetLeaf(event.c_str());
  if (!fEvent)
    throw std::runtime_error("no leaf '" + event + "' in tree '" + source->GetName() + "'");
  for (std::size_t i = 0; i < names.size(); ++i) {
    TBranch* branch = out->Branch(names[i].c_str(), &fRow[i], (names[i] + "/F").c_str());
    if (!branch) throw std::runtime_error("cannot add branch '" + names[i] + "'");
    fBranches.push_back(branch);
  }
}

ULong64_t Filler::ReadEvent(Long64_t entry) {
  Load(fEvent, entry);
  if (fKind == 2) return static_cast<ULong64_t>(static_cast<Long64_t>(fEvent->GetValue(0)));
  return static_cast<ULong64_t>(fEvent->GetValueLong64(0));
}

void Filler::FillRow(const float* row) {
  std::copy(row, row + fRow.size(), fRow.begin());
  for (TBranch* branch : fBranches)
    if (branch->Fill() < 0)
      throw std::runtime_error("writing branch '" + std::string(branch->GetName()) + "' failed");
  ++fNext;
}

void Filler::FillChunk(Long64_t n, const std::int64_t* events, const float* scores) {
  const std::size_t width = fRow.size();
  for (Long64_t i = 0; i < n; ++i) {
    const ULong64_t read = ReadEvent(fNext), scored = static_cast<ULong64_t>(events[i]);
    if (read != scored)
      throw std::runtime_error("entry " + std::to_string(fNext) + ": the event loop read event " +
                               std::to_string(read) + ", the scores are of event " +
                               std::to_string(scored));
    FillRow(scores + i * width);
  }
}

void Filler::FillAll(Pipeline& pipeline, Long64_t entries) {
  for (Long64_t entry = 0; entry < entries; ++entry)
    FillRow(pipeline.Next(entry, ReadEvent(entry)));
}

void Reorder(TTree* tree, const std::vector<std::string>& order) {
  auto rank = [&](const char* name) {
    auto it = std::find(order.begin(), order.end(), std::string(name));
    return it == order.end() ? order.size() : static_cast<std::size_t>(it - order.begin());
  };
  auto items = [](TObjArray* a) {
    std::vector<TObject*> v;
    for (Int_t i = 0; i < a->GetEntriesFast(); ++i) v.push_back(a->At(i));
    return v;
  };
  TObjArray* branches = tree->GetListOfBranches();
  std::vector<TObject*> b = items(branches);
  std::stable_sort(b.begin(), b.end(),
                   [&](TObject* l, TObject* r) { return rank(l->GetName()) < rank(r->GetName()); });
  for (std::size_t i = 0; i < b.size(); ++i) branches->AddAt(b[i], i);  // no deletion
  TObjArray* leaves = tree->GetListOfLeaves();
  std::vector<TObject*> l = items(leaves);
  auto top = [](TObject* o) {
    TBranch* br = static_cast<TLeaf*>(o)->GetBranch();
    while (br->GetMother() && br->GetMother() != br) br = br->GetMother();
    return br->GetName();
  };
  std::stable_sort(l.begin(), l.end(),
                   [&](TObject* x, TObject* y) { return rank(top(x)) < rank(top(y)); });
  for (std::size_t i = 0; i < l.size(); ++i) leaves->AddAt(l[i], i);
}

LeafReader::LeafReader(const std::string& file, const std::string& tree,
                       const std::vector<std::string>& columns, const std::string& event) {
  Opened o = Open(file, tree);
  fTree = o.tree;
  for (const auto& c : columns) fLeaves.push_back(FindLeaf(fTree, c));
  fEvent = FindLeaf(fTree, event);
  fFile = o.file.release();
}

LeafReader::~LeafReader() { delete fFile; }

void LeafReader::Read(Long64_t begin, Long64_t end, double* values, std::int64_t* events) {
  const std::size_t n = fLeaves.size();
  for (Long64_t entry = begin; entry < end; ++entry) {
    const std::size_t row = entry - begin;
    for (std::size_t k = 0; k < n; ++k) {
      Load(fLeaves[k], entry);
      values[row * n + k] = fLeaves[k]->GetValue(0);
    }
    Load(fEvent, entry);
    events[row] = fEvent->GetValueLong64(0);
  }
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
    include, libraries = str(ROOT.gROOT.GetIncludeDir()), str(ROOT.gROOT.GetLibDir())
    key = source + cpu_signature() + str(ROOT.gROOT.GetVersion()) + include
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    try:
        if cxx is None:
            raise CacheError("no C++ compiler")
        library = cache_folder() / digest / f"htt_tmva_onepass_{digest}.so"
        build(
            source,
            library,
            cxx,
            "the scoring pipeline",
            extra=[f"-I{include}", f"-L{libraries}", "-lCore", "-lRIO", "-lTree"],
        )
    except CacheError as exc:  # the interpreter compiles it (slower start, same code)
        log.info("the application's C++ is compiled by ROOT's interpreter: %s", exc)
        if not ROOT.gInterpreter.Declare(source):  # pragma: no cover - broken C++ only
            raise ModelError("could not compile the application's C++") from None
        return ROOT.htt_tmva_onepass
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
