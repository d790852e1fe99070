#include "examples/progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <utility>

namespace kiln::examples {

ProgressBar::ProgressBar(std::ostream& os, Mode mode, std::string label, std::int64_t total_batches)
    : os_(os),
      mode_(mode),
      label_(std::move(label)),
      total_(total_batches > 0 ? total_batches : 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::Mode ProgressBar::auto_mode() {
  return isatty(fileno(stdout)) ? Mode::bar : Mode::lines;
}

std::string ProgressBar::format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  auto s = static_cast<long long>(seconds + 0.5);
  const long long h = s / 3600, m = (s / 60) % 60;
  s %= 60;
  std::ostringstream out;
  out << std::setfill('0');
  if (h > 0) out << h << ':' << std::setw(2) << m << ':' << std::setw(2) << s;
  else out << m << ':' << std::setw(2) << s;
  return out.str();
}

std::string ProgressBar::render(std::int64_t batches, std::int64_t examples, double loss, double accuracy,
                                double elapsed, bool with_bar) const {
  std::ostringstream out;
  out << label_ << ' ';
  if (with_bar) {
    constexpr int width = 24;
    const auto filled = static_cast<int>(width * batches / total_);
    out << '[' << std::string(static_cast<std::size_t>(filled), '#')
        << std::string(static_cast<std::size_t>(width - filled), '-') << "] ";
  }
  const int digits = static_cast<int>(std::to_string(total_).size());
  out << std::setw(digits) << batches << '/' << total_ << std::fixed << std::setprecision(4) << "  loss "
      << loss << std::setprecision(3) << "  acc " << accuracy;
  const double rate = elapsed > 0 ? static_cast<double>(examples) / elapsed : 0.0;
  out << std::setprecision(0) << "  " << rate << " ex/s";
  if (batches < total_) {
    const double eta = batches > 0 ? elapsed * static_cast<double>(total_ - batches) / static_cast<double>(batches) : -1;
    out << "  ETA " << format_duration(eta);
  } else {
    out << "  " << format_duration(elapsed);
  }
  return out.str();
}

void ProgressBar::update(std::int64_t batches, std::int64_t examples, double loss, double accuracy) {
  if (mode_ == Mode::none) return;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (mode_ == Mode::bar) {
    if (batches < total_ && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    std::string line = render(batches, examples, loss, accuracy, elapsed, true);
    const std::size_t width = line.size();
    if (width < last_width_) line += std::string(last_width_ - width, ' ');  // erase leftovers
    os_ << '\r' << line << std::flush;
    last_width_ = width;
    last_draw_ = now;
    drawn_ = true;
    return;
  }
  // lines: one line per completed tenth of the epoch (several tenths at once print one line)
  if (batches * 10 < next_line_tenth_ * total_) return;
  while (next_line_tenth_ * total_ <= batches * 10) ++next_line_tenth_;
  os_ << render(batches, examples, loss, accuracy, elapsed, false) << '\n' << std::flush;
}

void ProgressBar::finish() {
  if (mode_ == Mode::bar && drawn_) {
    os_ << '\r' << std::string(last_width_, ' ') << '\r' << std::flush;
    drawn_ = false;
  }
}

}  // namespace kiln::examples
