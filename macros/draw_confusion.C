// Draws a confusion matrix from the ROOT file of the testing step (`htt-tmva confusion`):
//
//   root -l -b -q 'macros/draw_confusion.C("models/keras_fold0_confusion.root", "efficiency", "efficiency.png")'
//
// The file holds one labelled TH2D per representation (standard, efficiency, purity, ...):
// x = predicted class, y = true class. Without an output name the canvas stays open.
#include <memory>
#include <string>

#include "TCanvas.h"
#include "TError.h"
#include "TFile.h"
#include "TH2D.h"
#include "TKey.h"
#include "TStyle.h"

int draw_confusion(const char* file, const char* name = "standard", const char* output = "") {
  std::unique_ptr<TFile> f(TFile::Open(file));
  if (!f || f->IsZombie()) {
    Error("draw_confusion", "cannot open '%s'", file);
    return 1;
  }
  auto* hist = f->Get<TH2D>(name);
  if (!hist) {
    std::string names;
    for (auto* key : *f->GetListOfKeys())
      if (std::string(static_cast<TKey*>(key)->GetClassName()) == "TH2D")
        names += std::string(names.empty() ? "" : ", ") + key->GetName();
    Error("draw_confusion", "no matrix '%s' in '%s'; matrices there: %s", name, file,
          names.c_str());
    return 1;
  }
  hist->SetDirectory(nullptr);
  gStyle->SetOptStat(0);
  gStyle->SetPaintTextFormat(".3g");
  auto* canvas = new TCanvas("confusion", hist->GetTitle(), 800, 700);
  canvas->SetLeftMargin(0.18);
  canvas->SetBottomMargin(0.15);
  canvas->SetRightMargin(0.14);
  hist->Draw("COLZ TEXT");
  if (*output) canvas->SaveAs(output);
  return 0;
}
