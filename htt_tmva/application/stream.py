"""The C++ side of the application, compiled once per process with ``gInterpreter.Declare``.

* ``ScoreStream``: pass 1 (inference, Python) appends fixed-size records to a temporary
  binary file, the event number (int64) and the (n_classes + 2) float32 scores of each
  entry, in entry order. Pass 2 (the RDataFrame Snapshot) reads them sequentially in
  buffered blocks, waiting for records not written yet, checking that entries arrive in
  order (``rdfentry_``) and that each record belongs to the entry's event number.
* ``LoopThread``: runs pass 2's event loop in a C++ thread, so both passes run at the same
  time, each on its own core, with memory independent of the number of events.
* ``LeafReader``: pass 1's input, a compiled TTree loop over the needed leaves only; it
  copies the event number's 64 bits unchanged (a ULong64_t above 2^63 arrives as a
  negative int64, which Python views as uint64 again).

Event numbers travel as their 64 bits: the stream's int64 and pass 2's
``static_cast<Long64_t>`` of the branch agree for signed and unsigned branches alike.
The order hash of (entry, event) pairs that verifies the output is computed in numpy
(:func:`event_hash`), on pass 1's chunks and on the written file alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from htt_tmva._root import root

log = logging.getLogger(__name__)

_CPP = r"""
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>
#include <memory>
#include <ROOT/RResultPtr.hxx>
#include <TBranch.h>
#include <TFile.h>
#include <TLeaf.h>
#include <TTree.h>

namespace htt_tmva_apply {

/// Reads records (int64 event, nScores float32) sequentially from a file that may still grow.
class ScoreStream {
public:
   ScoreStream(const std::string &path, unsigned nScores, Long64_t nEntries, std::size_t blockBytes)
      : fNScores(nScores), fRecord(8 + 4 * std::size_t(nScores)), fTotal(nEntries),
        fScores(nScores, 0.f)
   {
      fBuffer.resize(std::max<std::size_t>(blockBytes / fRecord, 1) * fRecord);
      fFd = ::open(path.c_str(), O_RDONLY);
      if (fFd < 0)
         throw std::runtime_error("cannot open score stream '" + path + "': " +
                                  std::strerror(errno));
   }
   ~ScoreStream() { if (fFd >= 0) ::close(fFd); }

   /// The scores of the entry ``entry``, whose event number is ``event``.
   const float *Next(ULong64_t entry, Long64_t event)
   {
      if (fAbort.load(std::memory_order_relaxed))
         Aborted();
      if (Long64_t(entry) != fNext)
         Fail("entries arrive out of order: expected entry " + std::to_string(fNext) + ", got " +
              std::to_string(entry));
      if (fEnd - fPos < fRecord)
         Fill(); // records are consumed whole; a partial tail waits for its rest
      const char *rec = fBuffer.data() + fPos;
      Long64_t written;
      std::memcpy(&written, rec, 8);
      if (written != event)
         Fail("score record of entry " + std::to_string(entry) + " belongs to event " +
              std::to_string(written) + ", but the entry holds event " + std::to_string(event));
      std::memcpy(fScores.data(), rec + 8, 4 * fNScores);
      fPos += fRecord;
      ++fNext;
      return fScores.data();
   }

   void WriterDone() { fWriterDone = true; }
   void Abort(const std::string &why)
   {
      {
         std::lock_guard<std::mutex> lock(fMutex);
         fAbortMessage = why;
      }
      fAbort = true;
   }
   double WaitedSeconds() const { return fWaited; }

private:
   [[noreturn]] void Fail(const std::string &why)
   {
      throw std::runtime_error("score stream: " + why);
   }
   [[noreturn]] void Aborted()
   {
      std::lock_guard<std::mutex> lock(fMutex);
      Fail("aborted: " + fAbortMessage);
   }

