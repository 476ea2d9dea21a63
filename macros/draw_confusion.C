// Draws a confusion matrix from the ROOT file of the testing step (`htt-tmva confusion`):
//
//   root -l -b -q 'macros/draw_confusion.C("models/keras_fold0_confusion.root", "efficiency", "efficiency.png")'
//
// The file holds one labelled TH2D per representation (standard, efficiency, purity, ...):
// x = predicted class, y = true class. The matrix is drawn as in the PNG of the testing step:
// the first class in the top row, canvas, margins and text scaled with the number of classes
// (readable at 21). Without an output name the canvas stays open.
#include <algorithm>
#include <memory>
#include <string>

#include "TCanvas.h"
#include "TError.h"
#include "TFile.h"
#include "TH2D.h"
#include "TKey.h"
#include "TStyle.h"

// The matrix with its rows in the order of the PNG: true class i in row n - i from the bottom.
TH2D* top_down(const TH2D& hist) {
  const int n = hist.GetNbinsY();
  auto* out = new TH2D("confusion_drawn", hist.GetTitle(), hist.GetNbinsX(), 0,
                       hist.GetNbinsX(), n, 0, n);
  out->SetDirectory(nullptr);
  out->GetXaxis()->SetTitle("predicted class");
  out->GetYaxis()->SetTitle("true class");
  for (int j = 1; j <= hist.GetNbinsX(); ++j)
    out->GetXaxis()->SetBinLabel(j, hist.GetXaxis()->GetBinLabel(j));
  for (int i = 1; i <= n; ++i) {
    out->GetYaxis()->SetBinLabel(n + 1 - i, hist.GetYaxis()->GetBinLabel(i));
    for (int j = 1; j <= hist.GetNbinsX(); ++j) {
      out->SetBinContent(j, n + 1 - i, hist.GetBinContent(j, i));
      out->SetBinError(j, n + 1 - i, hist.GetBinError(j, i));
    }
  }
  out->SetEntries(hist.GetEntries());
  return out;
}

int draw_confusion(const char* file, const char* name = "standard", const char* output = "") {
  std::unique_ptr<TFile> f(TFile::Open(file));
  if (!f || f->IsZombie()) {
    Error("draw_confusion", "cannot open '%s'", file);
    return 1;
  }
  auto* stored = f->Get<TH2D>(name);
  if (!stored) {
    std::string names;
    for (auto* key : *f->GetListOfKeys())
      if (std::string(static_cast<TKey*>(key)->GetClassName()) == "TH2D")
        names += std::string(names.empty() ? "" : ", ") + key->GetName();
    Error("draw_confusion", "no matrix '%s' in '%s'; matrices there: %s", name, file,
          names.c_str());
    return 1;
  }
  TH2D* hist = top_down(*stored);
  const int n = std::max(hist->GetNbinsX(), 1);
  size_t longest = 1;
  for (int i = 1; i <= n; ++i)
    longest = std::max(longest, std::string(hist->GetYaxis()->GetBinLabel(i)).size());

  // cells of 60 px at 21 classes, up to 160 px at few; room for the longest class name
  const int cell = std::clamp(1100 / n, 60, 160);
  const int label_px = std::clamp(cell / 3, 14, 24);
  const int margin_left = 70 + static_cast<int>(0.6 * label_px * longest);
  const int margin_bottom = 70 + static_cast<int>(0.45 * label_px * longest);
  const int width = margin_left + n * cell + 160;
  const int height = margin_bottom + n * cell + 80;

  gStyle->SetOptStat(0);
  // fractions with 3 decimals; sums of weights without exponents (".3g" writes 1.19e+04)
  const bool sums = std::string(name) == "standard";
  const double largest = std::max(hist->GetMaximum(), -hist->GetMinimum());
  gStyle->SetPaintTextFormat(sums ? (largest >= 100 ? ".0f" : ".3g") : ".3f");
  auto* canvas = new TCanvas("confusion", hist->GetTitle(), width, height);
  canvas->SetLeftMargin(static_cast<double>(margin_left) / width);
  canvas->SetBottomMargin(static_cast<double>(margin_bottom) / height);
  canvas->SetRightMargin(160.0 / width);
  canvas->SetTopMargin(80.0 / height);
  for (auto* axis : {hist->GetXaxis(), hist->GetYaxis()}) {
    axis->SetLabelFont(43);  // sizes in pixels, independent of the canvas size
    axis->SetLabelSize(label_px);
    axis->SetTitleFont(43);
    axis->SetTitleSize(20);
    axis->CenterTitle();
  }
  hist->GetXaxis()->LabelsOption("v");
  // with pixel fonts the offset is in units of the title size (20 px), about 1.6 each
  hist->GetXaxis()->SetTitleOffset((margin_bottom - 35) / 32.0);
  hist->GetYaxis()->SetTitleOffset((margin_left - 35) / 32.0);
  gStyle->SetTitleFontSize(24.0 / height);
  hist->GetZaxis()->SetLabelFont(43);
  hist->GetZaxis()->SetLabelSize(16);
  // TEXT size follows the marker size (text height = 0.02 x marker size x canvas height):
  // about 0.3 of the cell height
  hist->SetMarkerSize(0.3 * cell / (0.02 * height));
  hist->Draw("COLZ TEXT");
  if (*output) canvas->SaveAs(output);
  return 0;
}
