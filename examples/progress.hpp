#pragma once
// A per-epoch progress display for the examples.
//
//   ProgressBar bar(std::cout, ProgressBar::Mode::bar, "epoch 1/5", num_batches);
//   for (...) bar.update(batches_done, examples_done, running_loss, running_accuracy);
//   bar.finish();   // clears the bar line (bar mode)
//
// Mode::bar redraws one line in place with '\r' (for a terminal), at most every 0.1 s:
//   epoch 1/5 [##########----------]  469/938  loss 0.4123  acc 0.853  1520 ex/s  ETA 0:31
// Mode::lines prints a plain line each time another tenth of the batches is done (for logs and
// pipes, where '\r' would leave garbage). Mode::none prints nothing.
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace kiln::examples {

class ProgressBar {
 public:
  enum class Mode { none, bar, lines };

  ProgressBar(std::ostream& os, Mode mode, std::string label, std::int64_t total_batches);
  /// Reports the state after `batches` of the total, `examples` seen so far in this epoch, and
  /// the running mean loss and accuracy of the epoch.
  void update(std::int64_t batches, std::int64_t examples, double loss, double accuracy);
  /// Ends the display: bar mode erases its line so the caller's summary line replaces it.
  void finish();

  /// Mode::bar when stdout is a terminal, else Mode::lines.
  static Mode auto_mode();
  /// "1:05", "12:34", "1:02:03".
  static std::string format_duration(double seconds);

 private:
  std::string render(std::int64_t batches, std::int64_t examples, double loss, double accuracy,
                     double elapsed, bool with_bar) const;

  std::ostream& os_;
  Mode mode_;
  std::string label_;
  std::int64_t total_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  std::int64_t next_line_tenth_ = 1;
  std::size_t last_width_ = 0;
  bool drawn_ = false;
};

}  // namespace kiln::examples