   /// Refill the buffer with whole records, waiting while the writer is behind.
   void Fill()
   {
      std::size_t partial = fEnd - fPos;
      std::memmove(fBuffer.data(), fBuffer.data() + fPos, partial);
      fPos = 0;
      fEnd = partial;
      auto waitStart = std::chrono::steady_clock::now();
      bool waited = false;
      while (fEnd < fRecord) {
         ssize_t got = ::read(fFd, fBuffer.data() + fEnd, fBuffer.size() - fEnd);
         if (got < 0 && errno == EINTR)
            continue;
         if (got < 0)
            Fail(std::string("read failed: ") + std::strerror(errno));
         if (got > 0) {
            fEnd += std::size_t(got);
            continue;
         }
         if (fAbort)
            Aborted();
         if (fWriterDone) {
            // the writer may have appended between our read and the flag: read once more
            got = ::read(fFd, fBuffer.data() + fEnd, fBuffer.size() - fEnd);
            if (got > 0) {
               fEnd += std::size_t(got);
               continue;
            }
            Fail("ended after " + std::to_string(fNext) + " of " + std::to_string(fTotal) +
                 " entries");
         }
         waited = true;
         std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (waited)
         fWaited += std::chrono::duration<double>(std::chrono::steady_clock::now() - waitStart)
                       .count();
   }

   unsigned fNScores;
   std::size_t fRecord;
   Long64_t fTotal;
   std::vector<float> fScores;
   std::vector<char> fBuffer;
   std::size_t fPos = 0, fEnd = 0;
   Long64_t fNext = 0;
   int fFd = -1;
   double fWaited = 0.;
   std::atomic<bool> fWriterDone{false}, fAbort{false};
   std::mutex fMutex;
   std::string fAbortMessage;
};

/// Runs one booked RDataFrame result (a lazy Snapshot) in a thread of its own.
class LoopThread {
public:
   template <typename T>
   void Start(ROOT::RDF::RResultPtr<T> result)
   {
      fThread = std::thread([this, result]() mutable {
         try {
            result.GetValue();
         } catch (const std::exception &e) {
            fError = e.what();
            fFailed = true;
         } catch (...) {
            fError = "unknown C++ exception";
            fFailed = true;
         }
         fFinished = true;
      });
   }
   bool Finished() const { return fFinished; }
   /// Wait for the loop; return its error message, empty on success.
   std::string Join()
   {
      if (fThread.joinable())
         fThread.join();
      return fFailed ? (fError.empty() ? std::string("failed") : fError) : std::string();
   }
   ~LoopThread() { if (fThread.joinable()) fThread.join(); }

private:
   std::thread fThread;
   std::atomic<bool> fFinished{false}, fFailed{false};
   std::string fError;
};

/// Pass 1 input: entries of some numeric leaves as doubles and the event number, read with
/// a compiled TTree loop (no RDataFrame per-entry overhead, no JIT at run time).
class LeafReader {
public:
   LeafReader(const std::string &file, const std::string &tree,
              const std::vector<std::string> &columns, const std::string &event)
   {
      fFile.reset(TFile::Open(file.c_str(), "READ"));
      if (!fFile || fFile->IsZombie())
         throw std::runtime_error("cannot open '" + file + "'");
      fTree = fFile->Get<TTree>(tree.c_str());
      if (!fTree)
         throw std::runtime_error("no tree '" + tree + "' in '" + file + "'");
      for (const auto &c : columns)
         fLeaves.push_back(Leaf(c));
      fEvent = Leaf(event);
   }
   /// Fill ``values`` (row-major, end - begin rows) and ``events`` with entries [begin, end).
   void Read(Long64_t begin, Long64_t end, double *values, std::int64_t *events)
   {
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

private:
   static void Load(TLeaf *leaf, Long64_t entry)
   {
      if (leaf->GetBranch()->GetEntry(entry) < 0)
         throw std::runtime_error("cannot read entry " + std::to_string(entry) + " of branch '" +
                                  leaf->GetBranch()->GetName() + "'");
   }
   TLeaf *Leaf(const std::string &name)
   {
      TLeaf *leaf = fTree->GetLeaf(name.c_str());
      if (!leaf)
         throw std::runtime_error("no leaf '" + name + "' in tree '" + fTree->GetName() + "'");
      fTree->AddBranchToCache(leaf->GetBranch());
      return leaf;
   }
   std::unique_ptr<TFile> fFile;
   TTree *fTree = nullptr;
   std::vector<TLeaf *> fLeaves;
   TLeaf *fEvent = nullptr;
};

/// The stream that pass 2 reads (one at a time per process).
inline ScoreStream *&CurrentStream()
{
   static ScoreStream *current = nullptr;
   return current;
}
inline void SetCurrentStream(ScoreStream *stream) { CurrentStream() = stream; }
inline const float *NextScores(ULong64_t entry, Long64_t event)
{
   ScoreStream *stream = CurrentStream();
   if (!stream)
      throw std::runtime_error("no score stream is active");
   return stream->Next(entry, event);
}

} // namespace htt_tmva_apply
"""


SCORES_COLUMN = "htt_tmva_scores_"


def scores_expression(event_branch: str) -> str:
    """C++ expression of the ``const float*`` column of the current entry's scores."""
    return f"htt_tmva_apply::NextScores(rdfentry_, static_cast<Long64_t>({event_branch}))"


@cache
def declare() -> object:
    """Compile the C++ helpers once per process; return the ``htt_tmva_apply`` namespace."""
    ROOT = root()
    ROOT.EnableThreadSafety()  # pass 2 runs its event loop in a thread while pass 1 reads
    if not ROOT.gInterpreter.Declare(_CPP):  # pragma: no cover - only if the C++ is broken
        raise RuntimeError("could not compile the score stream reader")
    return ROOT.htt_tmva_apply


def record_dtype(n_scores: int) -> np.dtype:
    """One record of the stream: event number and scores, packed."""
    return np.dtype([("event", "<i8"), ("scores", "<f4", (n_scores,))])


def event_hash(entries: np.ndarray, events: np.ndarray) -> int:
    """Order-sensitive hash of (entry, event) pairs: a splitmix64 finaliser of each pair,
    summed modulo 2^64. Events count by their 64 bits (int64 and uint64 alike)."""
    events = events.astype(np.int64, copy=False) if events.dtype != np.uint64 else events
    events = events.view(np.uint64)
    with np.errstate(over="ignore"):
        z = entries.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + events
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        return int(z.sum(dtype=np.uint64))


class StreamWriter:
    """The pass-1 side of the stream: appends records to the file, unbuffered per chunk."""

