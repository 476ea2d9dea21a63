// Adds the scores of an exported htt-tmva model to a tree, with RDataFrame:
//
//   root -l -b -q 'macros/apply_model.C("model.hxx", "in.root", "ntuple", "out.root")'
//
// model.hxx comes from `htt-tmva export TRAINING_CONFIG --all-folds --format cpp` (a
// fold-aware header: every event is scored by the model that never saw its fold, chosen by
// the event branch recorded in the header) or from the export of one fold. out.root gets
// the tree with all its branches plus <prefix><class>, <prefix>max_score and
// <prefix>max_index (floats, as `htt-tmva apply` writes them); the prefix defaults to the
// header's namespace followed by '_'. The input file is only read.
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "ROOT/RDataFrame.hxx"
#include "TError.h"
#include "TFile.h"
#include "TInterpreter.h"
#include "TSystem.h"
#include "TTree.h"

namespace htt_tmva_macro {
std::string header_namespace(const std::string& header) {
  std::ifstream in(header);
  const std::string marker = "// htt-tmva namespace: ";
  std::string line;
  for (int i = 0; i < 5 && std::getline(in, line); ++i)
    if (line.rfind(marker, 0) == 0) return line.substr(marker.size());
  return "";
}

long value(const std::string& expression) {
  return static_cast<long>(gInterpreter->ProcessLine((expression + ";").c_str()));
}

std::string text(const std::string& expression) {
  return reinterpret_cast<const char*>(value("(long)" + expression));
}

std::vector<std::string> top_level_branches(const char* file, const char* tree) {
  std::vector<std::string> names;
  std::unique_ptr<TFile> f(TFile::Open(file));
  auto* t = f ? f->Get<TTree>(tree) : nullptr;
  if (!t) return names;
  for (auto* b : *t->GetListOfBranches()) names.push_back(b->GetName());
  return names;
}
}  // namespace htt_tmva_macro

int apply_model(const char* header, const char* input, const char* tree, const char* output,
                const char* prefix = "") {
  using namespace htt_tmva_macro;
  const std::string path = gSystem->IsAbsoluteFileName(header)
                               ? std::string(header)
                               : std::string(gSystem->WorkingDirectory()) + "/" + header;
  const std::string ns = header_namespace(path);
  if (ns.empty()) {
    Error("apply_model", "'%s' is not a header written by htt-tmva export", header);
    return 1;
  }
  if (!gInterpreter->Declare(("#include \"" + path + "\"").c_str())) {
    Error("apply_model", "'%s' does not compile", header);
    return 1;
  }
  auto branches = top_level_branches(input, tree);
  if (branches.empty()) {
    Error("apply_model", "no tree '%s' with branches in '%s'", tree, input);
    return 1;
  }
  const long nv = value(ns + "::n_variables"), nc = value(ns + "::n_classes");
  std::string args;
  for (long i = 0; i < nv; ++i) {
    const std::string v = text(ns + "::variables[" + std::to_string(i) + "]");
    if (std::find(branches.begin(), branches.end(), v) == branches.end()) {
      Error("apply_model", "variable '%s' of the model is not a branch of '%s'", v.c_str(), tree);
      return 1;
    }
    args += (i ? ", " : "") + std::string("static_cast<double>(") + v + ")";
  }
  std::string call;
  if (value(ns + "::fold_aware")) {
    const std::string event = text(ns + "::event_branch");
    if (std::find(branches.begin(), branches.end(), event) == branches.end()) {
      Error("apply_model", "event branch '%s' is not a branch of '%s'", event.c_str(), tree);
      return 1;
    }
    call = ns + "::predict_event(" + event + ", " + args + ")";
  } else {
    call = ns + "::predict(std::array<double, " + std::to_string(nv) + ">{" + args + "})";
  }
  const std::string p = *prefix ? std::string(prefix) : ns + "_";
  auto frame = ROOT::RDataFrame(tree, input).Define("htt_tmva_scores_", call);
  std::vector<std::string> columns = branches;
  for (long i = 0; i < nc; ++i) {
    const std::string name = p + text(ns + "::classes[" + std::to_string(i) + "]");
    frame = frame.Define(name, "htt_tmva_scores_[" + std::to_string(i) + "]");
    columns.push_back(name);
  }
  frame = frame
              .Define(p + "max_score",
                      "*std::max_element(htt_tmva_scores_.begin(), htt_tmva_scores_.end())")
              .Define(p + "max_index",
                      "static_cast<float>(std::max_element(htt_tmva_scores_.begin(), "
                      "htt_tmva_scores_.end()) - htt_tmva_scores_.begin())");
  columns.push_back(p + "max_score");
  columns.push_back(p + "max_index");
  frame.Snapshot(tree, output, columns);
  Info("apply_model", "wrote '%s' with %ld score branches (prefix '%s')", output, nc + 2, p.c_str());
  return 0;
}