    def __init__(self, path: Path, n_scores: int):
        self.path, self.dtype = Path(path), record_dtype(n_scores)
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        self.written = 0

    def write(self, events: np.ndarray, scores: np.ndarray) -> None:
        record = np.empty(len(events), dtype=self.dtype)
        record["event"] = events.view(np.int64) if events.dtype == np.uint64 else events
        record["scores"] = scores
        view = memoryview(record.view(np.uint8))
        while view:
            view = view[self._file.write(view) :]
        self.written += len(events)

    def close(self) -> None:
        self._file.close()


class StreamReader:
    """The pass-2 side: owns the C++ reader that ``scores_expression`` reads when active."""

    def __init__(self, path: Path, n_scores: int, n_entries: int, block_bytes: int = 1 << 20):
        self.cpp = declare().ScoreStream(str(path), n_scores, n_entries, block_bytes)

    def activate(self) -> None:
        """Make this the stream that ``scores_expression`` reads."""
        declare().SetCurrentStream(self.cpp)

    def deactivate(self) -> None:
        """No stream is active: a stray read fails instead of using a dead reader."""
        declare().SetCurrentStream(root().nullptr)


class LoopRunner:
    """Run a lazy RDataFrame result in a C++ thread (no GIL needed while it runs)."""

    def __init__(self):
        self.cpp = declare().LoopThread()
        self._started = False

    def start(self, result) -> None:
        self.cpp.Start(result)
        self._started = True

    def finished(self) -> bool:
        return bool(self.cpp.Finished())

    def join(self, on_interrupt: Callable[[str], None]) -> str:
        """Wait for the loop; the error message of a failed loop, '' on success. Waits in
        Python, so that Ctrl-C interrupts: ``on_interrupt`` then stops the loop."""
        if not self._started:
            return ""
        try:
            while not self.finished():
                time.sleep(0.01)
        except BaseException:
            on_interrupt("interrupted")
            self.cpp.Join()
            raise
        return str(self.cpp.Join())
